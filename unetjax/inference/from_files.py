"""Predict a list of inputs, one output each: the loop the image and volume commands share
(as nnU-Net's `predict_from_files`).

An input that cannot be read or does not fit the model is reported in its result and the
others go on; the command decides what to print and the exit status.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

Item = TypeVar("Item")


@dataclasses.dataclass(frozen=True)
class FileResult:
    """What became of one input.

    Attributes:
      source: the input (a case's first file).
      error: one line naming the input and what was wrong; None when its output was written.
      note: something done to the input that is worth saying once (e.g. RGB to grayscale).
    """

    source: str
    error: str | None = None
    note: str | None = None


def unique_names(stems: Sequence[str]) -> list[str]:
    """Output names from input stems; repeated stems get _2, _3, ..."""
    names, seen = [], {}
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def predict_from_files(
    items: Sequence[Item],
    names: Sequence[str],
    predict_one: Callable[[Item, str], str | None],
    *,
    source: Callable[[Item], str] = str,
) -> Iterator[FileResult]:
    """Runs `predict_one(item, name)` (which writes the outputs and may return a note) for each
    input, in order; a user's error (OSError, ValueError) becomes that input's result."""
    for item, name in zip(items, names, strict=True):
        where = source(item)
        try:
            note = predict_one(item, name)
        except (OSError, ValueError) as error:  # DataError is a ValueError
            message = str(error) if where in str(error) else f"{where}: {error}"
            yield FileResult(where, error=message)
        else:
            yield FileResult(where, note=note)
