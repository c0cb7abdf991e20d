"""UNet+ (Zhou et al. TMI 2019): nested decoders without dense skips, deep supervision on.

    python train.py --config configs/unet_plus.py

Same budget as unetpp_l4; prunable to L1..L4 like UNet++.
Expected: between U-Net and UNet++.
"""

import ml_collections

from configs import unetpp_l4


def get_config() -> ml_collections.ConfigDict:
    config = unetpp_l4.get_config()
    config.model.architecture = "unet_plus"
    return config
