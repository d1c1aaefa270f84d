"""Built-in evals: one module each, defining SPEC and run(ctx)."""
