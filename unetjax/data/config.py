"""The `config.data` section: every field a training config may override."""

import ml_collections
from ml_collections.config_dict import placeholder


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
    # "single": one mask file per image (binary {0,1}/{0,255} or class-index map);
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
