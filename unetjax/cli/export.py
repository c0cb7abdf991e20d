"""Export a run pruned to depth L: a self-contained model directory with only that subgraph.

    python -m unetjax.cli.export --model runs/cells --depth 2 --mode fast --output models/cells_l2

The output has a run's layout (config.json, checkpoints/<step>/) and works wherever a run does:
`predict.py --model models/cells_l2 ...`, `evaluate.py --model models/cells_l2`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from unetjax import inference
from unetjax.cli import common


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="run directory")
    parser.add_argument("--depth", type=int, required=True, help="prune to depth L")
    parser.add_argument("--mode", choices=inference.MODES, default="fast")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--output", required=True, help="new directory for the exported model")
    common.add_verbose_flag(parser)
    args = parser.parse_args(argv)
    common.configure_logging()
    inference.export(args.model, args.output, depth=args.depth, mode=args.mode, step=args.step)
    predictor = inference.load_predictor(args.output, depth=args.depth, mode=args.mode)
    print(
        f"export: wrote {args.output}: depth {args.depth} ({args.mode}), step {predictor.step}, "
        f"{predictor.num_params:,} parameters"
    )
    return common.EXIT_OK


def run(argv: Sequence[str] | None = None) -> int:
    return common.run_command("export", main, argv)


if __name__ == "__main__":
    sys.exit(run())
