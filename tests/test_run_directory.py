"""A run directory is never silently reused: reruns resume only the same experiment, and every
mistake ends as one line on stderr with exit code 2, before any data is prepared."""

import errno
import json
import os
import pathlib
import signal
import socket
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
    env = dict(os.environ, JAX_PLATFORMS="cpu")
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


HOLD_LOCK = """
import sys, time
from unetjax import rundir
with rundir.run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def lock_holder(tmp_path):
    """A live process holding the lock of a run directory (ended by SIGTERM at teardown)."""
    workdir = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(workdir)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    yield workdir, holder
    holder.kill()
    holder.wait()


def test_a_second_training_in_a_busy_directory_is_refused_naming_the_other(lock_holder, tmp_path):
    workdir, holder = lock_holder
    completed = train(workdir, tmp_path / "tfds")
    assert_one_line_error(
        completed, str(workdir), f"pid {holder.pid} on {socket.gethostname()}", "--wait_for_lock"
    )
    assert not (tmp_path / "tfds").exists()  # refused before any data was prepared
    assert holder.poll() is None and (workdir / rundir.LOCK_FILE).exists()


def test_sigterm_to_the_lock_holder_removes_the_lock_file(lock_holder):
    workdir, holder = lock_holder
    holder.send_signal(signal.SIGTERM)
    assert holder.wait(timeout=30) == 128 + signal.SIGTERM
    assert not (workdir / rundir.LOCK_FILE).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_removed_at_the_end(finished_run):
    workdir, data_dir = finished_run
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": dead.pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00"}
    (workdir / rundir.LOCK_FILE).write_text(json.dumps(stale))
    completed = train(workdir, data_dir, "--config.train.num_steps=4")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"took over a stale lock (pid {dead.pid} on {socket.gethostname()}" in completed.stdout
    assert "is complete" in completed.stdout
    assert not (workdir / rundir.LOCK_FILE).exists()


def test_the_lock_is_removed_after_an_error_and_records_pid_and_host(tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(RuntimeError), rundir.run_lock(workdir) as path:
        record = json.loads(pathlib.Path(path).read_text())
        assert (record["pid"], record["host"]) == (os.getpid(), socket.gethostname())
        raise RuntimeError("a failed run")
    assert not workdir.exists()  # created for the run, left empty: removed


def test_waiting_for_the_lock_takes_it_when_the_holder_ends(tmp_path):
    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK.replace("120", "3"), str(workdir)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(rundir.RunDirectoryBusyError), rundir.run_lock(workdir):
        pass
    with rundir.run_lock(workdir, wait=True):
        assert holder.poll() == 0  # it ended, then the lock was ours
    holder.wait()


def test_without_flock_the_recorded_pid_decides_busy_or_stale(tmp_path, monkeypatch):
    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(rundir.fcntl, "flock", no_flock)
    lock = tmp_path / rundir.LOCK_FILE
    alive = {"pid": os.getppid(), "host": socket.gethostname(), "started": "then"}
    lock.write_text(json.dumps(alive))
    busy = pytest.raises(rundir.RunDirectoryBusyError, match=f"pid {os.getppid()} on ")
    with busy, rundir.run_lock(tmp_path):
        pass
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({**alive, "pid": dead.pid}))
    with rundir.run_lock(tmp_path):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
