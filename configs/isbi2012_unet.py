"""U-Net on the ISBI 2012 EM membranes, at isbi2012_unetpp's budget.

    python train.py --config configs/isbi2012_unet.py \
        --config.data.manual_dir=../shared/data/isbi2012_membrane

Same split, patches, augmentation, optimizer and steps as configs/isbi2012_unetpp.py; see
docs/isbi2012.md for the results table.
"""

import ml_collections

from configs import isbi2012_unetpp


def get_config() -> ml_collections.ConfigDict:
    config = isbi2012_unetpp.get_config()
    config.model.architecture = "unet"
    config.train.best_metric = "iou_L4"
    return config
