"""The library service: script templates and draft templates (``flowpilot.library.v1``)."""
