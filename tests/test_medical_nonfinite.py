"""Non-finite voxels (NaN, inf) in a Decathlon training image stop preparation with one line
naming the case, the channel and the count, before any training step; with
data.nonfinite_fill they are replaced by that value and the dataset summary says so."""

import os
import pathlib
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from configs import decathlon_tiny
from unetjax import data
from unetjax.data.volumes import medical_case, synthetic_decathlon

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return synthetic_decathlon.write_dataset(
        tmp_path_factory.mktemp("raw"), num_training=3, num_test=0, layout="msd"
    )


def spoil(path: pathlib.Path, channel: int, nan: int, inf: int) -> np.ndarray:
    """Writes `nan` NaN and `inf` +inf voxels into `channel` of the MSD 4D file at `path`;
    returns the (i, j, k) positions spoiled (file order)."""
    image = nib.load(path)
    voxels = np.asarray(image.dataobj, np.float32)
    rng = np.random.default_rng(0)
    flat = rng.choice(np.prod(voxels.shape[:3]), nan + inf, replace=False)
    positions = np.stack(np.unravel_index(flat, voxels.shape[:3]), axis=-1)
    values = np.r_[np.full(nan, np.nan), np.full(inf, np.inf)]
    for (i, j, k), value in zip(positions, values, strict=True):
        voxels[i, j, k, channel] = value
    nib.save(nib.Nifti1Image(voxels, image.affine, image.header), path)
    return positions


@pytest.fixture
def spoiled(pristine, tmp_path):
    """A copy whose case_001 has 40 NaN and 3 inf voxels in channel 1 (T2)."""
    root = pathlib.Path(shutil.copytree(pristine, tmp_path / "raw"))
    positions = spoil(root / "imagesTr/case_001.nii.gz", channel=1, nan=40, inf=3)
    return root, positions


def test_reading_a_case_with_nan_names_the_case_the_channel_and_the_count(spoiled):
    root, _ = spoiled
    path = str(root / "imagesTr/case_001.nii.gz")
    with pytest.raises(data.DataError) as raised:
        medical_case.read_case_image([path], case_id="case_001", channel_names=("CT", "T2"))
    message = str(raised.value)
    assert message.startswith("case case_001: channel 1 (T2) has 43 non-finite voxels")
    assert path in message and "data.nonfinite_fill" in message


def test_a_fill_value_replaces_exactly_the_nonfinite_voxels(spoiled):
    root, positions = spoiled
    path = root / "imagesTr/case_001.nii.gz"
    loaded = medical_case.read_case_image([str(path)], nonfinite_fill=-7.0)
    expected = np.asarray(nib.load(path).dataobj, np.float32)
    for i, j, k in positions:
        expected[i, j, k, 1] = -7.0
    assert loaded.filled == 43
    # Our layout is (D, H, W) = the file's (k, j, i).
    np.testing.assert_array_equal(loaded.image, expected.transpose(2, 1, 0, 3))


def test_training_on_a_case_with_nan_stops_at_preparation_with_one_line(spoiled, tmp_path):
    root, _ = spoiled
    command = [sys.executable, "train.py", "--config", "configs/decathlon_tiny.py"]
    command += ["--workdir", str(tmp_path / "run"), f"--config.data.manual_dir={root}"]
    command += [f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.train.progress_bar=False"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("UNETJAX_VERBOSE", None)
    completed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 2, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1, completed.stderr[-2000:]
    assert "case case_001: channel 1 (T2) has 43 non-finite voxels" in errors[0]
    assert "data.nonfinite_fill" in errors[0]
    assert "step" not in completed.stdout  # stopped before any training step
    assert not (tmp_path / "tfds/decathlon").exists()  # nothing half-written left


def test_with_a_fill_value_preparation_succeeds_and_the_summary_records_it(spoiled, tmp_path):
    root, _ = spoiled
    config = decathlon_tiny.get_config().data
    config.update(manual_dir=str(root), data_dir=str(tmp_path / "tfds"), nonfinite_fill=0)
    dataset = data.prepare(config)
    fill = dataset.summary["nonfinite_fill"]
    assert fill == {"value": 0.0, "voxels": 43, "cases": {"case_001": 43}}
    assert "43 voxels in 1 cases replaced by 0 (data.nonfinite_fill)" in dataset.summary_text()
    for split in dataset.info.split_sizes:
        for example in dataset.source(split):
            assert np.isfinite(example["image"]).all()


def test_a_fill_value_for_a_folder_of_images_is_refused(tmp_path):
    config = data.default_config()
    config.update(name="image_folder", manual_dir=str(tmp_path), nonfinite_fill=0.0)
    with pytest.raises(data.DataError, match=r"data\.nonfinite_fill applies to decathlon volumes"):
        data.prepare(config)
