"""unetjax: the U-Net family (U-Net, wide U-Net, UNet+, UNet++, UNet 3+) in JAX/Flax NNX.

`unetjax.load_pretrained(folder_or_hub_id)` loads a model package (`unetjax-export --package`);
it is imported on first use, so `import unetjax` stays light.
"""


def __getattr__(name: str):
    if name == "load_pretrained":
        from unetjax.inference.package import load_pretrained

        return load_pretrained
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
