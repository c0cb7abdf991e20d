"""One evaluator for training, `evaluate` and the pruning table: `make(...)`, then `.run(state)`.

As big_vision's evaluators: an evaluator is built once for a network and a split, and `run(state)`
scores the split for any state (the training state at each validation, a predictor's restored
state in `evaluate`). Per valid case it gives the confusion counts [tp, fp, fn, tn] of every
setting (a depth and mode) at every threshold, the loss of the settings that have one, per-case
metric rows where asked, and the first cases with their predictions (overlays, timing).

Two ways to see a split, chosen by `Dataset.scored_at_full_size(split)` (or a tile asked for):
- `BatchedEvaluator`: stacked batches (images of one size, or centre crops), sharded over the
  devices; network, loss and counts in one jit call. A size that is not a multiple of 2^D (per
  axis, with per-axis pooling) is mirror-padded and cropped back, as `predict` does.
- `FullSizeEvaluator`: one whole image at a time, predicted exactly as `predict` predicts it
  (`tiling.predict_image`: padded to 2^D and cropped back, overlap-tiled in fixed-shape tiles),
  then scored in one jit call at a size bucket (`batch_scores.bucketed`; the padding is not
  scored). The loss is computed on the blended probabilities (as logits), so it is comparable
  across evaluations, not with the training loss of patches.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from unetjax import backend, data, parallel, progress, steps
from unetjax.evaluation import batch_scores, case_pictures, counts, heads, scoring
from unetjax.inference import tiling
from unetjax.inference.tiling import TileOptions

Setting = tuple[int, str]  # (depth, mode)
# (state, images (B, *spatial, C)) -> (probabilities (B, *spatial, S, K), logits of the first
# settings, each (B, *spatial, K)): pure and jit-able.
Forward = Callable[[Any, jax.Array], tuple[jax.Array, tuple[jax.Array, ...]]]


@dataclasses.dataclass(frozen=True)
class Network:
    """A network as an evaluator runs it.

    Attributes:
      forward: see `Forward`; the logits are of the first `num_losses` settings (the heads in
        training; none for a pruned predictor, whose settings have no loss).
      settings: the S (depth, mode) pairs of the probabilities' settings axis, in order.
      output_activation: "sigmoid" or "softmax".
      align: per axis, spatial sizes the network takes are multiples of this (2^D, or the
        product of the axis's strides).
      num_losses: how many of the first settings get a loss.
    """

    forward: Forward
    settings: tuple[Setting, ...]
    output_activation: str
    align: tuple[int, ...]
    num_losses: int = 0


def predictor_network(predictor) -> Network:
    """An `inference.Predictor` (one depth and mode) as an evaluator runs it; state is
    `predictor.state`."""
    probabilities = predictor.network_function()

    def forward(state, images):
        return probabilities(state, images)[..., None, :], ()

    return Network(
        forward,
        ((predictor.depth, predictor.mode),),
        predictor.output_activation,
        predictor.align,
    )


@dataclasses.dataclass
class Scores:
    """What one pass over a split gave.

    Attributes:
      settings: the network's settings; thresholds: the sigmoid thresholds counted.
      counts: int (N, S, T, K, 4) [tp, fp, fn, tn] per valid case, setting, threshold and class.
      losses: (N, num_losses) per valid case.
      rows: per-case metric rows (`scoring.batch_rows`) of every setting, when asked.
      shown: the first valid cases, {"image", "mask", "probabilities" (n, *spatial, S, K)}.
      first_image: the first valid image as a batch of one (latency is timed on it).
    """

    settings: tuple[Setting, ...]
    thresholds: tuple[float, ...]
    output_activation: str
    counts: np.ndarray
    losses: np.ndarray
    rows: list[dict]
    shown: dict[str, np.ndarray] | None
    first_image: np.ndarray

    def summary(self, setting: int = 0, threshold: int = 0) -> dict[str, float]:
        """Mean and sd over cases of IoU, Dice and accuracy of one setting at one threshold."""
        summary = counts.summarize_counts(
            self.counts[:, setting, threshold], output_activation=self.output_activation
        )
        keys = ("iou", "iou_std", "dice", "dice_std", "accuracy", "accuracy_std")
        return {key: float(summary[key]) for key in keys}

    def head_metrics(self, head_depths: Sequence[int]) -> dict[str, float]:
        """Training's validation metrics (`heads.summarize_heads`): settings are the heads, then
        accurate mode (`training_settings`), at the first threshold."""
        num_heads = len(head_depths)
        return heads.summarize_heads(
            self.losses,
            np.moveaxis(self.counts[:, :num_heads, 0], 0, 1),
            self.counts[:, num_heads, 0],
            head_depths,
            output_activation=self.output_activation,
        )


def training_settings(head_depths: Sequence[int]) -> tuple[Setting, ...]:
    """Each head alone, then all heads' mean: what training validates (`steps.eval_forward`)."""
    return (*((depth, "fast") for depth in head_depths), (max(head_depths), "accurate"))


class Evaluator(abc.ABC):
    """One pass over `split` per `run(state)`; see the module docstring."""

    def __init__(
        self,
        network: Network,
        dataset: data.Dataset,
        split: str,
        *,
        thresholds: Sequence[float] = (0.5,),
        per_case: bool = False,
        nsd_tolerance: float = 1.0,
        num_shown: int = 0,
        pictures: case_pictures.Collector | None = None,
        progress: str | None = None,
    ):
        if per_case and jax.process_count() > 1:
            raise ValueError("per-case rows are computed in a single process")
        self.network, self.dataset, self.split = network, dataset, split
        self.thresholds = tuple(float(t) for t in thresholds)
        self.per_case, self.nsd_tolerance, self.num_shown = per_case, nsd_tolerance, num_shown
        self.ignore_index = dataset.info.ignore_index
        self.pictures, self.progress = pictures, progress  # report pictures; a bar's title

    @abc.abstractmethod
    def passes(self, state) -> Iterator[tuple[dict, dict[str, np.ndarray], np.ndarray | None]]:
        """(local batch, its scores, its probabilities where rows or overlays need them)."""

    def predict(self, state, images: np.ndarray) -> np.ndarray:
        """Probabilities (B, *spatial, S, K) of a few images, for the overlays."""
        raise NotImplementedError

    def gather(self, array: np.ndarray) -> np.ndarray:
        """Every process's cases of `array` (the batched pass gathers per batch already)."""
        return array

    def run(self, state) -> Scores:
        """Scores the split with the network at `state`."""
        gathered = {"counts": [], "losses": [], "valid": []}
        rows, shown, first_image, seen = [], None, None, 0
        size = self.dataset.info.split_sizes.get(self.dataset.split_name(self.split))
        desc = self.progress
        bar = progress.bar(total=size, unit="image", desc=desc, enabled=desc is not None)
        for batch, scores, probabilities in self.passes(state):
            valid = batch["valid"]
            for key in ("counts", "losses"):
                gathered[key].append(np.asarray(scores[key]))
            gathered["valid"].append(np.asarray(scores.get("valid", valid)))
            if self.per_case:
                rows += self._rows(probabilities, batch, seen)
            if first_image is None and valid.any():
                first_image = batch["image"][valid][:1]
                if self.num_shown:
                    shown = {key: batch[key][valid][: self.num_shown] for key in ("image", "mask")}
                    shown["probabilities"] = (
                        self.predict(state, shown["image"])
                        if probabilities is None
                        else probabilities[valid][: self.num_shown]
                    )
            seen += int(valid.sum())
            bar.update(int(valid.sum()))
        bar.close()
        if first_image is None:
            raise ValueError(f"split {self.split!r} of {self.dataset.info.name!r} has no images")
        valid, counts_, losses_ = (
            self.gather(np.concatenate(gathered[key])) for key in ("valid", "counts", "losses")
        )
        return Scores(
            self.network.settings,
            self.thresholds,
            self.network.output_activation,
            counts_[valid],
            losses_[valid],
            rows,
            shown,
            first_image,
        )

    def _rows(self, probabilities: np.ndarray, batch: dict, seen: int) -> list[dict]:
        ids = scoring.case_ids(batch, self.split, seen)
        rows = []
        for index, (depth, mode) in enumerate(self.network.settings):
            rows += scoring.batch_rows(
                probabilities[..., index, :],
                batch,
                case_ids=ids,
                split=self.split,
                depth=depth,
                mode=mode,
                output_activation=self.network.output_activation,
                threshold=self.thresholds[0],
                nsd_tolerance=self.nsd_tolerance,
                ignore_index=self.ignore_index,
                pictures=self.pictures,
            )
        return rows


class BatchedEvaluator(Evaluator):
    """Stacked batches of `batch_size` (over all processes), sharded over the devices."""

    def __init__(
        self, network: Network, dataset: data.Dataset, split: str, *, batch_size: int, **options
    ):
        super().__init__(network, dataset, split, **options)
        self.mesh = parallel.make_mesh()
        # Padding samples fill a batch up to a multiple of the devices.
        self.batch_size = tiling.round_up(batch_size, self.mesh.devices.size)
        options = {
            "output_activation": network.output_activation,
            "thresholds": self.thresholds,
            "ignore_index": self.ignore_index,
        }
        keep = self.per_case

        def step(state, batch, sizes):
            probabilities, logits = network.forward(state, batch["image"])
            region = (slice(None), *(slice(0, size) for size in sizes))
            probabilities = probabilities[region]
            logits = tuple(head[region] for head in logits)
            scores = batch_scores.score_batch(probabilities, logits, batch, **options)
            return {**scores, "probabilities": probabilities} if keep else scores

        self._step = backend.jit(step, static_argnames=("sizes",))
        self._forward = backend.jit(network.forward)

    def passes(self, state):
        local = self.batch_size // jax.process_count()
        for batch in data.eval_batches(
            self.dataset,
            self.split,
            batch_size=local,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        ):
            inputs = {key: batch[key] for key in steps.BATCH_KEYS if key in batch}
            sizes = inputs["image"].shape[1:-1]
            inputs["image"] = _pad_batch(inputs["image"], self.network.align)
            scores = self._step(state, parallel.shard_batch(inputs, self.mesh), sizes)
            probabilities = scores.pop("probabilities", None)
            scores = multihost_utils.process_allgather(scores, tiled=True)
            scores["valid"] = multihost_utils.process_allgather(batch["valid"], tiled=True)
            if probabilities is not None:
                probabilities = np.asarray(probabilities)[: len(batch["valid"])]
            yield batch, scores, probabilities

    def predict(self, state, images: np.ndarray) -> np.ndarray:
        probabilities, _ = self._forward(state, _pad_batch(images, self.network.align))
        return np.asarray(probabilities)[(slice(None), *map(slice, images.shape[1:-1]))]


def _pad_batch(images: np.ndarray, align: tuple[int, ...]) -> np.ndarray:
    """Images (B, *spatial, C) mirror-padded at their end to a multiple of `align`."""
    return np.stack([tiling.pad_to_multiple(image, align)[0] for image in images])


class FullSizeEvaluator(Evaluator):
    """One whole image at a time, predicted as `predict` predicts it, scored at a size bucket.

    tile: overlap-tile settings (None: the whole image at once, padded to a size bucket).
    """

    def __init__(
        self,
        network: Network,
        dataset: data.Dataset,
        split: str,
        *,
        tile: TileOptions | None,
        **options,
    ):
        super().__init__(network, dataset, split, **options)
        self.tile = tile

        def flat(state, images):  # settings and classes on one axis, as tiling blends them
            probabilities, _ = network.forward(state, images)
            return probabilities.reshape(*probabilities.shape[:-2], -1)

        self._flat = backend.jit(flat)

        def score(probabilities, batch):  # the first settings' losses on their logits
            logits = tuple(
                batch_scores.as_logits(probabilities[..., s, :], network.output_activation)
                for s in range(network.num_losses)
            )
            return batch_scores.score_batch(
                probabilities,
                logits,
                batch,
                output_activation=network.output_activation,
                thresholds=self.thresholds,
                ignore_index=self.ignore_index,
            )

        self._score = backend.jit(score)

    def passes(self, state):
        network, num_settings = self.network, len(self.network.settings)
        predict = lambda tiles: np.asarray(self._flat(state, tiles))  # noqa: E731
        pad = data.kinds.padded_patch(self.dataset.config)  # small volumes: as training pads
        for example in data.eval_examples(
            self.dataset,
            self.split,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        ):
            flat = tiling.predict_image(
                predict, example["image"], self.tile, align=network.align, bucket=True, pad_to=pad
            )
            probabilities = flat.reshape(*flat.shape[:-1], num_settings, -1)[None]
            batch = {key: np.asarray([value]) for key, value in example.items()}
            references = {key: batch[key] for key in ("mask", "weight") if key in batch}
            scores = self._score(*batch_scores.bucketed(probabilities, references, network.align))
            yield batch, scores, probabilities

    def gather(self, array: np.ndarray) -> np.ndarray:
        if jax.process_count() == 1:
            return array
        return np.asarray(multihost_utils.process_allgather(array, tiled=True))


def make(
    network: Network,
    dataset: data.Dataset,
    split: str,
    *,
    batch_size: int,
    tile: TileOptions | None = None,
    **options,
) -> Evaluator:
    """The evaluator for `split`: full size where its images vary in size (tiled at `tile`) or
    where a tile is asked for, else batched. `options` go to `Evaluator`."""
    if dataset.scored_at_full_size(split) or tile is not None:
        return FullSizeEvaluator(network, dataset, split, tile=tile, **options)
    return BatchedEvaluator(network, dataset, split, batch_size=batch_size, **options)
