"""Train a model: `python train.py --config configs/unetpp_l4.py` (see unetjax/cli/train.py)."""

import sys

from unetjax.cli import train

if __name__ == "__main__":
    sys.exit(train.run())
