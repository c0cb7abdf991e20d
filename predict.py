"""Predict masks with a trained run: `python predict.py --help` (see unetjax/cli/predict.py)."""

import sys

from unetjax.cli import predict

if __name__ == "__main__":
    sys.exit(predict.run())
