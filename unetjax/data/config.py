"""The `config.data` section: every field a training config may override, and `check`, which
rejects the combinations that cannot work before any file is read."""

import math

import ml_collections
from ml_collections.config_dict import placeholder

from unetjax.data import kinds, mask_rule, normalization, resize
from unetjax.data.errors import DataError

TASKS = ("binary", "multiclass", "multilabel")


def default_config() -> ml_collections.ConfigDict:
    """Defaults for the embedded synthetic data; configs override single fields."""
    config = ml_collections.ConfigDict()

    # Which dataset: "synthetic_cells" (embedded, no download), "image_folder" (the user's own
    # images and masks), "isbi2012_em", "dsb2018_nuclei", "decathlon" (3D NIfTI volumes in the
    # MSD / nnU-Net layout), or the name of any TFDS catalog dataset already prepared in
    # `data_dir` (catalog datasets need TensorFlow to be built).
    config.name = "synthetic_cells"
    # Where the built array_record files live. None: TFDS's default ($TFDS_DATA_DIR or
    # ~/tensorflow_datasets).
    config.data_dir = placeholder(str)
    # The user's local source directory (TFDS manual_dir convention), for image_folder,
    # isbi2012_em, dsb2018_nuclei and decathlon.
    config.manual_dir = placeholder(str)

    # Geometry. 2 (H, W) or 3 (D, H, W); synthetic_cells and image_folder honour it.
    config.spatial_dims = 2
    # synthetic_cells: side of the square / cubic images and the number of samples per split.
    config.image_size = 128
    config.num_train = 64
    config.num_val = 16
    config.num_test = 16
    # Seed of the synthetic generator and of the fraction-based train/validation/test split.
    config.dataset_seed = 0

    # image_folder: sub-folders of manual_dir holding images and masks, paired by file stem.
    config.image_subdir = "images"
    config.mask_subdir = "masks"
    # "single": one mask file per image (binary or class-index map, by the mask rule below);
    # "per_class": mask_subdir/<class>/<stem>.* binary masks, one per class (multi-label).
    config.mask_layout = "single"
    # per_class layout: class folder names in channel order. None: the sorted sub-folders.
    config.class_names = placeholder(tuple)
    # "auto" keeps the channels of the files (all must agree), "grayscale" or "rgb" converts.
    config.color_mode = "auto"
    # Fractions of the samples held out for validation and test (image_folder, isbi2012_em,
    # dsb2018_nuclei, decathlon cases), drawn with dataset_seed...
    config.val_fraction = 0.1
    config.test_fraction = 0.1
    # ...unless explicit lists of file stems are given (then all three are used as they are;
    # stems in no list are left out).
    config.train_stems = placeholder(tuple)
    config.val_stems = placeholder(tuple)
    config.test_stems = placeholder(tuple)
    # isbi2012_em: which class is the foreground, "membrane" (mask == 0) or "interior".
    config.isbi_foreground = "membrane"

    # TFDS catalog datasets: feature keys, split names and the value subtracted from the mask
    # (oxford_iiit_pet: mask_key="segmentation_mask", label_offset=1, num_classes=3).
    config.image_key = "image"
    config.mask_key = "segmentation_mask"
    config.label_offset = 0
    config.train_split = "train"
    config.val_split = "validation"
    config.test_split = "test"

    # The mask rule (single layout), applied to the values of all mask files together:
    # - binary if every value is in {0, 1}, or every value is in {0, 255} (255 = foreground);
    # - a class-index map (multiclass) if every value is in 0..K-1, where K = num_classes
    #   when set, else K = largest value + 1, at most 32 (mask_rule.MAX_INFERRED_CLASSES);
    #   and the files are lossless (not JPEG: compression changes class indices);
    # - anything else (JPEG noise such as 0..8 and 247..255, anti-aliased edges, a stray
    #   value) stops preparation with one line naming a file, its values and the fix.
    # Per-class, DSB and ISBI masks must each be {0, 1} or {0, 255} (ISBI: {0, 255}).
    # mask_threshold=T: binary masks are value > T instead (lossy or anti-aliased binary
    # masks; colour masks are averaged to grey first). Not with multiclass.
    config.mask_threshold = placeholder(int)
    # Multiclass only: a mask value (outside 0..K-1, e.g. 255 for "void") whose pixels count
    # in neither the loss nor the metrics. A {0, 1, 255} set with ignore_index=255 is
    # multiclass with K = 2 (softmax). For catalog datasets: the value after label_offset.
    config.ignore_index = placeholder(int)

    # Resize at preparation (2D folder datasets): None, a fixed (H, W), or
    # ("shorter_side", S): the shorter side becomes S, the aspect ratio is kept. Images
    # bilinear, masks nearest; recorded in the dataset summary; predict applies it too.
    config.resize = placeholder(tuple)
    # Intensity normalisation (`normalization`), applied by the pipeline, predict and
    # evaluate: "unit" (integer images over their dtype's maximum, 255 for uint8, 65535 for
    # uint16; float images must be in [0, 1]), "zscore_image" (per image and channel) or
    # "zscore_dataset" (per channel, the training set's mean and sd, computed at
    # preparation; not for catalog datasets).
    config.normalize = "unit"

    # Task. None: inferred from the data. "binary" (num_classes 1, sigmoid), "multiclass"
    # (num_classes K >= 2, softmax) or "multilabel" (K independent sigmoids).
    config.task = placeholder(str)
    # Output channels of the model: 1 for binary, K otherwise. None: inferred; set: checked.
    config.num_classes = placeholder(int)
    # Input channels. None: inferred; set: checked against the data.
    config.in_channels = placeholder(int)

    # Training patch (one int per spatial dim); random crops of this size are trained on.
    config.patch_size = (96, 96)
    # Evaluation on a centre crop of this size; None evaluates full images.
    config.eval_patch_size = placeholder(tuple)

    # decathlon (an MSD / nnU-Net raw folder in manual_dir; docs/medical.md): every case is
    # resampled to this spacing in mm, (D, H, W) = (superior, anterior, right) after RAS
    # reorientation. None: the training split's median spacing (nnU-Net's rule, with its
    # exception for strongly anisotropic data, see `resample.target_spacing`).
    config.target_spacing = placeholder(tuple)
    # decathlon: the fraction of training patches centred on a foreground voxel (a class drawn
    # uniformly among those present, then a voxel of it), so small organs are seen; the rest are
    # placed uniformly. nnU-Net's 0.33.
    config.foreground_prob = 0.33
    # decathlon: non-finite voxels (NaN, inf) stop preparation, naming the case and channel;
    # a number here replaces them by it instead (in the file's intensity units, before
    # normalisation), and the dataset summary counts them.
    config.nonfinite_fill = placeholder(float)

    # Augmentation (train only). `augment` is the master switch; each transform runs on a
    # sample with its probability (0 turns it off).
    config.augment = True
    config.flip_prob = 0.5  # per spatial axis
    config.rot90_prob = 0.5  # in the (H, W) plane
    config.affine_prob = 0.3
    config.rotation_degrees = 15.0  # in the (H, W) plane, uniform in +-
    config.scale_range = (0.9, 1.1)
    config.shift_fraction = 0.05  # of the patch size, per axis
    config.elastic_prob = 0.3
    config.elastic_grid = 3  # coarse grid nodes per axis (U-Net paper: 3x3)
    config.elastic_sigma = 10.0  # sd of the node displacements in pixels (U-Net paper: 10)
    config.brightness_prob = 0.3
    config.brightness_delta = 0.1  # additive, uniform in +-
    config.contrast_prob = 0.3
    config.contrast_range = (0.8, 1.25)  # multiplicative around the mean
    config.gamma_prob = 0.3
    config.gamma_range = (0.8, 1.25)
    config.noise_prob = 0.2
    config.noise_std = 0.03

    # U-Net border weight map from instance labels, returned as batch["weight"].
    config.border_weights = False
    config.border_w0 = 10.0
    config.border_sigma = 5.0  # pixels

    # Input pipeline: grain worker processes (0: in the main process), reader threads per
    # process, and batches buffered ahead.
    config.num_workers = 0
    config.num_threads = 2
    config.prefetch = 2
    return config


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check(data_config: ml_collections.ConfigDict) -> None:
    """Raises a one-line DataError for a `config.data` that cannot work, before any file is
    read."""
    dims, name = data_config.spatial_dims, data_config.name
    for field in ("patch_size", "eval_patch_size"):
        size = data_config[field]
        if size is not None and (len(size) != dims or min(size) < 1):
            raise DataError(f"data.{field}={size}; expected {dims} positive sizes (spatial_dims)")
    for field in data_config:
        if field.endswith("_prob") and not 0 <= data_config[field] <= 1:
            raise DataError(f"data.{field}={data_config[field]}; expected a probability in [0, 1]")
    if data_config.task not in (None, *TASKS):
        raise DataError(f"data.task={data_config.task!r}; expected one of {TASKS}")
    if data_config.normalize not in normalization.KINDS:
        raise DataError(
            f"data.normalize={data_config.normalize!r}; expected one of {normalization.KINDS}"
        )
    kind = kinds.get(name)
    if data_config.normalize == "zscore_dataset" and not kind.dataset_statistics:
        raise DataError(
            f"data.normalize='zscore_dataset' needs statistics computed at preparation, which "
            f"catalog datasets ({name}) do not have; use 'unit' or 'zscore_image'"
        )
    _check_masks(data_config, kind)
    _check_resize(data_config, kind)
    _check_nonfinite_fill(data_config, kind)


def _check_masks(data_config: ml_collections.ConfigDict, kind: kinds.DatasetKind) -> None:
    name, task, num_classes = data_config.name, data_config.task, data_config.num_classes
    threshold, ignore = data_config.mask_threshold, data_config.ignore_index
    if task == "multilabel" and kind.mask_layouts and data_config.mask_layout != "per_class":
        raise DataError(
            "data.task='multilabel' needs one binary mask per class: set "
            "data.mask_layout='per_class'"
        )
    if num_classes is not None and not 1 <= num_classes <= mask_rule.MAX_STORED_CLASSES:
        raise DataError(
            f"data.num_classes={num_classes}; expected 1..{mask_rule.MAX_STORED_CLASSES} "
            "(masks are stored as uint8)"
        )
    if threshold is not None:
        if not _is_int(threshold) or threshold < 0:
            raise DataError(f"data.mask_threshold={threshold!r}; expected an integer >= 0")
        if not kind.image_files:
            raise DataError(
                f"data.mask_threshold applies to mask files; {name} has none to threshold"
            )
        single = data_config.mask_layout == "single"
        if task == "multiclass" or (single and num_classes is not None and num_classes > 1):
            raise DataError(
                f"data.mask_threshold={threshold} makes binary masks, but data.task={task!r}, "
                f"data.num_classes={num_classes}; drop one of them"
            )
    if ignore is None:
        return
    if not _is_int(ignore) or not 0 <= ignore <= 255:
        raise DataError(f"data.ignore_index={ignore!r}; expected a mask value in 0..255")
    if kind.binary:
        raise DataError(f"data.ignore_index is for multiclass masks; {name} is binary")
    if task in ("binary", "multilabel") or num_classes == 1:
        raise DataError(
            f"data.ignore_index is for multiclass masks; data.task={task!r}, "
            f"data.num_classes={num_classes} (a binary set with a void value is multiclass "
            "with num_classes=2)"
        )
    if data_config.mask_layout == "per_class" and kind.mask_layouts:
        raise DataError("data.ignore_index is for single class-index masks, not per_class")
    if threshold is not None:
        raise DataError("data.ignore_index and data.mask_threshold exclude each other")
    if num_classes is not None and ignore < num_classes:
        raise DataError(
            f"data.ignore_index={ignore} is one of the classes 0..{num_classes - 1}; expected "
            "a value outside them (e.g. 255)"
        )


def _check_resize(data_config: ml_collections.ConfigDict, kind: kinds.DatasetKind) -> None:
    setting, name = data_config.resize, data_config.name
    if setting is None:
        return
    error = resize.setting_error(setting)
    if error:
        raise DataError(error)
    if data_config.spatial_dims != 2:
        raise DataError(f"data.resize={setting!r} is for 2D images; spatial_dims is 3")
    if not kind.image_files:
        raise DataError(f"data.resize applies to folder datasets, not {name}; {kind.resize_hint}")
    smallest = resize.smallest_size(setting)
    for field in ("patch_size", "eval_patch_size"):
        size = data_config[field]
        if size is not None and any(p > s for p, s in zip(size, smallest, strict=True)):
            raise DataError(
                f"data.{field}={tuple(size)} is larger than images resized by "
                f"data.resize={tuple(setting)} can be ({smallest[0]}x{smallest[1]} px or more); "
                "choose a smaller patch or a larger resize"
            )


def _check_nonfinite_fill(data_config: ml_collections.ConfigDict, kind: kinds.DatasetKind) -> None:
    fill = data_config.nonfinite_fill
    if fill is None:
        return
    if not kind.nonfinite_fill:
        raise DataError(
            f"data.nonfinite_fill applies to decathlon volumes, not {data_config.name}; "
            "replace the non-finite values in the image files"
        )
    if not math.isfinite(fill):
        raise DataError(f"data.nonfinite_fill={fill}; expected a finite number (e.g. 0.0)")
