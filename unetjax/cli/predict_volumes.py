"""`predict` for a run trained on the decathlon dataset: NIfTI in, one .nii.gz label map out per
case, on the input's grid with its affine and header (see `unetjax.inference.volumes`).

    python predict.py --model runs/liver --output predictions/ imagesTs/ extra/case.nii.gz

`predict.py` hands such runs here. Inputs are .nii / .nii.gz files, folders of them and glob
patterns; nnU-Net channel files (<case>_0000.nii.gz, ...) form one case. Volumes are predicted
by sliding window: `--tile N` is N voxels on every axis (default, and with --tile 0: the run's
training patch size), `--overlap` defaults to half a tile; --blend, --batch-size, --tta, --depth,
--mode and --min-size work as for images. Outputs are always .nii.gz (--format is for images);
--overlay and --probabilities are for images only.
"""

from __future__ import annotations

import argparse
import pathlib

from unetjax.cli import common
from unetjax.data.volumes import preprocessing as volume_preprocessing
from unetjax.inference import volumes
from unetjax.inference.predictor import Predictor


def main(args: argparse.Namespace, predictor: Predictor) -> int:
    """Predicts every case named by `args.inputs`; the exit status as `predict.main`'s."""
    if args.overlay or args.probabilities:
        raise common.UsageError("--overlay and --probabilities are for images, not NIfTI volumes")
    preprocessing = volume_preprocessing.load_for_run(args.model, predictor.config)
    tile = volumes.sliding_window(
        predictor,
        args.tile,
        overlap=args.overlap,
        blend=args.blend,
        batch_size=args.batch_size,
        border=args.border,
    )
    files, failures = volumes.expand_inputs(args.inputs)
    cases = volumes.group_cases(files)
    output = pathlib.Path(args.output)
    print(
        f"predict: {len(cases)} volumes, {args.model} step {predictor.step}, depth "
        f"{predictor.depth} ({predictor.mode}), {predictor.num_params:,} parameters, tiles "
        f"{tile.tile}, spacing {tuple(round(s, 3) for s in preprocessing.target_spacing)} mm"
    )
    results = volumes.predict_volumes(
        predictor, cases, preprocessing, output, tile=tile, tta=args.tta, min_size=args.min_size
    )
    return common.report_results(
        "predict",
        results,
        total=len(cases),
        failures=failures,
        unit="volume",
        written="label maps",
        output=output,
        progress=args.progress,
    )
