"""How `datasets.prepare` sets up the `decathlon` builder from `config.data`.

The built dataset's name is a fingerprint of the folder (every file's path, size and mtime) and
of the options that change what is written, so a changed folder or option builds anew and an
unchanged one is opened as it is. Scanning and checking the folder (`builder.make_config`)
only runs when that name is not built yet.
"""

from collections.abc import Callable

import ml_collections

from unetjax.data import samples
from unetjax.data.errors import DataError
from unetjax.data.volumes import builder

# The config.data fields that change the built files.
OPTIONS = (
    "target_spacing",
    "val_fraction",
    "test_fraction",
    "dataset_seed",
    "train_stems",
    "val_stems",
    "test_stems",
    "nonfinite_fill",
)


def case_lists(data_config: ml_collections.ConfigDict) -> dict[str, tuple[str, ...]] | None:
    """Explicit case ids per split (data.train_stems, ...), or None to split by fractions."""
    if data_config.train_stems is None:
        return None
    return {
        "train": tuple(data_config.train_stems),
        "validation": tuple(data_config.val_stems or ()),
        "test": tuple(data_config.test_stems or ()),
    }


def builder_config(
    data_config: ml_collections.ConfigDict,
) -> tuple[str, Callable[[], builder.DecathlonConfig]]:
    """The builder config's name and a function that scans data.manual_dir and makes the config."""
    root = samples.source_root(data_config)
    spacing = data_config.target_spacing
    if spacing is not None and (len(spacing) != 3 or min(spacing) <= 0):
        raise DataError(
            f"data.target_spacing={tuple(spacing)}; expected 3 positive mm values (D, H, W) "
            "= (superior, anterior, right), or None for the training set's median"
        )
    options = {key: data_config[key] for key in OPTIONS}
    name = samples.built_name(root, options)

    def make(show_progress: bool = True) -> builder.DecathlonConfig:
        return builder.make_config(
            root,
            name=name,
            target_spacing=None if spacing is None else tuple(float(s) for s in spacing),
            val_fraction=data_config.val_fraction,
            test_fraction=data_config.test_fraction,
            seed=data_config.dataset_seed,
            case_lists=case_lists(data_config),
            nonfinite_fill=data_config.nonfinite_fill,
            show_progress=show_progress,
        )

    return name, make
