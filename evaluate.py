"""Evaluate a run at every depth and mode: `python evaluate.py --help` (unetjax/cli/evaluate.py)."""

import sys

from unetjax.cli import evaluate

if __name__ == "__main__":
    sys.exit(evaluate.run())
