"""train_iterator and eval_batches: fixed shapes, seeded order, exact resume, sharding."""

import json

import numpy as np
import pytest

import unetjax.data as data


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    config = data.default_config()
    config.data_dir = str(tmp_path_factory.mktemp("tfds"))
    config.image_size, config.num_train, config.num_val, config.num_test = 40, 6, 5, 2
    config.patch_size = (24, 24)
    data.prepare(config)
    return config


def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


def _assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_train_batches_have_fixed_shapes_dtypes_and_ranges(config):
    for batch in _take(data.train_iterator(data.prepare(config), batch_size=4, seed=0), 4):
        assert batch["image"].shape == (4, 24, 24, 1) and batch["image"].dtype == np.float32
        assert batch["mask"].shape == (4, 24, 24) and batch["mask"].dtype == np.int32
        assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0
        assert set(np.unique(batch["mask"])) <= {0, 1}
        assert "weight" not in batch


def test_border_weights_come_with_the_batch(config):
    weighted = config.copy_and_resolve_references()
    weighted.border_weights = True
    batch = next(data.train_iterator(data.prepare(weighted), batch_size=2, seed=0))
    assert batch["weight"].shape == (2, 24, 24) and batch["weight"].dtype == np.float32
    assert batch["weight"].min() > 0


def test_same_seed_same_batches_other_seed_other_batches(config):
    first = _take(data.train_iterator(data.prepare(config), batch_size=3, seed=7), 3)
    _assert_same_batches(
        first, _take(data.train_iterator(data.prepare(config), batch_size=3, seed=7), 3)
    )
    other = _take(data.train_iterator(data.prepare(config), batch_size=3, seed=8), 3)
    assert not np.array_equal(first[0]["image"], other[0]["image"])


def test_restored_state_gives_the_uninterrupted_batches(config):
    # 6 training examples, batch 4: the resumed batches cross an epoch boundary.
    iterator = data.train_iterator(data.prepare(config), batch_size=4, seed=3)
    _take(iterator, 2)
    state = json.loads(json.dumps(iterator.get_state()))
    uninterrupted = _take(iterator, 3)
    resumed = data.train_iterator(data.prepare(config), batch_size=4, seed=3)
    resumed.set_state(state)
    _assert_same_batches(uninterrupted, _take(resumed, 3))


def test_every_epoch_visits_each_example_once(config):
    plain = config.copy_and_resolve_references()
    plain.augment = False
    plain.patch_size = (40, 40)
    # batch 3 on 6 examples: each pair of batches is one epoch (a permutation).
    batches = _take(data.train_iterator(data.prepare(plain), batch_size=3, seed=0), 4)
    for epoch in (batches[:2], batches[2:]):
        images = np.concatenate([b["image"] for b in epoch])
        assert len({image.tobytes() for image in images}) == 6


def test_eval_pads_the_last_batch_and_marks_it(config):
    batches = list(data.eval_batches(data.prepare(config), "validation", batch_size=2))
    assert [b["valid"].tolist() for b in batches] == [[True, True], [True, True], [True, False]]
    for batch in batches:
        assert batch["image"].shape == (2, 40, 40, 1) and batch["mask"].shape == (2, 40, 40)
    assert not batches[-1]["image"][1].any() and not batches[-1]["mask"][1].any()


def test_eval_is_deterministic_and_unaugmented(config):
    first = list(data.eval_batches(data.prepare(config), "validation", batch_size=2))
    _assert_same_batches(
        first, list(data.eval_batches(data.prepare(config), "validation", batch_size=2))
    )
    unaugmented = config.copy_and_resolve_references()
    unaugmented.augment = False
    _assert_same_batches(
        first, list(data.eval_batches(data.prepare(unaugmented), "validation", batch_size=2))
    )


def test_eval_centre_crop(config):
    cropped = config.copy_and_resolve_references()
    cropped.eval_patch_size = (20, 20)
    full = next(data.eval_batches(data.prepare(config), "validation", batch_size=2))
    crop = next(data.eval_batches(data.prepare(cropped), "validation", batch_size=2))
    np.testing.assert_array_equal(crop["image"], full["image"][:, 10:30, 10:30])
    np.testing.assert_array_equal(crop["mask"], full["mask"][:, 10:30, 10:30])


def test_processes_share_the_examples_and_the_batch_count(config):
    def real_images(process_index, process_count):
        batches = list(
            data.eval_batches(
                data.prepare(config),
                "validation",
                batch_size=2,
                process_index=process_index,
                process_count=process_count,
            )
        )
        images = [b["image"][b["valid"]] for b in batches]
        return len(batches), [image.tobytes() for image in np.concatenate(images)]

    _, everything = real_images(0, 1)
    count_0, shard_0 = real_images(0, 2)
    count_1, shard_1 = real_images(1, 2)
    assert count_0 == count_1 == 2
    assert sorted(shard_0 + shard_1) == sorted(everything) and not set(shard_0) & set(shard_1)


def test_worker_processes_give_the_same_batches_and_resume(config):
    in_process = _take(data.train_iterator(data.prepare(config), batch_size=2, seed=1), 4)
    workers = config.copy_and_resolve_references()
    workers.num_workers = 1
    iterator = data.train_iterator(data.prepare(workers), batch_size=2, seed=1)
    _assert_same_batches(in_process[:2], _take(iterator, 2))
    state = json.loads(json.dumps(iterator.get_state()))
    iterator.close()
    resumed = data.train_iterator(data.prepare(workers), batch_size=2, seed=1)
    resumed.set_state(state)
    _assert_same_batches(in_process[2:], _take(resumed, 2))
    resumed.close()


def test_3d_batches(tmp_path):
    volumes = data.default_config()
    volumes.data_dir = str(tmp_path)
    volumes.spatial_dims, volumes.image_size, volumes.patch_size = 3, 20, (12, 16, 16)
    volumes.num_train, volumes.num_val, volumes.num_test = 2, 1, 0
    volumes.border_weights = True
    batch = next(data.train_iterator(data.prepare(volumes), batch_size=2, seed=0))
    assert batch["image"].shape == (2, 12, 16, 16, 1) and batch["mask"].shape == (2, 12, 16, 16)
    assert batch["weight"].shape == (2, 12, 16, 16)
    evaluation = next(data.eval_batches(data.prepare(volumes), "validation", batch_size=2))
    assert evaluation["image"].shape == (2, 20, 20, 20, 1)
    assert evaluation["valid"].tolist() == [True, False]
