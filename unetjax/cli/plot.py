"""The pruning figure (UNet++ paper, Fig. 6 style): IoU against latency per depth, drawn with PIL.

Pillow only, so the library needs no plotting dependency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 900, 600
MARGIN = dict(left=90, right=190, top=60, bottom=80)
SERIES_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + (abs(low) * 0.1 or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(math.ceil((high - first) / step) + 1)]


def _format(value: float, step: float) -> str:
    """The tick label with as many decimals as the tick step needs (0.025 -> three)."""
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9 * step:
        decimals += 1
    return f"{value:.{decimals}f}"


def pruning_plot(rows: Sequence[Mapping], path: str, *, title: str) -> None:
    """Writes a PNG: x = latency per image (ms), y = IoU, one line per mode, points named L1..

    rows: dicts with "depth", "mode", "latency_ms", "iou", "params".
    """
    font = ImageFont.load_default(size=16)
    small = ImageFont.load_default(size=13)
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    x_values = [r["latency_ms"] for r in rows]
    y_values = [r["iou"] for r in rows]
    x_ticks = _ticks(min(0.0, min(x_values)), max(x_values) * 1.1)
    y_ticks = _ticks(min(y_values) - 0.02, min(max(y_values) + 0.02, 1.0))
    x0, x1 = MARGIN["left"], WIDTH - MARGIN["right"]
    y0, y1 = HEIGHT - MARGIN["bottom"], MARGIN["top"]

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        px = x0 + (x - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * (x1 - x0)
        py = y0 - (y - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * (y0 - y1)
        return px, py

    for tick in x_ticks:
        px, _ = to_pixel(tick, y_ticks[0])
        draw.line([(px, y0), (px, y1)], fill=(230, 230, 230))
        draw.text(
            (px, y0 + 8),
            _format(tick, x_ticks[1] - x_ticks[0]),
            fill="black",
            font=small,
            anchor="mt",
        )
    for tick in y_ticks:
        _, py = to_pixel(x_ticks[0], tick)
        draw.line([(x0, py), (x1, py)], fill=(230, 230, 230))
        draw.text(
            (x0 - 8, py),
            _format(tick, y_ticks[1] - y_ticks[0]),
            fill="black",
            font=small,
            anchor="rm",
        )
    draw.rectangle([(x0, y1), (x1, y0)], outline="black")
    draw.text(
        ((x0 + x1) / 2, HEIGHT - 30), "latency per image (ms)", fill="black", font=font, anchor="mm"
    )
    draw.text((20, (y0 + y1) / 2), "IoU", fill="black", font=font, anchor="lm")
    draw.text(((x0 + x1) / 2, 25), title, fill="black", font=font, anchor="mm")

    modes = list(dict.fromkeys(r["mode"] for r in rows))
    for index, mode in enumerate(modes):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        series = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["depth"])
        points = [to_pixel(r["latency_ms"], r["iou"]) for r in series]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3)
        for row, (px, py) in zip(series, points, strict=True):
            draw.ellipse([(px - 5, py - 5), (px + 5, py + 5)], fill=colour)
            # Modes alternate labels above and below their points, so equal points stay legible.
            label_y, anchor = (py - 8, "lb") if index % 2 == 0 else (py + 8, "lt")
            draw.text((px + 8, label_y), f"L{row['depth']}", fill=colour, font=small, anchor=anchor)
        legend_y = MARGIN["top"] + 10 + index * 26
        draw.line([(x1 + 20, legend_y), (x1 + 50, legend_y)], fill=colour, width=3)
        draw.text((x1 + 58, legend_y), mode, fill="black", font=font, anchor="lm")
    note_y = MARGIN["top"] + 20 + len(modes) * 26
    draw.text(
        (x1 + 20, note_y - 20), f"parameters ({modes[0]}):", fill="black", font=small, anchor="lm"
    )
    first_mode = sorted((r for r in rows if r["mode"] == modes[0]), key=lambda r: r["depth"])
    for offset, row in enumerate(first_mode):
        draw.text(
            (x1 + 20, note_y + offset * 20),
            f"L{row['depth']}: {row['params']:,}",
            fill="black",
            font=small,
            anchor="lm",
        )
    image.save(path)
