"""Where training reports go: TensorBoard, metrics.jsonl, a progress bar, overlay PNGs."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from PIL import Image

from unetjax import overlays, progress, rundir
from unetjax.evaluation import names

logger = logging.getLogger(__name__)


class MetricWriter:
    """Scalars to TensorBoard event files and to `metrics.jsonl`, one JSON object per call."""

    def __init__(self, workdir: str, *, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self._jsonl = open(os.path.join(workdir, rundir.METRICS_FILE), "a")  # noqa: SIM115

    def write(self, step: int, values: Mapping[str, float], *, prefix: str) -> None:
        if not self.enabled:
            return
        for name, value in values.items():
            self._tensorboard.add_scalar(f"{prefix}/{name}", value, step)
        record = {"step": step, "split": prefix, **{k: float(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tensorboard.close()
            self._jsonl.close()


class ProgressReporter:
    """A tqdm bar (step, loss, images/s, ETA) on a terminal; plain log lines otherwise."""

    def __init__(
        self,
        start: int,
        total: int,
        batch_size: int,
        head_depths: Sequence[int],
        *,
        bar: bool = True,
    ):
        self.batch_size, self.total, self.head_depths = batch_size, total, tuple(head_depths)
        self.last_step, self.last_time = start, time.perf_counter()
        self.images_per_second = 0.0
        self._bar = None
        if progress.shown(bar) and jax.process_index() == 0:
            self._bar = progress.bar(total=total, initial=start, unit="step")

    def update(self, step: int) -> None:
        if self._bar is not None:
            self._bar.update(step - self._bar.n)

    def log_values(self, step: int, step_metrics: Mapping[str, jax.Array]) -> dict[str, float]:
        """Host values of the step's metrics, with images/s since the previous call."""
        now = time.perf_counter()
        seconds_per_step = (now - self.last_time) / max(step - self.last_step, 1)
        self.images_per_second = self.batch_size / seconds_per_step
        self.last_step, self.last_time = step, now
        values = {
            "loss": float(step_metrics["loss"]),
            "grad_norm": float(step_metrics["grad_norm"]),
            "param_norm": float(step_metrics["param_norm"]),
            "images_per_second": self.images_per_second,
        }
        if "learning_rate" in step_metrics:
            values["learning_rate"] = float(step_metrics["learning_rate"])
        per_head = np.asarray(step_metrics["loss_per_head"])
        for name, loss in zip(names.loss_names(self.head_depths), per_head, strict=True):
            values[name] = float(loss)
        if self._bar is not None:
            self._bar.set_postfix(
                loss=f"{values['loss']:.4f}", img_s=f"{self.images_per_second:.1f}"
            )
        else:
            eta = time.strftime("%H:%M:%S", time.gmtime((self.total - step) * seconds_per_step))
            logger.info(
                "step %d/%d: loss %.4f, %.1f images/s, ETA %s",
                step,
                self.total,
                values["loss"],
                self.images_per_second,
                eta,
            )
        return values

    def note(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message)
        else:
            logger.info(message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def save_overlays(
    workdir: str,
    step: int,
    batch: Mapping[str, np.ndarray],
    probabilities: np.ndarray,
    *,
    output_activation: str,
) -> None:
    """PNG overlays of validation images with their predictions (probabilities (N, *spatial, K)
    of the first N images of `batch`).

    3D volumes are shown by their middle slice; multi-class by any foreground class.
    """
    count = len(probabilities)
    images, masks = batch["image"][:count], batch["mask"][:count]
    if output_activation == "softmax":
        predicted = probabilities.argmax(axis=-1) > 0
        truth = masks > 0
    else:
        predicted = (probabilities >= 0.5).any(axis=-1)
        truth = masks.astype(bool) if masks.ndim == predicted.ndim else masks.any(axis=-1)
    directory = os.path.join(workdir, "overlays", f"step_{step}")
    os.makedirs(directory, exist_ok=True)
    for index in range(count):
        image, mask, pred = images[index], truth[index], predicted[index]
        if image.ndim == 4:  # (D, H, W, C): the middle slice
            middle = image.shape[0] // 2
            image, mask, pred = image[middle], mask[middle], pred[middle]
        Image.fromarray(overlays.truth_and_prediction(image, mask, pred)).save(
            os.path.join(directory, f"{index}.png")
        )
