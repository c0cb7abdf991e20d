"""Pure train and eval steps over a split NNX model, for `jax.jit` with explicit shardings.

The model is split once into a static `graphdef` and pytrees of state (flax's performance guide:
`nnx.split` / `nnx.merge` around a plain `jax.jit`), so a step is a pure function of pytrees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from unetjax import losses
from unetjax.nested_unet import NestedUNet, accurate_mean

Batch = dict[str, jax.Array]
# What the steps read from a batch; other keys (case ids, spacing, instances) stay on the host.
BATCH_KEYS = ("image", "mask", "weight")


@flax.struct.dataclass
class TrainState:
    """Everything a step changes: parameters, other model state (batch statistics, dropout RNG
    counters), optimizer state and the step count."""

    step: jax.Array
    params: nnx.State
    model_state: nnx.State
    opt_state: optax.OptState


def create_train_state(
    model: NestedUNet, optimizer: optax.GradientTransformation
) -> tuple[nnx.GraphDef, TrainState]:
    graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        model_state=model_state,
        opt_state=optimizer.init(params),
    )
    return graphdef, state


def merge_model(graphdef: nnx.GraphDef, state: TrainState) -> NestedUNet:
    return nnx.merge(graphdef, state.params, state.model_state)


def make_train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    *,
    output_activation: str = "sigmoid",
    head_weights: Sequence[float] | None = None,
    schedule: optax.Schedule | None = None,
    ignore_index: int | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """One step of summed deep-supervision loss, gradient and optimizer update.

    A non-finite loss leaves the state unchanged and reports `finite = False`, so the caller can
    stop with the last good state intact.
    """

    def loss_fn(params, model_state, batch):
        # Fresh Variables at the grad trace level: batch statistics are updated inside it.
        model_state = jax.tree.map(lambda value: value, model_state)
        model = nnx.merge(graphdef, params, model_state)
        head_logits = model(batch["image"], train=True)
        total, per_head = losses.deep_supervision_loss(
            head_logits,
            batch["mask"],
            output_activation=output_activation,
            head_weights=head_weights,
            weight=batch.get("weight"),
            ignore_index=ignore_index,
        )
        return total, (per_head, nnx.state(model, nnx.Not(nnx.Param)))

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        (loss, (per_head, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.model_state, batch
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        finite = jnp.isfinite(loss)
        updated = TrainState(
            step=state.step + 1, params=params, model_state=model_state, opt_state=opt_state
        )
        new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), updated, state)
        step_metrics = {
            "loss": loss,
            "loss_per_head": per_head,
            "grad_norm": optax.tree.norm(grads),
            "param_norm": optax.tree.norm(params),
            "finite": finite,
        }
        if schedule is not None:
            step_metrics["learning_rate"] = schedule(state.step)
        return new_state, step_metrics

    return train_step


def eval_forward(graphdef: nnx.GraphDef) -> Callable:
    """Pure (state, images) -> (probabilities (B, *spatial, H + 1, K) of every head and then of
    accurate mode, the mean of all heads; the heads' logits, for the loss): what training
    validates (`evaluation.evaluator.training_settings`)."""

    def forward(state: TrainState, images: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        model = merge_model(graphdef, state)
        head_logits = tuple(model(images, train=False))
        probabilities = [model.probabilities(logits) for logits in head_logits]
        return jnp.stack([*probabilities, accurate_mean(probabilities)], axis=-2), head_logits

    return forward
