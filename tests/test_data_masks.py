"""The mask rule on masks as users save them: lossy JPEG, anti-aliased, a stray value, class
maps with a void value; each refusal is one line naming a file, its values and the fix."""

import numpy as np
import pytest

import unetjax.data as data
from tests import user_folders
from unetjax.data import mask_rule

SIZES = [(40, 48), (56, 44), (48, 60), (44, 40)]


def prepare_fails(tmp_path, root, match, **overrides) -> str:
    config = user_folders.folder_config(tmp_path, root, val_fraction=0.0, test_fraction=0.0)
    config.update(overrides)
    config.data_dir = str(tmp_path / "refused")
    with pytest.raises(data.DataError, match=match) as error:
        data.prepare(config)
    message = str(error.value)
    assert "\n" not in message
    assert not (tmp_path / "refused").exists() or not list((tmp_path / "refused").rglob("*"))
    return message


def stored(config, split="train") -> dict:
    reader = data.prepare(config).reader
    return {str(e["id"], "utf-8"): e for e in reader.as_data_source(split=split)}


def test_values_are_summarised_in_a_few_words():
    assert mask_rule.describe_values([0, 7, 255]) == "{0, 7, 255}"
    jpeg_like = [*range(9), *range(247, 256)]
    assert mask_rule.describe_values(jpeg_like) == "0..8 and 247..255 (18 values)"
    assert mask_rule.describe_values(range(256)) == "0..255 (256 values)"
    assert mask_rule.describe_values([0, 2, 4, 6, 8, 10, 12, 14, 16]) == (
        "0, 2, ..., 16 (9 values)"
    )


def test_jpeg_masks_stop_preparation_with_their_values_and_the_threshold_fix(tmp_path):
    user_folders.write_folder(tmp_path / "src", SIZES, mask_suffix=".jpg")
    message = prepare_fails(tmp_path, tmp_path / "src", r"masks/case000\.jpg: mask values 0\.\.")
    assert "data.mask_threshold=127" in message and "4 of 4 mask files" in message


def test_antialiased_masks_stop_preparation_with_the_threshold_fix(tmp_path):
    user_folders.write_folder(
        tmp_path / "src", SIZES, mask_of=lambda stem, mask: user_folders.antialiased(mask)
    )
    message = prepare_fails(tmp_path, tmp_path / "src", r"masks/case000\.png: mask values 0, ")
    assert "data.mask_threshold=127" in message


def test_one_stray_pixel_in_a_0_255_set_is_found_and_named(tmp_path):
    def stray(stem, mask):
        if stem == "case002":
            mask = mask.copy()
            mask[3, 5] = 7
        return mask

    user_folders.write_folder(tmp_path / "src", SIZES, mask_of=stray)
    message = prepare_fails(
        tmp_path, tmp_path / "src", r"masks/case002\.png: mask values \{0, 7, 255\}"
    )
    assert "1 of 4 mask files" in message


def test_declaring_binary_on_lossy_masks_is_one_line_with_the_fix(tmp_path):
    user_folders.write_folder(tmp_path / "src", SIZES, mask_suffix=".jpg")
    prepare_fails(
        tmp_path,
        tmp_path / "src",
        r"case000\.jpg: data\.task=binary but its mask values are .*mask_threshold=127",
        task="binary",
    )


@pytest.mark.parametrize(
    "kind", ["grey jpeg", "colour jpeg", "anti-aliased png", "per-class jpeg", "isbi jpeg"]
)
def test_mask_threshold_makes_foreground_of_values_above_it(tmp_path, kind):
    options = {
        "grey jpeg": dict(mask_suffix=".jpg"),
        "colour jpeg": dict(mask_suffix=".jpg", mask_of=lambda s, m: np.stack([m] * 3, -1)),
        "anti-aliased png": dict(mask_of=lambda s, m: user_folders.antialiased(m)),
        "per-class jpeg": dict(mask_suffix=".jpg"),
        "isbi jpeg": dict(mask_suffix=".jpg"),
    }[kind]
    root = tmp_path / "src"
    user_folders.write_folder(root, SIZES, **options)
    overrides = {"mask_threshold": 100}
    if kind == "per-class jpeg":
        (root / "masks").rename(root / "lesion")
        (root / "masks").mkdir()
        (root / "lesion").rename(root / "masks" / "lesion")
        overrides["mask_layout"] = "per_class"
    if kind == "isbi jpeg":
        overrides["name"] = "isbi2012_em"
    config = user_folders.folder_config(
        tmp_path, root, val_fraction=0.0, test_fraction=0.0, **overrides
    )
    assert data.prepare(config).info.task == ("multilabel" if "per-class" in kind else "binary")
    for stem, example in stored(config).items():
        mask_dir = root / "masks" / ("lesion" if "per-class" in kind else "")
        suffix = ".jpg" if "jpeg" in kind else ".png"
        raw = user_folders.read_back(mask_dir / f"{stem}{suffix}").astype(np.float64)
        grey = np.round(raw.mean(-1)) if raw.ndim == 3 else raw
        expected = grey > 100
        if kind == "isbi jpeg":
            expected = ~expected  # ISBI's default foreground is the membrane, value 0
        stored_mask = example["mask"][..., 0] if "per-class" in kind else example["mask"]
        np.testing.assert_array_equal(stored_mask, expected)


def test_class_index_maps_are_multiclass_up_to_32_inferred_classes(tmp_path):
    def classes(stem, mask):
        return (mask > 0).astype(np.uint8) * (1 + int(stem[-1]) * 10)  # 1, 11, 21, 31

    root = tmp_path / "src"
    user_folders.write_folder(root, SIZES, mask_of=classes)
    config = user_folders.folder_config(tmp_path, root, val_fraction=0.0, test_fraction=0.0)
    dataset = data.prepare(config)
    assert (dataset.info.task, dataset.info.num_classes) == ("multiclass", 32)
    assert dataset.summary["task_rule"] == "class indices 0..31"
    user_folders.write_folder(
        tmp_path / "wide", SIZES, mask_of=lambda s, m: (m > 0).astype(np.uint8) * 40
    )
    prepare_fails(tmp_path, tmp_path / "wide", r"case000\.png: mask values \{0, 40\} .*K <= 32")
    declared = user_folders.folder_config(
        tmp_path, tmp_path / "wide", val_fraction=0.0, test_fraction=0.0, num_classes=41
    )
    assert data.prepare(declared).info.num_classes == 41


def test_class_index_maps_in_jpeg_files_are_refused(tmp_path):
    root = tmp_path / "src"
    user_folders.write_folder(root, SIZES, mask_suffix=".jpg", mask_of=lambda s, m: m * 0)
    prepare_fails(tmp_path, root, r"case000\.jpg: class-index mask in a lossy JPEG", num_classes=3)


def test_a_set_mixing_0_1_and_0_255_masks_names_both_files(tmp_path):
    def mixed(stem, mask):
        return mask // 255 if stem == "case001" else mask

    user_folders.write_folder(tmp_path / "src", SIZES, mask_of=mixed)
    prepare_fails(
        tmp_path,
        tmp_path / "src",
        r"case001\.png: mask values \{0, 1\}, but .*case000\.png has \{0, 255\}",
        task="binary",
    )


def test_ignore_index_keeps_void_pixels_out_of_the_classes(tmp_path):
    def with_void(stem, mask):
        labels = (mask > 0).astype(np.uint8) * (1 + int(stem[-1]) % 2)
        labels[:3] = 255  # a void border
        return labels

    root = tmp_path / "src"
    written = user_folders.write_folder(root, SIZES, mask_of=with_void)
    config = user_folders.folder_config(
        tmp_path, root, val_fraction=0.0, test_fraction=0.0, ignore_index=255
    )
    dataset = data.prepare(config)
    assert (dataset.info.task, dataset.info.num_classes) == ("multiclass", 3)
    assert dataset.info.ignore_index == 255
    masks = np.concatenate([w["mask"].ravel() for w in written.values()])
    kept = masks[masks != 255]
    assert dataset.summary["ignored_fraction"] == pytest.approx((masks == 255).mean())
    fractions = [c["pixel_fraction"] for c in dataset.summary["classes"]]
    np.testing.assert_allclose(fractions, [(kept == k).mean() for k in range(3)])
    for stem, example in stored(config).items():
        np.testing.assert_array_equal(example["mask"], written[stem]["mask"])


def test_without_ignore_index_a_void_value_is_refused(tmp_path):
    root = tmp_path / "void"
    user_folders.write_folder(
        root, SIZES, mask_of=lambda s, m: np.where(m > 0, 255, 1).astype(np.uint8)
    )
    prepare_fails(
        tmp_path,
        root,
        r"mask values \{1, 255\} are outside the classes 0\.\.1 .*data\.ignore_index",
        num_classes=2,
    )
