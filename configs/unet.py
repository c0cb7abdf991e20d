"""U-Net (Ronneberger 2015) depth 4 on the synthetic cells, at the unetpp_l4 budget.

    python train.py --config configs/unet.py

Filters 16..256, batch norm, 800 steps; faster per step than UNet++ (no nested nodes).
Expected: IoU a little below UNet++'s L4 head on the same data.
"""

import ml_collections

from configs import unetpp_l4


def get_config() -> ml_collections.ConfigDict:
    config = unetpp_l4.get_config()
    config.model.architecture = "unet"
    config.train.best_metric = "iou_L4"
    return config
