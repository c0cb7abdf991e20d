"""Shared test fixtures and the torch reference import."""

import glob
import importlib.util
import os
import types

import jax
import pytest


def import_torch_references() -> types.ModuleType:
    """torch for the reference tests (the test module is skipped without it), with torchvision
    made importable beside the CPU torch wheel.

    PyPI's torchvision wheels link CUDA torch (libc10_cuda.so); beside the `+cpu` torch wheel CI
    installs, their C++ ops fail to load and the import then stops registering a fake for the
    missing `torchvision::nms`. timm and smp need only torchvision's Python modules, so declaring
    the two ops' schemas is enough (the detection ops themselves stay unusable).
    """
    torch = pytest.importorskip("torch")
    spec = importlib.util.find_spec("torchvision")
    if spec is None or hasattr(torch.ops.torchvision, "nms"):
        return torch
    try:
        for library in glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so")):
            torch.ops.load_library(library)
        return torch
    except OSError:
        pass
    for op in ("nms", "qnms"):
        torch.library.define(
            f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
        )
    return torch


@pytest.fixture(scope="module")
def fast_compile():
    """Compile time dominates tiny test cases: XLA's optimisations off for the module that asks
    (`pytestmark = pytest.mark.usefixtures("fast_compile")`), restored after it."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)
