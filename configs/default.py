"""Defaults shared by every config: UNet++ depth 4 with deep supervision on the synthetic cells.

Not meant to be run on its own: the other configs start from it and override what they change.
    python train.py --config configs/default.py
"""

import ml_collections
from ml_collections import config_dict

from unetjax import data


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.model = model = ml_collections.ConfigDict()
    model.architecture = "unet_plusplus"  # unet, wide_unet, unet_plus, unet_plusplus, unet_3plus
    # Widths (graph.model_filters): `filters` per level if given, else `base_filters` (None: the
    # paper's 32, 35 for the wide U-Net) doubled per level over levels 0..depth (None: 4).
    model.depth = config_dict.placeholder(int)
    model.base_filters = config_dict.placeholder(int)
    model.filters = config_dict.placeholder(tuple)
    model.deep_supervision = True
    # Per-axis pooling (nnU-Net's rule for anisotropic data; `unetjax.scales`), set by the planner:
    # `strides`, per level 1..depth, each axis's pooling factor (2, or 1: not pooled there), and
    # `kernels`, per level 0..depth, each axis's kernel (3, or 1). None: every axis pooled by 2
    # at every level, 3-wide kernels. Not with `encoder`.
    model.strides = config_dict.placeholder(tuple)
    model.kernels = config_dict.placeholder(tuple)
    model.norm = "batch"  # none (the paper), batch, instance, group
    model.activation = "relu"
    model.dropout = 0.0
    model.upsample = "transpose"  # transpose (2x2 transposed conv) or interpolate
    model.cat_channels = 64  # UNet 3+ only
    model.dtype = "float32"  # compute dtype; bfloat16 for mixed precision (params stay float32)
    # A pretrained encoder as the X^{i,0} column (docs/encoders.md): resnet18, resnet34, resnet50,
    # convnext_tiny, resnet_tiny (tests); None is the plain encoder above. Then depth, filters
    # and base_filters are unused, `upsample` may also be "nearest" (smp's), and:
    model.encoder = config_dict.placeholder(str)
    model.encoder_weights = config_dict.placeholder(str)  # .safetensors / .pth, or "imagenet"
    model.decoder_channels = config_dict.placeholder(tuple)  # None: smp's 256, 128, 64, 32, 16
    model.input_mean = config_dict.placeholder(tuple)  # in-model input normalisation, e.g.
    model.input_std = config_dict.placeholder(tuple)  # ImageNet's (configs/unetpp_resnet34.py)
    model.freeze_encoder_bn = False  # the encoder's batch norm keeps its running statistics
    model.init_from = config_dict.placeholder(
        str
    )  # a run directory whose matching arrays start this one
    # Filled in from the dataset by train.py and saved with the run (data.spatial_dims says
    # whether the data, and so the model, is 2D or 3D):
    model.spatial_dims = config_dict.placeholder(int)
    model.in_channels = config_dict.placeholder(int)
    model.num_classes = config_dict.placeholder(int)
    model.output_activation = config_dict.placeholder(str)

    config.data = data.default_config()

    config.train = train = ml_collections.ConfigDict()
    train.batch_size = 8  # global batch, split over every device
    train.num_steps = 600
    train.head_weights = config_dict.placeholder(tuple)  # per-head loss weights; None sums them
    train.log_every = 20
    train.eval_every = 200
    train.checkpoint_every = 200
    train.keep_latest = 2
    train.best_metric = "iou_accurate"  # a validation metric name; empty to keep only the latest
    train.best_mode = "max"
    train.early_stopping_patience = 0  # evaluations without improvement; 0 disables it
    train.eval_batch_size = 8
    train.eval_threshold = 0.5
    train.num_overlays = 4  # validation images drawn with their prediction at each evaluation
    train.stop_after_steps = 0  # stop (with a checkpoint) after this many steps of one invocation
    train.distributed = False  # call jax.distributed.initialize() (multi-host)
    # Left None, these come from the cluster (SLURM, Kubernetes, Cloud TPU):
    train.coordinator_address = config_dict.placeholder(str)  # e.g. "10.0.0.1:1234"
    train.num_processes = config_dict.placeholder(int)
    train.process_id = config_dict.placeholder(int)
    train.progress_bar = True

    config.optimizer = optimizer = ml_collections.ConfigDict()
    optimizer.name = "adam"  # adam, adamw, sgd
    optimizer.learning_rate = 1e-3
    optimizer.schedule = "cosine"  # constant, cosine, step, poly
    optimizer.warmup_steps = 20
    optimizer.end_lr_factor = 0.01  # final lr / peak for cosine and poly
    optimizer.step_boundaries = (0.5, 0.75)  # fractions of the decay for the step schedule
    optimizer.step_decay_factor = 0.1
    optimizer.poly_power = 0.9
    optimizer.b1 = 0.9
    optimizer.b2 = 0.999
    optimizer.momentum = 0.9
    optimizer.nesterov = True
    optimizer.weight_decay = 0.0
    optimizer.grad_clip_norm = 0.0  # 0 disables clipping
    # With model.encoder: its learning rate is learning_rate * encoder_lr_multiplier, and it is
    # held fixed for the first encoder_frozen_steps steps (the decoder warms up on it).
    optimizer.encoder_lr_multiplier = 1.0
    optimizer.encoder_frozen_steps = 0
    return config
