"""plans.json on disk, and a plan applied to a training config as ordinary config fields.

`configs/auto.py` sets a `plan` section; at train start `planned_config` reuses the plan beside
the data (or `plan.file`) when its data hash matches the folder's, refuses one made for other
data (naming both hashes), plans anew when none is there or its budgets differ, and writes each
planned value into its config field, except the fields the user overrode on the command line
(`plan.overrides`, filled by the train command): those win, and are recorded in
`plan.overridden` and in the run's copy of plans.json.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib

import jax
import ml_collections

from unetjax.planning import fingerprint, fits, memory, planner

logger = logging.getLogger(__name__)

PLAN_FILE = "plans.json"
CPU_DEFAULT_GB = 4.0


def save(plan: dict, directory: str | os.PathLike) -> pathlib.Path:
    """Writes DIRECTORY/plans.json atomically."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PLAN_FILE
    path.with_suffix(".tmp").write_text(json.dumps(plan, indent=2, default=_jsonable))
    os.replace(path.with_suffix(".tmp"), path)
    return path


def writable(directory: str | os.PathLike) -> bool:
    """Whether plans.json may go in `directory`: writable, and not a folder whose mode says
    read-only (a shared dataset; root could write it anyway)."""
    path = pathlib.Path(directory)
    if not path.exists():
        return True
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load(path: str | os.PathLike) -> dict:
    try:
        plan = json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a plans.json ({error}); delete it to plan anew") from None
    if plan.get("version") != planner.VERSION or "config" not in plan:
        raise ValueError(f"{path}: not a plans.json of version {planner.VERSION}; plan anew")
    return plan


def budget(memory_gb: float | None, hours: float) -> fits.Budget:
    """The budgets a plan is made for; memory from the device when `memory_gb` is None."""
    if memory_gb is not None and memory_gb <= 0:
        raise ValueError(f"memory budget {memory_gb} GB; expected a positive number of GB")
    if hours <= 0:
        raise ValueError(f"time budget {hours} h; expected a positive number of hours")
    if memory_gb is None:
        memory_bytes, source = memory.device_budget_bytes(CPU_DEFAULT_GB)
    else:
        memory_bytes, source = int(memory_gb * 2**30), "as asked"
    return fits.Budget(memory_bytes, source, float(hours))


def check_hash(plan: dict, path: pathlib.Path, data: str, current: str) -> None:
    if plan["data_hash"] != current:
        raise ValueError(
            f"{path} was made for other data (hash {plan['data_hash']}, {plan['source']}); "
            f"{data} has hash {current}; delete it or set --config.plan.file to plan anew"
        )


def _set(config: ml_collections.ConfigDict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    section = config
    for name in parents:
        section = section[name]
    section[leaf] = tuple(value) if isinstance(value, list) else value


def _get(config: ml_collections.ConfigDict, key: str):
    section = config
    for name in key.split("."):
        section = section[name]
    return section


def apply(config: ml_collections.ConfigDict, plan: dict, overrides: tuple[str, ...]) -> list[str]:
    """Writes the plan's values into `config` except the overridden keys; returns those."""
    overridden = []
    for key, value in plan["config"].items():
        if key in overrides:
            overridden.append(key)
        else:
            _set(config, key, value)
    return overridden


def _matches(plan: dict, wanted: fits.Budget, architecture: str) -> bool:
    return (
        plan.get("architecture") == architecture
        and plan["budget"]["memory_bytes"] == wanted.memory_bytes
        and plan["budget"]["hours"] == wanted.hours
    )


def planned_config(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
    """`config` with its plan applied (see the module doc); plans.json is kept in `workdir`."""
    data = config.data.manual_dir
    if not data:
        raise ValueError(
            "configs/auto.py plans from a dataset folder: set --config.data.manual_dir=DIR"
        )
    config = ml_collections.ConfigDict(config.to_dict())
    path = pathlib.Path(config.plan.file or pathlib.Path(data) / PLAN_FILE)
    wanted = budget(config.plan.memory_gb, config.plan.hours)
    current = fingerprint.data_hash(data)
    plan = None
    if path.is_file():
        plan = load(path)
        check_hash(plan, path, data, current)
        if not _matches(plan, wanted, config.model.architecture):
            logger.info("%s was planned for other budgets or architecture: planning anew", path)
            plan = None
        else:
            logger.info("reusing the plan in %s", path)
    if plan is None:
        plan = planner.make_plan(
            fingerprint.fingerprint(data), wanted, config.model, devices=jax.device_count()
        )
        if writable(path.parent):
            path = save(plan, path.parent)
        else:
            logger.info("%s is read-only; the plan is kept in the run only", path.parent)
    logger.info("%s", planner.describe(plan))
    overridden = apply(config, plan, tuple(config.plan.overrides or ()))
    if overridden:
        logger.info("overrides win over the plan: %s", ", ".join(overridden))
    config.plan.data_hash = plan["data_hash"]
    config.plan.overridden = tuple(overridden)
    run_copy = dict(plan, overrides={key: _get(config, key) for key in overridden})
    save(run_copy, workdir)
    return config
