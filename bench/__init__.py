"""``make bench``: speed, scale and memory of the suite, measured side by side
with the framework and database ceilings and a FastAPI monolith peer."""
