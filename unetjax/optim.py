"""optax optimizers and learning-rate schedules from the `config.optimizer` section."""

from __future__ import annotations

import ml_collections
import optax


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


def make_optimizer(
    config: ml_collections.ConfigDict, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer named by `config.name` (adam, adamw, sgd), with optional gradient clipping."""
    schedule = make_schedule(config, total_steps)
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
    if config.grad_clip_norm:
        optimizer = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optimizer)
    return optimizer, schedule
