"""The ISBI 2012 membrane recipe: four models at one budget, evaluated on held-out slices.

    python recipes/isbi2012.py --data ../shared/data/isbi2012_membrane --output runs/isbi2012

Trains configs/isbi2012_{unet,unetpp_nods,unetpp,unet3plus}.py with train.py (same split, patches,
augmentation, optimizer and steps), one after the other, each in its own process. Then, for each
run, `evaluate.py --split test --sweep --tile T` at the checkpoint with the best validation score
(the config's train.best_metric): membrane IoU, Dice and pixel accuracy on slices 25-29 at full
512x512 with overlap-tile, at threshold 0.5 and at the threshold that scores best on the
validation slices. Writes <output>/results.md, results.json and the UNet++ pruning plot, and
prints the table. docs/isbi2012.md is the guide.

Rerunning the same command continues unfinished training runs (train.py resumes from the latest
checkpoint) and re-evaluates. `--steps`, `--only` and `--extra` change the budget, the models and
any config field; `--skip-train` only evaluates runs that exist. The tables cover every model
evaluated in the output root, so models can be run one `--only` at a time.

This process never imports JAX: on a GPU it would take device memory the training processes need.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence

if __package__ in (None, ""):  # run as `python recipes/isbi2012.py`: make `recipes` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from recipes.isbi2012_results import (
    EVAL_DIR,
    MODELS,
    PRUNED_MODEL,
    PRUNING_PNG,
    RECORD,
    RESULTS_JSON,
    RESULTS_MD,
    Model,
    best_step,
    collect,
    main_setting,
    markdown,
    read_record,
    run_directory,
    seed_summary,
    seeds_present,
)

REPO = pathlib.Path(__file__).resolve().parents[1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="isbi2012", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="the isbi2012_membrane folder")
    parser.add_argument("--output", required=True, help="root of the runs and the results")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated models (default: all): {', '.join(m.name for m in MODELS)}",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: config)")
    parser.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every model, e.g. train.batch_size=16 (repeatable)",
    )
    parser.add_argument(
        "--tile", type=int, default=128, help="overlap-tile size at evaluation; 0: whole images"
    )
    parser.add_argument("--eval-batch-size", type=int, default=4, help="tiles per network call")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls for the latency")
    parser.add_argument(
        "--tfds-dir", default=None, help="where the dataset is built (default: <output>/tfds)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="train and evaluate each model with seeds 0..N-1 (config.seed: initialisation, "
        "augmentation and data order; the split stays); the table adds mean ± sd across seeds",
    )
    parser.add_argument("--skip-train", action="store_true", help="only evaluate existing runs")
    args = parser.parse_args(argv)
    names = [m.name for m in MODELS]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"--only: unknown models {unknown}; expected some of {names}")
        args.models = [m for m in MODELS if m.name in wanted]
    else:
        args.models = list(MODELS)
    for extra in args.extra:
        if "=" not in extra or extra.startswith(("--", "config.")):
            parser.error(f"--extra {extra!r}: expected KEY=VALUE, e.g. train.batch_size=16")
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be positive")
    if args.seeds < 1:
        parser.error("--seeds must be positive")
    data = pathlib.Path(args.data).expanduser().resolve()
    if not ((data / "images").is_dir() and (data / "masks").is_dir()):
        parser.error(f"--data {data}: expected images/ and masks/ (the isbi2012_membrane folder)")
    args.data = str(data)
    args.output = str(pathlib.Path(args.output).expanduser().resolve())
    args.tfds_dir = str(pathlib.Path(args.tfds_dir or os.path.join(args.output, "tfds")).resolve())
    return args


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _shown(command: list[str]) -> str:
    """The command as a user would type it in the repository."""
    return shlex.join(["python", *command[1:]])


def train_command(model: Model, args: argparse.Namespace, seed: int = 0) -> list[str]:
    command = [
        sys.executable,
        "train.py",
        "--config",
        model.config,
        "--workdir",
        run_directory(args.output, model, seed),
        f"--config.data.manual_dir={args.data}",
        f"--config.data.data_dir={args.tfds_dir}",
    ]
    if args.steps is not None:
        command.append(f"--config.train.num_steps={args.steps}")
    if seed:
        command.append(f"--config.seed={seed}")
    return command + [f"--config.{extra}" for extra in args.extra]


def evaluate_command(
    workdir: str, args: argparse.Namespace, step: int | None, depths: str | None, modes: str
) -> list[str]:
    command = [
        sys.executable,
        "evaluate.py",
        "--model",
        workdir,
        "--split",
        "test",
        "--sweep",
        "--modes",
        modes,
        "--tile",
        str(args.tile),
        "--batch-size",
        str(args.eval_batch_size),
        "--repeats",
        str(args.repeats),
        "--data-dir",
        args.tfds_dir,
        "--output",
        os.path.join(workdir, EVAL_DIR),
    ]
    if depths is not None:
        command += ["--depths", depths]
    return command + (["--step", str(step)] if step is not None else [])


def run_logged(command: list[str], log_path: str) -> int:
    """Runs `command` in the repository, its output both shown and appended to `log_path`."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    _say(f"$ {shlex.join(command)}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in process.stdout:
            sys.stdout.write(line)
            log.write(line)
        return process.wait()


def update_record(workdir: str, **values: str) -> None:
    """Merges `values` into the run's recipe.json (the commands behind its numbers)."""
    record = {**read_record(workdir), **values}
    with open(os.path.join(workdir, RECORD), "w") as f:
        json.dump(record, f, indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    recipe_command = shlex.join(
        ["python", "recipes/isbi2012.py", *(sys.argv[1:] if argv is None else argv)]
    )
    runs = [(model, seed) for model in args.models for seed in range(args.seeds)]
    for model, seed in [] if args.skip_train else runs:
        workdir = run_directory(args.output, model, seed)
        command = train_command(model, args, seed)
        status = run_logged(command, os.path.join(workdir, "train.log"))
        if status != 0:
            hint = "; rerun the same command to resume" if status == 130 else ""
            _say(f"isbi2012: training {model.name} ended with status {status}{hint}")
            return 1
        update_record(workdir, train=_shown(command))

    for model, seed in runs:
        workdir = run_directory(args.output, model, seed)
        config_path = os.path.join(workdir, "config.json")
        if not os.path.isfile(config_path):
            _say(f"isbi2012: {config_path} not found; train {model.name} first")
            return 1
        with open(config_path) as f:
            config = json.load(f)
        train_config = config["train"]
        step = best_step(workdir, train_config.get("best_metric"), train_config.get("best_mode"))
        if model.name == PRUNED_MODEL:  # every depth and mode: the pruning table
            depths, modes = None, "fast,accurate"
        else:  # only what is reported
            depth, mode = main_setting(config["model"], train_config.get("best_metric"))
            depths, modes = str(depth), mode
        command = evaluate_command(workdir, args, step, depths, modes)
        if run_logged(command, os.path.join(workdir, "evaluate.log")) != 0:
            _say(f"isbi2012: evaluating {model.name} failed; see {workdir}/evaluate.log")
            return 1
        update_record(workdir, evaluate=_shown(command))

    # Every model evaluated in this output root, so that --only adds to the table.
    results = []
    for model in MODELS:
        evaluated = [
            seed
            for seed in seeds_present(args.output, model)
            if os.path.isfile(
                os.path.join(run_directory(args.output, model, seed), EVAL_DIR, "evaluation.json")
            )
        ]
        if evaluated:
            per_seed = [
                collect(model, run_directory(args.output, model, seed), model in args.models)
                for seed in evaluated
            ]
            results.append({**per_seed[0], "seeds": seed_summary(per_seed, evaluated)})
    pruned = next((r for r in results if r["name"] == PRUNED_MODEL), None)
    if pruned is not None:
        shutil.copyfile(
            os.path.join(pruned["evaluation"], "pruning.png"),
            os.path.join(args.output, PRUNING_PNG),
        )
    table = markdown(results, recipe_command)
    with open(os.path.join(args.output, RESULTS_MD), "w") as f:
        f.write(table)
    summary = {
        "recipe_command": recipe_command,
        "data": args.data,
        "models": results,
    }
    with open(os.path.join(args.output, RESULTS_JSON), "w") as f:
        json.dump(summary, f, indent=2)
    _say("\n" + table)
    written = [RESULTS_MD, RESULTS_JSON] + ([PRUNING_PNG] if pruned is not None else [])
    _say(f"isbi2012: wrote {', '.join(written)} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
