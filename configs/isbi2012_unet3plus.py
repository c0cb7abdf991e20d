"""UNet 3+ on the ISBI 2012 EM membranes, at isbi2012_unetpp's budget.

    python train.py --config configs/isbi2012_unet3plus.py \
        --config.data.manual_dir=../shared/data/isbi2012_membrane

Same split, patches, augmentation, optimizer and steps as configs/isbi2012_unetpp.py; see
docs/isbi2012.md for the results table (`python recipes/isbi2012.py` trains and evaluates all four).
Deep supervision on every decoder level, as in the paper, but the checkpoint is chosen, and the
result reported, at head L4 (the top decoder level), the output UNet 3+ predicts from; its L1..L3
heads are low-resolution side outputs, and averaging them ("accurate" mode) is a UNet++ idea.
"""

import ml_collections

from configs import isbi2012_unetpp


def get_config() -> ml_collections.ConfigDict:
    config = isbi2012_unetpp.get_config()
    config.model.architecture = "unet_3plus"
    config.model.cat_channels = 16
    config.train.best_metric = "iou_L4"
    return config
