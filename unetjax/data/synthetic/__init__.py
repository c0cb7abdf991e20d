"""The embedded synthetic_cells dataset: procedural nuclei-like images, no download. Registers
its kind (`unetjax.data.kinds`)."""

from unetjax.data import kinds
from unetjax.data.synthetic import builder

kinds.register(
    kinds.DatasetKind(
        name="synthetic_cells",
        builder=builder.SyntheticCells,
        builder_config=builder.builder_config,
        binary=True,
        dataset_statistics=True,
        resize_hint="set data.image_size",
    )
)
