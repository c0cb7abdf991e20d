"""Shared test fixtures and the torch reference import."""

import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import types

import jax
import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]


def import_torch_references() -> types.ModuleType:
    """torch for the reference tests (the test module is skipped without it), with torchvision
    made importable beside the CPU torch wheel (`benchmarks.torch_import`)."""
    pytest.importorskip("torch")
    from benchmarks import torch_import

    return torch_import.torch_with_torchvision()


def pytest_configure(config: pytest.Config) -> None:
    """Compile time dominates the suite's tiny networks, in-process and in every command a test
    runs (they inherit the environment, set here before any test module builds one): XLA's
    optimisations off (the same numbers to float rounding; speed is measured by benchmarks/,
    never here), and a persistent compilation cache per test process, so a program compiled
    by one command is a cache hit in the next. Removed at the end, so nothing carries over."""
    cache = tempfile.mkdtemp(prefix="unetjax-xla-cache-")
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    os.environ.update(
        {
            "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
            "JAX_COMPILATION_CACHE_DIR": cache,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        }
    )
    jax.config.update("jax_disable_most_optimizations", True)
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run_command(
    args: list[str], env: dict[str, str], check_rc: int | None = 0
) -> subprocess.CompletedProcess:
    """`python ARGS` from the repository root, its output captured (stderr is not a terminal)."""
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if check_rc is not None:
        assert result.returncode == check_rc, result.stdout + result.stderr
    return result


@dataclasses.dataclass(frozen=True)
class TinyRun:
    """A finished `train.py --config configs/tiny.py` run and what the command printed."""

    workdir: pathlib.Path
    stdout: str
    stderr: str
    env: dict[str, str]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    """15 steps of configs/tiny.py (a depth-2 UNet++ on synthetic cells) in a subprocess, with
    its own TFDS data dir, so the output includes preparing the dataset."""
    root = tmp_path_factory.mktemp("tiny_run")
    env = {**os.environ, "TFDS_DATA_DIR": str(root / "tfds"), "JAX_PLATFORMS": "cpu"}
    workdir = root / "run"
    result = run_command(
        [
            "train.py",
            "--config",
            "configs/tiny.py",
            "--workdir",
            str(workdir),
            "--config.train.num_steps=15",
        ],
        env,
    )
    return TinyRun(workdir, result.stdout, result.stderr, env)


@pytest.fixture(scope="session")
def trained(tiny_run, tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path, dict[str, str]]:
    """(the tiny run's workdir, a folder of test images, env) for the commands that read a run;
    tests that write into a run copy it first."""
    images = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, shape in [("cell_a", (32, 32)), ("cell_b", (32, 32)), ("large", (70, 45))]:
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(images / f"{name}.png")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "colour.png")  # 3 channels
    (images / "broken.png").write_bytes(b"not a png")
    return tiny_run.workdir, images, tiny_run.env
