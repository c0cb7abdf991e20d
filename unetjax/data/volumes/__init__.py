"""Medical volumes (the decathlon dataset): MSD / nnU-Net NIfTI folders read in RAS, resampled
to one spacing, normalised (CT / z-score), sampled in patches, predicted back onto their grid.
Registers its kind (`unetjax.data.kinds`)."""

from unetjax.data import kinds
from unetjax.data.volumes import builder, builder_config, transforms

kinds.register(
    kinds.DatasetKind(
        name="decathlon",
        builder=builder.Decathlon,
        builder_config=builder_config.builder_config,
        train_transform=transforms.train_transform,
        eval_transform=transforms.eval_transform,
        normalised_when_built=(
            "decathlon volumes are normalised when the dataset is built (CT: clip and z-score; "
            "MR: per-case z-score)"
        ),
        pads_small_images=True,
        nonfinite_fill=True,
        takes_volumes=True,
    )
)
