"""On a GPU, the train step and the pruned predictor give the CPU's numbers (skipped without one).

`benchmarks/gpu_check.sh` runs these (`pytest -m gpu`) before it times anything. The reference
is XLA's CPU backend in the same process: the same program on another compiler and other kernels
(cuDNN's convolutions, TF32 for float32 under XLA's default precision on Hopper).
"""

import functools

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from unetjax import steps
from unetjax.nested_unet import UNetPlusPlus


def gpu_devices() -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not gpu_devices(), reason="needs a GPU (JAX sees none)"),
]
FILTERS = (8, 16, 32)
# The reference is the CPU's float32 step. Its bfloat16 step sets the scale of rounding errors
# (at this initialisation about 0.4 of the gradient's norm, 0.1-0.3 per parameter): the GPU's
# bfloat16 step may err up to twice that, its float32 step (TF32 convolutions: 3 more mantissa
# bits, about 8 times smaller errors) up to half of it. A wrong kernel errs by about 1.
LOSS_TOLERANCE = {"float32": 1e-3, "bfloat16": 2e-2}
GRADIENT_BOUND = {"float32": 0.5, "bfloat16": 2.0}


def model(dtype: str):
    return UNetPlusPlus(
        depth=2,
        filters=FILTERS,
        norm="batch",
        rngs=nnx.Rngs(0),
        dtype=None if dtype == "float32" else jax.numpy.dtype(dtype),
    )


def batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": rng.normal(size=(4, 32, 32, 1)).astype(np.float32),
        "mask": (rng.random((4, 32, 32)) > 0.5).astype(np.int32),
    }


@functools.cache
def one_step(device, dtype: str) -> tuple[float, np.ndarray]:
    """The loss and the gradient of one train step on `device` (SGD at rate 1: the parameters'
    change is minus the gradient)."""
    optimizer = optax.sgd(1.0)
    graphdef, state = steps.create_train_state(model(dtype), optimizer)
    state, data = jax.device_put((state, batch()), device)
    new_state, metrics = jax.jit(steps.make_train_step(graphdef, optimizer))(state, data)
    assert next(iter(jax.tree.leaves(new_state.params))).devices() == {device}
    change = jax.tree.map(lambda new, old: np.asarray(old - new), new_state.params, state.params)
    gradient = np.concatenate([leaf.ravel() for leaf in jax.tree.leaves(change)])
    return float(metrics["loss"]), gradient


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_train_step_on_the_gpu_gives_the_cpus_loss_and_gradient(dtype):
    cpu = jax.devices("cpu")[0]
    loss, gradient = one_step(gpu_devices()[0], dtype)
    reference_loss, reference = one_step(cpu, "float32")
    rounding = relative_error(one_step(cpu, "bfloat16")[1], reference)
    assert np.isfinite(loss) and np.isfinite(gradient).all()
    assert abs(loss - reference_loss) <= LOSS_TOLERANCE[dtype] * abs(reference_loss)
    error = relative_error(gradient, reference)
    assert error <= GRADIENT_BOUND[dtype] * rounding, (
        f"relative gradient error {error:.3g}; the CPU's bfloat16 step errs {rounding:.3g}"
    )


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


@pytest.mark.parametrize("depth", [1, 2])
def test_the_pruned_predictor_on_the_gpu_gives_the_cpus_probabilities(depth):
    from benchmarks.volume_inference import predictor_for  # imports the data package: lazily

    full = model("float32")
    image = batch()["image"][0]
    predictor = predictor_for(full, depth)
    assert predictor.mesh.devices.flat[0].platform == "gpu"
    on_gpu = predictor.predict(image)
    graphdef, state = nnx.split(full)
    predict = jax.jit(lambda state, x: nnx.merge(graphdef, state).predict(x, depth=depth))
    on_cpu = predict(*jax.device_put((state, image[None]), jax.devices("cpu")[0]))
    np.testing.assert_allclose(on_gpu, np.asarray(on_cpu)[0], atol=5e-3)
