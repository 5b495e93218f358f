"""Train-time augmentation of fixed-size plate crops (numpy/OpenCV; pure functions of an rng).

Real crops are already degraded by real cameras, so these are milder than the synthetic generator's
degradations: small geometric changes (detector boxes are never exact), photometric changes (exposure,
colour, IR-like grey, polarity), and camera artefacts (blur, motion blur, noise, JPEG), each with its own
probability.

Polarity inversion is there because each real set has one plate look: every Tunisian crop is white text on
black, so without it the model learns "light on dark means the Tunisian NNN T NNNN format" and reads old
black French plates (and any other dark plate of a region it has not seen) in that shape. Inverted crops
keep each format's text and swap its colours, so colour stops predicting format.
"""

from __future__ import annotations

import cv2
import numpy as np

INVERT_PROBABILITY = 0.2  # share of crops (at strength 1) shown with light and dark swapped
# Share of camera-degraded crops shown as a plate that was smaller in the frame, and the range of that
# size against the crop's (0.27 ~ a 40-px plate, 0.8 ~ 120 px). Was 0.15 over 0.3-0.6, with blur and JPEG
# applied after enlarging: the passage clips showed reads of 40-100 px plates far below those of crops.
LOW_RES_PROBABILITY = 0.4
LOW_RES_FACTORS = (0.27, 0.8)


def _affine(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    height, width = image.shape[:2]
    if rng.random() < 0.12:  # strongly tilted plates; zoom out so the ends stay in the crop
        angle, scale = rng.uniform(-14.0, 14.0), rng.uniform(0.72, 0.88)
    else:
        angle, scale = rng.uniform(-5.0, 5.0), rng.uniform(0.9, 1.08)
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, scale)
    matrix[0, 1] += rng.uniform(-0.15, 0.15)  # shear: slanted plates and italic-looking glyphs
    matrix[:, 2] += rng.uniform(-0.05, 0.05, 2) * (width, height)
    return cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE)


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image.astype(np.float32)
    if rng.random() < 0.2:  # IR / monochrome cameras
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)[..., None], 3, axis=2)
    elif rng.random() < 0.3:  # colour casts and plate colours the data lacks
        out = out[..., rng.permutation(3)]
    contrast = rng.uniform(0.6, 1.3)
    brightness = rng.uniform(-40, 40)
    out = (out - 128.0) * contrast + 128.0 + brightness
    if rng.random() < 0.3:
        gamma = rng.uniform(0.6, 1.6)
        out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
    return np.clip(out, 0, 255).astype(np.uint8)


def _motion_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Linear motion blur: cars moving during the exposure, mostly along the plate's rows."""
    length = int(rng.integers(3, 10))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    angle = rng.normal(0.0, 20.0)
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2.0, (length - 1) / 2.0), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    return cv2.filter2D(image, -1, kernel / max(float(kernel.sum()), 1e-6), borderType=cv2.BORDER_REPLICATE)


def _low_res_factor(rng: np.random.Generator) -> float | None:
    """How much smaller the plate was in the camera's frame than in the crop (None: as large).

    The crop shows a plate about 148 px wide; in real installations and the passage clips plates are
    typically 40-140 px wide (median ~70), so most crops the OCR sees in service are upscaled 1.5-3.5x.
    The factor is log-uniform over that range so every distance is equally represented.
    """
    if rng.random() >= LOW_RES_PROBABILITY:
        return None
    return float(np.exp(rng.uniform(np.log(LOW_RES_FACTORS[0]), np.log(LOW_RES_FACTORS[1]))))


def _camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera artefacts in the order a camera makes them: the plate at its size in the frame (a far plate
    is small), optics blur and sensor noise at that size, compression at that size (the codec's blocks
    cover several strokes of a small plate), then the crop scaling it back up."""
    height, width = image.shape[:2]
    factor = _low_res_factor(rng)
    if factor is not None:
        image = cv2.resize(image, (max(8, round(width * factor)), max(4, round(height * factor))),
                           interpolation=cv2.INTER_AREA)
    if rng.random() < 0.25:
        k = 3 if factor is not None else int(rng.choice([3, 5]))  # a 5-px kernel at low size erases strokes
        image = cv2.GaussianBlur(image, (k, k), 0)
    elif rng.random() < 0.15:
        image = _motion_blur(image, rng)
    if rng.random() < 0.25:
        noise = rng.normal(0.0, rng.uniform(3, 12), image.shape)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        quality = int(rng.integers(20, 90))
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if factor is not None:  # the runtime crop enlarges with linear interpolation (anpr_edge/crop.py)
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image


def augment_crop(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A randomly altered copy of a crop (same size). ``strength`` scales how often each change happens."""
    if rng.random() < 0.7 * strength:
        image = _affine(image, rng)
    if rng.random() < 0.8 * strength:
        image = _photometric(image, rng)
    if rng.random() < INVERT_PROBABILITY * strength:
        image = 255 - image
    if rng.random() < 0.8 * strength:
        image = _camera(image, rng)
    return image
