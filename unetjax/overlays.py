"""Pictures of masks over images that a person can read on any image.

Each class is drawn as a translucent fill in its own colour, edged by a two-pixel outline (a
dark ring outside a light one) that stays visible on red tissue, grey EM and white background
alike, with a legend naming the colours. Used by `predict --overlay` and by the training
overlays (truth | prediction side by side).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.ndimage
from PIL import Image, ImageDraw

# Colour-blind-safe (Okabe-Ito) colours, one per foreground class, cycled beyond eight.
CLASS_COLOURS = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
)
FILL_ALPHA = 0.4


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) of an image (H, W, C), contrast-stretched to its own range."""
    picture = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
    picture = picture.astype(np.float32)
    low, high = float(picture.min()), float(picture.max())
    picture = (picture - low) / (high - low + 1e-8)
    return (picture * 255).astype(np.uint8)


def class_masks(labels: np.ndarray) -> list[np.ndarray]:
    """Boolean masks per foreground class: labels (H, W) of class indices (0 = background) or
    (H, W, K) multi-label channels."""
    if labels.ndim == 3:
        return [labels[..., k] > 0 for k in range(labels.shape[-1])]
    return [labels == k for k in range(1, max(int(labels.max()), 1) + 1)]


def draw_masks(rgb: np.ndarray, masks: Sequence[np.ndarray]) -> np.ndarray:
    """`rgb` with each mask filled translucently in its colour and outlined dark-then-light."""
    picture = rgb.astype(np.float32)
    for k, mask in enumerate(masks):
        colour = np.asarray(CLASS_COLOURS[k % len(CLASS_COLOURS)], np.float32)
        picture[mask] = (1 - FILL_ALPHA) * picture[mask] + FILL_ALPHA * colour
    for k, mask in enumerate(masks):
        colour = np.asarray(CLASS_COLOURS[k % len(CLASS_COLOURS)], np.float32)
        inner = mask & ~scipy.ndimage.binary_erosion(mask)
        outer = scipy.ndimage.binary_dilation(mask) & ~mask
        picture[outer] = 0.0
        picture[inner] = colour
    return picture.astype(np.uint8)


def with_legend(rgb: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """`rgb` with a strip below naming each class beside a swatch of its colour."""
    if not names:
        return rgb
    strip_height = 16
    canvas = Image.new("RGB", (rgb.shape[1], rgb.shape[0] + strip_height), (0, 0, 0))
    canvas.paste(Image.fromarray(rgb), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = 4
    for k, name in enumerate(names):
        colour = CLASS_COLOURS[k % len(CLASS_COLOURS)]
        top = rgb.shape[0] + 3
        draw.rectangle((x, top, x + 10, top + 10), fill=colour)
        draw.text((x + 14, top - 1), name, fill=(255, 255, 255))
        x += 14 + 7 * len(name) + 12
    return np.asarray(canvas)


def prediction_overlay(
    image: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None = None
) -> np.ndarray:
    """The image with its predicted classes drawn, and a legend. Volumes (D, H, W, C) show
    their middle slice along the first axis."""
    if image.ndim == 4:
        middle = image.shape[0] // 2
        image, labels = image[middle], labels[middle]
    masks = class_masks(labels)
    names = list(class_names or [f"class {k + 1}" for k in range(len(masks))])[: len(masks)]
    return with_legend(draw_masks(to_rgb(image), masks), names)


def truth_and_prediction(
    image: np.ndarray, truth: np.ndarray, prediction: np.ndarray
) -> np.ndarray:
    """Three panels: the image, its ground truth drawn on it, and the prediction drawn on it.

    image: (H, W, C); truth, prediction: (H, W) boolean foreground.
    """
    rgb = to_rgb(image)
    panels = [rgb, draw_masks(rgb, [truth]), draw_masks(rgb, [prediction])]
    return np.concatenate(panels, axis=1)
