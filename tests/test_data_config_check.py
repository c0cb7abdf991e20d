"""Every data config that cannot work is refused in one line before any file is read."""

import pytest

import unetjax.data as data

REFUSED = [
    ({"resize": (64, 64), "patch_size": (96, 96)}, r"patch_size=\(96, 96\) is larger than"),
    ({"resize": ("shorter_side", 64), "eval_patch_size": (32, 80)}, r"eval_patch_size=\(32, 80\)"),
    (
        {"resize": (64, 64), "spatial_dims": 3, "patch_size": (8, 8, 8)},
        r"resize=\(64, 64\) is for 2D",
    ),
    ({"resize": ("longer_side", 64)}, r"data\.resize=\('longer_side', 64\); expected None"),
    ({"resize": (64, 0)}, r"expected None, \(H, W\)"),
    ({"resize": (64, 64), "name": "synthetic_cells"}, r"not synthetic_cells; set data\.image_size"),
    ({"mask_threshold": 127, "task": "multiclass"}, r"mask_threshold=127 makes binary masks"),
    ({"mask_threshold": 127, "num_classes": 3}, r"mask_threshold=127 makes binary masks"),
    ({"mask_threshold": -1}, r"mask_threshold=-1; expected an integer >= 0"),
    ({"mask_threshold": 127, "name": "synthetic_cells"}, r"synthetic_cells has none"),
    ({"ignore_index": 255, "task": "binary"}, r"ignore_index is for multiclass masks"),
    ({"ignore_index": 255, "num_classes": 1}, r"ignore_index is for multiclass masks"),
    ({"ignore_index": 255, "name": "dsb2018_nuclei"}, r"dsb2018_nuclei is binary"),
    ({"ignore_index": 255, "mask_layout": "per_class"}, r"not per_class"),
    ({"ignore_index": 255, "mask_threshold": 127}, r"exclude each other"),
    ({"ignore_index": 2, "num_classes": 3}, r"ignore_index=2 is one of the classes 0\.\.2"),
    ({"ignore_index": 300}, r"ignore_index=300; expected a mask value in 0\.\.255"),
    ({"num_classes": 300}, r"num_classes=300; expected 1\.\.256"),
    ({"normalize": "minmax"}, r"normalize='minmax'; expected one of"),
    ({"normalize": "zscore_dataset", "name": "some_catalog"}, r"catalog datasets \(some_catalog\)"),
    ({"task": "multilabel"}, r"mask_layout='per_class'"),
    ({"task": "segmentation"}, r"task='segmentation'; expected one of"),
]


@pytest.mark.parametrize("overrides,message", REFUSED, ids=[m for _, m in REFUSED])
def test_impossible_combinations_are_refused_before_reading_files(tmp_path, overrides, message):
    config = data.default_config()
    config.name = "image_folder"
    config.manual_dir = str(tmp_path / "not_there")  # reading anything would fail differently
    config.data_dir = str(tmp_path / "tfds")
    config.patch_size = (16, 16)
    config.update(overrides)
    with pytest.raises(data.DataError, match=message) as error:
        data.prepare(config)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "tfds").exists()
