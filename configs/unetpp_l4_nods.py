"""UNet++ depth 4 WITHOUT deep supervision (one head on x_0_4), otherwise as unetpp_l4.

    python train.py --config configs/unetpp_l4_nods.py

The comparison the UNet++ paper makes: deep supervision's effect at equal budget.
Expected: IoU close to unetpp_l4's L4 head; only L4 can be pruned to (one head).
"""

import ml_collections

from configs import unetpp_l4


def get_config() -> ml_collections.ConfigDict:
    config = unetpp_l4.get_config()
    config.model.deep_supervision = False
    config.train.best_metric = "iou_L4"
    return config
