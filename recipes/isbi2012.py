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
import dataclasses
import json
import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence

from unetjax import graph
from unetjax.evaluation import names

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Model:
    """One model of the comparison: its config and the data README's reference pixel accuracy."""

    name: str
    title: str
    config: str
    reference_accuracy: float | None


MODELS = (
    Model("unet", "U-Net", "configs/isbi2012_unet.py", 0.919),
    # The reference report does not say whether its UNet++ used deep supervision.
    Model("unetpp_nods", "UNet++ (no deep supervision)", "configs/isbi2012_unetpp_nods.py", 0.917),
    Model("unetpp", "UNet++ (deep supervision)", "configs/isbi2012_unetpp.py", 0.917),
    Model("unet3plus", "UNet 3+", "configs/isbi2012_unet3plus.py", 0.923),
)
PRUNED_MODEL = "unetpp"  # the one whose L1..L4 table and plot the results show
RESULTS_MD, RESULTS_JSON = "results.md", "results.json"
PRUNING_PNG = "unetpp_pruning.png"
EVAL_DIR = "eval_test"
RECORD = "recipe.json"  # in each run directory: the commands that produced it


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


def train_command(model: Model, args: argparse.Namespace) -> list[str]:
    command = [
        sys.executable,
        "train.py",
        "--config",
        model.config,
        "--workdir",
        os.path.join(args.output, model.name),
        f"--config.data.manual_dir={args.data}",
        f"--config.data.data_dir={args.tfds_dir}",
    ]
    if args.steps is not None:
        command.append(f"--config.train.num_steps={args.steps}")
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


def read_jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_record(workdir: str) -> dict:
    path = os.path.join(workdir, RECORD)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def update_record(workdir: str, **values: str) -> None:
    """Merges `values` into the run's recipe.json (the commands behind its numbers)."""
    record = {**read_record(workdir), **values}
    with open(os.path.join(workdir, RECORD), "w") as f:
        json.dump(record, f, indent=2)


def saved_steps(workdir: str) -> set[int]:
    """Steps of the finished checkpoints (Orbax renames a step's folder to its number when done)."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return set()
    return {int(name) for name in os.listdir(directory) if name.isdigit()}


def best_step(workdir: str, metric: str | None, mode: str | None = "max") -> int | None:
    """The saved checkpoint with the best validation `metric` (metrics.jsonl); None: the latest."""
    if not metric:
        return None
    saved = saved_steps(workdir)
    scored = [
        (record[metric], record["step"])
        for record in read_jsonl(os.path.join(workdir, "metrics.jsonl"))
        if record.get("split") == "val" and metric in record and record["step"] in saved
    ]
    if not scored:
        return None
    sign = -1 if mode == "min" else 1
    return max(scored, key=lambda pair: (sign * pair[0], pair[1]))[1]


def train_seconds_per_step(workdir: str, batch_size: int) -> tuple[float | None, int]:
    """Median seconds per training step over the logged intervals, and how many there were.

    The first interval of each invocation includes compilation and intervals after an evaluation
    include it; the median of many intervals leaves both out.
    """
    rates = [
        record["images_per_second"]
        for record in read_jsonl(os.path.join(workdir, "metrics.jsonl"))
        if record.get("split") == "train" and record.get("images_per_second")
    ]
    if not rates:
        return None, 0
    return batch_size / statistics.median(rates), len(rates)


def main_setting(model_config: dict, best_metric: str | None) -> tuple[int, str]:
    """The depth and mode the checkpoint is selected for, and so the one reported."""
    heads = graph.graph_from_config(model_config).head_depths
    return names.selected_setting(best_metric, heads)


def _scores(row: dict) -> dict:
    sweep = row.get("sweep", {})
    at_best = sweep.get("split_scores", {})
    return {
        "depth": row["depth"],
        "mode": row["mode"],
        "params": row["params"],
        "latency_ms": row["latency_ms"],
        "num_images": row["num_images"],
        "threshold": row["threshold"],
        **{key: row[key] for key in ("iou", "iou_std", "dice", "dice_std", "accuracy")},
        "accuracy_std": row["accuracy_std"],
        "best_threshold": sweep.get("best_threshold"),
        "validation_iou_at_best": sweep.get("validation_iou"),
        **{f"{key}_at_best": at_best.get(key) for key in ("iou", "dice", "accuracy")},
    }


def collect(model: Model, workdir: str, evaluated_now: bool) -> dict:
    """One model's result from its run's config.json, metrics.jsonl, evaluation.json and
    recipe.json."""
    with open(os.path.join(workdir, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(workdir, EVAL_DIR, "evaluation.json")) as f:
        report = json.load(f)
    rows = report["results"]
    depth, mode = main_setting(config["model"], config["train"].get("best_metric"))
    main_row = next(r for r in rows if (r["depth"], r["mode"]) == (depth, mode))
    seconds, intervals = train_seconds_per_step(workdir, config["train"]["batch_size"])
    record = read_record(workdir)
    return {
        "name": model.name,
        "title": model.title,
        "config": model.config,
        "workdir": workdir,
        "architecture": config["model"]["architecture"],
        "deep_supervision": config["model"]["deep_supervision"],
        "filters": list(
            graph.model_filters(
                config["model"]["architecture"],
                depth=config["model"].get("depth"),
                filters=config["model"].get("filters"),
                base_filters=config["model"].get("base_filters"),
            )
        ),
        "num_steps": config["train"]["num_steps"],
        "batch_size": config["train"]["batch_size"],
        "patch_size": config["data"]["patch_size"],
        "eval_patch_size": config["data"].get("eval_patch_size"),
        "val_stems": config["data"].get("val_stems"),
        "test_stems": config["data"].get("test_stems"),
        "best_metric": config["train"].get("best_metric"),
        "step": report["step"],
        "device": report["device"],
        "tile": report["tile"],
        "setting": f"L{depth} {mode}",
        **_scores(main_row),
        "reference_accuracy": model.reference_accuracy,
        "train_seconds_per_step": seconds,
        "train_logged_intervals": intervals,
        "evaluation": os.path.join(workdir, EVAL_DIR),
        "evaluated_now": evaluated_now,
        "rows": [_scores(r) for r in rows],
        "commands": {key: record.get(key) for key in ("train", "evaluate")},
    }


def _number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(results: list[dict], recipe_command: str) -> str:
    """The combined table, the UNet++ pruning table and the commands behind every number."""
    first = results[0]
    tile = f"overlap-tile {first['tile']}x{first['tile']}" if first["tile"] else "whole images"
    crop = first["eval_patch_size"]
    size = f"central {'x'.join(map(str, crop))} crops" if crop else "full 512x512 slices"
    budgets = {
        (r["num_steps"], r["batch_size"], "x".join(map(str, r["patch_size"]))) for r in results
    }
    if len(budgets) == 1:
        steps, batch, patch = budgets.pop()
        budget = f"{steps} steps, batch {batch}, patch {patch}"
    else:
        budget = "budgets differ: " + "; ".join(
            f"{r['title']} {r['num_steps']} steps, batch {r['batch_size']}" for r in results
        )
    lines = [
        f"ISBI 2012 membranes, test slices {', '.join(first['test_stems'] or [])} "
        f"({first['num_images']} images, {size}, {tile}); {budget}; evaluated on "
        f"{first['device']}. IoU and Dice of the membrane class, mean over images; pixel "
        "accuracy of the binarised prediction at 0.5 and at the threshold with the best IoU on "
        f"the validation slices {', '.join(first['val_stems'] or [])}.",
        "",
        "| model | params | checkpoint | setting | membrane IoU | membrane Dice | "
        "pixel acc. (0.5) | best val. threshold | pixel acc. (best thr.) | "
        "reference pixel acc. | s/step (train) |",
        "| --- | ---: | ---: | --- | --- | --- | --- | ---: | --- | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['title']}{'' if r['evaluated_now'] else ' *'} | {r['params']:,} | "
            f"{r['step']} | {r['setting']} | "
            f"{r['iou']:.4f} ± {r['iou_std']:.4f} | {r['dice']:.4f} ± {r['dice_std']:.4f} | "
            f"{r['accuracy']:.4f} | {r['best_threshold']} | {_number(r['accuracy_at_best'])} | "
            f"{_number(r['reference_accuracy'], 3)} | {_number(r['train_seconds_per_step'], 2)} |"
        )
    lines += [
        "",
        "Reference: pixel accuracy on held-out slices with 25 training slices, from one student "
        "report (the data README); ours trains on 23. s/step: median over the logged intervals.",
    ]
    if not all(r["evaluated_now"] for r in results):
        lines.append(
            "* evaluated by an earlier run of the recipe in this output root, not by the command "
            "below; its own commands are listed with it."
        )
    pruned = next((r for r in results if r["name"] == PRUNED_MODEL), None)
    if pruned is not None:
        lines += [
            "",
            f"{pruned['title']} pruned to depth L (fast: head L alone; accurate: mean of heads "
            f"1..L), step {pruned['step']}; latency per image ({size[:-1]}, {tile}), batch 1, "
            "median of the timed calls, host transfer included:",
            "",
            "| L | mode | params | latency (ms) | membrane IoU | membrane Dice | "
            "pixel acc. (0.5) | best val. threshold | IoU (best thr.) | pixel acc. (best thr.) |",
            "| --- | --- | ---: | ---: | --- | --- | --- | ---: | --- | --- |",
        ]
        for r in pruned["rows"]:
            lines.append(
                f"| L{r['depth']} | {r['mode']} | {r['params']:,} | {r['latency_ms']:.2f} | "
                f"{r['iou']:.4f} | {r['dice']:.4f} | {r['accuracy']:.4f} | "
                f"{r['best_threshold']} | {_number(r['iou_at_best'])} | "
                f"{_number(r['accuracy_at_best'])} |"
            )
        lines += ["", f"![UNet++ pruning: test IoU against latency]({PRUNING_PNG})"]
    lines += ["", "Produced by:", "", "```bash", recipe_command]
    for r in results:
        known = [r["commands"][key] for key in ("train", "evaluate") if r["commands"].get(key)]
        lines += [f"# {r['title']}" + (", run by:" if known else ": commands not recorded"), *known]
    lines += ["```"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    recipe_command = shlex.join(
        ["python", "recipes/isbi2012.py", *(sys.argv[1:] if argv is None else argv)]
    )
    for model in [] if args.skip_train else args.models:
        workdir = os.path.join(args.output, model.name)
        command = train_command(model, args)
        status = run_logged(command, os.path.join(workdir, "train.log"))
        if status != 0:
            hint = "; rerun the same command to resume" if status == 130 else ""
            _say(f"isbi2012: training {model.name} ended with status {status}{hint}")
            return 1
        update_record(workdir, train=_shown(command))

    for model in args.models:
        workdir = os.path.join(args.output, model.name)
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
    results = [
        collect(model, os.path.join(args.output, model.name), model in args.models)
        for model in MODELS
        if os.path.isfile(os.path.join(args.output, model.name, EVAL_DIR, "evaluation.json"))
    ]
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
