"""UNet++ depth 3 in 3D on synthetic 3D cells (volumes), deep supervision on.

    python train.py --config configs/unetpp_3d.py

Filters 8..64, 32^3 patches of 48^3 volumes, batch 2, 300 steps: about 10 minutes on a 2-core CPU.
Expected: validation IoU well above chance (about 0.7); a GPU makes longer runs practical.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.depth = 3
    config.model.base_filters = 8
    config.data.spatial_dims = 3
    config.data.image_size = 48
    config.data.patch_size = (32, 32, 32)
    config.data.num_train = 24
    config.data.num_val = 6
    config.data.num_test = 6
    config.train.batch_size = 2
    config.train.eval_batch_size = 2
    config.train.num_steps = 300
    config.train.eval_every = 100
    config.train.checkpoint_every = 100
    config.train.log_every = 20
    return config
