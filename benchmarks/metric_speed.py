"""Per-case metric time: overlap, boundary (HD95, ASSD, NSD), instance (F1, PQ) and all at once.

For each size it builds one realistic case, objects with noisy borders (discs in 2D, balls in
3D) and a prediction that shifts, grows or shrinks them, drops one, adds a spurious one and a
sprinkle of false-positive voxels, then times each metric family on the CPU and the whole
`case_metrics` call (binary with instances, and 3 classes). A row "surface (dense EDT)" times the
same distances by `scipy.ndimage.distance_transform_edt` over the bounding box, for comparison
with the k-d tree that `surface` uses.

Commands:
  python -m benchmarks.metric_speed                          # 512x512 and 128^3
  python -m benchmarks.metric_speed --sizes 256 --repeats 3 --output metric_speed.json

Timings are wall-clock medians after warm-up, single-threaded numpy/scipy; a loaded machine
slows them, so the load average is printed and saved beside them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from benchmarks import harness
from unetjax.evaluation import overlap, surface
from unetjax.evaluation.case_metrics import case_metrics
from unetjax.evaluation.instances import instance_scores, label_instances

COLUMNS = ("size", "spacing", "part", "median_ms", "p90_ms", "boundary_voxels", "objects")
SPACINGS = {2: (1.0, 1.0), 3: (3.0, 0.8, 0.8)}  # 3D: a typical CT/MR slice thickness


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["512", "128^3"], help="512 (2D), 128^3")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--output", "--json", dest="output", default=None, help="write the rows to this JSON file"
    )
    return parser.parse_args(argv)


def noisy_objects(
    rng: np.random.Generator, shape: tuple[int, ...], count: int, radius: tuple[float, float]
) -> list[tuple[np.ndarray, float]]:
    """`count` (centre, radius) pairs kept clear of the image edge."""
    margin = radius[1] + 2
    return [
        (rng.uniform(margin, np.asarray(shape) - margin), rng.uniform(*radius))
        for _ in range(count)
    ]


def draw(shape: tuple[int, ...], objects: list[tuple[np.ndarray, float]], border: np.ndarray):
    """int32 instance map of balls whose radius is modulated by the smooth field `border`."""
    labels = np.zeros(shape, np.int32)
    grid = np.indices(shape, dtype=np.float32)
    for number, (centre, radius) in enumerate(objects, start=1):
        window = tuple(
            slice(max(int(c - 1.5 * radius), 0), int(c + 1.5 * radius) + 1) for c in centre
        )
        squared = sum((grid[axis][window] - centre[axis]) ** 2 for axis in range(len(shape)))
        inside = np.sqrt(squared) <= radius * (1 + 0.15 * border[window])
        labels[window][inside & (labels[window] == 0)] = number
    return labels


def make_case(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, reference) instance maps of one realistic case."""
    side = min(shape)
    if len(shape) == 2:
        radius = (side / 64, side / 25.6)  # 8 to 20 pixels at 512: nuclei-like
        objects = noisy_objects(rng, shape, 40, radius)
    else:
        radius = (side * 3 / 32, side * 7 / 32)  # 12 to 28 voxels at 128: organs, lesions
        objects = noisy_objects(rng, shape, 4, radius)

    def border_field() -> np.ndarray:
        field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 3)
        return field / field.std()

    reference = draw(shape, objects, border_field())
    predicted = [
        (centre + rng.normal(0, 1.5, len(shape)), radius * rng.uniform(0.85, 1.15))
        for centre, radius in objects[1:]
    ]
    predicted += noisy_objects(rng, shape, 1, (radius[0] / 2, radius[0]))
    prediction = draw(shape, predicted, border_field())
    speckle = (rng.random(shape) < 2e-4) & (prediction == 0)
    prediction[speckle] = prediction.max() + 1
    return prediction, reference


def dense_edt_distances(prediction: np.ndarray, reference: np.ndarray, spacing) -> float:
    """HD95 with the distances from dense distance transforms of the bounding box (comparison)."""
    window = surface.bounding_box(prediction | reference)
    prediction_surface = surface.boundary(prediction[window])
    reference_surface = surface.boundary(reference[window])
    to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)
    distances = surface.SurfaceDistances(
        to_reference[prediction_surface], to_prediction[reference_surface]
    )
    return distances.hd95()


def parts(
    prediction_labels: np.ndarray, reference_labels: np.ndarray, spacing: tuple[float, ...]
) -> dict[str, Callable[[], Any]]:
    prediction, reference = prediction_labels > 0, reference_labels > 0
    # Three classes: objects dealt round-robin, so each class has a third of them.
    prediction_classes = np.where(prediction, (prediction_labels % 3) + 1, 0)
    reference_classes = np.where(reference, (reference_labels % 3) + 1, 0)

    def surface_metrics() -> tuple[float, float, float]:
        distances = surface.surface_distances(prediction, reference, spacing)
        return distances.hd95(), distances.assd(), distances.nsd(2.0)

    return {
        "overlap": lambda: overlap.overlap_scores(
            overlap.channel_counts(prediction[..., None], reference[..., None])
        ),
        "surface (HD95, ASSD, NSD)": surface_metrics,
        "surface (dense EDT)": lambda: dense_edt_distances(prediction, reference, spacing),
        "instances (components, F1, PQ)": lambda: instance_scores(
            label_instances(prediction), label_instances(reference)
        ),
        "case_metrics binary + instances": lambda: case_metrics(
            prediction,
            reference,
            kind="binary",
            spacing=spacing,
            nsd_tolerance=2.0,
            instances=True,
        ),
        "case_metrics 3 classes": lambda: case_metrics(
            prediction_classes,
            reference_classes,
            kind="multiclass",
            num_classes=4,
            spacing=spacing,
            nsd_tolerance=2.0,
        ),
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    machine = harness.machine_description()
    load = os.getloadavg()
    print(
        f"metric_speed on {machine['cpu']} ({machine['nproc']} cores), "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    rows = []
    for size_text in args.sizes:
        shape = harness.parse_size(size_text)
        spacing = SPACINGS[len(shape)]
        prediction_labels, reference_labels = make_case(rng, shape)
        boundary_voxels = int(
            surface.boundary(prediction_labels > 0).sum()
            + surface.boundary(reference_labels > 0).sum()
        )
        for part, call in parts(prediction_labels, reference_labels, spacing).items():
            timing = harness.time_calls(call, warmup=args.warmup, repeats=args.repeats)
            rows.append(
                {
                    "size": harness.size_name(shape),
                    "spacing": "x".join(f"{step:g}" for step in spacing),
                    "part": part,
                    "median_ms": timing.median * 1e3,
                    "p90_ms": timing.p90 * 1e3,
                    "boundary_voxels": boundary_voxels,
                    "objects": int(reference_labels.max()),
                }
            )
            print(f"  {rows[-1]['size']} {part}: {rows[-1]['median_ms']:.1f} ms", flush=True)
    print()
    print(harness.format_table(rows, COLUMNS))
    harness.write_json(
        args.output,
        {
            "benchmark": "metric_speed",
            "machine": machine,
            "load_average": load,
            "args": vars(args),
            "rows": rows,
        },
    )
    return rows


if __name__ == "__main__":
    main()
