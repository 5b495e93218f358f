"""Plate detector: YOLO ONNX export run through an ``InferenceBackend``.

Pre-processing matches ultralytics exactly (letterbox to a square with grey 114 padding, RGB, 0..1,
NCHW) so the exported model sees what it saw in training. Both ultralytics output layouts are decoded:
the classic one, ``(batch, 4 + classes, anchors)`` with centre-xywh boxes that need NMS, and the
end-to-end (NMS-free) one, ``(batch, max_det, 6)`` with ``x1, y1, x2, y2, score, class``.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from anpr_edge.backends import InferenceBackend
from anpr_edge.errors import BackendError
from anpr_edge.values import Detections

LETTERBOX_FILL = 114


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the square model input: input = frame * scale + (pad_x, pad_y)."""

    scale: float
    pad_x: float
    pad_y: float

    def to_frame(self, xyxy: np.ndarray) -> np.ndarray:
        out = xyxy.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        return out


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping aspect ratio and pad to ``size`` x ``size`` (ultralytics' centred letterbox)."""
    height, width = image.shape[:2]
    scale = min(size / height, size / width)
    new_w, new_h = int(round(width * scale)), int(round(height * scale))
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (size - new_w) / 2.0, (size - new_h) / 2.0
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    fill = (LETTERBOX_FILL,) * 3
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=fill)
    return padded, Letterbox(scale, float(left), float(top))


def to_tensor(images: Sequence[np.ndarray]) -> np.ndarray:
    """BGR uint8 HWC images of one size -> RGB float32 NCHW in 0..1."""
    batch = np.stack(images)[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32) / 255.0


def decode_yolo(
    output: np.ndarray, confidence: float, iou: float, max_detections: int
) -> Detections:
    """Boxes in model-input pixels from one image's raw YOLO output (either layout, see module doc)."""
    if output.ndim != 2:
        raise BackendError(f"unexpected detector output shape {output.shape}")
    if output.shape[1] == 6 and output.shape[0] > 6:  # end-to-end: (max_det, 6)
        keep = output[:, 4] >= confidence
        rows = output[keep]
        rows = rows[np.argsort(-rows[:, 4], kind="stable")][:max_detections]
        return Detections(rows[:, :4], rows[:, 4])
    predictions = output.T  # (anchors, 4 + classes)
    scores = predictions[:, 4:].max(axis=1) if predictions.shape[1] > 4 else np.zeros(len(predictions))
    keep = scores >= confidence
    if not keep.any():
        return Detections.empty()
    boxes, scores = predictions[keep, :4], scores[keep]
    xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2.0, boxes[:, :2] + boxes[:, 2:] / 2.0], axis=1)
    # OpenCV's NMS wants top-left xywh.
    xywh = np.concatenate([xyxy[:, :2], boxes[:, 2:]], axis=1)
    indices = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), confidence, iou, top_k=max_detections)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)[:max_detections]
    return Detections(xyxy[indices], scores[indices])


class PlateDetector:
    """Finds plate boxes in full frames."""

    def __init__(
        self,
        backend: InferenceBackend,
        *,
        input_size: int | None = None,
        confidence: float = 0.35,
        iou: float = 0.5,
        max_detections: int = 20,
        size_key: str = "models.detector.input_size",
    ) -> None:
        if len(backend.inputs) != 1 or len(backend.inputs[0].shape) != 4:
            raise BackendError(f"{backend.path.name}: not a detector model (expects one NCHW image input)")
        self.backend = backend
        self.input_size = self._resolve_size(backend, input_size, size_key)
        self.confidence, self.iou, self.max_detections = confidence, iou, max_detections

    @staticmethod
    def _resolve_size(backend: InferenceBackend, requested: int | None, size_key: str) -> int:
        _, _, height, width = backend.inputs[0].shape
        if height is not None and width is not None:
            if height != width:
                raise BackendError(f"{backend.path.name}: detector input must be square, not {width}x{height}")
            if requested is not None and requested != height:
                raise BackendError(
                    f"{size_key} {requested} does not match the model's fixed input size {height}"
                )
            return height
        if requested is not None:
            return requested
        imgsz = backend.metadata.get("imgsz")
        if imgsz:
            try:
                parsed = ast.literal_eval(imgsz)
                return int(parsed[0] if isinstance(parsed, (list, tuple)) else parsed)
            except (ValueError, SyntaxError, TypeError, IndexError):
                pass
        return 640

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Plate boxes for each image, in that image's pixels, best first."""
        if not images:
            return []
        fitted = [letterbox(image, self.input_size) for image in images]
        (output, *_) = self.backend.run(to_tensor([padded for padded, _ in fitted]))
        results = []
        for raw, image, (_, box) in zip(output, images, fitted):
            found = decode_yolo(raw, self.confidence, self.iou, self.max_detections)
            xyxy = box.to_frame(found.xyxy)
            height, width = image.shape[:2]
            xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, width)
            xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, height)
            results.append(Detections(xyxy, found.confidence).sorted_by_confidence())
        return results
