"""Folders that users assemble from symbolic links: the dataset fingerprint follows the links,
so a file changed behind one is noticed, the dataset is built anew and the bad file named."""

import os
import pathlib
import subprocess
import sys

from configs import tiny
from tests import user_folders
from unetjax import data
from unetjax.data import samples

ROOT = pathlib.Path(__file__).resolve().parents[1]


def linked_folder(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """data/images -> real/images (a linked folder) and data/masks/<stem> -> real masks
    (linked files); returns (the folder users point at, the real files)."""
    real = tmp_path / "real"
    user_folders.write_folder(real, [(32, 32)] * 6)
    root = tmp_path / "data"
    (root / "masks").mkdir(parents=True)
    (root / "images").symlink_to(real / "images", target_is_directory=True)
    for mask in sorted((real / "masks").iterdir()):
        (root / "masks" / mask.name).symlink_to(mask)
    return root, real


def truncate(path: pathlib.Path) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])


def test_a_file_changed_in_a_linked_folder_changes_the_fingerprint(tmp_path):
    root, real = linked_folder(tmp_path)
    before = samples.built_name(root, {})
    truncate(real / "images/case001.png")
    assert samples.built_name(root, {}) != before


def test_a_linked_file_counts_by_its_target(tmp_path):
    root, real = linked_folder(tmp_path)
    before = samples.built_name(root, {})
    truncate(real / "masks/case002.png")
    assert samples.built_name(root, {}) != before


def test_a_link_back_up_the_tree_is_walked_once(tmp_path):
    root, _ = linked_folder(tmp_path)
    (root / "loop").symlink_to(root, target_is_directory=True)
    assert samples.built_name(root, {}) == samples.built_name(root, {})


def test_a_rerun_after_a_linked_image_was_truncated_rebuilds_and_names_the_file(tmp_path):
    root, real = linked_folder(tmp_path)
    overrides = [
        "--config.data.name=image_folder",
        f"--config.data.manual_dir={root}",
        f"--config.data.data_dir={tmp_path / 'tfds'}",
    ]
    # The first run's preparation, in-process: train.py prepares config.data as it is.
    config = tiny.get_config()
    config.data.update(name="image_folder", manual_dir=str(root), data_dir=str(tmp_path / "tfds"))
    data.prepare(config.data)
    truncate(real / "images/case001.png")
    command = [sys.executable, "train.py", "--config", "configs/tiny.py"]
    command += ["--workdir", str(tmp_path / "run"), "--config.train.progress_bar=False"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("UNETJAX_VERBOSE", None)
    completed = subprocess.run(
        [*command, *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 2, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1 and "images/case001.png: cannot read it" in errors[0], errors
