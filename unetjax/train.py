"""The training loop: data-parallel jit steps, evaluation per head, checkpoints with exact resume.

`train_and_evaluate(config, workdir)` is all train.py calls. Rerunning it on the same workdir
continues from the latest checkpoint, with the data iterator where it was, and ends with the
same parameters as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
from collections.abc import Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from unetjax import (
    backend,
    checkpoint,
    data,
    models,
    optim,
    parallel,
    rundir,
    steps,
)
from unetjax.data import volume_preprocessing
from unetjax.evaluation import full_size, heads, names
from unetjax.logs import MetricWriter, ProgressReporter, save_overlays

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last checkpoint holds the last good state."""


@dataclasses.dataclass
class TrainResult:
    """What a call of `train_and_evaluate` ended with."""

    step: int
    eval_metrics: dict[str, float]
    head_depths: tuple[int, ...]
    resumed_from: int | None = None
    interrupted: bool = False
    stop_signal: int | None = None  # SIGINT / SIGTERM number when a signal stopped the run
    stopped_early: bool = False
    complete: bool = False  # the run had already reached train.num_steps; nothing was trained


def resolve_config(
    config: ml_collections.ConfigDict, info: data.DatasetInfo
) -> ml_collections.ConfigDict:
    """Fills the model fields that come from the dataset, checking any the user set."""
    config = ml_collections.ConfigDict(config.to_dict())
    derived = {
        "in_channels": info.in_channels,
        "num_classes": info.num_classes,
        "output_activation": info.output_activation,
        "spatial_dims": info.spatial_dims,
    }
    for key, value in derived.items():
        given = config.model.get(key)
        if given is not None and given != value:
            raise ValueError(
                f"config.model.{key}={given!r} but the dataset {config.data.name!r} has "
                f"{value!r}; set --config.model.{key}={value} or leave it unset"
            )
        config.model[key] = value
    return config


def prepare_data(data_config: ml_collections.ConfigDict) -> data.Dataset:
    """Process 0 builds the dataset while the others wait, then they open what it wrote."""
    if jax.process_index() == 0:
        dataset = data.prepare(data_config)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("unetjax: dataset prepared")
    if jax.process_index() != 0:
        dataset = data.prepare(data_config)
    return dataset


def _state_dict(state: steps.TrainState) -> dict[str, Any]:
    return {
        "step": state.step,
        "params": state.params,
        "model_state": state.model_state,
        "opt_state": state.opt_state,
    }


class _StopSignal:
    """Turns SIGINT / SIGTERM into a flag the loop checks between steps."""

    def __init__(self):
        self.received: str | None = None
        self.signum: int | None = None

    def __call__(self, signum, frame):
        self.received, self.signum = signal.Signals(signum).name, signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopSignal]:
        previous = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def full_size_validation(dataset: data.Dataset) -> bool:
    """Whether validation images differ in size and are scored whole (no eval_patch_size)."""
    return (
        dataset.config.eval_patch_size is None
        and dataset.info.uniform_size.get("validation") is False
    )


def evaluate(
    eval_step,
    state: steps.TrainState,
    dataset: data.Dataset,
    config: ml_collections.ConfigDict,
    mesh: jax.sharding.Mesh,
    head_depths: tuple[int, ...],
    split: str,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Validation loss, IoU, Dice and accuracy per head and in accurate mode over `split`."""
    if full_size_validation(dataset):
        return eval_step(state)
    local_batch = config.train.eval_batch_size // jax.process_count()
    losses, head_counts, accurate_counts, first_batch = [], [], [], None
    for batch in data.eval_batches(
        dataset,
        split,
        batch_size=local_batch,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    ):
        valid = batch.pop("valid")
        if first_batch is None:
            first_batch = {key: value[valid] for key, value in batch.items()}
        inputs = {key: batch[key] for key in steps.BATCH_KEYS if key in batch}
        outputs = eval_step(state, parallel.shard_batch(inputs, mesh))
        outputs = multihost_utils.process_allgather(outputs, tiled=True)
        valid = multihost_utils.process_allgather(valid, tiled=True)
        losses.append(np.asarray(outputs["loss_per_head"])[valid])
        head_counts.append(np.asarray(outputs["counts_per_head"])[:, valid])
        accurate_counts.append(np.asarray(outputs["accurate_counts"])[valid])
    if not losses:
        raise ValueError(f"the {split!r} split of {config.data.name!r} is empty")
    results = heads.summarize_heads(
        np.concatenate(losses),
        np.concatenate(head_counts, axis=1),
        np.concatenate(accurate_counts),
        head_depths,
        output_activation=config.model.output_activation,
    )
    return results, first_batch


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    """Trains `config` in `workdir`, resuming from its latest checkpoint if there is one."""
    rundir.check_workdir(workdir)
    config = rundir.absolute_paths(config)
    rundir.check_resume(workdir, config)  # the user's keys, before any data is prepared
    models.check_weights(config.model)  # a missing weights file, before the data too
    train_config = config.train
    if train_config.distributed:
        parallel.initialize_distributed(
            train_config.coordinator_address, train_config.num_processes, train_config.process_id
        )
    dataset = prepare_data(config.data)
    info = dataset.info
    logger.info("%s", dataset.summary_text())
    config = resolve_config(config, info)
    # Predict, evaluate and export apply the same normalisation, with these statistics.
    config.normalization = dict(dataset.normalization)
    rundir.check_resume(workdir, config)  # the data-derived fields too
    mesh = parallel.make_mesh()
    local_batch = parallel.check_batch_size(train_config.batch_size, mesh)
    parallel.check_batch_size(train_config.eval_batch_size, mesh, name="train.eval_batch_size")
    logger.info(
        "%d devices (%s), global batch %d",
        mesh.devices.size,
        jax.devices()[0].platform,
        train_config.batch_size,
    )

    model = models.from_config(config.model, seed=config.seed, pretrained=True)
    head_depths, graph_depth = model.head_depths, model.graph.depth
    names.check_best_metric(train_config.best_metric, head_depths)
    optimizer, schedule = optim.make_optimizer(config.optimizer, train_config.num_steps)
    graphdef, state = steps.create_train_state(model, optimizer)
    del model
    replicated = parallel.replicated(mesh)
    state = jax.device_put(state, replicated)

    train_iter = data.train_iterator(
        dataset,
        batch_size=local_batch,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    manager = checkpoint.CheckpointManager(
        rundir.checkpoint_dir(workdir),
        keep_latest=train_config.keep_latest,
        best_metric=train_config.best_metric or None,
        best_mode=train_config.best_mode,
    )
    resumed_from = manager.latest_step()
    if resumed_from is not None:
        restored, data_state = manager.restore(_state_dict(state))
        state = steps.TrainState(**restored)
        train_iter.set_state(data_state)
        logger.info(
            "resuming from the checkpoint of step %d in %s", resumed_from, manager.directory
        )
        if resumed_from >= train_config.num_steps:
            manager.close()
            final = rundir.last_record(workdir, split="val") or {}
            return TrainResult(
                resumed_from,
                {k: v for k, v in final.items() if k not in ("step", "split")},
                head_depths,
                resumed_from=resumed_from,
                complete=True,
            )
    if jax.process_index() == 0:
        rundir.save_config(workdir, config)
        rundir.save_json(workdir, rundir.DATASET_SUMMARY_FILE, dataset.summary)
        if dataset.split_stems is not None:
            rundir.save_json(workdir, rundir.SPLITS_FILE, dataset.split_stems)
        volume_preprocessing.save_for_run(workdir, dataset)  # spacing, intensity (volumes)

    train_step = backend.jit(
        steps.make_train_step(
            graphdef,
            optimizer,
            output_activation=info.output_activation,
            head_weights=train_config.head_weights,
            schedule=schedule,
            ignore_index=info.ignore_index,
        ),
        in_shardings=(replicated, parallel.batch_sharding(mesh)),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )
    eval_step = backend.jit(
        steps.make_eval_step(
            graphdef,
            output_activation=info.output_activation,
            threshold=train_config.eval_threshold,
            ignore_index=info.ignore_index,
        )
    )
    if full_size_validation(dataset):
        all_heads = full_size.all_heads_function(graphdef, info.output_activation)
        logger.info(
            "validation images vary in size: each is scored at full size, overlap-tiled with "
            "%d-pixel tiles",
            max(config.data.patch_size),
        )

        def eval_step(state):  # the full-size pass: a whole validation pass per call
            return full_size.validate(
                all_heads,
                state.params,
                state.model_state,
                dataset,
                "validation",
                head_depths,
                output_activation=info.output_activation,
                threshold=train_config.eval_threshold,
                tile=max(config.data.patch_size),
                align=2**graph_depth,
            )

    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    start = int(state.step)
    progress = ProgressReporter(
        start,
        train_config.num_steps,
        train_config.batch_size,
        head_depths,
        bar=train_config.progress_bar,
    )
    eval_metrics: dict[str, float] = {}
    best, evals_since_best = None, 0
    result = TrainResult(start, eval_metrics, head_depths, resumed_from=resumed_from)

    def check_finite(step: int, step_metrics: dict[str, jax.Array]) -> None:
        if not bool(step_metrics["finite"]):
            raise NonFiniteLossError(
                f"non-finite loss ({float(step_metrics['loss'])}) at step {step}; training "
                f"stopped and the last good checkpoint (step {manager.latest_step()}) is kept"
            )

    stop = _StopSignal()
    try:
        with stop.installed():
            step, previous = start, None
            for step in range(start + 1, train_config.num_steps + 1):
                batch = parallel.shard_batch(next(train_iter), mesh)
                state, step_metrics = train_step(state, batch)
                if previous is not None:  # the step before, read while this one computes
                    check_finite(*previous)
                previous = (step, step_metrics)
                progress.update(step)
                is_last = step == train_config.num_steps
                budget = train_config.stop_after_steps
                if budget and step - start >= budget and not is_last:
                    stop.received = stop.received or f"the step budget of {budget}"
                # One reading per step: a signal that lands after it stops the next step, so
                # the decision to save and the decision to stop always agree.
                stopping = stop.received
                log_now = step % train_config.log_every == 0 or is_last
                eval_now = step % train_config.eval_every == 0 or is_last
                save_now = step % train_config.checkpoint_every == 0 or eval_now or stopping
                if log_now or save_now:
                    check_finite(step, step_metrics)
                if log_now:
                    writer.write(step, progress.log_values(step, step_metrics), prefix="train")
                scores = None
                if eval_now:
                    eval_metrics, shown = evaluate(
                        eval_step, state, dataset, config, mesh, head_depths, "validation"
                    )
                    writer.write(step, eval_metrics, prefix="val")
                    if train_config.num_overlays and jax.process_index() == 0:
                        images = shown["image"][: train_config.num_overlays]
                        model = steps.merge_model(graphdef, state)
                        save_overlays(
                            workdir,
                            step,
                            shown,
                            np.asarray(model.predict(images, mode="accurate")),
                            output_activation=info.output_activation,
                        )
                    progress.note(
                        f"step {step}: "
                        + ", ".join(
                            f"{k} {v:.4f}" for k, v in eval_metrics.items() if k.startswith("iou")
                        )
                    )
                    scores = dict(eval_metrics)
                if save_now:
                    manager.save(step, _state_dict(state), train_iter.get_state(), scores)
                if scores is not None and train_config.best_metric:
                    value = scores[train_config.best_metric]
                    better = best is None or (
                        value > best if train_config.best_mode == "max" else value < best
                    )
                    best, evals_since_best = (value, 0) if better else (best, evals_since_best + 1)
                    patience = train_config.early_stopping_patience
                    if patience and evals_since_best >= patience:
                        progress.note(
                            f"early stopping at step {step}: no better "
                            f"{train_config.best_metric} in {patience} evaluations"
                        )
                        result.stopped_early = True
                        break
                if stopping:
                    progress.note(
                        f"stopped by {stopping} at step {step}: checkpoint saved; "
                        "rerun the same command to resume"
                    )
                    result.interrupted, result.stop_signal = True, stop.signum
                    break
            result.step = step
            result.eval_metrics = eval_metrics
    finally:
        progress.close()
        manager.wait_until_finished()
        manager.close()
        writer.close()
    return result
