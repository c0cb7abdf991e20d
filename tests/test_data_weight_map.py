"""The U-Net border weight map against its formula on hand-built objects."""

import numpy as np

from unetjax.data import weight_map


def test_class_balance_gives_each_class_equal_total_weight():
    mask = np.zeros((10, 10), np.int32)
    mask[:2] = 1  # 20 foreground, 80 background pixels
    weights = weight_map.class_balance(mask)
    np.testing.assert_allclose(weights[mask == 1], 100 / (2 * 20))
    np.testing.assert_allclose(weights[mask == 0], 100 / (2 * 80))


def test_gap_between_two_objects_weighs_w0_exp_of_the_gap():
    instances = np.zeros((20, 30), np.int32)
    instances[5:15, 2:10] = 1
    instances[5:15, 16:24] = 2  # columns 10..15 are a 6-pixel gap
    mask = (instances > 0).astype(np.int32)
    weights = weight_map.border_weights(instances, mask, w0=10.0, sigma=5.0)
    balance = weight_map.class_balance(mask)
    # Pixel (10, 12): 3 px to object 1's last column (9), 4 px to object 2's first (16).
    expected = balance[10, 12] + 10.0 * np.exp(-((3 + 4) ** 2) / (2 * 5.0**2))
    np.testing.assert_allclose(weights[10, 12], expected, rtol=1e-6)
    # Inside objects there is no border term.
    np.testing.assert_allclose(weights[instances > 0], balance[instances > 0])


def test_a_single_object_has_no_border_term():
    instances = np.zeros((12, 12), np.int32)
    instances[3:8, 3:8] = 1
    mask = (instances > 0).astype(np.int32)
    np.testing.assert_allclose(
        weight_map.border_weights(instances, mask), weight_map.class_balance(mask)
    )
