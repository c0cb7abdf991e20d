"""UNet 3+ (Huang et al. ICASSP 2020): full-scale skips, deep supervision on every decoder level.

    python train.py --config configs/unet3plus.py

cat_channels 16 (the paper's 64 scaled like the filters), same budget as unetpp_l4.
Expected: IoU close to UNet++'s; heads L1..L4 read decoder levels 3..0.
"""

import ml_collections

from configs import unetpp_l4


def get_config() -> ml_collections.ConfigDict:
    config = unetpp_l4.get_config()
    config.model.architecture = "unet_3plus"
    config.model.cat_channels = 16
    config.train.best_metric = "iou_L4"  # UNet 3+ predicts from its top decoder level
    return config
