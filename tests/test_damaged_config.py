"""A damaged config.json in a run directory is one line naming the file, where the JSON broke
and the way out, exit code 2, for every command that reads it (train resume, predict,
evaluate, export)."""

import os
import pathlib
import subprocess
import sys

import pytest

from unetjax import rundir

REPO = pathlib.Path(__file__).resolve().parents[1]
# A config.json cut short by a full disk or a hand edit: `{"data": {` then a missing key.
DAMAGED = '{"data": {"name": "cells", "patch_size": [32, 32]}, "model": {\n  ,"depth": 2}'


@pytest.fixture
def damaged_run(tmp_path):
    workdir = tmp_path / "run"
    (workdir / rundir.CHECKPOINT_DIR / "15").mkdir(parents=True)
    (workdir / rundir.CONFIG_FILE).write_text(DAMAGED)
    images = tmp_path / "images"
    images.mkdir()
    return workdir, images


TINY = str(REPO / "configs" / "tiny.py")
COMMANDS = {  # run from another directory, as a user's commands are
    "train": lambda run, images: [REPO / "train.py", "--config", TINY, "--workdir", run],
    "predict": lambda run, images: [REPO / "predict.py", "--model", run, "--output", "o", images],
    "evaluate": lambda run, images: [REPO / "evaluate.py", "--model", run, "--output", "o"],
    "export": lambda run, images: ["-m", "unetjax.cli.export", "--model", run, "--output", "e"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_damaged_config_json_is_one_line_naming_the_file_the_place_and_the_fix(
    damaged_run, tmp_path, command
):
    workdir, images = damaged_run
    env = dict(os.environ, JAX_PLATFORMS="cpu", TFDS_DATA_DIR=str(tmp_path / "tfds"))
    env.pop("UNETJAX_VERBOSE", None)
    completed = subprocess.run(
        [sys.executable, *COMMANDS[command](str(workdir), str(images))],
        cwd=tmp_path,
        env=dict(env, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, completed.stderr[-2000:]
    # json.loads puts the stray comma at line 2, column 3 (char 65) of DAMAGED.
    position = "line 2 column 3 (char 65)"
    for fragment in (str(workdir / rundir.CONFIG_FILE), "damaged", position, "restore it"):
        assert fragment in errors[0], errors[0]
    assert (workdir / rundir.CONFIG_FILE).read_text() == DAMAGED  # left as it was


def test_a_config_json_without_a_model_section_is_named_as_damaged(tmp_path):
    (tmp_path / rundir.CONFIG_FILE).write_text("[]")
    with pytest.raises(rundir.RunDirectoryError, match="no 'model' section; restore it"):
        rundir.load_config(tmp_path)
