"""Train-time augmentation: same size and type out, nothing at strength 0, polarity inversion at its rate."""

from __future__ import annotations

import numpy as np

from anpr_edge.train import augment


def _plate() -> np.ndarray:
    """A light plate with a dark block of "text" across its middle rows."""
    image = np.full((64, 192, 3), 230, np.uint8)
    image[20:44, 30:160] = 25
    return image


def test_augmented_crops_keep_their_size_and_type() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        out = augment.augment_crop(_plate(), rng)
        assert out.shape == (64, 192, 3) and out.dtype == np.uint8


def test_strength_zero_changes_nothing() -> None:
    image = _plate()
    assert np.array_equal(augment.augment_crop(image, np.random.default_rng(1), strength=0.0), image)


def test_some_crops_come_out_with_their_polarity_swapped() -> None:
    """Dark text on a light plate must sometimes become light text on a dark plate (and not always)."""
    rng = np.random.default_rng(2)
    inverted = 0
    trials = 400
    for _ in range(trials):
        out = augment.augment_crop(_plate(), rng).astype(np.float32).mean(axis=2)
        text, plate = out[24:40, 40:150].mean(), np.concatenate([out[2:14, 40:150], out[50:62, 40:150]]).mean()
        inverted += text > plate
    share = inverted / trials
    # Photometric changes alone never swap which of the two is lighter; inversion does, at its set rate.
    assert 0.5 * augment.INVERT_PROBABILITY < share < 1.6 * augment.INVERT_PROBABILITY
