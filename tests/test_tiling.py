"""Overlap-tile inference against whole-image prediction, 2D and 3D.

Tolerance: with Gaussian blending and an overlap of half the tile (the default), tiled
probabilities stay within 2e-3 of the whole-image prediction everywhere (borders included, since
both zero-pad at the image border), for a tiny UNet++ of depth 2 whose heads are scaled up so that
its probabilities span about 0.25..0.8 (a freshly initialised network predicts nearly constant
0.5, which would make any tolerance meaningless).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from flax import nnx

from unetjax import nested_unet
from unetjax.inference import tiling

DEPTH = 2
ALIGN = 2**DEPTH
TOLERANCE = 2e-3


def _model(spatial_dims: int) -> nested_unet.NestedUNet:
    model = nested_unet.UNetPlusPlus(
        filters=(4, 8, 16), norm="none", spatial_dims=spatial_dims, rngs=nnx.Rngs(0)
    )
    for head in model.heads.values():
        head.conv.kernel[...] = head.conv.kernel[...] * 30.0
    return model


@pytest.fixture(scope="module", params=[2, 3], ids=["2d", "3d"])
def predict_fn(request):
    model = _model(request.param)
    forward = jax.jit(lambda x: model.predict(x, depth=DEPTH, mode="accurate"))
    predict = lambda batch: np.asarray(forward(jnp.asarray(batch)))  # noqa: E731
    predict.spatial_dims = request.param
    return predict


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    image = scipy.ndimage.gaussian_filter(rng.random((*shape, 1)), (2,) * len(shape) + (0,))
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def _direct(predict_fn, image):
    padded, crop = tiling.pad_to_multiple(image, ALIGN)
    return predict_fn(padded[None])[0][crop]


def _shapes(spatial_dims):
    # Large shapes not divisible by 2^D, so padding, uneven tile spreads and alignment all run.
    return {2: ((30, 27), (150, 118)), 3: ((14, 13, 11), (46, 41, 38))}[spatial_dims]


def test_tile_starts_are_aligned_cover_the_axis_and_overlap():
    for size, tile, overlap in [(128, 64, 32), (124, 32, 8), (200, 48, 20), (64, 64, 16)]:
        starts = tiling.tile_starts(size, tile, overlap, align=4)
        assert starts[0] == 0 and starts[-1] == max(size - tile, 0)
        assert all(s % 4 == 0 for s in starts)
        assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))


def test_image_that_fits_one_tile_gives_exactly_the_direct_prediction(predict_fn):
    small, _ = _shapes(predict_fn.spatial_dims)
    image = _image(small)
    tiled = tiling.predict_tiled(predict_fn, image, tile=32, overlap=16, align=ALIGN)
    np.testing.assert_array_equal(tiled, _direct(predict_fn, image))


def test_fixed_shape_tiles_call_the_network_with_one_shape_for_every_image_size(predict_fn):
    dims = predict_fn.spatial_dims
    tile = 32 if dims == 2 else 16
    shapes_seen = set()

    def recording(batch):
        shapes_seen.add(batch.shape[1:-1])
        return predict_fn(batch)

    small, large = _shapes(dims)
    for shape in (small, tuple(s // 2 for s in small), large):
        image = _image(shape)
        tiled = tiling.predict_tiled(
            recording, image, tile=tile, align=ALIGN, overlap=tile // 2, fixed_shape=True
        )
        assert tiled.shape == (*shape, 1)
        if all(s <= tile for s in shape):  # one tile: the mirror-padded image, cropped back
            reference = np.pad(image, [(0, tile - s) for s in shape] + [(0, 0)], mode="reflect")
            crop = tuple(slice(0, s) for s in shape)
            np.testing.assert_allclose(tiled, predict_fn(reference[None])[0][crop], atol=1e-6)
    assert shapes_seen == {(tile,) * dims}


def test_tiled_prediction_matches_the_direct_one_without_seams(predict_fn):
    _, large = _shapes(predict_fn.spatial_dims)
    tile = 64 if predict_fn.spatial_dims == 2 else 32
    image = _image(large, seed=1)
    direct = _direct(predict_fn, image)
    tiled = tiling.predict_tiled(
        predict_fn, image, tile=tile, overlap=tile // 2, align=ALIGN, blend="gaussian", batch_size=3
    )
    assert tiled.shape == direct.shape == (*large, 1)
    assert direct.max() - direct.min() > 0.2  # the check below means something
    np.testing.assert_allclose(tiled, direct, atol=TOLERANCE, rtol=0)

    # No seams: across every tile border, the step between neighbouring pixels of the tiled
    # prediction is no larger than the direct prediction's step there (up to the tolerance).
    padded_size = [tiling.round_up(s, ALIGN) for s in large]
    for axis, size in enumerate(padded_size):
        starts = tiling.tile_starts(size, tile, tile // 2, ALIGN)
        borders = sorted({b for s in starts for b in (s, s + tile)} - {0, size})
        borders = [b for b in borders if b < large[axis]]
        for border in borders:
            before = np.take(tiled, border - 1, axis) - np.take(tiled, border, axis)
            expected = np.take(direct, border - 1, axis) - np.take(direct, border, axis)
            assert np.abs(before - expected).max() < TOLERANCE, (axis, border)


def test_constant_blending_and_border_context_run_on_any_size(predict_fn):
    _, large = _shapes(predict_fn.spatial_dims)
    image = _image(large, seed=2)
    tiled = tiling.predict_tiled(
        predict_fn, image, tile=32, overlap=8, align=ALIGN, blend="constant", border=5
    )
    assert tiled.shape == (*large, 1)
    assert np.isfinite(tiled).all() and (tiled >= 0).all() and (tiled <= 1).all()


def test_blend_window_is_one_at_the_centre_and_positive_everywhere():
    window = tiling.blend_window((33, 16), "gaussian")
    assert window.shape == (33, 16)
    assert window.max() == pytest.approx(1.0, abs=1e-2) and window.min() > 0
    assert window[16, 7] > window[0, 7]
    with pytest.raises(ValueError, match="blend must be one of"):
        tiling.blend_window((8, 8), "median")


def test_size_buckets_are_few_aligned_and_close_to_the_size():
    assert tiling.bucket_size(530, 16) == 640  # 4 buckets per octave: 512, 640, 768, 896
    assert tiling.bucket_size(300, 16) == 320
    assert tiling.bucket_size(32, 4) == 32
    sizes = range(40, 301)
    buckets = {tiling.bucket_size(size, 16) for size in sizes}
    assert len(buckets) <= 12  # one compiled shape per bucket instead of one per size
    for size in sizes:
        bucket = tiling.bucket_size(size, 16)
        assert bucket >= size and bucket % 16 == 0 and bucket <= 1.34 * size + 16


@pytest.mark.parametrize("tile", [None, tiling.TileOptions((8, 8, 8))])
def test_a_volume_smaller_than_the_patch_is_predicted_padded_as_training_pads_it(tile):
    """With pad_to (a volume run's patch), the network sees the case centred in a border of each
    channel's minimum, as training's patches show it (`volumes.transforms.pad_to_shape`), and the
    prediction comes back at the case's size and place."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(5, 6, 8, 2)).astype(np.float32)
    seen = []

    def predict_fn(batch):
        seen.append(np.asarray(batch))
        return batch  # "probabilities" equal to the input: the crop back is checked exactly

    out = tiling.predict_image(predict_fn, image, tile, align=4, bucket=True, pad_to=(8, 8, 8))
    np.testing.assert_array_equal(out, image)
    shown = seen[0][0]
    assert shown.shape == (8, 8, 8, 2)
    # Centred: (8 - 5) // 2 = 1 before on the first axis, (8 - 6) // 2 = 1 on the second.
    np.testing.assert_array_equal(shown[1:6, 1:7, :], image)
    for c in range(2):
        border = np.ones((8, 8, 8), bool)
        border[1:6, 1:7, :] = False
        assert np.all(shown[..., c][border] == image[..., c].min())


def test_only_kinds_that_pad_small_images_pad_them_in_prediction():
    from unetjax.data import kinds

    assert kinds.padded_patch({"name": "decathlon", "patch_size": [40, 56, 40]}) == (40, 56, 40)
    assert kinds.padded_patch({"name": "image_folder", "patch_size": [64, 64]}) is None
    assert kinds.padded_patch(None) is None
