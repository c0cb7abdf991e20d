"""The ISBI 2012 recipe's results: what each run selected and scored, and the tables.

Reads only files the runs wrote (config.json, metrics.jsonl, evaluation.json, recipe.json), so
the table can be rebuilt without training or importing JAX.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics

from unetjax import graph
from unetjax.evaluation import names


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


def run_directory(output: str, model: Model, seed: int = 0) -> str:
    """Seed 0 trains in <output>/<model>, seed s > 0 in <output>/<model>_seed<s>."""
    return os.path.join(output, model.name if seed == 0 else f"{model.name}_seed{seed}")


def seeds_present(output: str, model: Model) -> list[int]:
    """The seeds of `model` that have a run directory under `output`."""
    if not os.path.isdir(output):
        return []
    seeds = [0] if os.path.isdir(run_directory(output, model)) else []
    prefix = f"{model.name}_seed"
    for name in os.listdir(output):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            seeds.append(int(name[len(prefix) :]))
    return sorted(seeds)


def seed_summary(per_seed: list[dict], seeds: list[int]) -> dict:
    """Per-seed scores of the reported setting and their mean and sd across seeds (sd of the
    seed means, ddof 1: the run-to-run noise a comparison of models must beat)."""
    summary: dict = {"seeds": seeds, "n": len(seeds)}
    for key in ("iou", "dice", "accuracy"):
        values = [r[key] for r in per_seed]
        summary[key] = values
        summary[f"{key}_mean"] = statistics.fmean(values)
        summary[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else None
    return summary


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
    lines += seeds_table(results)
    lines += ["", "Produced by:", "", "```bash", recipe_command]
    for r in results:
        known = [r["commands"][key] for key in ("train", "evaluate") if r["commands"].get(key)]
        lines += [f"# {r['title']}" + (", run by:" if known else ": commands not recorded"), *known]
    lines += ["```"]
    return "\n".join(lines) + "\n"


def seeds_table(results: list[dict]) -> list[str]:
    """Mean ± sd across seeds of each model's reported setting, when several seeds ran."""
    multi = [r for r in results if r.get("seeds", {}).get("n", 1) > 1]
    if not multi:
        return []
    lines = [
        "",
        "Across seeds (the reported setting of each seed's run, test split): mean ± sd over "
        "seeds; the per-image ± above is one run's spread over test images.",
        "",
        "| model | seeds | membrane IoU | membrane Dice | pixel acc. (0.5) | IoU per seed |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    for r in multi:
        s = r["seeds"]
        per_seed = ", ".join(f"{v:.4f}" for v in s["iou"])
        lines.append(
            f"| {r['title']} | {s['n']} | {s['iou_mean']:.4f} ± {s['iou_sd']:.4f} | "
            f"{s['dice_mean']:.4f} ± {s['dice_sd']:.4f} | "
            f"{s['accuracy_mean']:.4f} ± {s['accuracy_sd']:.4f} | {per_seed} |"
        )
    return lines
