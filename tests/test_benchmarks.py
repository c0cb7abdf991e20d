"""The benchmark scripts run end to end on a tiny setting and print the rows they promise.

Speed is never asserted here: these only prove the scripts work, so that the figures in
benchmarks/RESULTS.md can be regenerated.
"""

import importlib.util

import pytest

from benchmarks import harness, pruning_speed, train_throughput

TINY = ["--base-filters", "4", "--warmup", "0", "--repeats", "1"]


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
    rows = train_throughput.main([*TINY, "--depth", "2", "--shapes", "32:2", "--dtypes", "float32"])
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
            "--rounds",
            "1",
            "--allow-load",
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


def test_vs_pytorch_runs_abba_one_process_each_and_refuses_a_loaded_machine(monkeypatch):
    from benchmarks import vs_pytorch

    started = []

    def fake_worker(name, argv, args):
        started.append(name)
        before = vs_pytorch.wait_for_quiet(args, name)
        figures = {"params": 1, "median_ms": 1.0, "img_per_s": 2.0 if name == "unetjax" else 1.0}
        config = "batch" if name == "unetjax" else name
        rows = [vs_pytorch.row("train", (32, 32), 2, config, 4, figures)]
        machine = {"device": "cpu", "cpu": "test", "nproc": 2, "jax": "test"}
        return {
            "name": name,
            "rows": rows,
            "machine": machine,
            "ceiling": [None, ""],
            "before": before,
        }

    monkeypatch.setattr(vs_pytorch, "run_worker", fake_worker)
    monkeypatch.setattr(vs_pytorch.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    argv = ["--train-shapes", "32:2", "--infer-shapes", "--peers", "monai"]
    rows = vs_pytorch.main(argv)
    assert started == ["monai", "unetjax", "unetjax", "monai"]
    assert [(r["ratio_r1"], r["ratio_r2"], r["spread"], r["flag"]) for r in rows] == [
        (2.0, 2.0, 0.0, "")
    ]

    monkeypatch.setattr(vs_pytorch.os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    with pytest.raises(SystemExit, match=r"load 3\.00 > --max-load 1\.5"):
        vs_pytorch.main(argv)
    assert vs_pytorch.main([*argv, "--allow-load"])[0]["flag"] == "LOADED"
