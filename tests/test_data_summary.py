"""The dataset summary and split membership against numpy counts over the user's files, kept
with the built dataset, and logged as a short block (never TFDS's list of every path)."""

import json
import logging

import numpy as np
import pytest

import unetjax.data as data
from tests import user_folders

SIZES = [(40, 52), (300, 280), (120, 130), (64, 200), (90, 90), (150, 60), (70, 300), (48, 48)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Eight RGB images of 40..300 px with binary {0, 255} masks, split 6 / 1 / 1."""
    tmp_path = tmp_path_factory.mktemp("summary")
    written = user_folders.write_folder(tmp_path / "src", SIZES, channels=3)
    config = user_folders.folder_config(
        tmp_path, tmp_path / "src", val_fraction=0.125, test_fraction=0.125
    )
    return config, written


def test_summary_reports_what_numpy_counts_in_the_files(folder):
    config, written = folder
    dataset = data.prepare(config)
    summary = dataset.summary
    assert (summary["task"], summary["declared_task"], summary["num_classes"]) == (
        "binary",
        None,
        1,
    )
    assert summary["task_rule"] == "mask values within {0, 255}"
    assert (summary["channels"], summary["dtype"], summary["spatial_dims"]) == (3, "uint8", 2)
    for split, stems in dataset.split_stems.items():
        shapes = np.array([written[stem]["image"].shape[:2] for stem in stems])
        entry = summary["splits"][split]
        assert entry["samples"] == len(stems)
        assert entry["size_min"] == shapes.min(0).tolist()
        assert entry["size_max"] == shapes.max(0).tolist()
        assert entry["size_median"] == np.median(shapes, 0).tolist()
        assert entry["size_uniform"] == (len(stems) == 1)
    masks = np.concatenate([w["mask"].ravel() for w in written.values()])
    assert summary["foreground_fraction"] == pytest.approx((masks == 255).mean())
    assert [c["name"] for c in summary["classes"]] == ["background", "foreground"]
    assert summary["classes"][1]["pixel_fraction"] == pytest.approx((masks == 255).mean())
    train = np.concatenate(
        [written[s]["image"].reshape(-1, 3) / 255.0 for s in dataset.split_stems["train"]]
    )
    norm = summary["normalization"]
    assert norm["kind"] == "unit"
    np.testing.assert_allclose(norm["mean"], train.mean(0), rtol=1e-6)
    np.testing.assert_allclose(norm["std"], train.std(0), rtol=1e-6)
    images = np.concatenate([w["image"].reshape(-1, 3) for w in written.values()])
    assert summary["intensity_min"] == images.min(0).tolist()
    assert summary["intensity_max"] == images.max(0).tolist()
    json.dumps(summary)  # the run directory's dataset_summary.json


def test_split_stems_partition_the_files_and_match_the_stored_ids(folder):
    config, written = folder
    dataset = data.prepare(config)
    stems = dataset.split_stems
    assert sorted(stem for split in stems.values() for stem in split) == sorted(written)
    assert {split: len(s) for split, s in stems.items()} == {
        "train": 6,
        "validation": 1,
        "test": 1,
    }
    for split, split_stems in stems.items():
        ids = [str(e["id"], "utf-8") for e in dataset.reader.as_data_source(split=split)]
        assert sorted(ids) == sorted(split_stems)


def test_a_reopened_dataset_has_the_same_summary_and_splits(folder):
    config, _ = folder
    first = data.prepare(config)
    reopened = data.prepare(config.copy_and_resolve_references())
    assert json.dumps(reopened.summary, sort_keys=True) == json.dumps(first.summary, sort_keys=True)
    assert reopened.split_stems == first.split_stems


def test_the_summary_block_is_short_and_says_what_matters(folder):
    config, _ = folder
    text = data.prepare(config).summary_text()
    lines = text.splitlines()
    assert len(lines) <= 12 and max(len(line) for line in lines) <= 140
    assert "binary, 1 output channel" in lines[1] and "declared task: none" in lines[1]
    assert "train 6, validation 1, test 1" in text
    assert "train 40..300 x 48..300 px" in text and "sizes vary" in text
    assert "3 x uint8" in text and "normalize   unit" in text and "foreground 0." in text


def test_preparation_logs_the_summary_and_never_every_sample_path(tmp_path, caplog):
    root = tmp_path / "src"
    user_folders.write_folder(root, [(32, 32)] * 30)
    config = user_folders.folder_config(tmp_path, root)
    with caplog.at_level(logging.DEBUG):
        dataset = data.prepare(config)
    messages = [record.getMessage() for record in caplog.records]
    assert dataset.summary_text() in messages
    assert max(len(m) for m in messages) < 1000
    # One line of ours names the folder and the counts, not the samples; TFDS's own
    # "Using custom data configuration" warning is silenced.
    preparing = [m for m in messages if m.startswith("preparing image_folder from ")]
    assert len(preparing) == 1 and str(root) in preparing[0]
    assert "(30 images: train 24, validation 3, test 3)" in preparing[0]
    assert not any("Using custom data configuration" in m for m in messages)
    assert not any("case017" in m for m in messages)


def test_synthetic_data_has_a_summary_but_no_stems(tmp_path):
    config = data.default_config()
    config.data_dir = str(tmp_path)
    config.image_size, config.num_train, config.num_val, config.num_test = 32, 3, 1, 0
    config.patch_size = (24, 24)
    dataset = data.prepare(config)
    assert dataset.split_stems is None
    assert dataset.summary["splits"]["train"]["size_min"] == [32, 32]
    assert dataset.summary["dtype"] == "float32" and dataset.info.uniform_size["train"]
    images = [e["image"] for e in dataset.reader.as_data_source(split="train")]
    np.testing.assert_allclose(
        dataset.summary["normalization"]["mean"], [np.mean(images)], rtol=1e-5
    )
