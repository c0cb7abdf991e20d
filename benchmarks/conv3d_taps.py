"""A 3x3x3 convolution on the CPU: XLA's 3D convolution against three 2D ones over depth taps.

    python -m benchmarks.conv3d_taps

`unetjax.conv_kernels` computes 3x3x3 "SAME" convolutions on the CPU as the sum over the three
depth taps of 2D convolutions of the depth-padded slices (folded into the batch). This times
both forms, forward and forward + backward (the gradient of a sum of squares with respect to
input and kernel), at the channel widths of a 3D UNet++ with filters 16..256, after checking that
they agree. Median of 3 calls after one warm-up; prints the load average before and after.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from unetjax import conv_kernels

SHAPES = ((4, 64, 16, 16), (4, 32, 32, 32), (4, 16, 64, 64), (4, 8, 128, 128))


def lax_conv3d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    numbers = ("NDHWC", "DHWIO", "NDHWC")
    return jax.lax.conv_general_dilated(x, kernel, (1, 1, 1), "SAME", dimension_numbers=numbers)


def depth_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return conv_kernels._conv3d_by_depth_taps(x, kernel, None)


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
        forms = {"lax3d": lax_conv3d, "taps": depth_taps}
        forward = {name: jax.jit(form) for name, form in forms.items()}
        np.testing.assert_allclose(
            forward["lax3d"](x, kernel), forward["taps"](x, kernel), rtol=1e-3, atol=1e-3
        )
        both = {
            name: jax.jit(jax.grad(lambda x, k, f=form: jnp.sum(f(x, k) ** 2), argnums=(0, 1)))
            for name, form in forms.items()
        }
        seconds = {
            (kind, name): median_seconds(table[name], x, kernel)
            for kind, table in (("forward", forward), ("forward+backward", both))
            for name in forms
        }
        cells = [
            f"{kind} {1e3 * seconds[(kind, 'lax3d')]:.0f} ms vs {1e3 * seconds[(kind, 'taps')]:.0f}"
            f" ms ({seconds[(kind, 'lax3d')] / seconds[(kind, 'taps')]:.1f}x)"
            for kind in ("forward", "forward+backward")
        ]
        print(f"b{batch} {side}^3 {channels_in}->{channels_out}: " + "; ".join(cells), flush=True)
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
