"""Image-folder datasets (image_folder, isbi2012_em, dsb2018_nuclei): 2D or 3D image files
and their masks, paired by file stem. Registers their kinds (`unetjax.data.kinds`)."""

import functools

from unetjax.data import kinds
from unetjax.data.folders import builder, builder_config


def _register(name: str, builder_class: type, find_samples, **facts) -> None:
    kinds.register(
        kinds.DatasetKind(
            name=name,
            builder=builder_class,
            builder_config=functools.partial(
                builder_config.builder_config, find_samples=find_samples
            ),
            image_files=True,
            dataset_statistics=True,
            **facts,
        )
    )


_register(
    "image_folder", builder.ImageFolder, builder_config.image_folder_samples, mask_layouts=True
)
_register("isbi2012_em", builder.Isbi2012Em, builder_config.isbi2012_samples, binary=True)
_register("dsb2018_nuclei", builder.Dsb2018Nuclei, builder_config.dsb2018_samples, binary=True)
