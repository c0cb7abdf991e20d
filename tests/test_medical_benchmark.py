"""benchmarks/volume_inference.py's workers run on a tiny setting and report what RESULTS.md
shows (speed is never asserted: this only proves the script works)."""

import importlib.util
import json

import pytest

from benchmarks import volume_inference

TINY = ["--size", "32", "--tile", "16", "--base-filters", "2", "--batch", "2"]


def worker_row(capsys, *args):
    volume_inference.main(["--worker", *args, *TINY])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_unetjax_worker_times_a_pruned_network_on_a_whole_volume(capsys):
    row = worker_row(capsys, "unetjax", "--depth", "1")
    assert (row["impl"], row["L"]) == ("unetjax", 1)
    assert row["params"] > 0 and len(row["times"]) == 1 and row["times"][0] > 0
    assert row["peak_rss_mib"] > 0


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("monai") is None,
    reason="MONAI and torch are not installed (the bench extra)",
)
@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecations
def test_the_monai_worker_times_sliding_window_inference_on_the_same_volume(capsys):
    row = worker_row(capsys, "monai")
    assert (row["impl"], row["L"]) == ("monai", 4)
    assert row["params"] > 0 and row["times"][0] > 0


def test_tiles_per_volume_count_starts_every_half_tile():
    assert volume_inference.tiles_per_volume(128, 64) == 27  # starts 0, 32, 64 per axis
    assert volume_inference.tiles_per_volume(48, 64) == 1
