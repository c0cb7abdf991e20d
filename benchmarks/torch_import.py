"""torch with torchvision importable beside the CPU torch wheel, for the PyTorch references.

PyPI's torchvision wheels link CUDA torch (libc10_cuda.so); beside the `+cpu` torch wheel CI
installs, their C++ ops fail to load and the import then stops registering a fake for the
missing `torchvision::nms`. timm and smp need only torchvision's Python modules, so declaring
the two ops' schemas is enough (the detection ops themselves stay unusable). Used by the tests'
reference comparisons and by the benchmarks' smp workers.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import types


def torch_with_torchvision() -> types.ModuleType:
    """`import torch`, after which `import torchvision` (and timm, smp) works."""
    import torch

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
