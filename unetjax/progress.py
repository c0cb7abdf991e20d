"""Progress bars for long steps (training, preparing a dataset, evaluating, exporting).

One rule for every command: a tqdm bar with an ETA on stderr when stderr is a terminal and the
user did not ask for quiet (`--no-progress`, `train.progress_bar=False`); otherwise nothing, so
logs and CI output stay free of carriage-return lines.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm


def shown(enabled: bool = True) -> bool:
    """Whether a bar would be drawn: asked for, and stderr is a terminal."""
    return bool(enabled) and sys.stderr.isatty()


def bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    unit: str = "it",
    desc: str | None = None,
    initial: int = 0,
    enabled: bool = True,
    leave: bool = True,
) -> tqdm:
    """A tqdm bar on stderr (rate and ETA from `total`), disabled unless `shown(enabled)`.

    A disabled bar still iterates and accepts `update` and `write`, so callers need no branch.
    """
    return tqdm(
        iterable,
        total=total,
        unit=unit,
        desc=desc,
        initial=initial,
        dynamic_ncols=True,
        file=sys.stderr,
        disable=not shown(enabled),
        leave=leave,
    )
