"""Shared test fixtures and the torch reference import."""

import dataclasses
import os
import pathlib
import subprocess
import sys
import types

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def import_torch_references() -> types.ModuleType:
    """torch for the reference tests (the test module is skipped without it), with torchvision
    made importable beside the CPU torch wheel (`benchmarks.torch_import`)."""
    pytest.importorskip("torch")
    from benchmarks import torch_import

    return torch_import.torch_with_torchvision()


@pytest.fixture(scope="module")
def fast_compile():
    """Compile time dominates tiny test cases: XLA's optimisations off for the module that asks
    (`pytestmark = pytest.mark.usefixtures("fast_compile")`), restored after it."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


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
        {**env, "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"},  # compile time dominates 15 tiny steps
    )
    return TinyRun(workdir, result.stdout, result.stderr, env)
