"""UNet++ depth 2 in 3D on a synthetic Decathlon-format folder: for tests and CI (seconds).

    python -m unetjax.data.volumes.synthetic_decathlon /tmp/syn_msd --num-training 6
    python train.py --config configs/decathlon_tiny.py --workdir /tmp/decathlon_tiny \\
        --config.data.manual_dir=/tmp/syn_msd

The synthetic cases (`synthetic_decathlon`) are small anisotropic volumes (about 10 x 23 x 22
voxels at the median spacing of about 3 x 0.9 x 1 mm) in RAS, LPS, permuted and oblique
orientations, with two channels (CT, T2) and three classes (background, organ, lesion). Filters
4/8/16, 8x16x16 patches (half of them centred on foreground), validation on 16x32x32 crops that
hold the whole of every case, 20 steps of batch 2: seconds on a CPU, barely better than chance.
Not for results; the base of `decathlon_liver`, which overrides the sizes.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.filters = (4, 8, 16)
    config.model.depth = 2
    data = config.data
    data.name = "decathlon"
    data.spatial_dims = 3
    data.val_fraction = 0.34
    data.test_fraction = 0.0
    data.patch_size = (8, 16, 16)
    # Validation on centre crops larger than every case: whole volumes, zero-padded (the
    # normalised mean) to one shape the network takes (multiples of 2^depth).
    data.eval_patch_size = (16, 32, 32)
    data.foreground_prob = 0.5
    # 3D augmentation for normalised CT / MR (`volumes.transforms`): mirroring on every
    # axis, in-plane rotation and scaling, a little elastic deformation (in voxels), intensity
    # changes in sd units; no 90-degree turns, which real anatomy never shows.
    data.flip_prob = 0.5
    data.rot90_prob = 0.0
    data.affine_prob = 0.2
    data.rotation_degrees = 30.0
    data.scale_range = (0.7, 1.4)
    data.shift_fraction = 0.0
    data.elastic_prob = 0.1
    data.elastic_sigma = 2.0
    data.brightness_delta = 0.1
    data.contrast_range = (0.75, 1.25)
    data.gamma_range = (0.7, 1.5)
    data.noise_prob = 0.1
    data.noise_std = 0.1
    config.train.batch_size = 2
    config.train.eval_batch_size = 2
    config.train.num_steps = 20
    config.train.log_every = 5
    config.train.eval_every = 10
    config.train.checkpoint_every = 10
    config.train.num_overlays = 1
    config.optimizer.warmup_steps = 0
    config.optimizer.learning_rate = 1e-2
    return config
