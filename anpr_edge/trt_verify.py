"""Checks of the TensorRT engines against ONNX Runtime, and their throughput (``deploy/verify-gpu``, GPU tests).

Parity is judged on what the product reports, not on raw tensors: detector boxes (every ONNX Runtime box
scored clearly above the threshold must have a TensorRT box with IoU > 0.95) and OCR texts (identical).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from anpr_edge.backends import InferenceBackend
from anpr_edge.detector import PlateDetector
from anpr_edge.ocr import PlateRecognizer

BOX_IOU = 0.95
SCORE_MARGIN = 0.05  # boxes this close to the threshold may fall either side of it in FP16/INT8


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def detector_parity(reference: PlateDetector, candidate: PlateDetector, images: Sequence[np.ndarray]) -> dict[str, Any]:
    """Match each confident reference box to the candidate's best box, per image."""
    ious: list[float] = []
    missing = 0
    extra = 0
    for ref, cand in zip(reference.detect(images), candidate.detect(images)):
        sure = ref.confidence >= reference.confidence + SCORE_MARGIN
        for box in ref.xyxy[sure]:
            best = max((box_iou(box, other) for other in cand.xyxy), default=0.0)
            ious.append(best)
            missing += best <= BOX_IOU
        extra += max(len(cand.xyxy) - len(ref.xyxy), 0)
    return {"images": len(images), "boxes": len(ious), "min_iou": round(min(ious), 4) if ious else None,
            "below_iou": missing, "extra_boxes": extra, "ok": missing == 0}


def ocr_parity(reference: PlateRecognizer, candidate: PlateRecognizer, crops: Sequence[np.ndarray],
               labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Texts read from fitted crops by both; with ``labels``, each one's exact-match accuracy too."""
    ref = [r.text for r in reference.read_images(crops)]
    cand = [r.text for r in candidate.read_images(crops)]
    same = sum(a == b for a, b in zip(ref, cand))
    result: dict[str, Any] = {"crops": len(crops), "identical": same, "ok": same == len(crops),
                              "differences": [(a, b) for a, b in zip(ref, cand) if a != b][:10]}
    if labels is not None:
        result["reference_accuracy"] = round(100.0 * sum(a == t for a, t in zip(ref, labels)) / max(len(labels), 1), 2)
        result["accuracy"] = round(100.0 * sum(b == t for b, t in zip(cand, labels)) / max(len(labels), 1), 2)
    return result


def throughput(backend: InferenceBackend, sample: np.ndarray, batches: Sequence[int] = (1, 8, 32, 64),
               seconds: float = 2.0) -> dict[int, float]:
    """Items per second of ``backend.run`` at each batch size (``sample``: one input, repeated), after warm-up."""
    results: dict[int, float] = {}
    for batch in batches:
        data = np.ascontiguousarray(np.repeat(sample[None], batch, axis=0))
        for _ in range(3):
            backend.run(data)
        runs, started = 0, time.perf_counter()
        while True:
            backend.run(data)
            runs += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds and runs >= 5:
                break
        results[batch] = round(runs * batch / elapsed, 1)
    return results


def real_crops(crop_size: tuple[int, int], charset: str, per_set: int = 200,
               padding: float = 0.15) -> list[tuple[str, np.ndarray, str]]:
    """(set, crop, label) from the shared datasets' fixed validation splits (and test sets), ``per_set``
    each, cut like the OCR's evaluation does; ``ConfigError`` when the shared datasets are not here."""
    from anpr_edge.ocr_eval import shared_eval_sets
    from anpr_edge.train.datasets import cut_crops

    found = []
    for name, items in shared_eval_sets(charset):
        for item, crop in cut_crops(items[:per_set], crop_size, padding):
            found.append((name, crop, item.text))
    return found
