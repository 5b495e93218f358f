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


def test_far_plates_are_shown_at_their_share_and_size_range() -> None:
    """About LOW_RES_PROBABILITY of camera-degraded crops are a smaller plate enlarged, spread log-uniformly
    over the range (as many 40-70 px plates as 70-120 px ones)."""
    rng = np.random.default_rng(3)
    factors = [augment._low_res_factor(rng) for _ in range(4000)]
    small = np.array([f for f in factors if f is not None])
    assert abs(len(small) / len(factors) - augment.LOW_RES_PROBABILITY) < 0.03
    low, high = augment.LOW_RES_FACTORS
    assert small.min() >= low and small.max() <= high
    assert abs(np.median(small) - np.sqrt(low * high)) < 0.03


def test_a_far_plate_loses_detail_a_near_one_keeps() -> None:
    """Enlarged from a small size, one-pixel strokes blur out; the crop keeps its size."""
    stripes = np.full((64, 192, 3), 230, np.uint8)
    stripes[:, ::2] = 20

    class FirstDrawOnly:  # an rng whose first draw picks the low-resolution branch, later ones skip the rest
        draws = 0

        def random(self) -> float:
            self.draws += 1
            return 0.0 if self.draws == 1 else 0.99

        def uniform(self, low: float, high: float) -> float:
            return low

    out = augment._camera(stripes.copy(), FirstDrawOnly())  # type: ignore[arg-type]
    assert out.shape == stripes.shape and out.dtype == np.uint8
    assert np.abs(np.diff(out.astype(np.float32), axis=1)).mean() < 0.2 * np.abs(np.diff(stripes.astype(np.float32), axis=1)).mean()
