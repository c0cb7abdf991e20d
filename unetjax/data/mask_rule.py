"""The mask rule: what a set of single-file masks means, decided from all their values.

- Binary: the values of all mask files together are within {0, 1}, or within {0, 255}
  (255 = foreground).
- Class-index map (multiclass): all values within 0..K-1, with K = `data.num_classes` when it
  is set, or K = the largest value + 1 when inferred, which must be at most
  `MAX_INFERRED_CLASSES`; the files must be lossless (not JPEG), since compression changes
  class indices. `data.ignore_index` takes one value (e.g. 255) out of this test.
- Anything else, such as JPEG noise (0..8 and 247..255), anti-aliased edges (0..255) or a
  stray value in a {0, 255} set, is a DataError naming a file, its values and the fix.

`data.mask_threshold=T` makes the masks binary by value > T, whatever their values.
"""

import dataclasses
import pathlib

import numpy as np

from unetjax.data.errors import DataError

MAX_INFERRED_CLASSES = 32
# Masks are stored as uint8 class indices.
MAX_STORED_CLASSES = 256
LOSSY_SUFFIXES = (".jpg", ".jpeg")
BINARY_SETS = ((0, 1), (0, 255))
THRESHOLD_FIX = "set data.mask_threshold=127 for lossy (JPEG) or anti-aliased binary masks"


@dataclasses.dataclass(frozen=True)
class Decision:
    """The task the masks give, and the rule that gave it (for the dataset summary)."""

    task: str
    num_classes: int
    rule: str


def describe_values(values: np.ndarray) -> str:
    """A short summary of sorted unique integers: "{0, 7, 255}" or "0..8 and 247..255
    (17 values)"."""
    values = np.asarray(values).astype(np.int64)
    if len(values) <= 8:
        return "{" + ", ".join(str(v) for v in values) + "}"
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    runs = [
        f"{run[0]}..{run[-1]}" if len(run) > 1 else str(run[0]) for run in np.split(values, breaks)
    ]
    if len(runs) > 3:
        shown = f"{runs[0]}, {runs[1]}, ..., {runs[-1]}"
    elif len(runs) == 1:
        shown = runs[0]
    else:
        shown = f"{', '.join(runs[:-1])} and {runs[-1]}"
    return f"{shown} ({len(values)} values)"


def is_binary(values: np.ndarray) -> bool:
    return any(np.isin(values, allowed).all() for allowed in BINARY_SETS)


def binarise(labels: np.ndarray, path: pathlib.Path, threshold: int | None = None) -> np.ndarray:
    """uint8 {0, 1} from one binary mask file: value > threshold, or {0, 1} / {0, 255} values."""
    if threshold is not None:
        return (labels > threshold).astype(np.uint8)
    values = np.unique(labels)
    if not is_binary(values):
        raise DataError(
            f"{path}: binary mask values {describe_values(values)}; expected {{0, 1}} or "
            f"{{0, 255}}; {THRESHOLD_FIX}"
        )
    return (labels > 0).astype(np.uint8)


def decide(
    values_by_file: dict[str, np.ndarray],
    *,
    task: str | None,
    num_classes: int | None,
    ignore_index: int | None,
    threshold: int | None,
) -> Decision:
    """The task of a single-mask set from each file's unique values and the declared fields.

    Raises one-line DataErrors that name the first file breaking the rule.
    """
    if threshold is not None:
        return Decision(
            "binary", 1, f"mask_threshold={threshold}, foreground = value > {threshold}"
        )
    if ignore_index is not None:
        values_by_file = {p: v[v != ignore_index] for p, v in values_by_file.items()}
    union = np.unique(np.concatenate(list(values_by_file.values())))
    wants_binary = task == "binary" or num_classes == 1
    if ignore_index is None and task in (None, "binary") and num_classes in (None, 1):
        for allowed in BINARY_SETS:
            if np.isin(union, allowed).all():
                return Decision("binary", 1, f"mask values within {{{allowed[0]}, {allowed[1]}}}")
    if wants_binary:
        path, values = _first_file(values_by_file, lambda v: not is_binary(v))
        if path is None:
            raise _mixed_error(values_by_file, "binary", is_binary)
        raise DataError(
            f"{path}: data.task=binary but its mask values are {describe_values(values)}; "
            f"expected {{0, 1}} or {{0, 255}}; {THRESHOLD_FIX}"
        )
    declared = num_classes is not None
    classes = num_classes if declared else int(union.max(initial=0)) + 1

    def fits(values: np.ndarray) -> bool:
        limit = classes if declared else MAX_INFERRED_CLASSES
        return bool(values.min(initial=0) >= 0 and values.max(initial=0) < limit)

    if declared and not fits(union):
        path, values = _first_file(values_by_file, lambda v: not fits(v))
        raise DataError(
            f"{path}: mask values {describe_values(values)} are outside the classes "
            f"0..{classes - 1} (data.num_classes={classes}); expected class indices"
            + ("" if ignore_index is not None else " (set data.ignore_index for a void value)")
        )
    if not declared and classes > MAX_INFERRED_CLASSES:
        path, values = _first_file(values_by_file, lambda v: not (is_binary(v) or fits(v)))
        if path is None:
            raise _mixed_error(
                values_by_file, "binary or class indices", lambda v: is_binary(v) or fits(v)
            )
        count = sum(not (is_binary(v) or fits(v)) for v in values_by_file.values())
        raise DataError(
            f"{path}: mask values {describe_values(values)} are neither binary ({{0, 1}} or "
            f"{{0, 255}}) nor class indices (0..K-1, K <= {MAX_INFERRED_CLASSES}), as in "
            f"{count} of {len(values_by_file)} mask files; {THRESHOLD_FIX}, or "
            "data.num_classes (and data.ignore_index) for class-index maps"
        )
    lossy = [p for p in values_by_file if p.lower().endswith(LOSSY_SUFFIXES)]
    if lossy:
        raise DataError(
            f"{lossy[0]}: class-index mask in a lossy JPEG file (compression changes the "
            "indices); expected lossless masks (PNG, TIFF); for binary masks "
            f"{THRESHOLD_FIX.removeprefix('set ')}"
        )
    classes = max(classes, 2)
    ignored = "" if ignore_index is None else f", {ignore_index} ignored"
    return Decision("multiclass", classes, f"class indices 0..{classes - 1}{ignored}")


def _first_file(values_by_file: dict[str, np.ndarray], bad) -> tuple[str | None, np.ndarray]:
    for path, values in values_by_file.items():
        if bad(values):
            return path, values
    return None, np.zeros(0)


def _mixed_error(values_by_file: dict[str, np.ndarray], kind: str, fits) -> DataError:
    """Every file fits on its own, but not with the others (e.g. {0, 1} and {0, 255} files)."""
    paths = list(values_by_file)
    seen = values_by_file[paths[0]]
    for index, path in enumerate(paths[1:], start=1):
        values = values_by_file[path]
        if not fits(np.union1d(seen, values)):
            earlier = next(
                (p for p in paths[:index] if not fits(np.union1d(values_by_file[p], values))),
                paths[0],
            )
            return DataError(
                f"{path}: mask values {describe_values(values)}, but {earlier} has "
                f"{describe_values(values_by_file[earlier])}; expected one convention ({kind}) "
                f"for the whole set; {THRESHOLD_FIX}"
            )
        seen = np.union1d(seen, values)
    raise AssertionError("the mask values fit together")  # decide() only calls this on a misfit
