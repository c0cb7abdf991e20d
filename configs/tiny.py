"""A UNet++ small enough for tests and CI: depth 2, filters 4/8/16, 32x32 synthetic cells.

    python train.py --config configs/tiny.py --workdir /tmp/tiny

Trains 30 steps in seconds on a CPU; the model is barely better than chance. Not for results.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.filters = (4, 8, 16)
    config.model.depth = 2
    config.data.image_size = 32
    config.data.patch_size = (32, 32)
    config.data.num_train = 8
    config.data.num_val = 4
    config.data.num_test = 4
    config.train.batch_size = 4
    config.train.eval_batch_size = 4
    config.train.num_steps = 30
    config.train.log_every = 10
    config.train.eval_every = 15
    config.train.checkpoint_every = 15
    config.train.num_overlays = 2
    config.optimizer.warmup_steps = 0
    config.optimizer.learning_rate = 3e-2
    return config
