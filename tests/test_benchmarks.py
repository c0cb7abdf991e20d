"""The benchmark scripts run end to end on a tiny setting and print the rows they promise.

Speed is never asserted here: these only prove the scripts work, so that the figures in
benchmarks/RESULTS.md can be regenerated.
"""

import importlib.util

import pytest

from benchmarks import harness, pruning_speed, train_throughput

TINY = ["--base-filters", "4", "--warmup", "0", "--repeats", "1"]


pytestmark = pytest.mark.usefixtures("fast_compile")


def test_pruning_speed_reports_every_depth_and_mode_with_ratios_to_l4(capsys, tmp_path):
    json_path = tmp_path / "prune.json"
    rows = pruning_speed.main(
        [*TINY, "--sizes", "32", "--batches", "2", "--configs", "paper", "--json", str(json_path)]
    )
    assert [(r["mode"], r["L"]) for r in rows] == [
        (mode, depth) for mode in ("fast", "accurate") for depth in (1, 2, 3, 4)
    ]
    fast = [r for r in rows if r["mode"] == "fast"]
    assert [r["params"] for r in fast] == sorted(r["params"] for r in fast)
    assert all(r["latency_vs_L4"] > 0 for r in rows)
    assert fast[-1]["flops_vs_L4"] == 1.0 and fast[0]["flops_vs_L4"] < 1.0
    assert "latency_vs_L4" in capsys.readouterr().out
    assert json_path.exists()


def test_train_throughput_reports_every_model(capsys):
    rows = train_throughput.main([*TINY, "--shapes", "32:2", "--dtypes", "float32"])
    assert [r["model"] for r in rows] == list(train_throughput.MODELS)
    assert all(r["img_per_s"] > 0 and r["gflop_per_step"] > 0 for r in rows)
    assert "img_per_s" in capsys.readouterr().out


def test_sizes_parse_as_documented():
    assert harness.parse_size("96") == (96, 96)
    assert harness.parse_size("64^3") == (64, 64, 64)
    assert train_throughput.parse_shape("512:2") == ((512, 512), 2)
    assert harness.size_name((64, 64, 64)) == "64^3"


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("monai") is None,
    reason="needs the bench extra (torch, monai)",
)
def test_vs_pytorch_pairs_each_peer_and_matches_plain_parameter_counts(capsys):
    from benchmarks import vs_pytorch

    rows = vs_pytorch.main(
        [
            *TINY,
            "--train-shapes",
            "32:2",
            "--infer-shapes",
            "32:2",
            "--peers",
            "plain",
            "monai",
            "--depths",
            "1",
            "4",
        ]
    )
    assert [(r["task"], r["peer"], r["L"]) for r in rows] == [
        ("train", "plain", 4),
        ("train", "monai", 4),
        ("infer", "plain", 1),
        ("infer", "plain", 4),
        ("infer", "monai", 4),
    ]
    for row in rows:
        if row["peer"] == "plain":
            assert row["jax_params"] == row["peer_params"]
    assert "jax_over_peer" in capsys.readouterr().out
