"""optax optimizers and learning-rate schedules from the `config.optimizer` section."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

ENCODER, DECODER = "encoder", "decoder"


def make_schedule(config: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Linear warm-up to `learning_rate`, then constant, cosine, step or polynomial decay."""
    peak, warmup = config.learning_rate, config.warmup_steps
    decay_steps = max(total_steps - warmup, 1)
    if config.schedule == "constant":
        decay = optax.constant_schedule(peak)
    elif config.schedule == "cosine":
        decay = optax.cosine_decay_schedule(peak, decay_steps, alpha=config.end_lr_factor)
    elif config.schedule == "step":
        boundaries = {
            int(fraction * decay_steps): config.step_decay_factor
            for fraction in config.step_boundaries
        }
        decay = optax.piecewise_constant_schedule(peak, boundaries)
    elif config.schedule == "poly":
        decay = optax.polynomial_schedule(
            peak, peak * config.end_lr_factor, config.poly_power, decay_steps
        )
    else:
        raise ValueError(
            f"optimizer.schedule={config.schedule!r}; expected constant, cosine, step or poly"
        )
    if warmup <= 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def parameter_labels(params) -> object:
    """ "encoder" for every parameter under the model's `encoder` attribute, else "decoder"."""

    def label(path, _):
        first = path[0]
        name = getattr(first, "key", getattr(first, "name", None))
        return ENCODER if name == ENCODER else DECODER

    return jax.tree_util.tree_map_with_path(label, params)


def encoder_schedule(
    schedule: optax.Schedule, multiplier: float, frozen_steps: int
) -> optax.Schedule:
    """`schedule` times `multiplier`, and 0 for the first `frozen_steps` steps."""

    def scaled(step):
        return jnp.where(step < frozen_steps, 0.0, multiplier * schedule(step))

    return scaled


def make_optimizer(
    config: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer named by `config.name` (adam, adamw, sgd), with optional gradient clipping.

    With `encoder_lr_multiplier` != 1 or `encoder_frozen_steps` > 0, the parameters under a
    pretrained encoder get their own copy of the optimizer (optax.multi_transform, labelled by
    path) whose learning rate is scaled, and 0 while frozen; weight decay scales with it, so a
    frozen encoder is left exactly unchanged. The returned schedule is the decoder's.
    """
    schedule = make_schedule(config, total_steps)
    multiplier = config.get("encoder_lr_multiplier", 1.0)
    frozen = config.get("encoder_frozen_steps", 0)
    if multiplier < 0:
        raise ValueError(f"optimizer.encoder_lr_multiplier={multiplier}; expected >= 0")
    if multiplier == 1.0 and frozen <= 0:
        optimizer = _optimizer(config, schedule)
    else:
        transforms = {
            DECODER: _optimizer(config, schedule),
            ENCODER: _optimizer(config, encoder_schedule(schedule, multiplier, frozen)),
        }
        optimizer = optax.multi_transform(transforms, parameter_labels)
    if config.grad_clip_norm:  # over all parameters, encoder and decoder together
        optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
    return optimizer, schedule


def _optimizer(
    config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
    if config.name == "adam":
        optimizer = optax.adam(schedule, b1=config.b1, b2=config.b2)
    elif config.name == "adamw":
        optimizer = optax.adamw(
            schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay
        )
    elif config.name == "sgd":
        optimizer = optax.chain(
            optax.add_decayed_weights(config.weight_decay),
            optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov),
        )
    else:
        raise ValueError(f"optimizer.name={config.name!r}; expected adam, adamw or sgd")
    return optimizer
