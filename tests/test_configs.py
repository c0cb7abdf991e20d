"""Every shipped config loads, documents its command, and builds its model."""

import importlib
import os

import pytest
from flax import nnx

from configs import default
from unetjax import graph, models, nested_unet

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
    model_config.spatial_dims = config.data.spatial_dims
    model = nnx.eval_shape(lambda: models.from_config(model_config))
    assert nested_unet.count_params(model) > 0
    assert model.spec.spatial_dims == config.data.spatial_dims == len(config.data.patch_size)
    assert config.train.batch_size > 0 and config.train.num_steps > 0


def _model_config(**fields):
    config = default.get_config().model
    config.update(in_channels=1, num_classes=1, output_activation="sigmoid", spatial_dims=2)
    config.update(norm="none", **fields)
    return config


def test_a_config_and_the_constructors_follow_one_width_rule():
    """Without filters, a wide U-Net config gets the paper's 35..560 and its 9,282,246
    parameters, as `nested_unet.WideUNet` does; UNet++ gets 32..512 (9,041,601)."""
    for architecture, params in (("wide_unet", 9_282_246), ("unet_plusplus", 9_041_601)):
        config = _model_config(architecture=architecture, deep_supervision=False)
        from_config = nnx.eval_shape(lambda c=config: models.from_config(c))
        assert nested_unet.count_params(from_config) == params
        assert graph.graph_from_config(config).depth == 4


def test_filters_that_disagree_with_depth_are_an_error_in_every_builder():
    config = _model_config(architecture="unet", filters=(4, 8, 16), depth=4)
    with pytest.raises(ValueError, match=r"filters \(4, 8, 16\) has 3 levels; depth 4 needs 5"):
        graph.graph_from_config(config)
    with pytest.raises(ValueError, match=r"has 3 levels; depth 4 needs 5"):
        models.from_config(config)
    config.depth = None
    assert graph.graph_from_config(config).depth == 2
