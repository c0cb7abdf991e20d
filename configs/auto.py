"""A self-configuring run: the plan for the data in data.manual_dir decides every choice.

    unetjax-plan ../shared/data/msd_hippocampus --output runs/hippocampus_plan   # optional
    python train.py --config configs/auto.py --config.data.manual_dir=DIR [--workdir runs/auto]

At train start the plan beside the data (DIR/plans.json, or plan.file) is reused when its data
hash matches DIR's files, refused when it was made for other data (both hashes named), and made
anew otherwise (`unetjax.planning`: target spacing, patch, depth, filters, batch fitted to
plan.memory_gb by compiling the train step, steps for plan.hours from a timed step, optimiser,
augmentation, how validation is scored). Each planned value lands in its ordinary config
field; a field given on the command line (--config.train.batch_size=4) wins and is recorded in
plan.overridden and in the run's plans.json. The values below only stand in until then (they
build a model, so this file loads without data). Expected results: docs/medical.md.
"""

import ml_collections
from ml_collections import config_dict

from configs import decathlon_tiny


def get_config() -> ml_collections.ConfigDict:
    config = decathlon_tiny.get_config()
    config.plan = plan = ml_collections.ConfigDict()
    plan.enabled = True
    plan.memory_gb = config_dict.placeholder(float)  # None: what the device reports, CPU 4 GB
    plan.hours = 1.0  # training time budget the steps are planned for
    plan.file = config_dict.placeholder(str)  # None: data.manual_dir/plans.json
    # Filled in at train start: the config keys given on the command line, those of them the
    # plan also sets (the override won), and the data hash the plan was made for.
    plan.overrides = config_dict.placeholder(tuple)
    plan.overridden = config_dict.placeholder(tuple)
    plan.data_hash = config_dict.placeholder(str)
    config.train.num_overlays = 1
    return config
