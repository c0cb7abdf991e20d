"""A run directory on disk: where its config, checkpoints and reports live.

Layout of a run's workdir:
  config.json         the full config, with the data-derived model fields filled in
  checkpoints/<step>/ Orbax checkpoints (see `unetjax.checkpoint`)
  metrics.jsonl       one JSON object per logged step or evaluation
  tensorboard/        TensorBoard event files
  overlays/           prediction overlays of validation images, per evaluation
  dataset_summary.json, splits.json   what was trained on (samples, sizes, classes; stems)
  thresholds.json     the thresholds `evaluate --sweep` chose, per depth and mode
  .lock               while a training runs in it: that process's pid, host and start time
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator

import ml_collections

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
DATASET_SUMMARY_FILE = "dataset_summary.json"
SPLITS_FILE = "splits.json"  # file stems per split, for folder datasets
LOCK_FILE = ".lock"
LOCK_POLL_SECONDS = 2.0


def checkpoint_dir(workdir: str | os.PathLike) -> str:
    return os.path.join(os.fspath(workdir), CHECKPOINT_DIR)


def save_config(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
    """Writes config.json atomically (a temporary file renamed over the old one)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(path + ".tmp", path)


def save_json(workdir: str | os.PathLike, name: str, payload) -> None:
    """Writes `name` in the run directory atomically."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(os.fspath(workdir), name)
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


CONFIG_FIX = "restore it (from a copy of the run), or train again in a new run directory"


def read_json(path: str | os.PathLike, fix: str):
    """The JSON value in a run directory's file `path`; a damaged file (truncated, edited by
    hand) is a RunDirectoryError naming it, where JSON broke and `fix`, the way out."""
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RunDirectoryError(
            f"{os.fspath(path)} is damaged: {error.msg} at line {error.lineno} column "
            f"{error.colno} (char {error.pos}); {fix}"
        ) from None


def read_config_json(workdir: str | os.PathLike) -> dict:
    """A run's config.json as saved, checked to be a config (an object with a model section):
    the one reader of that file for train, predict, evaluate and export."""
    path = os.path.join(os.fspath(workdir), CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: expected a run directory written by train.py (or an exported model)"
        )
    saved = read_json(path, CONFIG_FIX)
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise RunDirectoryError(f"{path} is damaged: it holds no 'model' section; {CONFIG_FIX}")
    return saved


def load_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """A run's config.json as a ConfigDict."""
    return ml_collections.ConfigDict(read_config_json(workdir))


def last_record(workdir: str | os.PathLike, *, split: str) -> dict | None:
    """The last metrics.jsonl record of `split` ("train" or "val"), or None."""
    path = os.path.join(os.fspath(workdir), METRICS_FILE)
    if not os.path.isfile(path):
        return None
    last = None
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") == split:
                last = record
    return last


# Keys a rerun may change and still resume: how long to train, how often to log, evaluate and
# save, how the work is spread and shown. Anything else (model, data, optimiser, seed) would
# silently mix two experiments in one directory.
RESUMABLE_KEYS = (
    "train.num_steps",
    "train.log_every",
    "train.eval_every",
    "train.checkpoint_every",
    "train.keep_latest",
    "train.num_overlays",
    "train.stop_after_steps",
    "train.early_stopping_patience",
    "train.eval_batch_size",
    "train.progress_bar",
    "train.distributed",
    "train.coordinator_address",
    "train.num_processes",
    "train.process_id",
    "data.data_dir",
    "data.num_threads",
    "data.prefetch",
)
# Model fields filled in from the dataset: a config that leaves them unset means "from the data".
DERIVED_KEYS = (
    "model.in_channels",
    "model.num_classes",
    "model.output_activation",
    "model.spatial_dims",
)
PATH_KEYS = ("data.manual_dir", "data.data_dir")
# Sections computed from the data (normalisation statistics): compared once they are known.
DERIVED_SECTIONS = ("normalization.",)


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked (exit code 2 from the commands)."""


def check_workdir(workdir: str | os.PathLike) -> None:
    """Fails at once, before any data is prepared, when `workdir` cannot hold a run."""
    path = os.path.abspath(os.fspath(workdir))
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirectoryError(f"--workdir {path} is a file; give a directory for the run")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirectoryError(
            f"--workdir {path}: {existing} is not a writable directory; choose another --workdir"
        )


def absolute_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy with data paths made absolute, so the saved run works from any directory."""
    config = ml_collections.ConfigDict(config.to_dict())
    for key in PATH_KEYS:
        section, field = key.split(".")
        value = config[section].get(field)
        if value:
            config[section][field] = os.path.abspath(os.path.expanduser(value))
    return config


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = list(value) if isinstance(value, tuple) else value
    return flat


def changed_keys(saved: dict, wanted: dict) -> list[tuple[str, object, object]]:
    """(key, saved value, wanted value) for every key a resume may not change.

    Derived model fields left unset in `wanted` are not compared (the data decides them).
    """
    old, new = _flatten(saved), _flatten(wanted)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key in RESUMABLE_KEYS or key.startswith("export."):
            continue
        derived = key in DERIVED_KEYS or key.startswith(DERIVED_SECTIONS)
        if derived and new.get(key) is None:
            continue
        before, after = old.get(key), new.get(key)
        if before != after:
            changes.append((key, before, after))
    return changes


def check_resume(workdir: str | os.PathLike, config: ml_collections.ConfigDict) -> None:
    """Refuses to resume a run whose saved config differs from `config` beyond RESUMABLE_KEYS,
    naming each changed key (old -> new) and the way out."""
    if not os.path.isfile(os.path.join(os.fspath(workdir), CONFIG_FILE)):
        return
    saved = read_config_json(workdir)
    wanted = json.loads(absolute_paths(config).to_json_best_effort())
    changes = changed_keys(saved, wanted)
    if changes:
        listed = "; ".join(f"{key}: {before!r} -> {after!r}" for key, before, after in changes)
        raise RunDirectoryError(
            f"{os.fspath(workdir)} holds a run with another config ({listed}); resume it with its "
            f"own config, or start this one elsewhere with --workdir"
        )


THRESHOLDS_FILE = "thresholds.json"


def save_thresholds(
    workdir: str | os.PathLike, step: int, split: str, best: dict[tuple[int, str], float]
) -> None:
    """Records `evaluate --sweep`'s best sigmoid threshold per (depth, mode) for `step`."""
    path = os.path.join(os.fspath(workdir), THRESHOLDS_FILE)
    record = {
        "step": step,
        "split": split,
        "thresholds": {f"L{depth} {mode}": value for (depth, mode), value in best.items()},
    }
    with open(path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
    os.replace(path + ".tmp", path)


def chosen_threshold(
    workdir: str | os.PathLike, depth: int, mode: str, step: int
) -> tuple[float, str] | None:
    """The swept threshold for this setting and checkpoint step, with where it came from."""
    path = os.path.join(os.fspath(workdir), THRESHOLDS_FILE)
    if not os.path.isfile(path):
        return None
    record = read_json(path, "delete it, or rerun evaluate --sweep")
    value = record["thresholds"].get(f"L{depth} {mode}")
    if value is None or record["step"] != step:
        return None
    return float(value), f"evaluate --sweep on the {record['split']} split at step {step}"


class RunDirectoryBusyError(RunDirectoryError):
    """Another live process trains in the run directory."""


def _holder_text(holder: dict) -> str:
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')}"
    )


def _read_holder(fd: int) -> dict:
    """The pid, host and start time a lock file records ({} when empty or unreadable)."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode(errors="replace")
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(holder: dict) -> bool:
    """Whether the process a lock file records may still run (no record: no)."""
    if holder.get("pid") is None:
        return False
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _try_lock(path: str) -> tuple[int, dict] | dict:
    """(descriptor, the previous holder's record) when the lock is ours now; else the record of
    the live process that holds it.

    The kernel's `flock` is the truth about liveness: it is released when its process ends, by
    a crash or `kill -9` too, so a lock file left behind is stale exactly when it can be locked.
    Where the file system has no `flock`, the recorded pid is checked instead (alive on this
    host, or on another host, where it cannot be checked: busy).
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read_holder(fd)
            no_flock = error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
            if no_flock and not _alive(holder):
                return fd, holder
            os.close(fd)
            if no_flock or error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return holder
            raise
        try:
            same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:  # not a file its holder removed while we waited to open it
            return fd, _read_holder(fd)
        os.close(fd)


@contextlib.contextmanager
def run_lock(workdir: str | os.PathLike, *, wait: bool = False) -> Iterator[str]:
    """Holds `<workdir>/.lock` (pid, host, start time) while a training runs in `workdir`.

    Another live training there raises RunDirectoryBusyError naming it, or, with `wait`, is
    waited for. A lock left by a process that is gone (a crash, `kill -9`) is taken over with
    a warning. The file is removed on exit, by an error, Ctrl-C or SIGTERM too (SIGTERM outside
    the training loop's own handler ends the process through this block, exit code 143).
    """
    created = not os.path.exists(workdir)
    path = os.path.join(os.fspath(workdir), LOCK_FILE)
    waited = False
    while True:
        os.makedirs(workdir, exist_ok=True)  # again: a holder that wrote nothing removes it
        try:
            taken = _try_lock(path)
        except FileNotFoundError:
            continue
        if isinstance(taken, tuple):
            break
        if not wait:
            raise RunDirectoryBusyError(
                f"{os.fspath(workdir)} is in use by another training ({_holder_text(taken)}); "
                "wait for it to end, pass --wait_for_lock, or choose another --workdir"
            )
        if not waited:
            logger.info("waiting for the training in %s (%s)", workdir, _holder_text(taken))
            waited = True
        time.sleep(LOCK_POLL_SECONDS)
    fd, previous = taken
    if previous.get("pid") is not None:
        logger.warning(
            "%s: took over a stale lock (%s): that process ended without removing it",
            path,
            _holder_text(previous),
        )
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)
    os.fsync(fd)
    restore = _exit_on_sigterm()
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        os.close(fd)  # releases the flock
        restore()
        if created:  # a run that failed before writing anything leaves no empty directory
            with contextlib.suppress(OSError):
                os.rmdir(workdir)


def _exit_on_sigterm():
    """SIGTERM (default: die at once) raises SystemExit(143), so `finally` blocks run; returns
    the function that puts the previous handler back. Only from the main thread."""
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return lambda: None
        signal.signal(signal.SIGTERM, _raise_exit)
    except ValueError:  # not the main thread: signals are not ours to handle
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)
