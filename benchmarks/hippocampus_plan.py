"""MSD Hippocampus: the plan against a hand-written config and MONAI's BasicUNetPlusPlus, at one
wall-clock budget per arm, validated on held-out subjects.

    python benchmarks/hippocampus_plan.py --minutes 17 [--arms plan,hand,monai] \\
        [--data ../shared/data/msd_hippocampus] [--workdir runs/hippocampus_plan] [--train-seed 1]

Split by subject: cases 2k-1 and 2k are the two sides of one subject (the data's README), so
case n belongs to subject (n + 1) // 2 and a subject's cases are never on both sides; 20% of the
subjects (seeded) are held out for validation.

Arms, each given --minutes of wall clock for training (a run still going at the budget gets
SIGTERM, checkpoints and stops; the plan is made beforehand with `unetjax-plan` and its time is
reported, not charged, as a plan is made once per dataset and machine):
  plan   configs/auto.py with --config.plan.hours = minutes / 60;
  hand   the issue's hand-written config: UNet++ depth 3, filters 16..128, patch 40x56x40,
         batch 2, 1 mm, 400 steps per 17 minutes (configs/decathlon_liver.py's recipe);
  monai  MONAI BasicUNetPlusPlus (its five levels at the plan's base width, deep supervision
         off) at the plan's patch and batch, Adam 3e-3, Dice + cross-entropy, batches from the
         same unetjax pipeline.
unetjax arms are scored by `evaluate.py --split validation` (Dice per class, HD95, per head and
for the accurate mode, bootstrap CIs in summary.json, per case in per_case.csv), whole volumes
predicted as `predict` predicts them; the MONAI arm by the same Dice and
`evaluation.surface.hd95` on the same whole volumes, predicted by MONAI's
`sliding_window_inference` at the plan's patch (overlap 0.5, Gaussian, a small case padded with
its minimum as in training), kept per case, with the same bootstrap CIs. Writes
<workdir>/results.json (arms run separately are added to it) and prints it, and MONAI's
per-case scores as <workdir>/monai/eval_validation/per_case.csv; --table prints it as
markdown, with the per-case differences plan minus hand and plan minus MONAI (paired, on the
same held-out cases). Runs with other --train-seed values go in other workdirs;
`--table --workdir A B C` then also prints each seed's mean Dice and the differences of the
seed-averaged cases. Needs a quiet machine: the arms are compared at equal wall-clock time.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "msd_hippocampus"
CLASSES = {1: "Anterior", 2: "Posterior"}


def subject_split(case_ids: list[str], val_fraction: float, seed: int) -> dict[str, tuple]:
    """train / validation case ids, whole subjects on each side (case n: subject (n+1)//2)."""
    subjects: dict[int, list[str]] = {}
    for case_id in sorted(case_ids):
        subjects.setdefault((int(case_id.rsplit("_", 1)[1]) + 1) // 2, []).append(case_id)
    order = np.random.default_rng(seed).permutation(sorted(subjects))
    held = set(order[: max(1, round(val_fraction * len(order)))].tolist())
    return {
        "train": tuple(c for s in sorted(subjects) if s not in held for c in subjects[s]),
        "validation": tuple(c for s in sorted(subjects) if s in held for c in subjects[s]),
    }


def _stems(values: tuple[str, ...]) -> str:
    return "(" + ",".join(f"'{v}'" for v in values) + ",)"


def _train(command: list[str], minutes: float, log: pathlib.Path) -> float:
    """Runs train.py, sending SIGTERM at the budget; returns the wall-clock seconds. A one-step
    run of the same command in a scratch workdir prepares the data first, so no arm's budget
    pays for preparing the shared TFDS folder (each still pays its own compiles)."""
    warm_up = [*command, f"--workdir={log.with_suffix('.warm_up')}", "--config.train.num_steps=1"]
    subprocess.run(warm_up, cwd=REPO, check=True, capture_output=True)
    start = time.time()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            process.wait(timeout=minutes * 60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            process.wait()
    return time.time() - start


def _evaluate(workdir: pathlib.Path) -> dict:
    output = workdir / "eval_validation"
    subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            "--model",
            str(workdir),
            "--split",
            "validation",
            "--output",
            str(output),
        ],
        cwd=REPO,
        check=True,
    )
    return json.loads((output / "summary.json").read_text())


def unetjax_arms(args, split) -> dict:
    common = [
        f"--config.data.manual_dir={args.data}",
        f"--config.data.train_stems={_stems(split['train'])}",
        f"--config.data.val_stems={_stems(split['validation'])}",
        "--config.data.test_stems=()",
        f"--config.data.data_dir={args.workdir / 'tfds'}",
        "--config.train.progress_bar=False",
        f"--config.seed={args.train_seed}",
    ]
    results = {}
    if "plan" in args.arms:
        start = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "unetjax.plan",
                str(args.data),
                "--hours",
                str(args.minutes / 60),
                "--output",
                str(args.workdir),
            ],
            cwd=REPO,
            check=True,
        )
        plan_seconds = time.time() - start
        command = [
            sys.executable,
            "train.py",
            "--config",
            "configs/auto.py",
            "--workdir",
            str(args.workdir / "plan"),
            f"--config.plan.file={args.workdir / 'plans.json'}",
            f"--config.plan.hours={args.minutes / 60}",
            *common,
        ]
        seconds = _train(command, args.minutes, args.workdir / "plan.log")
        results["plan"] = {
            "plan_seconds": plan_seconds,
            "train_seconds": seconds,
            "summary": _evaluate(args.workdir / "plan"),
        }
    if "hand" in args.arms:
        command = [
            sys.executable,
            "train.py",
            "--config",
            "configs/decathlon_liver.py",
            "--workdir",
            str(args.workdir / "hand"),
            *common,
            "--config.data.target_spacing=(1.0, 1.0, 1.0)",
            "--config.model.base_filters=16",
            "--config.model.depth=3",
            "--config.data.patch_size=(40, 56, 40)",
            "--config.data.eval_patch_size=None",  # whole volumes, tiled as `predict` tiles them
            "--config.train.batch_size=2",
            f"--config.train.num_steps={round(400 * args.minutes / 17)}",
        ]
        seconds = _train(command, args.minutes, args.workdir / "hand.log")
        results["hand"] = {"train_seconds": seconds, "summary": _evaluate(args.workdir / "hand")}
    return results


def monai_arm(args) -> dict:
    """BasicUNetPlusPlus at the plan's patch and batch, on the plan run's prepared data."""
    import ml_collections
    import torch
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNetPlusPlus

    from unetjax import data
    from unetjax.evaluation import statistics, surface

    config = ml_collections.ConfigDict(
        json.loads((args.workdir / "plan" / "config.json").read_text())
    )
    dataset = data.prepare(config.data)
    batches = data.train_iterator(dataset, batch_size=config.train.batch_size, seed=args.train_seed)
    torch.manual_seed(args.train_seed)  # its initialisation, as config.seed seeds ours
    net = BasicUNetPlusPlus(
        spatial_dims=3,
        in_channels=config.model.in_channels,
        out_channels=config.model.num_classes,
        # Its fixed five levels at the plan's base width (the plan may narrow it for time).
        features=tuple(config.model.filters[0] * m for m in (1, 1, 2, 4, 8, 1)),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    start, steps = time.time(), 0
    while time.time() - start < args.minutes * 60:
        batch = next(batches)
        image = torch.from_numpy(np.moveaxis(batch["image"], -1, 1).copy())
        mask = torch.from_numpy(batch["mask"][:, None].astype(np.int64))
        optimizer.zero_grad()
        loss = loss_fn(net(image)[0], mask)
        loss.backward()
        optimizer.step()
        steps += 1
    train_seconds = time.time() - start
    net.eval()
    scores = {name: {"dice": [], "hd95": []} for name in CLASSES.values()}
    cases = []
    with torch.no_grad():
        for example in data.eval_examples(dataset, "validation"):
            cases.append(str(example["id"]))
            image = torch.from_numpy(np.moveaxis(example["image"], -1, 0)[None].copy())
            logits = sliding_window_inference(
                image,
                tuple(config.data.patch_size),
                4,
                lambda x: net(x)[0],
                overlap=0.5,
                mode="gaussian",
                cval=float(example["image"].min()),  # a small case padded as training padded it
            )
            predicted = logits.argmax(1).numpy()[0]
            reference = example["mask"]
            for value, name in CLASSES.items():
                p, r = predicted == value, reference == value
                scores[name]["dice"].append(2 * (p & r).sum() / max(p.sum() + r.sum(), 1))
                scores[name]["hd95"].append(surface.hd95(p, r, config.data.target_spacing))
    summary = {
        name: {
            metric: dataclasses.asdict(statistics.summarize(values))
            for metric, values in per.items()
        }
        for name, per in scores.items()
    }
    per_case = {
        name: {metric: [float(v) for v in values] for metric, values in per.items()}
        for name, per in scores.items()
    }
    write_per_case(args.workdir / "monai" / "eval_validation" / "per_case.csv", cases, per_case)
    return {
        "train_seconds": train_seconds,
        "steps": steps,
        "summary": summary,
        "per_case": per_case,
    }


def write_per_case(path: pathlib.Path, cases: list[str], per_case: dict) -> None:
    """MONAI's per-case Dice and HD95 as rows of evaluate's per_case.csv (one setting, written
    as depth 1, fast), so `paired` and `seed_means` compare it case by case like the other
    arms."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["case", "depth", "mode", "class", "dice", "hd95"])
        writer.writeheader()
        for value, name in CLASSES.items():
            for index, case in enumerate(cases):
                writer.writerow(
                    {
                        "case": case,
                        "depth": 1,
                        "mode": "fast",
                        "class": value,
                        **{metric: per_case[name][metric][index] for metric in ("dice", "hd95")},
                    }
                )


def _cell(entry: dict) -> str:
    return f"{entry['mean']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def table(results: dict) -> str:
    """Dice and HD95 (mm) per class, mean [95% bootstrap CI] over the held-out cases, for every
    head of the unetjax arms (fast, and the deepest head's accurate mode) and for MONAI."""
    metrics = [(m, value, name) for m in ("dice", "hd95") for value, name in CLASSES.items()]
    header = " | ".join(f"{m} {name}" for m, _, name in metrics)
    lines = [
        f"| arm | setting | step | train s | {header} |",
        "|" + " --- |" * (4 + len(metrics)),
    ]
    for arm in ("plan", "hand"):
        if arm not in results:
            continue
        summary = results[arm]["summary"]
        rows = {(r["depth"], r["mode"], r["class"], r["metric"]): r for r in summary["summaries"]}
        depths = sorted({r["depth"] for r in summary["summaries"]})
        settings = [(d, "fast") for d in depths] + [(depths[-1], "accurate")]
        for depth, mode in settings:
            cells = [_cell(rows[depth, mode, str(value), m]) for m, value, _ in metrics]
            lines.append(
                f"| {arm} | L{depth} {mode} | {summary['step']} | "
                f"{results[arm]['train_seconds']:.0f} | " + " | ".join(cells) + " |"
            )
    if "monai" in results:
        monai = results["monai"]
        cells = [_cell(monai["summary"][name][m]) for m, _, name in metrics]
        lines.append(
            f"| monai | BasicUNetPlusPlus | {monai['steps']} | {monai['train_seconds']:.0f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def _deepest_fast(per_case: pathlib.Path, metric: str) -> dict[tuple[str, str], float]:
    """(case, class) -> `metric` at the deepest head, fast mode, from an evaluate per_case.csv."""
    with open(per_case) as f:
        rows = [r for r in csv.DictReader(f) if r["mode"] == "fast"]
    deepest = max(int(r["depth"]) for r in rows)  # as numbers: "10" sorts before "9"
    return {(r["case"], r["class"]): float(r[metric]) for r in rows if int(r["depth"]) == deepest}


def paired(workdirs: list[pathlib.Path], arm: str, reference: str) -> str:
    """Per-case differences `arm` minus `reference` (Dice and HD95 per class at the deepest
    head; mean [95% bootstrap CI] and the cases where `arm` did better) on the same held-out
    cases. With several workdirs (one training seed each) a case's values are first averaged
    over the seeds: the CI is over cases, with each arm's seed-to-seed spread averaged in."""
    from unetjax.evaluation import statistics

    lines = [
        f"| {arm} minus {reference} | mean difference [95% CI] | cases {arm} better |",
        "| --- | --- | --- |",
    ]
    for metric, better in (("dice", np.greater), ("hd95", np.less)):
        ours, theirs = (
            [
                _deepest_fast(workdir / name / "eval_validation" / "per_case.csv", metric)
                for workdir in workdirs
            ]
            for name in (arm, reference)
        )
        for value, name in CLASSES.items():
            keys = sorted(k for k in theirs[0] if k[1] == str(value))
            diff = np.mean([[o[k] for k in keys] for o in ours], axis=0) - np.mean(
                [[t[k] for k in keys] for t in theirs], axis=0
            )
            summary = statistics.summarize(diff)
            lines.append(
                f"| {metric} {name} | {summary.mean:+.3f} [{summary.ci_low:+.3f}, "
                f"{summary.ci_high:+.3f}] | {int(better(diff, 0).sum())} of {summary.n} |"
            )
    return "\n".join(lines)


def seed_means(workdirs: list[pathlib.Path], arms: list[str]) -> str:
    """Mean Dice per class at the deepest head, fast mode, for each arm in each workdir (one
    training seed each), and over the workdirs."""
    lines = [
        "| arm | workdir | Dice Anterior | Dice Posterior | mean |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arm in arms:
        rows = []
        for workdir in workdirs:
            scores = _deepest_fast(workdir / arm / "eval_validation" / "per_case.csv", "dice")
            per_class = [
                np.mean([v for (_, k), v in scores.items() if k == str(value)]) for value in CLASSES
            ]
            rows.append(per_class)
            cells = " | ".join(f"{v:.3f}" for v in [*per_class, np.mean(per_class)])
            lines.append(f"| {arm} | {workdir.name} | {cells} |")
        cells = " | ".join(f"{v:.3f}" for v in [*np.mean(rows, axis=0), np.mean(rows)])
        lines.append(f"| {arm} | mean of {len(workdirs)} | {cells} |")
    return "\n".join(lines)


def print_tables(workdirs: list[pathlib.Path]) -> None:
    """Each workdir's results.json as markdown; then, for hand and for MONAI where every
    workdir holds that arm's per-case scores and the plan's, the mean Dice per seed and the
    per-case differences plan minus that arm."""
    for workdir in workdirs:
        results = json.loads((workdir / "results.json").read_text())
        print(f"{workdir}:\n{table(results)}\n")
    for reference in ("hand", "monai"):
        if all(
            (workdir / arm / "eval_validation" / "per_case.csv").is_file()
            for workdir in workdirs
            for arm in ("plan", reference)
        ):
            if len(workdirs) > 1:
                print(seed_means(workdirs, ["plan", reference]) + "\n")
            print(paired(workdirs, "plan", reference) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--workdir",
        type=pathlib.Path,
        nargs="+",
        default=[REPO / "runs" / "hippocampus_plan"],
        help="where the arms run; with --table, several (one training seed each) are compared",
    )
    parser.add_argument("--minutes", type=float, default=17.0, help="wall clock per arm")
    parser.add_argument("--arms", default="plan,hand,monai", help="comma-separated")
    parser.add_argument("--seed", type=int, default=0, help="of the subject split")
    parser.add_argument(
        "--train-seed",
        type=int,
        default=0,
        help="config.seed of the unetjax arms (initialisation, batches, augmentation), and the "
        "MONAI arm's torch seed and batches; at 17 CPU minutes a second seed moved an arm's mean "
        "Dice by up to 0.07, so compare seeds",
    )
    parser.add_argument(
        "--table", action="store_true", help="print <workdir>/results.json as markdown, run none"
    )
    args = parser.parse_args(argv)
    if args.table:
        print_tables(args.workdir)
        return
    if len(args.workdir) > 1:
        parser.error("the arms run in one --workdir; give several only with --table")
    args.workdir = args.workdir[0]
    saved = args.workdir / "results.json"
    args.arms = set(args.arms.split(","))
    if not (args.data / "dataset.json").is_file():
        raise SystemExit(f"{args.data}: no dataset.json; give --data the MSD hippocampus folder")
    args.workdir.mkdir(parents=True, exist_ok=True)
    case_ids = sorted(p.name[: -len(".nii.gz")] for p in (args.data / "labelsTr").glob("*.nii.gz"))
    split = subject_split(case_ids, 0.2, args.seed)
    # Arms run separately add to the saved results rather than replace them.
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    results["split"] = {k: len(v) for k, v in split.items()}
    results.update(unetjax_arms(args, split))
    if "monai" in args.arms:
        results["monai"] = monai_arm(args)
    saved.write_text(json.dumps(results, indent=2, default=float))
    print(json.dumps(results, indent=2, default=float)[:4000])


if __name__ == "__main__":
    main()
