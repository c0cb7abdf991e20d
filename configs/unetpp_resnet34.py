"""UNet++ over an ImageNet ResNet-34 (smp's decoder) with deep supervision, on ISBI 2012.

    python train.py --config configs/unetpp_resnet34.py \
        --config.model.encoder_weights=/path/to/resnet34.safetensors \
        --config.data.manual_dir=../shared/data/isbi2012_membrane --workdir runs/unetpp_resnet34

The ISBI 2012 recipe's data (configs/isbi2012_unetpp.py: membranes, EM augmentations, 128x128
patches, batch 8) under smp's ResNet-34 UnetPlusPlus decoder (256, 128, 64, 32, 16, nearest
up-sampling, batch norm) with heads L1..L4, each reaching full resolution through its own
no-skip block (docs/encoders.md). The grayscale input is adapted to the RGB first conv as smp
does (the sum of its filters) and normalised in the model with ImageNet's mean / std (averaged
over RGB for one channel). The encoder learns at 0.1x the decoder's rate after 200 steps of
frozen warm-up, with its batch-norm statistics frozen (small batches). `encoder_weights=imagenet`
fetches timm's resnet34.a1_in1k through huggingface_hub when online; offline, place the file and
pass its path. 1,500 steps: roughly 2 hours on a 2-core CPU (not measured end to end here),
minutes on one GPU. Expected: validation pixel accuracy at or above the from-scratch UNet++ of
configs/isbi2012_unetpp.py (0.917 reference), reached in fewer steps; not yet measured.
"""

import ml_collections

from configs import isbi2012_unetpp
from unetjax.encoders import IMAGENET_MEAN, IMAGENET_STD


def get_config() -> ml_collections.ConfigDict:
    config = isbi2012_unetpp.get_config()
    model = config.model
    model.encoder = "resnet34"
    model.encoder_weights = "imagenet"
    model.decoder_channels = (256, 128, 64, 32, 16)
    model.upsample = "nearest"
    model.norm = "batch"
    model.input_mean = IMAGENET_MEAN
    model.input_std = IMAGENET_STD
    model.freeze_encoder_bn = True
    config.data.patch_size = (128, 128)  # a multiple of 32, the encoder's deepest stride
    config.train.num_steps = 1500
    config.optimizer.encoder_lr_multiplier = 0.1
    config.optimizer.encoder_frozen_steps = 200
    config.optimizer.learning_rate = 3e-4
    return config
