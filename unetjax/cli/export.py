"""Export a run pruned to depth L: a self-contained model directory with only that subgraph.

    python -m unetjax.cli.export --model runs/cells --depth 2 --mode fast --output models/cells_l2

The output has a run's layout (config.json, checkpoints/<step>/) and works wherever a run does:
`predict.py --model models/cells_l2 ...`, `evaluate.py --model models/cells_l2`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from unetjax import inference


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="run directory")
    parser.add_argument("--depth", type=int, required=True, help="prune to depth L")
    parser.add_argument("--mode", choices=inference.MODES, default="fast")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--output", required=True, help="new directory for the exported model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        inference.export(args.model, args.output, depth=args.depth, mode=args.mode, step=args.step)
        predictor = inference.load_predictor(args.output, depth=args.depth, mode=args.mode)
    except (OSError, ValueError) as error:
        print(f"export: {error}", file=sys.stderr)
        return 1
    print(
        f"export: wrote {args.output}: depth {args.depth} ({args.mode}), step {predictor.step}, "
        f"{predictor.num_params:,} parameters"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
