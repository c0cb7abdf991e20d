"""A 3x3x3 convolution on the CPU: XLA's 3D convolution against 2D ones over depth taps.

    python -m benchmarks.conv3d_taps

`unetjax.conv_kernels` computes 3x3x3 "SAME" convolutions on the CPU as 2D convolutions of the
depth-padded slices (folded into the batch), one per depth tap: summed ("taps summed"), or, for
inputs of at most `FOLD_TAPS_MAX_CHANNELS` channels, with the three shifted slices stacked as
channels and convolved once ("taps stacked"). This times the three forms, forward and forward +
backward (the gradient of a sum of squares with respect to input and kernel), at the channel
widths of a 3D UNet++ with filters 16..256 and at a 128^3 volume, after checking that they
agree, compiled as the project compiles its steps (`backend.jit`). Median of 3 calls after
one warm-up; prints the load average before and after.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from unetjax import backend, conv_kernels

SHAPES = (
    (4, 64, 16, 16),
    (1, 128, 16, 16),
    (4, 32, 32, 32),
    (4, 16, 64, 64),
    (4, 8, 128, 128),
)


def lax_conv3d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    numbers = ("NDHWC", "DHWIO", "NDHWC")
    return jax.lax.conv_general_dilated(x, kernel, (1, 1, 1), "SAME", dimension_numbers=numbers)


def depth_taps(stack_up_to: int):
    """The project's depth-tap form, taps stacked as channels up to `stack_up_to` channels."""
    return lambda x, kernel: conv_kernels._conv3d_by_depth_taps(x, kernel, None, stack_up_to)


FORMS = {"lax3d": lax_conv3d, "taps summed": depth_taps(0), "taps stacked": depth_taps(1 << 30)}


def median_seconds(function, *args) -> float:
    jax.block_until_ready(function(*args))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(function(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"conv3d_taps on {jax.devices()[0].device_kind}, load {os.getloadavg()}", flush=True)
    for batch, side, channels_in, channels_out in SHAPES:
        x = jnp.asarray(rng.normal(size=(batch, side, side, side, channels_in)), jnp.float32)
        kernel = jnp.asarray(rng.normal(size=(3, 3, 3, channels_in, channels_out)) * 0.05)
        kernel = kernel.astype(jnp.float32)
        forward = {name: backend.jit(form) for name, form in FORMS.items()}
        expected = forward["lax3d"](x, kernel)
        for name in FORMS:
            np.testing.assert_allclose(forward[name](x, kernel), expected, rtol=1e-3, atol=1e-3)
        both = {
            name: backend.jit(jax.grad(lambda x, k, f=form: jnp.sum(f(x, k) ** 2), argnums=(0, 1)))
            for name, form in FORMS.items()
        }
        for kind, table in (("forward", forward), ("forward+backward", both)):
            cells = ", ".join(
                f"{name} {1e3 * median_seconds(table[name], x, kernel):.0f} ms" for name in FORMS
            )
            print(f"b{batch} {side}^3 {channels_in}->{channels_out} {kind}: {cells}", flush=True)
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
