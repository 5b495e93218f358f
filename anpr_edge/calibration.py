"""INT8 calibration data: frames from folders, preprocessed exactly as the running daemon preprocesses them.

TensorRT's entropy calibrator measures activation ranges on real inputs, so those inputs must be what the
engines will see in service, bit for bit:

* detector batches: each frame through ``detector.letterbox`` at the detector's input size, then
  ``detector.to_tensor`` (RGB, 0..1, NCHW), exactly what ``PlateDetector.detect`` hands the backend;
* OCR batches: the plates the detector finds in those frames (run on ONNX Runtime, with the configured
  thresholds), cut by ``crop.crop_plate`` with the configured padding and the OCR's crop size, then
  ``to_tensor``, exactly what ``PlateReader.read`` hands the recognizer's backend.

Nothing here re-implements a preprocessing step; it only calls the runtime's functions. Batches are
produced lazily (200 detector frames at 640 px would be 1 GB as float32), in a fixed order, and every
batch has exactly ``batch_size`` samples (TensorRT calibrates at a fixed shape; a short last batch is
dropped). ``calibration_digest`` names the data (file contents and preprocessing parameters) so a plan
calibrated on other frames is never mistaken for this one.

The bundled frames (``calib/``) are project-made: synthetic plate scenes and frames of the demo clip
(``calib/generate.py``). A site adds its own with ``anpr-edge calibrate --images DIR``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anpr_edge.crop import crop_plate
from anpr_edge.detector import PlateDetector, letterbox, to_tensor
from anpr_edge.errors import ConfigError
from anpr_edge.images import ImageError, load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CALIB_BATCH = 8
_PACKAGE_DIR = Path(__file__).resolve().parent


def bundled_calib_dir() -> Path | None:
    """The project's calibration frames: packed into the wheel (``anpr_edge/_calib``) or a checkout's ``calib/``."""
    for folder in (_PACKAGE_DIR / "_calib", _PACKAGE_DIR.parent / "calib"):
        if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            return folder
    return None


def calibration_images(folders: Iterable[Path]) -> list[Path]:
    """Image files in ``folders`` (recursively), sorted per folder, folders in the order given."""
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"calibration images: {folder} is not a folder")
        found.extend(sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
    return found


def _frames(images: Sequence[Path]) -> Iterator[np.ndarray]:
    for path in images:
        try:
            yield load_image(path)
        except ImageError:
            continue  # an unreadable file is skipped, like `anpr-edge read` reports and goes on


def _batched(samples: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    pending: list[np.ndarray] = []
    for sample in samples:
        pending.append(sample)
        if len(pending) == batch_size:
            yield to_tensor(pending)
            pending = []


def detector_inputs(images: Sequence[Path], input_size: int) -> Iterator[np.ndarray]:
    """One letterboxed frame per image (BGR uint8, ``input_size`` square), as ``PlateDetector.detect`` makes them."""
    for frame in _frames(images):
        yield letterbox(frame, input_size)[0]


def detector_batches(images: Sequence[Path], input_size: int, batch_size: int = CALIB_BATCH) -> Iterator[np.ndarray]:
    """float32 ``(batch_size, 3, input_size, input_size)`` batches, the detector engine's input."""
    return _batched(detector_inputs(images, input_size), batch_size)


def plate_crops(
    images: Sequence[Path], detector: PlateDetector, crop_size: tuple[int, int], padding: float
) -> Iterator[np.ndarray]:
    """The OCR crops of every plate ``detector`` finds in the images (BGR uint8, ``crop_size`` = (w, h)),
    cut as ``PlateReader.read`` cuts them."""
    for frame in _frames(images):
        (found,) = detector.detect([frame])
        for box, score in zip(found.xyxy, found.confidence):
            yield crop_plate(frame, box, crop_size, padding, detector_confidence=float(score)).image


def ocr_batches(
    images: Sequence[Path],
    detector: PlateDetector,
    crop_size: tuple[int, int],
    padding: float,
    batch_size: int = CALIB_BATCH,
) -> Iterator[np.ndarray]:
    """float32 ``(batch_size, 3, h, w)`` batches of plate crops, the OCR engine's input."""
    return _batched(plate_crops(images, detector, crop_size, padding), batch_size)


@dataclass(frozen=True)
class CalibrationParams:
    """Everything that shapes the calibration batches besides the images themselves."""

    detector_input: int
    ocr_crop: tuple[int, int]
    padding: float
    detector_confidence: float
    detector_iou: float
    batch_size: int = CALIB_BATCH


def calibration_digest(images: Sequence[Path], params: CalibrationParams) -> str:
    """SHA-256 over the images' contents (in order) and the preprocessing parameters."""
    digest = hashlib.sha256(json.dumps(params.__dict__, sort_keys=True, default=list).encode())
    for path in images:
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()
