"""The steps of `benchmarks/gpu_check.sh`: unetjax against MONAI on a GPU, in one sitting.

Each step writes one JSON file into --out; `report` turns the files present into one Markdown
table, gpu_check.md, naming the device, the driver and the versions (the shell script runs it
after every step, so a run cut short still leaves a table of what it measured):
  - env: the device, driver, CUDA and library versions (env.json);
  - tests: the GPU-marked tests' outcomes, from pytest's JUnit XML (gpu_tests.json);
  - vs_monai: `benchmarks.vs_pytorch` with the peers MONAI eager float32, eager + bfloat16
    autocast and `torch.compile` + autocast: the UNet++ train step (depth 4, deep supervision,
    batch norm) at 2D batch 16 @ 256x256 and batch 64 @ 96x96 (filters 32..512) and 3D batch 8
    @ 48x64x48 (filters 16..256, or a plans.json's patch and batch), and pruned L1..L4 inference
    at 512x512 batch 1, unetjax in float32 and bfloat16 (vs_monai.json);
  - volume: `benchmarks.volume_inference`, 3D sliding window over a 128^3 volume against MONAI's
    `sliding_window_inference` (volume.json).
`--cpu-dry-run` runs the same steps at toy sizes on the CPU, so that no device minute is spent
on a typo. This module imports only the standard library until a step needs more.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import statistics
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PEERS = ("monai", "monai_amp", "monai_compile_amp")
PAIRS = {"monai": "float32", "monai_amp": "bfloat16", "monai_compile_amp": "bfloat16"}
VERSIONS = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "flax", "optax", "numpy")
VERSIONS += ("torch", "monai")
# Sizes on the GPU and in the dry run: the same steps and rows, toy networks and inputs.
SIZES = {
    "gpu": {
        "train": ["256:16", "96:64"],
        "train_3d": "48x64x48:8",
        "infer": ["512:1"],
        "batch_depths": ["1", "2", "3", "4"],
        "filters": ["--base-filters", "32", "--base-filters-3d", "16"],
        "timing": ["--warmup", "3", "--repeats", "10"],
        "rounds": "2",
        "compile_backend": "inductor",
        "volume": ["--size", "128", "--tile", "64", "--base-filters", "16", "--batch", "4"],
        "volume_runs": ["--repeats", "3", "--depths", "4"],
    },
    # One shape of each kind, two depths, one round: every code path, in a few minutes on a CPU.
    "cpu-dry-run": {
        "train": ["32:2"],
        "train_3d": "16x32x16:2",
        "infer": ["32:1"],
        "batch_depths": ["1", "4"],
        "filters": ["--base-filters", "4", "--base-filters-3d", "4"],
        "timing": ["--warmup", "0", "--repeats", "1", "--no-ceiling"],
        "rounds": "1",
        "compile_backend": "eager",  # dynamo's tracing and graph breaks, no code generation
        "volume": ["--size", "32", "--tile", "16", "--base-filters", "4", "--batch", "2"],
        "volume_runs": ["--repeats", "1", "--depths", "4"],
    },
}
PRUNED_HEADER = ("size", "batch", "precision", "L", "params", "GFLOP", "latency ms")
PRUNED_HEADER += ("latency / L4", "FLOPs / L4", "within 10%")


class UsageError(Exception):
    """A mistake in the command (a plans file that does not say what it must)."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("env", "tests", "vs_monai", "volume", "report", "plan"))
    parser.add_argument("--out", required=True, help="folder of the JSON files and the table")
    parser.add_argument("--cpu-dry-run", action="store_true", help="toy sizes on the CPU")
    parser.add_argument("--plan", default=None, help="plans.json: the 3D patch and batch")
    parser.add_argument("--rounds", choices=("1", "2"), default=None, help="2: ABBA (GPU default)")
    parser.add_argument("--junit", default=None, help="tests: pytest's --junitxml file")
    parser.add_argument("--driver", default="", help="env: nvidia-smi's driver version")
    return parser.parse_args(argv)


def mode(args: argparse.Namespace) -> str:
    return "cpu-dry-run" if args.cpu_dry_run else "gpu"


def plan_train_shape(path: str) -> str:
    """The 3D train shape 'DxHxW:B' of a plans.json (`unetjax-plan`'s: `config` holds
    "data.patch_size" and "train.batch_size"), each side rounded up to a multiple of 16 (the
    depth-4 networks compared here need it)."""
    try:
        plan = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"plans file {path}: cannot be read as JSON ({error})") from None
    config = plan.get("config") if isinstance(plan, dict) else None
    patch = (config or {}).get("data.patch_size")
    batch = (config or {}).get("train.batch_size")
    if not (isinstance(patch, list) and len(patch) == 3 and isinstance(batch, int)):
        raise UsageError(
            f"plans file {path}: expected config['data.patch_size'] (3 sides) and "
            f"config['train.batch_size'], saw {patch!r} and {batch!r}; pass a 3D plan made by "
            "unetjax-plan, or leave --plan out for 48x64x48 batch 8"
        )
    sides = [16 * math.ceil(int(side) / 16) for side in patch]
    return "x".join(map(str, sides)) + f":{batch}"


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def env_step(args: argparse.Namespace) -> dict[str, Any]:
    """The device (as JAX and torch name it), the driver, CUDA and cuDNN, and the versions."""
    import jax
    import torch

    device = jax.devices()[0]
    cuda = torch.cuda.is_available()
    return {
        "mode": mode(args),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "jax_device": f"{device.platform}: {device.device_kind}",
        "jax_device_count": jax.device_count(),
        "torch_device": torch.cuda.get_device_name() if cuda else "cpu",
        "driver": args.driver or "none (no NVIDIA driver)",
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        # float32 convolutions in TF32: torch's default for cuDNN, as XLA's default precision.
        "torch_conv_tf32": torch.backends.cudnn.allow_tf32 if cuda else None,
        "python": sys.version.split()[0],
        "versions": {name: version(name) for name in VERSIONS if version(name)},
    }


def tests_step(args: argparse.Namespace) -> dict[str, Any]:
    """Each test case's outcome from pytest's JUnit XML, and the counts."""
    cases = []
    for case in ElementTree.parse(args.junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag in ("failure", "error") else "skipped"
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome})
    counts = {key: sum(c["outcome"] == key for c in cases) for key in ("passed", "failed")}
    counts["skipped"] = sum(c["outcome"] == "skipped" for c in cases)
    return {"counts": counts, "cases": cases}


def vs_monai_step(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import vs_pytorch

    sizes = SIZES[mode(args)]
    train_3d = plan_train_shape(args.plan) if args.plan else sizes["train_3d"]
    output = Path(args.out) / "vs_monai.json"
    argv = ["--peers", *PEERS, "--train-shapes", *sizes["train"], train_3d]
    argv += ["--infer-shapes", *sizes["infer"], "--batch-depths", *sizes["batch_depths"]]
    argv += [*sizes["filters"], *sizes["timing"], "--rounds", args.rounds or sizes["rounds"]]
    argv += ["--compile-backend", sizes["compile_backend"]]
    # On the device the load average says little about a GPU run; rows are flagged, not refused.
    argv += ["--allow-load", "--json", str(output)]
    vs_pytorch.main(argv)
    return json.loads(output.read_text())


def volume_step(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import volume_inference

    sizes = SIZES[mode(args)]
    output = Path(args.out) / "volume.json"
    volume_inference.main([*sizes["volume"], *sizes["volume_runs"], "--json", str(output)])
    return json.loads(output.read_text())


def load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / name
    return json.loads(path.read_text()) if path.exists() else None


def cell(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]


def header_lines(env: dict[str, Any] | None, tests: dict[str, Any] | None) -> list[str]:
    lines = ["# GPU check: unetjax against MONAI", ""]
    if env is None:
        return [*lines, "No env.json: the device and versions were not recorded.", ""]
    if env["mode"] == "cpu-dry-run":
        lines += ["**CPU dry run at toy sizes: these are not figures.**", ""]
    versions = ", ".join(f"{name} {value}" for name, value in env["versions"].items())
    lines += [
        f"- device: {env['jax_device']} (torch: {env['torch_device']}), driver {env['driver']}, "
        f"CUDA {env['cuda']}, cuDNN {env['cudnn']}, torch's float32 convolutions in TF32: "
        f"{env.get('torch_conv_tf32')}",
        f"- versions: python {env['python']}, {versions}",
        f"- date: {env['date']}",
    ]
    if tests is not None:
        counts = tests["counts"]
        failed = [c["test"] for c in tests["cases"] if c["outcome"] == "failed"]
        lines.append(
            f"- GPU-marked tests: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped" + (f" ({', '.join(failed)})" if failed else "")
        )
    return [*lines, ""]


def vs_monai_lines(data: dict[str, Any]) -> list[str]:
    """The train and L4 inference pairs, then unetjax's pruned latencies against FLOPs."""
    lines = []
    if data.get("partial"):
        done = ", ".join(run["name"] for run in data["runs"])
        lines += [f"vs_monai.json is partial (cut short): only {done} finished.", ""]
    for task, title in (("train", "Train step"), ("infer", "Inference, deepest head (L4)")):
        rows = [
            [
                r["size"],
                r["batch"],
                r["dtype"],
                r["jax_img_per_s"],
                r["peer"],
                r["peer_img_per_s"],
                r["jax_over_peer"],
                r["spread"],
                r["jax_compile_s"],
                r["peer_compile_s"],
                r["jax_peak_mib"],
                r["jax_xla_mib"],
                r["peer_peak_mib"],
                r["flag"],
            ]
            for r in data.get("rows", [])
            if r["task"] == task
        ]
        lines += [f"## {title}: images/s as round 1 / round 2; ratio > 1: unetjax faster", ""]
        header = ["size", "batch", "precision", "unetjax img/s", "peer", "peer img/s"]
        header += ["unetjax / peer", "spread", "unetjax compile s", "peer compile s"]
        header += ["unetjax peak MiB", "unetjax XLA plan MiB", "peer peak MiB", "flag"]
        lines += [*table(header, rows), ""]
    lines += [
        "## Pruned inference (fast mode): latency against FLOPs, each as a ratio to L4",
        "",
        *table(
            PRUNED_HEADER,
            [list(row.values()) for row in pruned_rows(data)],
        ),
        "",
        "unetjax peak MiB: JAX's allocator peak where the row raised it (`-`: below an earlier "
        "row's); compile s: unetjax's lowering and compiling, `torch.compile`'s first call; "
        "round 1 compiles cold, round 2 finds both frameworks' persistent caches.",
        "",
    ]
    return lines


def pruned_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """unetjax's batch-norm UNet++ inference rows, latency the geometric mean over rounds, with
    latency and FLOPs as ratios to L4 and whether they agree within 10%."""
    keyed: dict[tuple, list[dict[str, Any]]] = {}
    for run in data["runs"]:
        for r in run["rows"] if run["name"] == "unetjax" else []:
            if r["task"] == "infer" and r["name"] == "batch":
                keyed.setdefault((r["size"], r["batch"], r["dtype"], r["L"]), []).append(r)
    latency = {k: statistics.geometric_mean([r["median_ms"] for r in v]) for k, v in keyed.items()}
    rows = []
    for key, rounds in keyed.items():
        l4 = (*key[:3], 4)
        flops, flops_l4 = rounds[0]["gflop_per_step"], keyed.get(l4, [{}])[0].get("gflop_per_step")
        row = dict(zip(("size", "batch", "precision", "L"), key, strict=True))
        row.update(params=rounds[0]["params"], gflop=flops, latency_ms=latency[key])
        row["latency_vs_L4"] = latency[key] / latency[l4] if l4 in latency else None
        row["flops_vs_L4"] = flops / flops_l4 if flops and flops_l4 else None
        row["within_10%"] = None
        if row["latency_vs_L4"] and row["flops_vs_L4"]:
            agree = abs(row["latency_vs_L4"] / row["flops_vs_L4"] - 1) <= 0.1
            row["within_10%"] = "yes" if agree else "no"
        rows.append(row)
    return rows


def volume_lines(data: dict[str, Any]) -> list[str]:
    settings = data["settings"]
    rows = [
        [
            r["pass"],
            r["impl"],
            r["L"],
            r["params"],
            r["tiles"],
            r["s_per_volume"],
            r["peak_rss_mib"],
            r.get("device_peak_mib"),
        ]
        for r in data["rows"]
    ]
    header = ["pass", "impl", "L", "params", "tiles", "s / volume", "peak RSS MiB"]
    header.append("device peak MiB")
    return [
        f"## 3D sliding window: a {settings['size']}^3 volume, {settings['tile']}^3 tiles, "
        f"overlap 0.5, Gaussian blending, {settings['batch']} tiles a call",
        "",
        *table(header, rows),
        "",
    ]


def report_step(args: argparse.Namespace) -> str:
    """gpu_check.md from the JSON files present in --out."""
    out = Path(args.out)
    lines = header_lines(load(out, "env.json"), load(out, "gpu_tests.json"))
    for name, render in (("vs_monai.json", vs_monai_lines), ("volume.json", volume_lines)):
        data = load(out, name)
        lines += render(data) if data else [f"No {name}: that step did not finish.", ""]
    text = "\n".join(lines)
    (out / "gpu_check.md").write_text(text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        if args.step == "plan":
            print(plan_train_shape(args.plan) if args.plan else SIZES[mode(args)]["train_3d"])
        elif args.step == "report":
            print(report_step(args))
        else:
            steps = {"env": env_step, "tests": tests_step, "vs_monai": vs_monai_step}
            result = {**steps, "volume": volume_step}[args.step](args)
            if args.step in ("env", "tests"):
                name = {"env": "env.json", "tests": "gpu_tests.json"}[args.step]
                (Path(args.out) / name).write_text(json.dumps(result, indent=2) + "\n")
    except UsageError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
