"""Checks every encoder makes of its arguments and inputs, with messages that name the fix."""

from __future__ import annotations

from collections.abc import Sequence


def check_num_features(name: str, num_features: int, available: int) -> None:
    if not 1 <= num_features <= available:
        raise ValueError(
            f"{name}: num_features must be 1..{available} (one per stride), got {num_features}"
        )


def check_input_shape(name: str, shape: Sequence[int], in_channels: int) -> None:
    """Raises a ValueError naming the shape when it is not (batch, height, width, in_channels)."""
    if len(shape) != 4:
        raise ValueError(
            f"{name}: input shape {tuple(shape)} has rank {len(shape)}; expected "
            "(batch, height, width, channels)"
        )
    if shape[-1] != in_channels:
        raise ValueError(
            f"{name}: input shape {tuple(shape)} has {shape[-1]} channels; the encoder expects "
            f"{in_channels} (channels last)"
        )
