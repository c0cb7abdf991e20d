"""A run directory is never silently reused: reruns resume only the same experiment, and every
mistake ends as one line on stderr with exit code 2, before any data is prepared."""

import json
import os
import subprocess
import sys

import pytest

from unetjax import rundir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(workdir, data_dir, *overrides, timeout=300):
    """`train.py` on configs/tiny.py in `workdir`; returns the finished process."""
    command = [
        sys.executable,
        "train.py",
        "--config",
        "configs/tiny.py",
        "--workdir",
        str(workdir),
        f"--config.data.data_dir={data_dir}",
        "--config.train.progress_bar=False",
        *overrides,
    ]
    # Compile time dominates these tiny runs: XLA's optimisations off.
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    env.pop("UNETJAX_VERBOSE", None)
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(completed, *fragments):
    assert completed.returncode == 2, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("train: error: ")]
    assert len(errors) == 1, completed.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rundir")
    workdir, data_dir = root / "run", root / "tfds"
    completed = train(
        workdir, data_dir, "--config.train.num_steps=4", "--config.train.eval_every=4"
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return workdir, data_dir


def test_a_changed_model_or_data_is_refused_and_config_json_is_kept(finished_run):
    workdir, data_dir = finished_run
    saved = (workdir / rundir.CONFIG_FILE).read_text()
    completed = train(
        workdir,
        data_dir,
        "--config.train.num_steps=8",  # may change: the run would simply train on
        "--config.model.activation=gelu",
        "--config.optimizer.learning_rate=0.5",
    )
    assert_one_line_error(
        completed,
        "model.activation: 'relu' -> 'gelu'",
        "optimizer.learning_rate: 0.03 -> 0.5",
        "--workdir",
    )
    assert "train.num_steps" not in completed.stderr
    assert (workdir / rundir.CONFIG_FILE).read_text() == saved


def test_another_dataset_in_the_same_directory_is_refused(finished_run, tmp_path):
    workdir, data_dir = finished_run
    completed = train(
        workdir,
        data_dir,
        "--config.data.name=image_folder",
        f"--config.data.manual_dir={tmp_path}",
    )
    assert_one_line_error(completed, "data.name: 'synthetic_cells' -> 'image_folder'")


def test_rerunning_a_finished_run_says_it_is_complete_and_shows_its_table(finished_run):
    workdir, data_dir = finished_run
    completed = train(workdir, data_dir, "--config.train.num_steps=4")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "is complete: trained to step 4" in completed.stdout
    assert "| L2 |" in completed.stdout and "| accurate |" in completed.stdout
    lines = (workdir / rundir.METRICS_FILE).read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert max(steps) == 4  # nothing was trained again


def test_the_saved_config_holds_absolute_data_paths(finished_run):
    workdir, data_dir = finished_run
    saved = json.loads((workdir / rundir.CONFIG_FILE).read_text())
    assert saved["data"]["data_dir"] == os.path.abspath(data_dir)


def test_a_workdir_that_is_a_file_fails_before_data_is_prepared(tmp_path):
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    completed = train(blocker, tmp_path / "tfds")
    assert_one_line_error(completed, str(blocker), "is a file")
    assert not (tmp_path / "tfds").exists()  # nothing was prepared


def test_a_mistyped_key_is_one_line_naming_it(tmp_path):
    completed = train(tmp_path / "run", tmp_path / "tfds", "--config.train.batch_sz=4")
    assert_one_line_error(completed, "batch_sz")
    assert "\\n" not in completed.stderr
