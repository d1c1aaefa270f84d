"""Built-in evals: declared in specs.py (what each is, with nothing heavy imported), run from
one module each (SPEC and run(ctx))."""
