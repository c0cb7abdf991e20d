"""Images of 40 to 300 px: recorded per split, trained on by random crops, evaluated one full
image at a time (eval_examples); eval_batches says what to use instead of stacking them."""

import numpy as np
import pytest

import unetjax.data as data
from tests import user_folders

SIZES = [(40, 52), (300, 280), (120, 130), (64, 200), (90, 90), (150, 60), (70, 300), (48, 48)]


@pytest.fixture(scope="module", params=[1, 3], ids=["grey", "rgb"])
def varied(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp(f"varied{request.param}")
    written = user_folders.write_folder(tmp_path / "src", SIZES, channels=request.param)
    config = user_folders.folder_config(
        tmp_path, tmp_path / "src", val_fraction=0.375, test_fraction=0.0, patch_size=(32, 32)
    )
    return data.prepare(config), written, request.param


def test_each_split_records_whether_its_sizes_vary(varied):
    dataset, _, _ = varied
    assert dataset.info.uniform_size == {"train": False, "validation": False}


def test_eval_batches_on_mixed_sizes_say_to_use_eval_examples(varied):
    dataset, _, _ = varied
    with pytest.raises(data.DataError, match=r"validation: images of different sizes") as error:
        data.eval_batches(dataset, "validation", batch_size=2)  # at once, before any batch
    message = str(error.value)
    assert "eval_examples(dataset, 'validation')" in message and "eval_patch_size" in message
    assert "\n" not in message


def test_eval_examples_yield_every_image_at_full_size_normalised(varied):
    dataset, written, channels = varied
    examples = list(data.eval_examples(dataset, "validation"))
    assert sorted(e["id"] for e in examples) == sorted(dataset.split_stems["validation"])
    for example in examples:
        original = written[example["id"]]
        image = original["image"] if channels == 3 else original["image"][..., None]
        assert example["valid"] and example["image"].dtype == np.float32
        np.testing.assert_allclose(example["image"], image / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(example["mask"], original["mask"] // 255)


def test_eval_examples_split_over_processes_with_equal_counts(varied):
    dataset, _, _ = varied
    shards = [
        list(data.eval_examples(dataset, "validation", process_index=i, process_count=2))
        for i in range(2)
    ]
    assert [len(shard) for shard in shards] == [2, 2]  # 3 examples: one process pads
    valid = [e["id"] for shard in shards for e in shard if e["valid"]]
    assert sorted(valid) == sorted(dataset.split_stems["validation"])
    assert sum(not e["valid"] for shard in shards for e in shard) == 1


def test_training_crops_patches_from_images_of_any_size(varied):
    dataset, _, channels = varied
    batch = next(data.train_iterator(dataset, batch_size=4, seed=0))
    assert batch["image"].shape == (4, 32, 32, channels) and batch["mask"].shape == (4, 32, 32)
    assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0


def test_centre_crops_still_batch_varied_sizes(varied):
    dataset, _, channels = varied
    config = dataset.config.copy_and_resolve_references()
    config.eval_patch_size = (32, 32)
    cropped = data.prepare(config)
    batches = list(data.eval_batches(cropped, "validation", batch_size=2))
    assert batches[0]["image"].shape == (2, 32, 32, channels)
    assert sum(int(b["valid"].sum()) for b in batches) == 3
