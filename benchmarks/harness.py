"""Shared pieces of the benchmark scripts: timing, compile/FLOP/memory figures, tables, JSON.

Scripts print; nothing here logs. Timings are wall-clock seconds around calls that block until the
result is ready, so they cover the whole device work of one call.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Dense (no sparsity) datasheet peaks, FLOP/s, by `device_kind` prefix and compute dtype. f32 on
# Hopper runs convolutions and matmuls as TF32 under XLA's default precision, so its peak is TF32's.
DATASHEET_PEAKS = {
    "NVIDIA H100 80GB HBM3": {
        "float32": (494.7e12, "H100 SXM datasheet, TF32 tensor core, dense"),
        "bfloat16": (989.4e12, "H100 SXM datasheet, BF16 tensor core, dense"),
    },
    "NVIDIA H200": {
        "float32": (494.7e12, "H200 datasheet, TF32 tensor core, dense"),
        "bfloat16": (989.4e12, "H200 datasheet, BF16 tensor core, dense"),
    },
}


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call over repeated runs after warm-up."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p90(self) -> float:
        return float(np.percentile(self.times, 90))


def block(tree: Any) -> Any:
    return jax.block_until_ready(tree)


def time_calls(call: Callable[[], Any], *, warmup: int, repeats: int) -> Timing:
    """Runs `call` `warmup` times, then times `repeats` calls, each waited on to completion."""
    for _ in range(warmup):
        block(call())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(call())
        times.append(time.perf_counter() - start)
    return Timing(tuple(times))


def compile_timed(jitted: Any, *args: Any) -> tuple[Any, float, float | None]:
    """Traces, lowers and compiles `jitted` for `args`.

    Returns the executable, the seconds taken, and the FLOPs of one call from XLA's cost analysis
    of the lowered module. Where the backend gives none (GPU: and its compiled module's analysis
    leaves out cuDNN convolutions), the same program lowered for the CPU is counted instead.
    """
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    compiled = lowered.compile()
    seconds = time.perf_counter() - start
    flops = analysis_flops(lowered.cost_analysis())
    if flops is None:
        try:
            on_cpu = jitted.trace(*args).lower(lowering_platforms=("cpu",))
            flops = analysis_flops(on_cpu.cost_analysis())
        except Exception:  # no CPU lowering for this program: report no FLOPs
            flops = None
    return compiled, seconds, flops


def analysis_flops(analysis: Any) -> float | None:
    if isinstance(analysis, Sequence) and not isinstance(analysis, dict):
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


def compiled_memory_bytes(compiled: Any) -> int | None:
    """XLA's buffer plan for one call: arguments + outputs + temporaries, less donated aliases."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # some backends do not implement it
        return None
    if stats is None:
        return None
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def device_peak_bytes() -> int | None:
    """The device allocator's high-water mark so far in this process (GPU/TPU; None on CPU)."""
    stats = jax.devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["peak_bytes_in_use"])


def own_peak_mib(before: int | None) -> float | None:
    """The allocator's peak (MiB) after a measurement when the measurement raised it above
    `before` (`device_peak_bytes()` read just before it), so that the peak is its own; else None
    (its own peak was lower than an earlier one's, and JAX cannot reset the high-water mark)."""
    after = device_peak_bytes()
    if after is None or (before is not None and after <= before):
        return None
    return after / 2**20


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description() -> dict[str, Any]:
    """What the figures were measured on: device, host CPU, core count, library versions."""
    device = jax.devices()[0]
    return {
        "device": f"{device.platform}: {device.device_kind}",
        "device_count": jax.device_count(),
        "cpu": cpu_model(),
        "nproc": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
    }


def measured_matmul_peak(dtype: Any, *, size: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of a large square matrix product on the default device: a practical ceiling."""
    on_cpu = jax.devices()[0].platform == "cpu"
    size = size or (2048 if on_cpu else 8192)
    a = jnp.ones((size, size), dtype)
    b = jnp.ones((size, size), dtype)
    product = jax.jit(jnp.matmul)
    timing = time_calls(lambda: product(a, b), warmup=2, repeats=repeats)
    return 2 * size**3 / timing.median


def peak_flops(dtype_name: str, *, measure: bool = True) -> tuple[float | None, str]:
    """The peak FLOP/s used for utilisation figures, and where it comes from.

    A datasheet figure where the device is known; otherwise a matrix product timed here.
    """
    kind = jax.devices()[0].device_kind
    for prefix, peaks in DATASHEET_PEAKS.items():
        if kind.startswith(prefix) and dtype_name in peaks:
            return peaks[dtype_name]
    if not measure:
        return None, "unknown"
    value = measured_matmul_peak(jnp.dtype(dtype_name))
    return value, f"measured {dtype_name} 2048^3 matmul on this {jax.devices()[0].platform}"


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of `rows` restricted to `columns`; floats shortened, None as '-'."""

    def text(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            if value == 0:
                return "0"
            magnitude = abs(value)
            if magnitude >= 100:
                return f"{value:.0f}"
            if magnitude >= 10:
                return f"{value:.1f}"
            if magnitude >= 0.01:
                return f"{value:.3g}" if magnitude < 1 else f"{value:.2f}"
            return f"{value:.2e}"
        return str(value)

    cells = [[text(row.get(column)) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]
    lines = ["  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
    return "\n".join(lines)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if not path:
        return
    with open(path, "w") as file:
        json.dump(payload, file, indent=2, default=str)
        file.write("\n")


def parse_size(text: str) -> tuple[int, ...]:
    """'96' -> (96, 96); '64^3' or '64x64x64' -> (64, 64, 64); '128x96' -> (128, 96)."""
    if "^" in text:
        side, power = text.split("^")
        return (int(side),) * int(power)
    parts = tuple(int(part) for part in text.lower().split("x"))
    return parts * 2 if len(parts) == 1 else parts


def size_name(shape: Sequence[int]) -> str:
    if len(set(shape)) == 1:
        return f"{shape[0]}^{len(shape)}" if len(shape) == 3 else f"{shape[0]}x{shape[0]}"
    return "x".join(str(side) for side in shape)
