"""Command-line entry points: `predict` and `evaluate` (also runnable as top-level scripts)."""
