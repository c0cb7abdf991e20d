"""The training loop: data-parallel jit steps, evaluation per head, checkpoints with exact resume.

`train_and_evaluate(config, workdir)` is all train.py calls. It sets up once (`_setup`: data,
model, compiled step, the validation evaluator, the restored checkpoint), then each step of the
loop trains and runs the periodic actions, as flax's imagenet loop does: log, validate (with
overlays), save, stop early. Rerunning it on the same workdir continues from the latest
checkpoint, with the data iterator and the early-stopping counters where they were, and ends
with the same parameters, at the same step, as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import ml_collections
from jax.experimental import multihost_utils

from unetjax import (
    backend,
    checkpoint,
    data,
    inference,
    models,
    optim,
    parallel,
    rundir,
    steps,
    stopping,
)
from unetjax.data.volumes import preprocessing as volume_preprocessing
from unetjax.evaluation import evaluator, names
from unetjax.inference.tiling import TileOptions
from unetjax.logs import MetricWriter, ProgressReporter, save_overlays

logger = logging.getLogger(__name__)


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


def prepare_data(data_config: ml_collections.ConfigDict, *, progress: bool = True) -> data.Dataset:
    """Process 0 builds the dataset while the others wait, then they open what it wrote."""
    if jax.process_index() == 0:
        dataset = data.prepare(data_config, progress=progress)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("unetjax: dataset prepared")
    if jax.process_index() != 0:
        dataset = data.prepare(data_config, progress=False)
    return dataset


def _state_dict(state: steps.TrainState) -> dict[str, Any]:
    return {
        "step": state.step,
        "params": state.params,
        "model_state": state.model_state,
        "opt_state": state.opt_state,
    }


@dataclasses.dataclass
class _Run:
    """What the loop needs, set up once: data, the compiled step, the evaluator, checkpoints."""

    config: ml_collections.ConfigDict
    workdir: str
    dataset: data.Dataset
    mesh: jax.sharding.Mesh
    head_depths: tuple[int, ...]
    state: steps.TrainState
    train_step: Any  # jit: (state, batch) -> (state, step metrics)
    validation: evaluator.Evaluator
    train_iter: Any  # the data pipeline's iterator, with get_state / set_state
    manager: checkpoint.CheckpointManager
    early_stopping: stopping.EarlyStopping
    resumed_from: int | None


def _setup(config: ml_collections.ConfigDict, workdir: str) -> _Run:
    """Checks the run directory, prepares the data, builds the model, compiles the step and
    restores the latest checkpoint (parameters, iterator, early-stopping counters)."""
    config = rundir.absolute_paths(config)
    if config.get("plan") is not None and config.plan.enabled:  # configs/auto.py
        from unetjax.planning import plans_file

        config = plans_file.planned_config(config, workdir)
    rundir.check_resume(workdir, config)  # the user's keys, before any data is prepared
    models.check_weights(config.model)  # a missing weights file, before the data too
    train_config = config.train
    dataset = prepare_data(config.data, progress=train_config.progress_bar)
    info = dataset.info
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
    head_depths, align = model.head_depths, model.spec.divisor(model.graph.depth)
    names.check_best_metric(train_config.best_metric, head_depths)
    optimizer, schedule = optim.make_optimizer(config.optimizer, train_config.num_steps)
    graphdef, state = steps.create_train_state(model, optimizer)
    del model
    replicated = parallel.replicated(mesh)
    state = jax.device_put(state, replicated)
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
    validation = validation_evaluator(config, dataset, graphdef, head_depths, align)

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
    early_stopping = stopping.EarlyStopping(train_config)
    resumed_from = manager.latest_step()
    if resumed_from is not None:
        restored, data_state = manager.restore(_state_dict(state))
        state = steps.TrainState(**restored)
        early_stopping.restore(data_state.pop(stopping.EarlyStopping.CHECKPOINT_KEY, None))
        train_iter.set_state(data_state)
        logger.info(
            "resuming from the checkpoint of step %d in %s", resumed_from, manager.directory
        )
    return _Run(
        config,
        workdir,
        dataset,
        mesh,
        head_depths,
        state,
        train_step,
        validation,
        train_iter,
        manager,
        early_stopping,
        resumed_from,
    )


def validation_evaluator(
    config: ml_collections.ConfigDict,
    dataset: data.Dataset,
    graphdef,
    head_depths: tuple[int, ...],
    align: tuple[int, ...],
    **options,
) -> evaluator.Evaluator:
    """Every head and accurate mode on the validation split, as `evaluate` scores them.
    `options` go to `evaluator.Evaluator` (e.g. per_case=True)."""
    network = evaluator.Network(
        steps.eval_forward(graphdef),
        evaluator.training_settings(head_depths),
        dataset.info.output_activation,
        align,
        num_losses=len(head_depths),
    )
    tile = None
    if dataset.scored_at_full_size("validation"):
        tile = TileOptions(tuple(inference.default_tile(config)))  # as `predict` tiles them
        logger.info(
            "validation images are each scored at full size as predict predicts them, "
            "overlap-tiled with %s tiles",
            "x".join(map(str, tile.tile)),
        )
    return evaluator.make(
        network,
        dataset,
        "validation",
        batch_size=config.train.eval_batch_size,
        tile=tile,
        thresholds=(config.train.eval_threshold,),
        **{"num_shown": config.train.num_overlays if jax.process_index() == 0 else 0, **options},
    )


def _validate(
    run: _Run, step: int, writer: MetricWriter, progress: ProgressReporter
) -> dict[str, float]:
    """Scores the validation split, logs it and writes the overlays; returns the metrics."""
    scores = run.validation.run(run.state)
    metrics = scores.head_metrics(run.head_depths)
    writer.write(step, metrics, prefix="val")
    if scores.shown is not None:
        save_overlays(
            run.workdir,
            step,
            scores.shown,
            scores.shown["probabilities"][..., -1, :],  # accurate mode, the last setting
            output_activation=run.dataset.info.output_activation,
        )
    progress.note(
        f"step {step}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("iou"))
    )
    return metrics


def _save(run: _Run, step: int, scores: dict[str, float] | None) -> None:
    data_state = {
        **run.train_iter.get_state(),
        stopping.EarlyStopping.CHECKPOINT_KEY: run.early_stopping.state(),
    }
    run.manager.save(step, _state_dict(run.state), data_state, scores)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, wait_for_lock: bool = False
) -> TrainResult:
    """Trains `config` in `workdir`, resuming from its latest checkpoint if there is one; holds
    the directory's lock (`rundir.run_lock`): another training there is refused or waited for."""
    rundir.check_workdir(workdir)
    train_config = config.train
    if train_config.distributed:
        parallel.initialize_distributed(
            train_config.coordinator_address, train_config.num_processes, train_config.process_id
        )
    if jax.process_index() != 0:  # the other processes of one training share its lock
        return _train(config, workdir)
    with rundir.run_lock(workdir, wait=wait_for_lock):
        return _train(config, workdir)


def _train(config: ml_collections.ConfigDict, workdir: str) -> TrainResult:
    run = _setup(config, workdir)
    config, train_config, manager = run.config, run.config.train, run.manager
    start = int(run.state.step)
    result = TrainResult(start, {}, run.head_depths, resumed_from=run.resumed_from)
    if run.resumed_from is not None and (
        run.resumed_from >= train_config.num_steps or run.early_stopping.exhausted
    ):
        manager.close()
        final = rundir.last_record(workdir, split="val") or {}
        result.eval_metrics = {k: v for k, v in final.items() if k not in ("step", "split")}
        result.complete, result.stopped_early = True, run.early_stopping.exhausted
        return result
    if jax.process_index() == 0:
        rundir.save_config(workdir, config)
        rundir.save_json(workdir, rundir.DATASET_SUMMARY_FILE, run.dataset.summary)
        if run.dataset.split_stems is not None:
            rundir.save_json(workdir, rundir.SPLITS_FILE, run.dataset.split_stems)
        volume_preprocessing.save_for_run(workdir, run.dataset)  # spacing, intensity (volumes)

    writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
    progress = ProgressReporter(
        start,
        train_config.num_steps,
        train_config.batch_size,
        run.head_depths,
        bar=train_config.progress_bar,
    )
    every = lambda step, period: step % period == 0 or step == train_config.num_steps  # noqa: E731
    stop = stopping.StopSignal()
    try:
        with stop.installed():
            step, previous = start, None
            for step in range(start + 1, train_config.num_steps + 1):
                batch = parallel.shard_batch(next(run.train_iter), run.mesh)
                run.state, step_metrics = run.train_step(run.state, batch)
                if previous is not None:  # the step before, read while this one computes
                    stopping.check_finite(*previous, manager.latest_step())
                previous = (step, step_metrics)
                progress.update(step)
                budget = train_config.stop_after_steps
                if budget and step - start >= budget and step != train_config.num_steps:
                    stop.received = stop.received or f"the step budget of {budget}"
                # One reading per step: a signal that lands after it stops the next step, so
                # the decision to save and the decision to stop always agree.
                stop_reason = stop.received
                log_now = every(step, train_config.log_every)
                eval_now = every(step, train_config.eval_every)
                save_now = every(step, train_config.checkpoint_every) or eval_now or stop_reason
                if log_now or save_now:
                    stopping.check_finite(step, step_metrics, manager.latest_step())
                if log_now:
                    writer.write(step, progress.log_values(step, step_metrics), prefix="train")
                scores = None
                if eval_now:
                    scores = _validate(run, step, writer, progress)
                    result.eval_metrics = scores
                    run.early_stopping.update(scores)
                if save_now:
                    _save(run, step, dict(scores) if scores is not None else None)
                if scores is not None and run.early_stopping.exhausted:
                    progress.note(
                        f"early stopping at step {step}: no better {train_config.best_metric} "
                        f"in {train_config.early_stopping_patience} evaluations"
                    )
                    result.stopped_early = True
                    break
                if stop_reason:
                    progress.note(
                        f"stopped by {stop_reason} at step {step}: checkpoint saved; "
                        "rerun the same command to resume"
                    )
                    result.interrupted, result.stop_signal = True, stop.signum
                    break
            result.step = step
    finally:
        progress.close()
        manager.wait_until_finished()
        manager.close()
        writer.close()
    return result
