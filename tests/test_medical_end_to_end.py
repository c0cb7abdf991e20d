"""A tiny 3D run on a synthetic Decathlon folder through the commands, with nnU-Net's per-axis
pooling for its thick slices (the first axis unpooled at level 1): train.py trains and
resumes, predict.py writes .nii.gz label maps on the inputs' own grids (checked with nibabel),
evaluate.py reports per-case distances in mm (checked against a scipy brute force at the
spacing nibabel reads from the training files)."""

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from tests.test_train import run_python
from unetjax import data, inference, rundir
from unetjax.data.volumes import synthetic_decathlon

pytestmark = pytest.mark.slow


def train_command(workdir, raw, data_dir, num_steps):
    return [
        "train.py",
        "--config",
        "configs/decathlon_tiny.py",
        "--workdir",
        str(workdir),
        f"--config.data.manual_dir={raw}",
        f"--config.data.data_dir={data_dir}",
        f"--config.train.num_steps={num_steps}",
        "--config.train.eval_every=10",
        "--config.train.checkpoint_every=10",
        "--config.train.log_every=1",
        "--config.train.num_overlays=0",
        "--config.train.progress_bar=False",
        # The cases are about 3 x 0.9 x 1 mm: the planner's strides and kernels for them.
        "--config.model.strides=((1, 2, 2), (2, 2, 2))",
        "--config.model.kernels=((1, 3, 3), (3, 3, 3), (3, 3, 3))",
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(raw folder, run directory, stdout of the resumed run)."""
    root = tmp_path_factory.mktemp("e2e")
    raw = synthetic_decathlon.write_dataset(root / "raw", num_training=5, num_test=2)
    workdir, data_dir = root / "run", root / "tfds"
    run_python(train_command(workdir, raw, data_dir, 10))
    resumed = run_python(train_command(workdir, raw, data_dir, 12))
    return raw, workdir, resumed


def test_a_rerun_with_more_steps_resumes_where_the_first_stopped(run):
    _, workdir, resumed = run
    assert "resumed from step 10" in resumed
    with open(workdir / rundir.METRICS_FILE) as f:
        records = [json.loads(line) for line in f]
    train_steps = [r["step"] for r in records if r["split"] == "train"]
    assert train_steps == list(range(1, 13))  # one record per step, none repeated
    assert [r["step"] for r in records if r["split"] == "val"] == [10, 12]


def test_predict_writes_label_maps_on_the_grids_of_the_inputs(run, tmp_path):
    raw, workdir, _ = run
    strides = rundir.load_config(workdir).model.strides
    assert [list(s) for s in strides] == [[1, 2, 2], [2, 2, 2]]  # the run pooled per axis
    run_python(
        [
            "predict.py",
            "--model",
            str(workdir),
            "--output",
            str(tmp_path),
            "--depth",
            "1",
            "--tta",
            "--no-progress",
            str(raw / "imagesTs"),
        ],
    )
    inputs = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))
    assert len(inputs) == 2
    orientations = set()
    for source in inputs:
        reference = nib.load(source)
        written = nib.load(tmp_path / source.name.replace("_0000", ""))
        assert written.shape == reference.shape
        np.testing.assert_allclose(written.affine, reference.affine, atol=1e-6)
        assert np.issubdtype(written.get_data_dtype(), np.integer)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
        orientations.add(nib.aff2axcodes(reference.affine))
    assert len(orientations) == 2  # LPS and an oblique affine closest to another orientation


def test_an_export_predicts_volumes_without_the_training_data(run, tmp_path):
    # The run keeps its spacing and intensity scheme (preprocessing.json), and so does an
    # export: predicting needs neither the raw folder nor the built dataset.
    raw, workdir, _ = run
    zooms = [nib.as_closest_canonical(nib.load(p)).header.get_zooms()[:3][::-1]
             for p in sorted((raw / "imagesTr").glob("*.nii.gz"))]  # fmt: skip
    saved = json.loads((workdir / "preprocessing.json").read_text())
    assert len(saved["target_spacing"]) == 3 and min(saved["target_spacing"]) > 0
    assert np.min(zooms) - 1e-6 <= min(saved["target_spacing"])
    assert max(saved["target_spacing"]) <= np.max(zooms) + 1e-6
    exported = tmp_path / "export"
    inference.export(workdir, exported, depth=1, mode="fast")
    assert json.loads((exported / "preprocessing.json").read_text()) == saved
    config = json.loads((exported / rundir.CONFIG_FILE).read_text())
    config["data"]["manual_dir"] = str(tmp_path / "gone")
    config["data"]["data_dir"] = str(tmp_path / "gone_too")
    (exported / rundir.CONFIG_FILE).write_text(json.dumps(config))
    case = sorted((raw / "imagesTs").glob("*_0000.nii.gz"))[0]
    run_python(
        ["predict.py", "--model", str(exported), "--output", str(tmp_path / "out"),
         "--no-progress", str(case), str(case).replace("_0000", "_0001")],
    )  # fmt: skip
    written = nib.load(tmp_path / "out" / case.name.replace("_0000", ""))
    assert written.shape == nib.load(case).shape
    assert not (tmp_path / "gone").exists() and not (tmp_path / "gone_too").exists()


def boundary(mask):
    """Foreground voxels with a face neighbour in the background (outside counts as background)."""
    eroded = ndimage.binary_erosion(mask, ndimage.generate_binary_structure(3, 1), border_value=0)
    return mask & ~eroded


def hd95_brute_force(prediction, reference, spacing):
    """The larger directed 95th percentile of boundary-to-boundary distances, by Euclidean
    distance transforms at `spacing` (between voxel centres)."""
    a, b = boundary(prediction), boundary(reference)
    to_b = ndimage.distance_transform_edt(~b, sampling=spacing)[a]
    to_a = ndimage.distance_transform_edt(~a, sampling=spacing)[b]
    return max(np.percentile(to_b, 95), np.percentile(to_a, 95))


def test_evaluate_reports_hd95_in_millimetres_at_the_training_spacing(run, tmp_path):
    raw, workdir, _ = run
    run_python(
        [
            "evaluate.py",
            "--model",
            str(workdir),
            "--split",
            "validation",
            "--depths",
            "2",
            "--modes",
            "fast",
            "--repeats",
            "1",
            "--output",
            str(tmp_path),
        ],
    )
    with open(tmp_path / "per_case.csv") as f:
        reported = {(r["case"], r["class"]): r["hd95"] for r in csv.DictReader(f)}
    validation = {case for case, _ in reported}
    training = sorted(
        f for f in os.listdir(raw / "labelsTr") if f.removesuffix(".nii.gz") not in validation
    )
    assert len(training) == 3 and len(validation) == 2
    zooms = [
        nib.as_closest_canonical(nib.load(raw / "labelsTr" / f)).header.get_zooms()[::-1]
        for f in training
    ]
    spacing = tuple(np.median(zooms, axis=0))
    assert max(spacing) > 2 * min(spacing)  # anisotropic: mm and voxels differ

    config = rundir.load_config(workdir)
    predictor = inference.load_predictor(workdir, depth=2, mode="fast")
    compared = 0
    for batch in data.eval_batches(data.prepare(config.data), "validation", batch_size=2):
        labels = predictor.predict_batch(batch["image"]).argmax(axis=-1)
        for index in np.flatnonzero(batch["valid"]):
            case = batch["id"][index].decode()
            for k in (1, 2):
                prediction, reference = labels[index] == k, batch["mask"][index] == k
                if not (prediction.any() and reference.any()):
                    continue
                expected = hd95_brute_force(prediction, reference, spacing)
                in_voxels = hd95_brute_force(prediction, reference, (1.0, 1.0, 1.0))
                assert float(reported[case, str(k)]) == pytest.approx(expected, rel=1e-5)
                assert expected != pytest.approx(in_voxels, rel=1e-3)
                compared += 1
    assert compared > 0
