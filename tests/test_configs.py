"""Every shipped config loads, documents its command, and builds its model."""

import importlib
import os

import pytest
from flax import nnx

from unetjax import nested_unet, run

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
CONFIGS = sorted(
    name[:-3] for name in os.listdir(CONFIG_DIR) if name.endswith(".py") and name != "__init__.py"
)


def test_the_required_configs_exist():
    required = {
        "default",
        "tiny",
        "unetpp_l4",
        "unetpp_l4_nods",
        "unet",
        "wide_unet",
        "unet_plus",
        "unet3plus",
        "unetpp_3d",
        "isbi2012_unetpp",
    }
    assert required <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_model(name):
    module = importlib.import_module(f"configs.{name}")
    assert f"python train.py --config configs/{name}.py" in module.__doc__
    config = module.get_config()
    model_config = config.model
    model_config.in_channels = model_config.in_channels or 1
    model_config.num_classes = model_config.num_classes or 1
    model_config.output_activation = model_config.output_activation or "sigmoid"
    model = nnx.eval_shape(lambda: run.build_model(model_config))
    assert nested_unet.count_params(model) > 0
    assert model.spec.spatial_dims == config.data.spatial_dims == len(config.data.patch_size)
    assert config.train.batch_size > 0 and config.train.num_steps > 0
