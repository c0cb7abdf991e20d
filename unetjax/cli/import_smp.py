"""Import a trained segmentation_models_pytorch UnetPlusPlus as a unetjax run directory.

    python -m unetjax.cli.import_smp model.pth --encoder resnet34 --classes 1 \
        --normalize imagenet --workdir runs/smp_polyps [--tile 256]

`model.pth` (or `.safetensors`) is the `state_dict` of
`smp.UnetPlusPlus(encoder, classes=..., in_channels=...)` with smp's default decoder. The run
directory (config.json and an Orbax checkpoint at step 0) works wherever a training run does:
predict, evaluate, export; and `--config.model.init_from=runs/smp_polyps` starts a new training
run from it, e.g. with deep supervision added (the new heads start from scratch).

The imported model never trained on patches, so predict runs it on whole images, as smp does
(its probabilities are smp's); `--tile N` records a tile size for predict to use instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import jax.numpy as jnp
import ml_collections
from flax import nnx

from unetjax import checkpoint, data, encoder_unet, models, nested_unet, rundir
from unetjax.cli import common
from unetjax.encoders import read_state_dict, smp

NORMALIZE = ("imagenet", "none")


def import_config(
    *,
    encoder: str,
    classes: int,
    in_channels: int,
    normalize: str,
    source: str,
    tile: int | None = None,
) -> ml_collections.ConfigDict:
    """The run config of an imported smp UnetPlusPlus: smp's decoder settings, one head; and
    where it came from, with the tile predict uses (None: whole images)."""
    mean, std = models.NORMALIZATIONS.get(normalize, (None, None))
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.model = dict(
        architecture="unet_plusplus",
        encoder=encoder,
        encoder_weights=None,
        init_from=None,
        decoder_channels=encoder_unet.SMP_DECODER_CHANNELS,
        depth=None,
        base_filters=None,
        filters=None,
        deep_supervision=False,
        norm="batch",
        activation="relu",
        dropout=0.0,
        upsample="nearest",
        cat_channels=64,
        dtype="float32",
        spatial_dims=2,
        in_channels=in_channels,
        num_classes=classes,
        output_activation="sigmoid" if classes == 1 else "softmax",
        input_mean=mean,
        input_std=std,
        freeze_encoder_bn=False,
    )
    config.data = data.default_config()
    config.imported_from = dict(
        library="segmentation_models_pytorch",
        state_dict=source,
        tile=[tile, tile] if tile else None,
    )
    return config


def import_smp(
    path: str,
    workdir: str,
    *,
    encoder: str,
    classes: int,
    in_channels: int,
    normalize: str,
    tile: int | None = None,
) -> nested_unet.NestedUNet:
    """Converts smp's state_dict at `path` and writes a run directory at `workdir`."""
    if encoder not in smp.SMP_ENCODERS:
        raise ValueError(f"--encoder {encoder!r}: importable are {', '.join(smp.SMP_ENCODERS)}")
    if os.path.exists(rundir.checkpoint_dir(workdir)):
        raise ValueError(f"{workdir} already holds checkpoints; import into a new --workdir")
    config = import_config(
        encoder=encoder,
        classes=classes,
        in_channels=in_channels,
        normalize=normalize,
        source=os.path.abspath(path),
        tile=tile,
    )
    model = nnx.eval_shape(lambda: models.from_config(config.model))
    smp.load_smp_state_dict(model, read_state_dict(path), source=path)
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    rundir.save_config(workdir, config)
    manager = checkpoint.CheckpointManager(rundir.checkpoint_dir(workdir), keep_latest=1)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "model_state": model_state}
    manager.save(0, state)
    manager.wait_until_finished()
    manager.close()
    return model


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="import_smp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("state_dict", help="smp UnetPlusPlus state_dict (.pth or .safetensors)")
    parser.add_argument("--encoder", required=True, choices=smp.SMP_ENCODERS)
    parser.add_argument("--classes", type=int, default=1)
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument(
        "--normalize",
        choices=NORMALIZE,
        default="imagenet",
        help="the input normalisation the smp model was trained with (applied in the model)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile size predict uses for this model (default: whole images, as smp predicts)",
    )
    parser.add_argument("--workdir", required=True, help="new run directory")
    common.add_verbose_flag(parser)
    args = parser.parse_args(argv)
    common.configure_logging()
    model = import_smp(
        args.state_dict,
        args.workdir,
        encoder=args.encoder,
        classes=args.classes,
        in_channels=args.in_channels,
        normalize=args.normalize,
        tile=args.tile,
    )
    print(
        f"import_smp: wrote {args.workdir}: unet_plusplus over {args.encoder}, "
        f"{nested_unet.count_params(model):,} parameters"
    )
    return common.EXIT_OK


def run(argv: Sequence[str] | None = None) -> int:
    return common.run_command("import_smp", main, argv)


if __name__ == "__main__":
    sys.exit(run())
