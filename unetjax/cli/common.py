"""What every command shares: exit codes, one-line user errors, logging, option adapters.

Exit codes (documented in README.md):
  0    success;
  1    the work ran but failed: some inputs could not be processed, or training stopped on a
       non-finite loss;
  2    a usage error the user can fix: bad arguments, config keys or values, data, run
       directories or model files; one or two lines on stderr name the file, key or shape;
  130  interrupted (Ctrl-C) before any work was saved; training stopped by a signal exits
       128 + the signal's number after writing its checkpoint.
With `--verbose` (or UNETJAX_VERBOSE=1) a usage error also prints its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence

from unetjax import progress as progress_lib
from unetjax.inference import TileOptions
from unetjax.inference.from_files import FileResult

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
VERBOSE_ENV = "UNETJAX_VERBOSE"
# Errors a user causes: bad values (DataError is a ValueError), missing or unwritable files.
USER_ERRORS = (ValueError, OSError)
QUIET_LOGGERS = ("absl", "jax._src", "orbax", "tensorflow_datasets", "grain", "etils")


class UsageError(ValueError):
    """A command-line mistake found after parsing (an option combination that cannot work)."""


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--verbose", action="store_true", help=f"tracebacks for errors (or {VERBOSE_ENV}=1)"
    )


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars (they show only when stderr is a terminal)",
    )


def verbose_requested(argv: Sequence[str]) -> bool:
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def configure_logging(level: int = logging.WARNING, *, stream=sys.stderr) -> None:
    """Timestamped lines from our loggers; the libraries' chatter only from warnings up."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=stream, force=True
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def run_command(prog: str, main: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """Runs `main(argv)`, turning a user's error into one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return main(argv)
    except USER_ERRORS as error:
        if verbose_requested(argv):
            traceback.print_exc()
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def one_line(error: BaseException) -> str:
    """The error's message on one line (a KeyError's repr quotes it; newlines are folded)."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(str(message).split()) or type(error).__name__


def tile_options(
    tile: int | Sequence[int] | None,
    *,
    overlap: int | None = None,
    blend: str = "gaussian",
    batch_size: int = 4,
    border: int = 0,
) -> TileOptions | None:
    """TileOptions from command-line values; None when `tile` is None or 0 (whole images)."""
    if not tile:
        return None
    tile_value = int(tile) if isinstance(tile, int) else tuple(int(t) for t in tile)
    return TileOptions(
        tile=tile_value, overlap=overlap, blend=blend, batch_size=batch_size, border=border
    )


def report_results(
    prog: str,
    results: Iterable[FileResult],
    *,
    total: int,
    failures: list[tuple[str, str]],
    unit: str,
    written: str,
    output: os.PathLike,
    progress: bool = True,
) -> int:
    """Runs the per-file loop under a progress bar, printing each failure as it comes, each note
    once, and a summary; the exit status: 1 when any input (or an earlier one in `failures`)
    failed or nothing was written."""
    count, notes = 0, set()
    start = time.perf_counter()
    bar = progress_lib.bar(results, total=total, unit=unit, enabled=progress)
    for result in bar:
        if result.error is not None:
            failures.append((result.source, result.error))
            bar.write(f"failed: {result.error}", file=sys.stderr)
            continue
        count += 1
        if result.note and result.note not in notes:
            notes.add(result.note)
            bar.write(f"{prog}: {result.note}", file=sys.stderr)
    seconds = time.perf_counter() - start
    print(f"{prog}: wrote {count} {written} to {output} in {seconds:.1f} s")
    if failures:
        print(f"{prog}: {len(failures)} inputs failed:", file=sys.stderr)
        for item, message in failures:
            print(
                f"  {message if message.startswith(item) else f'{item}: {message}'}",
                file=sys.stderr,
            )
        return EXIT_FAILED
    return EXIT_OK if count else EXIT_FAILED
