"""Data parallelism over every device: a 1-D `Mesh` with a `data` axis.

The batch is sharded along `data`, the train state is replicated, and XLA inserts the gradient
all-reduce. Batch-norm statistics are means over the sharded batch axis, so they are global.
"""

from __future__ import annotations

import logging

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

DATA_AXIS = "data"


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-process run; arguments left None are read from the cluster environment.

    On CPU, cross-process collectives go through gloo (XLA's CPU default has none).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    logger.info(
        "process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def make_mesh() -> Mesh:
    """A mesh over every device of every process, one `data` axis."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(global_batch_size: int, mesh: Mesh, *, name: str = "train.batch_size") -> int:
    """The per-process batch size; raises when the global batch does not split over the mesh."""
    devices = mesh.devices.size
    if global_batch_size % devices:
        raise ValueError(
            f"{name}={global_batch_size} must be divisible by the {devices} devices "
            f"of the mesh (e.g. {max(devices, global_batch_size // devices * devices)})"
        )
    return global_batch_size // jax.process_count()


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This process's slice of the global batch -> global arrays sharded along `data`."""
    sharding = batch_sharding(mesh)
    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in batch.items()
    }
