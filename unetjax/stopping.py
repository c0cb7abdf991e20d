"""When training stops: a signal, a non-finite loss, or no better validation score in a while.

Each is checked between steps, so a stop always leaves a checkpoint that resumes exactly.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import jax
import ml_collections


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last checkpoint holds the last good state."""


def check_finite(step: int, step_metrics: dict[str, jax.Array], last_saved: int | None) -> None:
    """Raises NonFiniteLossError when the step's loss was NaN or infinite."""
    if not bool(step_metrics["finite"]):
        kept = (
            f"the last good checkpoint (step {last_saved}) is kept"
            if last_saved is not None
            else "no checkpoint had been saved yet, so a rerun starts from step 0"
        )
        raise NonFiniteLossError(
            f"non-finite loss ({float(step_metrics['loss'])}) at step {step}; training "
            f"stopped and {kept}"
        )


class StopSignal:
    """Turns SIGINT / SIGTERM into a flag the loop checks between steps."""

    def __init__(self):
        self.received: str | None = None
        self.signum: int | None = None

    def __call__(self, signum, frame):
        self.received, self.signum = signal.Signals(signum).name, signum

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignal]:
        previous = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


class EarlyStopping:
    """Evaluations since the best `train.best_metric`; saved in every checkpoint, so a resumed
    run stops where an uninterrupted one would."""

    CHECKPOINT_KEY = "early_stopping"  # beside the data iterator's state

    def __init__(self, train_config: ml_collections.ConfigDict):
        self.metric, self.mode = train_config.best_metric, train_config.best_mode
        self.patience = train_config.early_stopping_patience
        self.best: float | None = None
        self.evals_since_best = 0

    def update(self, scores: dict[str, float]) -> None:
        if not self.metric:
            return
        value = scores[self.metric]
        best = self.best
        if best is None or (value > best if self.mode == "max" else value < best):
            self.best, self.evals_since_best = value, 0
        else:
            self.evals_since_best += 1

    @property
    def exhausted(self) -> bool:
        return bool(self.metric and self.patience and self.evals_since_best >= self.patience)

    def state(self) -> dict:
        return {"best": self.best, "evals_since_best": self.evals_since_best}

    def restore(self, state: dict | None) -> None:
        state = state or {}  # a checkpoint written before these were saved: start afresh
        self.best, self.evals_since_best = state.get("best"), state.get("evals_since_best", 0)
