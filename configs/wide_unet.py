"""Wide U-Net: U-Net with more filters, the UNet++ paper's control for the parameter count.

    python train.py --config configs/wide_unet.py

Filters 18..288 here (the paper's 35..560 scaled like unetpp_l4's 16..256), 800 steps.
Expected: about U-Net's IoU: width alone does not buy UNet++'s gain.
"""

import ml_collections

from configs import unetpp_l4


def get_config() -> ml_collections.ConfigDict:
    config = unetpp_l4.get_config()
    config.model.architecture = "wide_unet"
    config.model.filters = (18, 36, 72, 144, 288)
    config.train.best_metric = "iou_L4"
    return config
