"""Random masks in the three label conventions, shared by the loss and metric tests."""

import numpy as np

SPATIAL = {2: (5, 6), 3: (3, 4, 5)}

CASES = [  # (activation, classes, multi_label)
    ("sigmoid", 1, False),
    ("softmax", 3, False),
    ("sigmoid", 3, True),
]


def random_mask(rng, shape, activation, classes, multi_label=False):
    """int32 labels: (B, *spatial, K) {0,1} multi-label, (B, *spatial) classes or {0,1}."""
    if multi_label:
        return rng.integers(0, 2, (*shape, classes), dtype=np.int32)
    if activation == "softmax":
        return rng.integers(0, classes, shape, dtype=np.int32)
    return rng.integers(0, 2, shape, dtype=np.int32)
