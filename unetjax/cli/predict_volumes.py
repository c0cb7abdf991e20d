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
import glob
import pathlib
import sys
import time
from collections.abc import Sequence

import tqdm

from unetjax.cli import common
from unetjax.data.volumes import preprocessing as volume_preprocessing
from unetjax.inference import volumes
from unetjax.inference.predictor import Predictor


def takes_volumes(predictor: Predictor) -> bool:
    """Whether the run was trained on NIfTI volumes (so predicts them with their geometry)."""
    return volume_preprocessing.takes_volumes(predictor.config.get("data"))


def expand_inputs(inputs: Sequence[str]) -> tuple[list[pathlib.Path], list[tuple[str, str]]]:
    """NIfTI files named by paths, folders (their NIfTI files) and globs; and the inputs that
    name none."""
    files, failures = [], []
    for item in inputs:
        path = pathlib.Path(item)
        if glob.has_magic(item):
            found = sorted(pathlib.Path(p) for p in glob.glob(item))
        elif path.is_dir():
            found = sorted(path.iterdir())
        else:
            found = [path]
        # Names starting with "." are macOS resource forks (the MSD archives hold "._x.nii.gz").
        found = [p for p in found if volumes.is_nifti(p) and not p.name.startswith(".")]
        if not found:
            failures.append((item, "names no .nii or .nii.gz file"))
        files += found
    return files, failures


def unique_names(cases: Sequence[volumes.VolumeCase]) -> list[str]:
    """Output names from case ids; repeated ids (from different folders) get _2, _3, ..."""
    names, seen = [], {}
    for case in cases:
        seen[case.case_id] = seen.get(case.case_id, 0) + 1
        count = seen[case.case_id]
        names.append(case.case_id if count == 1 else f"{case.case_id}_{count}")
    return names


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
    files, failures = expand_inputs(args.inputs)
    cases = volumes.group_cases(files)
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    print(
        f"predict: {len(cases)} volumes, {args.model} step {predictor.step}, depth "
        f"{predictor.depth} ({predictor.mode}), {predictor.num_params:,} parameters, tiles "
        f"{tile.tile}, spacing {tuple(round(s, 3) for s in preprocessing.target_spacing)} mm"
    )
    written = 0
    start = time.perf_counter()
    progress = tqdm.tqdm(cases, unit="volume", disable=not args.progress, file=sys.stderr)
    for case, name in zip(progress, unique_names(cases), strict=True):
        try:
            volumes.predict_file(
                predictor,
                case,
                preprocessing,
                output / f"{name}.nii.gz",
                tile=tile,
                tta=args.tta,
                min_size=args.min_size,
            )
            written += 1
        except (OSError, ValueError) as error:  # DataError is a ValueError
            first = str(case.paths[0])
            message = str(error) if first in str(error) else f"{first}: {error}"
            failures.append((first, message))
            progress.write(f"failed: {message}", file=sys.stderr)
    seconds = time.perf_counter() - start
    print(f"predict: wrote {written} label maps to {output} in {seconds:.1f} s")
    if failures:
        print(f"predict: {len(failures)} inputs failed:", file=sys.stderr)
        for item, message in failures:
            line = message if message.startswith(item) else f"{item}: {message}"
            print(f"  {line}", file=sys.stderr)
        return common.EXIT_FAILED
    return common.EXIT_OK if written else common.EXIT_FAILED
