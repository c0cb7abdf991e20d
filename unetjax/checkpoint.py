"""Orbax checkpoints of a training run: the only module that speaks Orbax.

A run's `checkpoints/` directory holds one step directory per checkpoint with two items:
`state` (a pytree: step, params, model_state, opt_state) and `data` (the input iterator's state,
JSON). Orbax writes each step to a temporary directory and renames it when complete, so a crash
never leaves a half-written checkpoint that looks finished.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

logger = logging.getLogger(__name__)

STATE = "state"
DATA = "data"


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree: Any) -> Any:
    """Typed PRNG keys (dropout streams) are stored as their raw key data."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract_saveable(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.eval_shape(jax.random.key_data, x) if _is_key(x) else x, tree)


def _from_saveable(restored: Any, target: Any) -> Any:
    return jax.tree.map(
        lambda value, like: (
            jax.random.wrap_key_data(value, impl=jax.random.key_impl(like))
            if _is_key(like)
            else value
        ),
        restored,
        target,
    )


def _abstract(tree: Any) -> Any:
    """Shape, dtype and sharding of every leaf, so Orbax restores arrays where they belong."""

    def leaf(x):
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)

    return jax.tree.map(leaf, _abstract_saveable(tree))


class CheckpointManager:
    """Latest-N and best-by-metric checkpoints of one run, saved asynchronously."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_latest: int = 2,
        best_metric: str | None = None,
        best_mode: str = "max",
        keep_best: int = 1,
    ):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        policies = [checkpoint_managers.LatestN(n=keep_latest)]
        if best_metric:
            policies.append(
                checkpoint_managers.BestN(
                    get_metric_fn=lambda metrics: metrics[best_metric],
                    reverse=best_mode == "min",
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        self.best_metric, self.best_mode = best_metric, best_mode
        options = ocp.CheckpointManagerOptions(
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            create=True,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            os.path.abspath(directory), item_names=(STATE, DATA), options=options
        )

    @property
    def directory(self) -> str:
        return str(self._manager.directory)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(
        self,
        step: int,
        state: Any,
        data_state: dict | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Starts an asynchronous save of `state` (any pytree) and the iterator state."""
        args = ocp.args.Composite(
            **{
                STATE: ocp.args.StandardSave(_to_saveable(state)),
                DATA: ocp.args.JsonSave(data_state or {}),
            }
        )
        self._manager.save(step, args=args, metrics=metrics, force=True)
        logger.info("checkpoint for step %d started in %s", step, self.directory)

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores the whole state into the structure, shardings and dtypes of `target`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                **{
                    STATE: ocp.args.StandardRestore(_abstract(target)),
                    DATA: ocp.args.JsonRestore(),
                }
            ),
        )
        return _from_saveable(restored[STATE], target), dict(restored[DATA] or {})

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """The finished checkpoint steps under `directory` (no temporary directories)."""
    with ocp.CheckpointManager(os.path.abspath(directory)) as manager:
        return list(manager.all_steps())


def resolve_step(directory: str | os.PathLike, step: int | None) -> int:
    """`step` if `directory` holds a checkpoint of it; the latest step when `step` is None."""
    steps = checkpoint_steps(directory) if os.path.isdir(directory) else []
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    if step is None:
        return max(steps)
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint for step {step} in {directory}; it has {steps}")
    return step


def restore_subtree(directory: str | os.PathLike, target: Any, step: int) -> Any:
    """Reads only the leaves of `target` from the `state` item of checkpoint `step`.

    `target` is a subtree of the saved state (e.g. only a pruned model's parameters): Orbax's
    partial restore reads those arrays and nothing else.
    """
    path = os.path.join(os.path.abspath(directory), str(step), STATE)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint state at {path}")
    with ocp.PyTreeCheckpointer() as checkpointer:
        abstract = _abstract(target)
        restored = checkpointer.restore(
            path,
            args=ocp.args.PyTreeRestore(
                item=abstract,
                restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                partial_restore=True,
            ),
        )
    return _from_saveable(restored, target)
