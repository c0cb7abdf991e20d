"""What predicting needs of a model, whichever form it comes in, and the one loader of them all.

`Model` is what a run's (or export's) `Predictor` and an artifact's `ArtifactRunner` both
offer, so the per-file loop (`from_files`) and the commands never ask which one they hold:
`predict` takes an image as read (unit scale) and normalises it inside, as in training; the
default tile, the training's resize and the colour mode come with the model.

`load_model(path, ...)` picks the form by the path: a .stablehlo or .onnx file is an artifact,
anything else a run or export directory at the requested setting (or deploy.json's), with the
threshold to apply resolved in one place (`deploy_choice.resolve_threshold`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from unetjax.inference.tiling import TileOptions


class Model(Protocol):
    """A loaded model that predicts images of any size (see the module docstring)."""

    @property
    def spatial_dims(self) -> int: ...

    @property
    def in_channels(self) -> int: ...

    @property
    def output_activation(self) -> str: ...

    @property
    def color_mode(self) -> str:
        """How images are read for it (`data.color_mode`)."""

    @property
    def class_names(self) -> Sequence[str] | None: ...

    @property
    def default_tile(self) -> Sequence[int] | None:
        """The tile size unless told (None: whole images)."""

    @property
    def training_resize(self) -> dict | None:
        """The training's `data.resize`: images are resized alike, masks go back to their size."""

    @property
    def takes_volumes(self) -> bool:
        """Whether it predicts NIfTI volumes with their geometry (`inference.volumes`)."""

    def describe(self) -> str:
        """One line: what it is, where from, its depth and parameters."""

    def check_image(self, image: np.ndarray, name: str = "image") -> None:
        """A ValueError naming `name` when the image does not fit."""

    def check_tile(self, tile: TileOptions | None) -> None:
        """A ValueError when the model cannot predict with this tile."""

    def predict(
        self,
        image: np.ndarray,
        *,
        tile: TileOptions | None = None,
        tta: bool = False,
        bucket: bool = False,
    ) -> np.ndarray:
        """Probabilities (*spatial, K) of a unit-scale image (*spatial, C), normalised inside."""

    def postprocess(
        self, probabilities: np.ndarray, *, threshold: float, min_size: int = 0
    ) -> np.ndarray:
        """Labels from probabilities."""


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model, the threshold to apply, and what was chosen and why (for the command to say)."""

    model: Model
    threshold: float
    notes: tuple[str, ...] = ()


def load_model(
    path: str | os.PathLike,
    *,
    depth: int | None = None,
    mode: str | None = None,
    step: int | None = None,
    dtype: str | None = None,
    threshold: float | None = None,
) -> LoadedModel:
    """An artifact by its file name, else a run or export at the requested (or deploy.json's)
    setting; with the threshold to apply (`threshold` overrides the model's own)."""
    from unetjax.inference.deploy import artifact_format, artifact_runner, deploy_choice

    path = os.fspath(path)
    if artifact_format.artifact_format(path):
        given = {"--depth": depth, "--mode": mode, "--step": step, "--dtype": dtype}
        named = [name for name, value in given.items() if value is not None]
        if named:
            raise ValueError(
                f"{' '.join(named)} apply to run directories; an artifact is fixed at export"
            )
        try:
            runner = artifact_runner.load_artifact(path)
        except ImportError as error:  # onnxruntime (the optional deploy extra) is missing
            raise ValueError(str(error)) from None
        return LoadedModel(runner, runner.threshold if threshold is None else threshold)
    from unetjax.inference.predictor import load_predictor

    setting = deploy_choice.resolve(path, depth, mode)
    predictor = load_predictor(path, depth=setting.depth, mode=setting.mode, step=step, dtype=dtype)
    value, source = deploy_choice.resolve_threshold(path, predictor, setting, given=threshold)
    notes = [f"L{predictor.depth} {predictor.mode}: {setting.reason}"]
    if predictor.output_activation == "sigmoid":
        notes.append(f"threshold {value} ({source})")
    return LoadedModel(predictor, value, tuple(notes))
