"""grain pipelines over the TFDS array_record sources: training batches and eval passes.

Images come out float32, normalised by `data.normalize` (`normalization`); masks int32.
`eval_batches` stacks full images of one size (or eval_patch_size centre crops);
`eval_examples` yields one full-size example at a time, for images of different sizes.
"""

import math
from collections.abc import Iterator

import grain
import numpy as np
from absl import flags

from unetjax.data import catalog, transforms, weight_map
from unetjax.data.datasets import Dataset
from unetjax.data.errors import DataError


def _source(dataset: Dataset, split: str) -> grain.MapDataset:
    """A split as examples with image, mask and (if needed) instances."""
    data_config = dataset.config
    source = grain.MapDataset.source(dataset.source(split))
    if dataset.kind.catalog:
        source = source.map(
            catalog.ToExample(data_config.image_key, data_config.mask_key, data_config.label_offset)
        )
    if data_config.border_weights and "instances" not in dataset.reader.info.features:
        source = source.map(
            lambda e: {**e, "instances": weight_map.connected_components(e["mask"] > 0)}
        )
    return source


def _shard(dataset: grain.MapDataset, process_index: int, process_count: int) -> grain.MapDataset:
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} for process_count={process_count}")
    return dataset[process_index::process_count]


def train_iterator(
    dataset: Dataset,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.DatasetIterator:
    """Infinite, seeded, augmented (batch_size, *patch_size, ...) batches of this process.

    The iterator's `get_state()` is a JSON-serialisable dict; `set_state` resumes exactly.
    Resume with the same num_workers: the state's layout depends on it.
    """
    data_config = dataset.config
    records = _shard(_source(dataset, "train"), process_index, process_count)
    if len(records) == 0:
        raise DataError(f"process {process_index} of {process_count} has no training examples")
    # Shard, then shuffle and repeat: each epoch of this shard in a new seeded order.
    records = records.shuffle(seed=seed).repeat(None)
    records = records.random_map(dataset.kind.train_transform(dataset), seed=seed)
    batches = records.batch(batch_size, drop_remainder=True)
    read = grain.ReadOptions(
        num_threads=data_config.num_threads, prefetch_buffer_size=data_config.prefetch
    )
    iterable = batches.to_iter_dataset(read)
    if data_config.num_workers > 0:
        # grain's worker processes read absl flags; outside an absl app (tests, notebooks,
        # the benchmark) they are unparsed, so use their defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        iterable = iterable.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=data_config.num_workers,
                per_worker_buffer_size=data_config.prefetch,
            )
        )
    return iter(iterable)


def eval_batches(
    dataset: Dataset,
    split: str,
    *,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict]:
    """One deterministic pass over `split`: full images (or eval_patch_size centre crops).

    Every process yields the same number of batches; padding samples (zeros) are marked
    `valid` False. Full images must share one size within the split for fixed shapes: for
    images of different sizes (`dataset.varied_sizes(split)`) this raises at once, naming
    `eval_examples`.
    """
    info = dataset.info
    if dataset.varied_sizes(split):
        sizes = dataset.summary["splits"].get(split, {})
        seen = (
            f" ({_size(sizes['size_min'])} to {_size(sizes['size_max'])})"
            if "size_min" in sizes
            else ""
        )
        raise DataError(
            f"{info.name} {split}: images of different sizes{seen} cannot be stacked into "
            f"batches; evaluate them one at a time at full size with eval_examples(dataset, "
            f"{split!r}) (overlap-tile), or set data.eval_patch_size (centre crops) or "
            "data.resize"
        )
    return _padded_batches(dataset, split, batch_size, process_index, process_count)


def _padded_batches(
    dataset: Dataset, split: str, batch_size: int, process_index: int, process_count: int
) -> Iterator[dict]:
    data_config = dataset.config
    records = _source(dataset, split)
    num_batches = math.ceil(math.ceil(len(records) / process_count) / batch_size)
    records = records.map(dataset.kind.eval_transform(dataset))
    # The split's first example shapes the padding, even on a process left without examples.
    filler = {key: np.zeros_like(value) for key, value in records[0].items()}
    read = grain.ReadOptions(num_threads=data_config.num_threads, prefetch_buffer_size=batch_size)
    samples = iter(_shard(records, process_index, process_count).to_iter_dataset(read))
    for _ in range(num_batches):
        batch = [next(samples, None) for _ in range(batch_size)]
        yield _pad_batch(batch, filler, split)


def eval_examples(
    dataset: Dataset, split: str, *, process_index: int = 0, process_count: int = 1
) -> Iterator[dict]:
    """One deterministic pass over `split`, one full-size example at a time, whatever the sizes.

    Yields {"image": (*spatial, C) float32 normalised as in eval_batches, "mask": int32,
    ["weight"], "id": str, "valid": bool}; every process yields the same number of examples,
    the extra ones (a copy of the split's first example) with `valid` False. data.eval_patch_size
    is not applied: this is for scoring whole images (e.g. by overlap-tile prediction).
    """
    data_config, info = dataset.config, dataset.info
    records = _source(dataset, split)
    if len(records) == 0:
        raise DataError(f"{info.name} {split}: no examples")
    per_process = math.ceil(len(records) / process_count)
    transform = transforms.EvalTransform(
        data_config, info.task == "multilabel", dataset.normalization, full_size=True
    )

    def example(index: int, record: dict) -> dict:
        stem = record.get("id", str(index))
        return {**transform.map(record), "id": stem.decode() if isinstance(stem, bytes) else stem}

    indices = range(len(records))[process_index::process_count]
    read = grain.ReadOptions(num_threads=data_config.num_threads, prefetch_buffer_size=2)
    shard = _shard(records, process_index, process_count).to_iter_dataset(read)
    for index, record in zip(indices, shard, strict=True):
        yield {**example(index, record), "valid": True}
    for _ in range(per_process - len(indices)):
        yield {**example(0, records[0]), "valid": False}


def _size(shape) -> str:
    return "x".join(str(v) for v in shape)


def _pad_batch(samples: list[dict | None], filler: dict, split: str) -> dict:
    """Stacks samples, putting zeros where there are none and marking those not valid."""
    valid = np.array([s is not None for s in samples])
    for sample in samples:
        if sample is not None and sample["image"].shape != filler["image"].shape:
            raise DataError(
                f"{split}: eval images of sizes {filler['image'].shape[:-1]} and "
                f"{sample['image'].shape[:-1]}; use eval_examples(dataset, {split!r}) for "
                "full-size evaluation, or set data.eval_patch_size for fixed shapes"
            )
    batch = {
        key: np.stack([(s if s is not None else filler)[key] for s in samples]) for key in filler
    }
    return {**batch, "valid": valid}
