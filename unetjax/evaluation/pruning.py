"""The paper's pruning table: a run (or an export) scored at every depth L and mode.

`pruning_table(model_dir, split=...)` loads a pruned predictor per (depth, mode), scores the
split with the same evaluator as training's validation (`evaluator.make`), times one image, and,
with `sweep`, picks the best sigmoid threshold on the validation split. It returns the report
that `reports.write` turns into files; `cli/evaluate.py` parses arguments and writes it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np

from unetjax import data, inference, rundir
from unetjax.evaluation import case_pictures, evaluator
from unetjax.inference.deploy import deploy_choice
from unetjax.inference.tiling import TileOptions

SWEEP = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))


def _predict_fn(predictor: inference.Predictor, tile) -> Callable[[np.ndarray], np.ndarray]:
    """(B, *spatial, C) -> probabilities, for any spatial size, as the evaluator predicts it."""

    def predict(images: np.ndarray) -> np.ndarray:
        aligned = all(s % a == 0 for s, a in zip(images.shape[1:-1], predictor.align, strict=True))
        if tile is None and aligned and len(images) > 1:
            return predictor.predict_batch(images)
        return np.stack(
            [predictor.predict(image, tile=tile, bucket=True, normalized=True) for image in images]
        )

    return predict


def latency_ms(predict, image: np.ndarray, repeats: int) -> float:
    """Median wall time of one image's prediction (compiled first; results fetched to host)."""
    predict(image)
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        np.asarray(predict(image))
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def scored_text(data_config: ml_collections.ConfigDict, tile: int | Sequence[int] | None) -> str:
    """What each case's metrics were computed on, for every table and figure."""
    if data_config.get("eval_patch_size"):
        return f"centre crops of {tuple(data_config.eval_patch_size)}"
    if not tile:
        return "full images"
    size = str(tile) if isinstance(tile, int) else "x".join(map(str, tile))
    return f"full images, overlap-tiled with {size} tiles"


def pruning_table(
    model_dir: str,
    *,
    split: str = "validation",
    depths: Sequence[int] | None = None,
    modes: Sequence[str] = ("fast", "accurate"),
    step: int | None = None,
    threshold: float | None = None,
    sweep: bool = False,
    batch_size: int = 4,
    tile: int | Sequence[int] = 0,
    dtype: str | None = None,
    repeats: int = 10,
    image_size: Sequence[int] | None = None,
    data_config: ml_collections.ConfigDict | None = None,
    nsd_tolerance: float = 1.0,
    report_cases: int = 8,
    progress: bool = False,
) -> dict:
    """The report of `model_dir` on `split` (see `reports.write`): a row per (depth, mode) with
    its scores, parameters and latency, the per-case rows, and what could not be served.

    threshold: default the run's train.eval_threshold (0.5). tile: 0 scores whole images, except
    where the split's images vary in size: there they are predicted as `predict` predicts them
    (the run's `inference.default_tile`, the training patch size).
    data_config: the run's `config.data` with any paths moved since training.
    report_cases: pictures of the worst cases kept per setting for report.html (0: none).
    progress: progress bars on a terminal (preparing the data, each setting's pass).
    """
    config = rundir.load_config(model_dir)
    data_config = data_config or config.data
    output_activation = config.model.output_activation
    sigmoid = output_activation == "sigmoid"
    if threshold is None:
        threshold = float(config.get("train", {}).get("eval_threshold", 0.5))
    settings = inference.available_settings(config)
    depths = sorted({d for d, _ in settings}) if not depths else list(depths)
    wanted = [(d, m) for d in depths for m in modes if (d, m) in settings]
    skipped = [(d, m) for d in depths for m in modes if (d, m) not in settings]
    if not wanted:
        raise ValueError(f"nothing to evaluate: {model_dir} serves {settings}")

    dataset = data.prepare(data_config, progress=progress)
    thresholds = [threshold] + ([t for t in SWEEP if t != threshold] if sweep and sigmoid else [])
    if not tile and (
        dataset.scored_at_full_size(split) or (sweep and dataset.scored_at_full_size("validation"))
    ):
        # Fixed-shape tiles compile once for all sizes; an imported model's may be None (whole).
        tile = tuple(inference.default_tile(config) or ()) or 0
    tile_options = TileOptions(tile, batch_size=batch_size) if tile else None
    options = {"batch_size": batch_size, "tile": tile_options, "thresholds": thresholds}
    rows, case_rows, loaded, timing_image = [], [], set(), None
    pictures = case_pictures.Collector(report_cases)
    for depth, mode in wanted:
        predictor = inference.load_predictor(
            model_dir, depth=depth, mode=mode, step=step, dtype=dtype
        )
        dtype_name = predictor.spec.dtype.__name__ if predictor.spec.dtype else "float32"
        loaded.add((predictor.step, dtype_name))
        network = evaluator.predictor_network(predictor)
        scores = evaluator.make(
            network,
            dataset,
            split,
            per_case=True,
            nsd_tolerance=nsd_tolerance,
            pictures=pictures,
            progress=f"L{depth} {mode}" if progress else None,
            **options,
        ).run(predictor.state)
        case_rows += scores.rows
        if timing_image is None:
            timing_image = deploy_choice.timing_image(image_size, scores.first_image)
        predict = _predict_fn(predictor, tile_options)
        row = {
            "depth": depth,
            "mode": mode,
            "params": predictor.num_params,
            "num_images": int(scores.counts.shape[0]),
            "threshold": threshold,
            **scores.summary(),
            "latency_ms": latency_ms(predict, timing_image, repeats),
        }
        if len(thresholds) > 1:
            validation = scores
            if split != "validation":
                validation = evaluator.make(
                    network,
                    dataset,
                    "validation",
                    progress=f"L{depth} {mode} sweep" if progress else None,
                    **options,
                ).run(predictor.state)
            sweep_iou = [validation.summary(threshold=i)["iou"] for i in range(len(thresholds))]
            best = int(np.argmax(sweep_iou))
            row["sweep"] = {
                "best_threshold": thresholds[best],
                "validation_iou": sweep_iou[best],
                "validation_iou_by_threshold": dict(
                    zip(map(str, thresholds), sweep_iou, strict=True)
                ),
                "split_scores": scores.summary(threshold=best),
            }
        rows.append(row)
    ((model_step, dtype_name),) = loaded  # every predictor reads one checkpoint, one dtype
    return {
        "model": os.path.abspath(model_dir),
        "step": model_step,
        "split": split,
        "architecture": config.model.architecture,
        "output_activation": output_activation,
        "threshold": threshold,
        "dtype": dtype_name,
        "device": f"{jax.devices()[0].device_kind} x{jax.device_count()}",
        "tile": tile or None,
        "scored": scored_text(data_config, tile),
        "latency": f"batch 1, median of {repeats} calls after compilation, host transfer included",
        "latency_image_size": list(timing_image.shape[1:-1]),
        "results": rows,
        "case_rows": case_rows,
        "case_pictures": pictures,
        "skipped": skipped,
    }
