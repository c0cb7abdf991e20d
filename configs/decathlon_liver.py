"""UNet++ depth 3 in 3D on a real CT: the liver vs background, from the shared TotalSegmentator
example (one subject, so a pipeline check on real anatomy and intensities, not a benchmark).

    python -m unetjax.data.volumes.msd_from_labelmap \
        ../shared/data/totalsegmentator_ct /tmp/liver_msd
    python train.py --config configs/decathlon_liver.py --workdir runs/decathlon_liver
    python evaluate.py --model runs/decathlon_liver --split validation --modes fast
    python predict.py --model runs/decathlon_liver --output /tmp/liver_pred /tmp/liver_msd/imagesTs

The first command writes an MSD folder (docs/medical.md): the labelled 30-slice CT cut into two
slabs of 15 axial slices at 3 mm, totalseg_slab0 (lower) to train on and totalseg_slab1 (upper)
to validate on, labels 5 (liver) -> 1 and all else -> 0, and the unlabelled 112-slice CT as a
test image. The CT is normalised with the training slab's liver intensities (nnU-Net's CT
scheme) and resampled to 3 x 6 x 6 mm (15 x 51 x 61 voxels per slab, D, H, W in RAS). UNet++
filters 8..64, 16 x 32 x 32 patches (a third centred on the liver), batch 2, 150 steps,
cross-entropy + Dice with deep supervision: 18 minutes on a 2-core CPU under load ~10 (5 of
them starting up). Measured (docs/medical.md): validation liver Dice 0.78 at L2 and L3 (0.79
accurate) on the unseen upper slab, 0.78 on its own 3 mm grid after predict.py maps it back.
The liver is large and bright: this checks that real CT geometry and intensities flow through,
not generalisation (one subject).
"""

import ml_collections

from configs import decathlon_tiny


def get_config() -> ml_collections.ConfigDict:
    config = decathlon_tiny.get_config()
    config.model.filters = None
    config.model.base_filters = 8
    config.model.depth = 3
    data = config.data
    data.manual_dir = "/tmp/liver_msd"
    data.train_stems = ("totalseg_slab0",)
    data.val_stems = ("totalseg_slab1",)
    data.test_stems = ()
    # 6 mm in-plane (the files have 3 mm) keeps a CPU run short; None trains at the median
    # spacing of the training cases, 3 mm here.
    data.target_spacing = (3.0, 6.0, 6.0)
    data.patch_size = (16, 32, 32)
    data.eval_patch_size = (16, 56, 64)  # the whole slab (15 x 51 x 61), padded to 2^3 multiples
    data.foreground_prob = 0.33
    data.elastic_prob = 0.2
    config.train.batch_size = 2
    config.train.eval_batch_size = 1
    config.train.num_steps = 150
    config.train.log_every = 10
    config.train.eval_every = 50
    config.train.checkpoint_every = 50
    config.train.num_overlays = 1
    config.optimizer.warmup_steps = 20
    config.optimizer.learning_rate = 3e-3
    return config
