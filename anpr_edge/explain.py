"""Attention maps made visible: for each decoded character, where on the crop the OCR looked."""

from __future__ import annotations

import cv2
import numpy as np

from anpr_edge.values import PlateRead


def attention_sheet(crop: np.ndarray, read: PlateRead, attention: np.ndarray, scale: int = 2) -> np.ndarray:
    """One image: the crop on top, then one row per character with its attention map as a heat overlay.

    ``attention`` is (max_len, rows, cols) for this crop; rows of characters beyond the text (and the end
    token's slot) are shown too, labelled ``<end>``, since where the end was decided is informative.
    """
    height, width = crop.shape[:2]
    big = cv2.resize(crop, (width * scale, height * scale), interpolation=cv2.INTER_NEAREST)
    rows = [_label(big, f"{read.text or '(nothing)'}  conf {read.confidence:.2f}")]
    for slot in range(min(len(read.text) + 1, len(attention))):
        weights = attention[slot].astype(np.float32)
        weights = (weights - weights.min()) / max(float(np.ptp(weights)), 1e-6)
        heat = cv2.applyColorMap((255 * cv2.resize(weights, big.shape[1::-1], interpolation=cv2.INTER_CUBIC).clip(0, 1)).astype(np.uint8), cv2.COLORMAP_JET)
        blended = cv2.addWeighted(big, 0.55, heat, 0.45, 0)
        if slot < len(read.text):
            caption = f"{slot + 1}: {read.text[slot]}  {read.char_confidences[slot]:.2f}"
        else:
            caption = f"{slot + 1}: <end>"
        rows.append(_label(blended, caption))
    return np.vstack(rows)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((22, image.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, image])
