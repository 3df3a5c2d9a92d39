"""Built-in samplers: one module per algorithm."""
