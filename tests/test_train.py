"""The training loop on the tiny config: learning, data parallelism, exact resume, NaN stop."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from unetjax import checkpoint, losses, models, nested_unet, rundir, stopping, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def tiny_config(data_dir, **train_overrides):
    config = tiny.get_config()
    config.data.data_dir = data_dir
    config.train.progress_bar = False
    config.train.num_overlays = 0
    for key, value in train_overrides.items():
        config.train[key] = value
    return config


def read_metrics(workdir, split):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def saved_params(workdir, step=None):
    """The parameters of a run's checkpoint as a flat {path: array} dict, read back from disk."""
    config = rundir.load_config(workdir)
    model = nnx.eval_shape(lambda: models.from_config(config.model))
    _, params, _ = nnx.split(model, nnx.Param, ...)
    steps = checkpoint.checkpoint_steps(rundir.checkpoint_dir(workdir))
    step = max(steps) if step is None else step
    restored = checkpoint.restore_subtree(rundir.checkpoint_dir(workdir), {"params": params}, step)
    return {path: np.asarray(v) for path, v in nnx.to_flat_state(restored["params"])}


def test_loss_falls_and_every_head_is_evaluated(tmp_path, data_dir):
    workdir = str(tmp_path / "run")
    result = train.train_and_evaluate(
        tiny_config(data_dir, num_steps=40, log_every=5, eval_every=40), workdir
    )
    losses_logged = [r["loss"] for r in read_metrics(workdir, "train")]
    assert np.mean(losses_logged[-2:]) < 0.9 * np.mean(losses_logged[:2])
    assert result.head_depths == (1, 2)
    for name in ("iou_L1", "iou_L2", "iou_accurate", "dice_L2", "loss_L1"):
        assert 0.0 <= result.eval_metrics[name] <= (1.0 if "loss" not in name else 10.0)
    assert os.path.isfile(os.path.join(workdir, "config.json"))
    assert any(f.startswith("events") for f in os.listdir(os.path.join(workdir, "tensorboard")))


def test_interrupted_then_resumed_run_ends_with_the_uninterrupted_parameters(tmp_path, data_dir):
    config = tiny_config(data_dir, num_steps=12, eval_every=12, checkpoint_every=12)
    straight = str(tmp_path / "straight")
    train.train_and_evaluate(config, straight)

    resumed = str(tmp_path / "resumed")
    first = train.train_and_evaluate(
        tiny_config(data_dir, num_steps=12, eval_every=12, checkpoint_every=12, stop_after_steps=5),
        resumed,
    )
    assert first.interrupted and first.step == 5
    second = train.train_and_evaluate(config, resumed)
    assert second.resumed_from == 5 and second.step == 12

    expected, actual = saved_params(straight), saved_params(resumed)
    assert expected.keys() == actual.keys()
    for path, value in expected.items():
        np.testing.assert_array_equal(actual[path], value, err_msg=str(path))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, data_dir, monkeypatch
):
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(
        tiny_config(data_dir, num_steps=4, eval_every=4, checkpoint_every=4), workdir
    )
    good = saved_params(workdir)

    real_loss = losses.deep_supervision_loss

    def nan_loss(*args, **kwargs):
        total, per_head = real_loss(*args, **kwargs)
        return total * np.nan, per_head

    monkeypatch.setattr(losses, "deep_supervision_loss", nan_loss)
    with pytest.raises(stopping.NonFiniteLossError, match=r"at step 5; .* \(step 4\) is kept"):
        train.train_and_evaluate(
            tiny_config(data_dir, num_steps=8, eval_every=8, checkpoint_every=2), workdir
        )
    assert checkpoint.checkpoint_steps(rundir.checkpoint_dir(workdir)) == [4]
    after = saved_params(workdir)
    for path, value in good.items():
        np.testing.assert_array_equal(after[path], value)


def test_a_nan_loss_before_any_checkpoint_says_that_none_was_saved(tmp_path, data_dir, monkeypatch):
    real_loss = losses.deep_supervision_loss

    def nan_loss(*args, **kwargs):
        total, per_head = real_loss(*args, **kwargs)
        return total * np.nan, per_head

    monkeypatch.setattr(losses, "deep_supervision_loss", nan_loss)
    with pytest.raises(stopping.NonFiniteLossError) as error:
        train.train_and_evaluate(tiny_config(data_dir, num_steps=4), str(tmp_path / "run"))
    message = str(error.value)
    assert "at step 1;" in message and "no checkpoint had been saved yet" in message
    assert "None" not in message


def test_an_interrupted_run_stops_early_at_the_step_an_uninterrupted_run_stops(tmp_path, data_dir):
    # The highest validation loss as the best: it is soon not bettered, so the counters decide.
    stop_early = {
        "num_steps": 16,
        "eval_every": 2,
        "checkpoint_every": 2,
        "best_metric": "loss",
        "best_mode": "max",
        "early_stopping_patience": 2,
    }
    straight = train.train_and_evaluate(
        tiny_config(data_dir, **stop_early), str(tmp_path / "straight")
    )
    assert straight.stopped_early and straight.step < 16

    resumed = str(tmp_path / "resumed")
    first = train.train_and_evaluate(
        tiny_config(data_dir, stop_after_steps=straight.step - 1, **stop_early), resumed
    )
    assert first.interrupted and first.step == straight.step - 1
    second = train.train_and_evaluate(tiny_config(data_dir, **stop_early), resumed)
    assert second.stopped_early and second.step == straight.step
    # Rerun once more: an early-stopped run stays stopped.
    again = train.train_and_evaluate(tiny_config(data_dir, **stop_early), resumed)
    assert again.complete and again.stopped_early and again.step == straight.step


TRAIN_SCRIPT = textwrap.dedent(
    """
    import sys

    import jax

    from configs import tiny
    from unetjax import train

    workdir, data_dir = sys.argv[1], sys.argv[2]
    config = tiny.get_config()
    config.data.data_dir = data_dir
    config.data.augment = False
    config.train.progress_bar = False
    config.train.num_overlays = 0
    config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = 4
    train.train_and_evaluate(config, workdir)
    print("devices", jax.device_count())
    """
)


CPU = {"JAX_PLATFORMS": "cpu"}


def run_python(args, **env):
    """Runs `python *args` in the repository on the CPU; fails the test on a non-zero exit."""
    env = {**os.environ, **CPU, "PYTHONPATH": ROOT, **env}
    completed = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def run_devices(count, workdir, data_dir):
    flags = f"--xla_force_host_platform_device_count={count}"
    stdout = run_python(["-c", TRAIN_SCRIPT, workdir, data_dir], XLA_FLAGS=flags)
    assert f"devices {count}" in stdout


def test_two_devices_match_one_device_with_the_same_global_batch(tmp_path, data_dir):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    run_devices(1, one, data_dir)
    run_devices(2, two, data_dir)
    expected, actual = saved_params(one), saved_params(two)
    for path, value in expected.items():
        # Same maths, different reduction order across devices: float32 rounding only.
        np.testing.assert_allclose(actual[path], value, rtol=1e-4, atol=1e-5, err_msg=str(path))


DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import sys

    import jax
    import numpy as np
    from flax import nnx

    from configs import tiny
    from unetjax import train

    workdir, data_dir, port, process_id = sys.argv[1:]
    config = tiny.get_config()
    config.data.data_dir = data_dir
    config.train.progress_bar = False
    config.train.num_overlays = 0
    config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = 4
    config.train.distributed = True
    config.train.coordinator_address = f"localhost:{port}"
    config.train.num_processes = 2
    config.train.process_id = int(process_id)
    result = train.train_and_evaluate(config, workdir)
    iou = result.eval_metrics["iou_L2"]
    print("processes", jax.process_count(), "step", result.step, "iou", iou)
    """
)


def test_two_processes_train_in_lockstep(tmp_path, data_dir):
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    workdir = str(tmp_path / "distributed")
    env = {**os.environ, **CPU, "PYTHONPATH": ROOT}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", DISTRIBUTED_SCRIPT, workdir, data_dir, str(port), str(i)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    lines = [stdout.strip().splitlines()[-1] for stdout, _ in outputs]
    # Both processes report the same step and the same globally reduced validation IoU.
    assert lines[0] == lines[1] and lines[0].startswith("processes 2 step 4")
    assert checkpoint.checkpoint_steps(rundir.checkpoint_dir(workdir)) == [4]


def test_a_checkpoint_restores_every_field(tmp_path):
    import optax

    from unetjax import steps

    model = nested_unet.UNetPlusPlus(
        filters=(4, 8, 16), norm="batch", dropout=0.1, rngs=nnx.Rngs(3)
    )
    optimizer = optax.adam(1e-3)
    _, state = steps.create_train_state(model, optimizer)
    state = state.replace(
        step=state.step + 7, opt_state=jax.tree.map(lambda x: x + 1, state.opt_state)
    )
    saved = train._state_dict(state)
    manager = checkpoint.CheckpointManager(tmp_path / "ckpt")
    manager.save(7, saved, {"position": 12, "seed": 3})
    manager.wait_until_finished()
    _, blank = steps.create_train_state(
        nested_unet.UNetPlusPlus(filters=(4, 8, 16), norm="batch", dropout=0.1, rngs=nnx.Rngs(9)),
        optimizer,
    )
    restored, data_state = manager.restore(train._state_dict(blank))
    manager.close()
    assert data_state == {"position": 12, "seed": 3}

    def raw(x):
        return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x

    saved_leaves = jax.tree.leaves(jax.tree.map(raw, saved))
    restored_leaves = jax.tree.leaves(jax.tree.map(raw, restored))
    assert len(saved_leaves) == len(restored_leaves)
    for before, after in zip(saved_leaves, restored_leaves, strict=True):
        np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


def tiny_train_command(workdir, data_dir, *overrides):
    """`train.py` on the tiny config in `workdir`, with `--config.train.<key>=<value>` overrides."""
    return [
        "train.py",
        "--config",
        "configs/tiny.py",
        "--workdir",
        workdir,
        f"--config.data.data_dir={data_dir}",
        *(f"--config.train.{o}" for o in overrides),
    ]


def test_train_py_runs_the_tiny_config_end_to_end(tmp_path, data_dir):
    workdir = str(tmp_path / "cli")
    stdout = run_python(tiny_train_command(workdir, data_dir, "num_steps=6", "eval_every=6"))
    assert "| L2 |" in stdout and "| accurate |" in stdout
    assert os.listdir(os.path.join(workdir, "overlays", "step_6"))


def test_sigterm_saves_a_checkpoint_and_exits(tmp_path, data_dir):
    workdir = str(tmp_path / "signal")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    overrides = ("num_steps=100000", "log_every=5", "checkpoint_every=100000", "eval_every=100000")
    process = subprocess.Popen(
        [sys.executable, *tiny_train_command(workdir, data_dir, *overrides)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in process.stdout:  # wait until training is under way
        lines.append(line)
        if re.search(r"step 5/\d+: loss", line):
            process.send_signal(signal.SIGTERM)
            break
    output = "".join(lines) + process.communicate(timeout=120)[0]
    assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
    stopped = re.search(r"stopped by SIGTERM at step (\d+): checkpoint saved", output)
    assert stopped, output[-3000:]
    steps = checkpoint.checkpoint_steps(rundir.checkpoint_dir(workdir))
    assert steps == [int(stopped.group(1))]


def test_an_unknown_best_metric_fails_before_training(tmp_path, data_dir):
    config = tiny_config(data_dir, best_metric="iou_L4")  # the tiny model has heads L1, L2
    with pytest.raises(ValueError, match=r"best_metric='iou_L4' .* heads \[1, 2\]"):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    assert not os.path.exists(rundir.checkpoint_dir(str(tmp_path / "run")))


def test_a_mistyped_override_is_an_error(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--config",
            "configs/tiny.py",
            "--config.train.batchsize=8",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert "batchsize" in completed.stderr


@pytest.mark.parametrize(
    "form", [["--config.data.eval_patch_size=None"], ["--config.data.eval_patch_size", "None"]]
)
def test_none_on_the_command_line_unsets_a_tuple_field(form, monkeypatch):
    """ml_collections alone reads None for a tuple field as (None,). Its override flags follow
    sys.argv, as they do when train.py runs."""
    from unetjax.cli import train as train_cli

    for extra, expected in ((form, None), ([], (16, 56, 64))):
        argv = ["--config", "configs/decathlon_liver.py", *extra]
        monkeypatch.setattr(sys, "argv", ["train.py", *argv])
        config, _, _ = train_cli.parse_args(argv)
        assert config.data.eval_patch_size == expected
