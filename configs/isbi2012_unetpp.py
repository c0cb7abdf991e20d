"""UNet++ depth 4 with deep supervision on the ISBI 2012 EM membranes (real data, from a path).

    python train.py --config configs/isbi2012_unetpp.py \
        --config.data.manual_dir=../shared/data/isbi2012_membrane

The recipe of docs/isbi2012.md (`python recipes/isbi2012.py` trains and evaluates all four
isbi2012 configs): fixed split (slices 00-22 train, 23-24 validation, 25-29 test), foreground =
membrane, EM augmentations (flips, rotations, elastic deformation), 128x128 patches, batch 8,
2,500 steps: about 50 minutes on a 2-core CPU (U-Net 20, UNet 3+ 95; measured step times in
docs/isbi2012.md), under a minute on one H100. Evaluation at full 512x512 with
overlap-tile, at the best validation checkpoint and threshold:
`python evaluate.py --model runs/isbi2012_unetpp --split test --sweep --tile 128 --step <best>`.
Expected: pixel accuracy near the data README's reference (0.917); docs/isbi2012.md has the table.
"""

import ml_collections

from configs import default

ISBI_TRAIN = tuple(f"{i:02d}" for i in range(23))
ISBI_VALIDATION = ("23", "24")
ISBI_TEST = tuple(f"{i:02d}" for i in range(25, 30))


def get_config() -> ml_collections.ConfigDict:
    config = default.get_config()
    config.model.base_filters = 16
    data = config.data
    data.name = "isbi2012_em"
    data.manual_dir = "../shared/data/isbi2012_membrane"
    data.isbi_foreground = "membrane"
    data.train_stems, data.val_stems, data.test_stems = ISBI_TRAIN, ISBI_VALIDATION, ISBI_TEST
    data.patch_size = (128, 128)
    data.flip_prob = 0.5
    data.rot90_prob = 0.5
    data.affine_prob = 0.5
    data.elastic_prob = 0.5
    data.num_workers = 2
    config.train.batch_size = 8
    config.train.eval_batch_size = 2
    config.train.num_steps = 2500
    config.train.eval_every = 500
    config.train.checkpoint_every = 500
    config.train.log_every = 50
    config.train.num_overlays = 2
    return config
