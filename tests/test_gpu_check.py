"""`benchmarks/gpu_check.sh --cpu-dry-run` runs every step at toy sizes and writes every file.

The GPU's minutes are scarce: this proves, on the CPU, that the script's steps run, that each
writes the JSON it promises and that the Markdown table has every row and names the device and
the versions. Speed is never asserted (the dry run's numbers are not figures).
"""

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
needs_peers = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("monai") is None,
    reason="needs the bench extra (torch, monai)",
)


def run_script(*arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", str(SCRIPT), *arguments]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpu_check")
    completed = run_script("--cpu-dry-run", "--out", str(out))
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else ""
    assert completed.returncode == 0, completed.stderr[-2000:] + log[-4000:]
    return out


@pytest.mark.slow
@needs_peers
def test_the_dry_run_writes_one_json_per_step_the_log_and_the_table(dry_run):
    names = {"env.json", "gpu_tests.json", "vs_monai.json", "volume.json"}
    assert {path.name for path in dry_run.iterdir()} == names | {"gpu_check.md", "gpu_check.log"}
    tests = json.loads((dry_run / "gpu_tests.json").read_text())
    # Without a GPU every GPU-marked test is collected and skipped, none fails.
    assert tests["counts"] == {"passed": 0, "failed": 0, "skipped": 4}


@pytest.mark.slow
@needs_peers
def test_the_dry_run_pairs_unetjax_with_each_monai_variant_at_equal_precision(dry_run):
    data = json.loads((dry_run / "vs_monai.json").read_text())
    pairs = [("monai", "float32"), ("monai_amp", "bfloat16"), ("monai_compile_amp", "bfloat16")]
    train = {
        (r["size"], r["batch"], r["peer"], r["dtype"]) for r in data["rows"] if r["task"] == "train"
    }
    assert train == {(size, 2, *pair) for size in ("32x32", "16x32x16") for pair in pairs}
    infer = {
        (r["size"], r["batch"], r["L"], r["peer"], r["dtype"])
        for r in data["rows"]
        if r["task"] == "infer"
    }
    assert infer == {("32x32", 1, 4, *pair) for pair in pairs}
    for row in data["rows"]:
        assert row["jax_over_peer"] > 0 and row["jax_params"] > 0 and row["peer_params"] > 0
        assert row["jax_compile_s"] > 0
        # Only torch.compile has a compile time; on the CPU no device memory is read.
        assert (row["peer_compile_s"] is not None) == (row["peer"] == "monai_compile_amp")
        assert row["jax_peak_mib"] is None and row["peer_peak_mib"] is None


@pytest.mark.slow
@needs_peers
def test_the_dry_run_prunes_at_each_depth_and_runs_the_sliding_window_abba(dry_run):
    data = json.loads((dry_run / "vs_monai.json").read_text())
    pruned = gpu_check.pruned_rows(data)
    assert [(row["precision"], row["L"]) for row in pruned] == [
        (dtype, depth) for dtype in ("float32", "bfloat16") for depth in (1, 4)
    ]
    for row in pruned:
        assert (row["flops_vs_L4"] == 1.0) == (row["L"] == 4)
        assert 0 < row["flops_vs_L4"] <= 1 and row["latency_vs_L4"] > 0
        assert row["within_10%"] in ("yes", "no")
    assert pruned[0]["params"] < pruned[1]["params"]  # L1 holds fewer parameters than L4
    volume = json.loads((dry_run / "volume.json").read_text())
    assert [(r["pass"], r["impl"], r["L"]) for r in volume["rows"]] == [
        (1, "unetjax", 4),
        (1, "monai", 4),
        (2, "monai", 4),
        (2, "unetjax", 4),
    ]


@pytest.mark.slow
@needs_peers
def test_the_table_names_the_device_and_versions_and_has_every_row(dry_run):
    table = (dry_run / "gpu_check.md").read_text()
    assert "CPU dry run at toy sizes" in table
    assert "- device: cpu: cpu (torch: cpu), driver none" in table
    for name in ("jax", "flax", "torch", "monai"):
        assert f"{name} {importlib.metadata.version(name)}" in table
    sections = table.split("\n## ")[1:]
    assert [section.split(":")[0] for section in sections] == [
        "Train step",
        "Inference, deepest head (L4)",
        "Pruned inference (fast mode)",
        "3D sliding window",
    ]
    rows = [len([line for line in s.splitlines() if line.startswith("| ")]) - 1 for s in sections]
    assert rows == [6, 3, 4, 4]  # data rows under each header
    assert "No vs_monai.json" not in table and "No volume.json" not in table


def test_a_plans_patch_and_batch_set_the_3d_shape_rounded_up_to_multiples_of_16(tmp_path):
    plan = tmp_path / "plans.json"
    plan.write_text(
        json.dumps({"config": {"data.patch_size": [40, 56, 40], "train.batch_size": 9}})
    )
    assert gpu_check.plan_train_shape(str(plan)) == "48x64x48:9"


def test_a_plan_without_a_patch_stops_the_script_with_one_line_and_exit_code_2(tmp_path):
    plan = tmp_path / "plans.json"
    plan.write_text(json.dumps({"config": {"train.batch_size": 2}}))
    completed = run_script("--cpu-dry-run", "--out", str(tmp_path / "out"), "--plan", str(plan))
    assert completed.returncode == 2
    assert "plans file" in completed.stderr and "data.patch_size" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1


def test_an_unknown_argument_stops_the_script_with_its_usage_and_exit_code_2(tmp_path):
    completed = run_script("--cpu-dryrun", "--out", str(tmp_path))
    assert completed.returncode == 2
    assert "unknown argument '--cpu-dryrun'" in completed.stderr and "usage:" in completed.stderr
