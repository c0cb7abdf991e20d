"""What the commands print: one summary of the data in our own words, no TFDS download talk,
and progress bars (with an ETA) only on a terminal."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from tests.conftest import REPO

BAR_SCRIPT = """
import sys
from unetjax import progress
for _ in progress.bar(range(3), total=3, unit="volume", desc="preparing train",
                      enabled=sys.argv[1] == "on"):
    pass
"""


@pytest.mark.slow
def test_a_training_run_summarises_its_data_once_and_never_says_downloading(tiny_run):
    output = tiny_run.stdout + tiny_run.stderr
    assert output.count("dataset synthetic_cells (") == 1
    assert output.count("preparing synthetic_cells (16 images: train 8, validation 4, test 4)") == 1
    for tfds_words in ("Downloading and preparing", "downloaded and prepared", "Using custom data"):
        assert tfds_words not in output
    assert "\r" not in tiny_run.stderr  # no progress bar without a terminal


PREPARE_SCRIPT = """
import pathlib, sys
from tests import user_folders
from unetjax import data
root = pathlib.Path(sys.argv[2])
user_folders.write_folder(root / "src", [(32, 32)] * 30)
data.prepare(user_folders.folder_config(root, root / "src"), progress=sys.argv[1] == "on")
"""


def _stderr_on_a_terminal(*args: str, script: str = BAR_SCRIPT) -> str:
    """What `python -c SCRIPT ARGS` writes to stderr when stderr is a pseudo-terminal."""
    leader, follower = pty.openpty()
    # An 80-column terminal: a fresh pty reports 0 columns and tqdm would draw an empty bar.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args], stderr=follower, env=env, cwd=REPO
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed when the process exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=300) == 0
    os.close(leader)
    return b"".join(chunks).decode()


def test_a_progress_bar_shows_on_a_terminal_with_its_count_and_eta():
    drawn = _stderr_on_a_terminal("on")
    assert "preparing train" in drawn and "3/3" in drawn and "volume" in drawn
    assert "<00:00" in drawn  # tqdm's elapsed<remaining: the ETA


def test_no_progress_keeps_a_terminal_quiet():
    assert _stderr_on_a_terminal("off") == ""


def test_no_progress_bar_when_stderr_is_not_a_terminal():
    result = subprocess.run(
        [sys.executable, "-c", BAR_SCRIPT, "on"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == ""


def test_preparing_a_folder_shows_its_checks_and_writes_on_a_terminal_unless_told_not_to(
    tmp_path,
):
    drawn = _stderr_on_a_terminal("on", str(tmp_path / "on"), script=PREPARE_SCRIPT)
    # Each bar knows its total (so it can show an ETA); done, it clears itself.
    assert "checking files:   0%" in drawn and "0/30" in drawn
    assert "preparing train:   0%" in drawn and "0/24" in drawn and "image/s" in drawn
    quiet = _stderr_on_a_terminal("off", str(tmp_path / "off"), script=PREPARE_SCRIPT)
    assert "checking files" not in quiet and "preparing" not in quiet and "\r" not in quiet
