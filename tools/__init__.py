"""Developer and operator tooling: code generation, the dev stack, tokens."""
