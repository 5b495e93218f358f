"""Plate OCR: an attention recognizer exported to ONNX, run through an ``InferenceBackend``.

Model contract (what the training code exports and this module reads):
- input: one float32 tensor ``(batch, 3, H, W)``, RGB in 0..1 (the model normalises inside the graph);
  ``H`` and ``W`` are fixed and give the crop size;
- output: ``(batch, max_len, 1 + len(charset))`` per-position probabilities (softmax inside the graph),
  symbol 0 is the end-of-text token and symbol ``i > 0`` is ``charset[i - 1]``;
- metadata ``charset``: the characters in symbol order;
- optional metadata ``vote_calibration``: JSON ``[[score, confidence], ...]``, the map from a track vote's
  score to the published event confidence measured for this model (``anpr-edge fit-calibration --write``);
  it travels with the model because every model is calibrated differently;
- optional metadata ``read_calibration``: the same kind of map for one plate's read in a photo (its views
  voted, as ``anpr-edge read`` and ``ocr`` read it), fitted on the validation crops (``anpr-edge
  fit-calibration --reads --write``): the confidence those commands report. The model is trained with label
  smoothing, so a sure read's own probability stays far below 1 (about 0.4 for a 7-character plate).

Decoding is greedy: the most probable symbol at each position until the first end token. A read's
confidence is the probability of that whole sequence under the model (the product of the chosen
symbols' probabilities, end token included), so a missing or extra character lowers it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from anpr_edge.backends import InferenceBackend
from anpr_edge.crop import fit_crop
from anpr_edge.detector import to_tensor
from anpr_edge.errors import BackendError
from anpr_edge.values import PlateCrop, PlateRead
from anpr_edge.voting import Calibration

DEFAULT_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
END = 0
VOTE_CALIBRATION_KEY = "vote_calibration"
READ_CALIBRATION_KEY = "read_calibration"


def normalize_text(text: str, charset: str = DEFAULT_CHARSET) -> str:
    """Plate text as reported everywhere: upper case, only charset characters (no spaces or dashes)."""
    allowed = set(charset)
    return "".join(ch for ch in text.upper() if ch in allowed)


def decode_greedy(probs: np.ndarray, charset: str) -> list[tuple[str, float, tuple[float, ...]]]:
    """(text, confidence, per-character confidences) for each row of ``probs`` (batch, max_len, symbols)."""
    if probs.ndim != 3 or probs.shape[2] != len(charset) + 1:
        raise BackendError(
            f"OCR output shape {probs.shape} does not fit a charset of {len(charset)} characters plus end token"
        )
    best = probs.argmax(axis=2)
    best_p = np.take_along_axis(probs, best[..., None], axis=2)[..., 0]
    results = []
    for symbols, p in zip(best, best_p):
        ends = np.flatnonzero(symbols == END)
        length = int(ends[0]) if len(ends) else len(symbols)
        chars = tuple(float(v) for v in p[:length])
        end_p = float(p[length]) if length < len(symbols) else 1.0
        text = "".join(charset[s - 1] for s in symbols[:length])
        confidence = float(np.prod(chars, dtype=np.float64) * end_p) if chars else 0.0
        results.append((text, confidence, chars))
    return results


def model_calibration(metadata: dict[str, str], name: str, key: str = VOTE_CALIBRATION_KEY) -> Calibration | None:
    """The model's own calibration stored under ``key`` (``vote_calibration`` or ``read_calibration``), or
    None when it has none."""
    raw = metadata.get(key)
    if not raw:
        return None
    try:
        return Calibration(tuple((float(x), float(y)) for x, y in json.loads(raw)))
    except (ValueError, TypeError) as error:
        raise BackendError(f"{name}: metadata {key!r} is not a valid calibration ({error})") from None


class PlateRecognizer:
    """Reads plate text from fixed-size crops."""

    def __init__(self, backend: InferenceBackend) -> None:
        inputs = backend.inputs
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or None in inputs[0].shape[1:]:
            raise BackendError(f"{backend.path.name}: not an OCR model (expects one fixed-size NCHW image input)")
        charset = backend.metadata.get("charset")
        if not charset:
            raise BackendError(f"{backend.path.name}: OCR model has no 'charset' metadata")
        self.backend = backend
        self.charset = charset
        _, _, height, width = inputs[0].shape
        self.crop_size: tuple[int, int] = (int(width), int(height))
        self.vote_calibration = model_calibration(backend.metadata, backend.path.name, VOTE_CALIBRATION_KEY)
        self.read_calibration = model_calibration(backend.metadata, backend.path.name, READ_CALIBRATION_KEY)

    def read_crops(self, crops: Sequence[PlateCrop]) -> list[PlateRead]:
        """One read per crop (crops made by ``crop_plate`` with ``self.crop_size``)."""
        if not crops:
            return []
        probs = self._probs([crop.image for crop in crops])
        return [
            PlateRead(
                text=text,
                confidence=confidence,
                char_confidences=chars,
                char_probs=row,
                box=crop.box,
                camera_id=crop.camera_id,
                frame_index=crop.frame_index,
                detector_confidence=crop.detector_confidence,
                crop_image=crop.image,
                at_frame_edge=crop.at_frame_edge,
            )
            for crop, row, (text, confidence, chars) in zip(crops, probs, decode_greedy(probs, self.charset))
        ]

    def read_images(self, images: Sequence[np.ndarray]) -> list[PlateRead]:
        """Reads of images that already are plate crops, of any size (fitted without stretching)."""
        if not images:
            return []
        probs = self._probs([fit_crop(image, self.crop_size) for image in images])
        return [
            PlateRead(text=text, confidence=confidence, char_confidences=chars, char_probs=row)
            for row, (text, confidence, chars) in zip(probs, decode_greedy(probs, self.charset))
        ]

    def explain(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, PlateRead, np.ndarray]]:
        """(fitted crop, read, attention (max_len, rows, cols)) per image; needs the model's attention output."""
        if len(self.backend.outputs) < 2:
            raise BackendError(f"{self.backend.path.name}: this OCR model has no attention output to explain")
        crops = [fit_crop(image, self.crop_size) for image in images]
        probs, attention = self.backend.run(to_tensor(crops))[:2]
        return [
            (crop, PlateRead(text=text, confidence=confidence, char_confidences=chars, char_probs=row), maps)
            for crop, row, maps, (text, confidence, chars) in zip(crops, probs, attention, decode_greedy(probs, self.charset))
        ]

    def _probs(self, images: Sequence[np.ndarray]) -> np.ndarray:
        for image in images:
            if image.shape[:2] != (self.crop_size[1], self.crop_size[0]):
                raise BackendError(f"crop of size {image.shape[1]}x{image.shape[0]}, model needs {self.crop_size}")
        (probs, *_) = self.backend.run(to_tensor(images))
        return probs
