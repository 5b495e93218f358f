"""Detector -> crop -> OCR on full images, built from the config."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anpr_edge import paths
from anpr_edge.backends import create_backend
from anpr_edge.config import AppConfig
from anpr_edge.crop import CropCut, plate_cuts
from anpr_edge.detector import PlateDetector
from anpr_edge.errors import ModelNotAvailableError
from anpr_edge.ocr import PlateRecognizer
from anpr_edge.plate_formats import (
    DEFAULT_MIN_UNAIDED_RATIO,
    PlateFormat,
    format_read,
    load_formats,
)
from anpr_edge.tracking import iou_matrix
from anpr_edge.values import Detections, PlateCrop, PlateRead
from anpr_edge.voting import Calibration, calibrated_read, combine_view_groups

log = logging.getLogger("anpr_edge.pipeline")


def _model_path(configured: Path | None, bundled_name: str, role: str, key: str) -> Path:
    path = configured or paths.bundled_model(bundled_name)
    if not path.is_file():
        # Only the bundled default can be missing here: an explicit path was checked at config load.
        raise ModelNotAvailableError(
            f"no {role} model yet: {path} does not exist (the project has not trained it yet, or the install "
            f"is incomplete); set {key} to a {role} ONNX model"
        )
    return path


def load_detector(config: AppConfig) -> PlateDetector:
    settings = config.models.detector
    path = _model_path(settings.path, paths.DETECTOR_MODEL, "plate detector", "models.detector.path")
    # The detector batches frames (and their tiles) across cameras: its GPU plan is built for all of them.
    backend = create_backend(config.inference.backend, path, threads=config.inference.threads,
                             max_batch=config.detector_batch, input_size=settings.input_size,
                             cache_dir=config.inference.engine_cache_dir)
    return PlateDetector(
        backend,
        input_size=settings.input_size,
        confidence=config.detector_floor,  # each camera then keeps what passes its own threshold
        iou=settings.iou,
        max_detections=settings.max_detections,
    )


def load_fallback_detector(config: AppConfig, primary: PlateDetector) -> PlateDetector | None:
    """The second, larger look ``read`` takes at a photo where ``primary`` found no plate
    (``models.detector.fallback_size``), or None when it is off or not larger than the primary size.

    A model with a dynamic input size runs both sizes in one ONNX Runtime session; a TensorRT plan is built
    for one size, so the fallback gets a plan of its own; a model exported at a fixed size has no fallback.
    """
    size = config.models.detector.fallback_size
    if size is None or size <= primary.input_size:
        return None
    backend = primary.backend
    if any(side is not None for side in backend.inputs[0].shape[2:]):
        path = _model_path(config.models.detector.path, paths.DETECTOR_MODEL, "plate detector", "models.detector.path")
        from anpr_edge.trt_build import model_info

        if any(side is not None for side in model_info(path).input_shape[2:]):
            log.info("models.detector.fallback_size: off, %s has a fixed input size", path.name)
            return None
        backend = create_backend(config.inference.backend, path, threads=config.inference.threads, max_batch=1,
                                 input_size=size, cache_dir=config.inference.engine_cache_dir)
    return PlateDetector(backend, input_size=size, confidence=primary.confidence, iou=primary.iou,
                         max_detections=primary.max_detections, size_key="models.detector.fallback_size")


def load_recognizer(config: AppConfig) -> PlateRecognizer:
    path = _model_path(config.models.ocr.path, paths.OCR_MODEL, "plate OCR", "models.ocr.path")
    return PlateRecognizer(create_backend(config.inference.backend, path, threads=config.inference.threads,
                                          cache_dir=config.inference.engine_cache_dir))


def load_plate_formats(config: AppConfig) -> tuple[PlateFormat, ...]:
    """The configured plate formats (``formats.regions``, custom ones included), in order of preference."""
    return load_formats(config.formats.regions, config.formats.custom)


class PlateReader:
    """Reads every plate in full images: detect, cut fixed-size crops, read them in one OCR batch.

    With ``read_calibration``, ``read`` reports each plate's confidence through it (the confidence
    ``fallback_below`` is compared with). With ``formats``, each read's text is chosen under them (``plate_formats.format_read``), as the
    daemon does for a track's vote, so ``read`` and ``run`` report a plate the same way. With ``fallback``
    (a detector at a larger input size), an image in which ``detector`` finds no plate is looked at again
    with it: small, distant plates in photos.
    """

    def __init__(
        self,
        detector: PlateDetector,
        recognizer: PlateRecognizer,
        *,
        padding: float = 0.15,
        rectify: bool = False,
        extra_cuts: Sequence[CropCut] = (),
        formats: Sequence[PlateFormat] = (),
        min_ratio: float = 0.5,
        min_unaided_ratio: float = DEFAULT_MIN_UNAIDED_RATIO,
        trim_leading: bool = True,
        fallback: PlateDetector | None = None,
        fallback_below: float | None = None,
        read_calibration: Calibration | None = None,
    ) -> None:
        self.detector, self.recognizer, self.padding, self.rectify = detector, recognizer, padding, rectify
        self.read_calibration = read_calibration
        self.extra_cuts = tuple(extra_cuts)
        self.fallback, self.fallback_below = fallback, fallback_below
        self.formats, self.min_ratio, self.min_unaided_ratio = tuple(formats), min_ratio, min_unaided_ratio
        self.trim_leading = trim_leading

    @classmethod
    def from_config(cls, config: AppConfig, *, photos: bool = True) -> PlateReader:
        """The reader the config describes: for photos (``anpr-edge read`` and its benchmarks) it reads each
        plate in ``crop.photo_cuts``, takes the second look (``models.detector.fallback_size``) and reports
        each plate's confidence through the OCR model's ``read_calibration`` (the chance the read is right);
        ``photos=False`` is the reader of the daemon and the video benchmarks: ``crop.extra_cuts``, and the
        detector alone (no second TensorRT plan is built for them)."""
        detector = load_detector(config)
        recognizer = load_recognizer(config)
        if photos and recognizer.read_calibration is None:
            log.warning("%s has no read calibration: read reports the OCR's raw probability (about 0.4 for a sure "
                        "read) and models.detector.fallback_below is compared with it; fit one with anpr-edge "
                        "fit-calibration --reads --write", recognizer.backend.path.name)
        return cls(detector, recognizer, padding=config.crop.padding,
                   rectify=config.crop.rectify, extra_cuts=config.crop.photo_cuts if photos else config.crop.extra_cuts,
                   formats=load_plate_formats(config), min_ratio=config.formats.min_ratio,
                   min_unaided_ratio=config.formats.min_unaided_ratio,
                   trim_leading=config.formats.trim_leading,
                   fallback=load_fallback_detector(config, detector) if photos else None,
                   fallback_below=config.models.detector.fallback_below,
                   read_calibration=recognizer.read_calibration if photos else None)

    def with_formats(self, formats: Sequence[PlateFormat]) -> PlateReader:
        """The same models reading under other formats (evaluation per region)."""
        return PlateReader(self.detector, self.recognizer, padding=self.padding, rectify=self.rectify,
                           extra_cuts=self.extra_cuts, formats=formats,
                           min_ratio=self.min_ratio, min_unaided_ratio=self.min_unaided_ratio,
                           trim_leading=self.trim_leading, fallback=self.fallback, fallback_below=self.fallback_below,
                           read_calibration=self.read_calibration)

    def format_reads(self, reads: list[PlateRead]) -> list[PlateRead]:
        """``reads`` under this reader's formats (unchanged without formats)."""
        if not self.formats:
            return reads
        charset = self.recognizer.charset
        return [format_read(r, charset, self.formats, min_ratio=self.min_ratio,
                            min_unaided_ratio=self.min_unaided_ratio, trim_leading=self.trim_leading) for r in reads]

    def read_detections(
        self, image: np.ndarray, detections: Detections, *, camera_id: str = "", frame_index: int = -1
    ) -> list[PlateRead]:
        """Read the plates at ``detections`` (boxes in ``image`` pixels) in one OCR batch, in their order.

        The reads are the OCR's own, without formats: the tracker votes on their probabilities and applies the
        formats to the vote.
        """
        cut_sets = [self.cuts(image, box, float(score), camera_id, frame_index)
                    for box, score in zip(detections.xyxy, detections.confidence)]
        return self.read_cut_sets(cut_sets)

    def cuts(self, image: np.ndarray, box: Sequence[float], score: float = 1.0, camera_id: str = "",
             frame_index: int = -1) -> list[PlateCrop]:
        """The crops of one plate the OCR reads: the box cut, then ``extra_cuts`` (the configured photo or video cuts)."""
        return plate_cuts(image, box, self.recognizer.crop_size, self.padding, self.extra_cuts, rectify=self.rectify,
                          camera_id=camera_id, frame_index=frame_index, detector_confidence=score)

    def read_cut_sets(self, cut_sets: Sequence[Sequence[PlateCrop]], *, formatted: bool = False) -> list[PlateRead]:
        """One read per plate: all cuts in one OCR batch, each plate's cuts voted into one read
        (``voting.combine_views``), under the formats when ``formatted``."""
        if not cut_sets:
            return []
        reads = self.recognizer.read_crops([crop for cuts in cut_sets for crop in cuts])
        plates = combine_view_groups(reads, [len(cuts) for cuts in cut_sets], self.recognizer.charset)
        return self.format_reads(plates) if formatted else plates

    def read(
        self,
        images: Sequence[np.ndarray],
        *,
        camera_id: str = "",
        frame_indices: Sequence[int] | None = None,
    ) -> list[list[PlateRead]]:
        """Reads per image, best first: whole plates by confidence, then plates cut by the frame's border
        (``at_frame_edge``: a partial plate's read is no plate's text, however sure the OCR is of it).

        With a ``fallback`` detector, an image gets a second, larger look when the first found no plate or,
        with ``fallback_below``, none that reads with at least that confidence (a grille found instead of a
        distant plate); the second look's boxes that overlap none of the first's are read too.
        """
        indices = list(frame_indices) if frame_indices is not None else [-1] * len(images)
        detections = self.detector.detect(images)
        per_image = self._read_found(images, detections, camera_id, indices)
        if self.fallback is not None:
            again = [n for n, reads in enumerate(per_image) if self._look_again(reads)]
            if again:
                more = self.fallback.detect([images[n] for n in again])
                new = [found[_not_overlapping(found, detections[n], self.fallback.iou)]
                       for n, found in zip(again, more)]
                extra = self._read_found([images[n] for n in again], new, camera_id, [indices[n] for n in again])
                for n, reads in zip(again, extra):
                    per_image[n] += reads
        return [best_first(reads) for reads in per_image]

    def _look_again(self, reads: Sequence[PlateRead]) -> bool:
        if not reads:
            return True
        return self.fallback_below is not None and max(r.confidence for r in reads) < self.fallback_below

    def _read_found(self, images: Sequence[np.ndarray], detections: Sequence[Detections], camera_id: str,
                    indices: Sequence[int]) -> list[list[PlateRead]]:
        """The formatted reads of every detected plate, per image (one OCR batch for all)."""
        cut_sets, owner = [], []
        for n, (image, found) in enumerate(zip(images, detections)):
            for box, score in zip(found.xyxy, found.confidence):
                cut_sets.append(self.cuts(image, box, float(score), camera_id, indices[n]))
                owner.append(n)
        per_image: list[list[PlateRead]] = [[] for _ in images]
        for n, plate in zip(owner, self.read_cut_sets(cut_sets, formatted=True)):
            per_image[n].append(calibrated_read(plate, self.read_calibration))
        return per_image


def best_first(reads: Sequence[PlateRead]) -> list[PlateRead]:
    """One image's reads in ``PlateReader.read``'s order: whole plates by confidence, then plates cut by the
    frame's border (``at_frame_edge``: a partial plate's read is no plate's text, however sure the OCR is)."""
    return sorted(reads, key=lambda r: (r.at_frame_edge, -r.confidence))


def _not_overlapping(found: Detections, kept: Detections, iou: float) -> np.ndarray:
    """Indices of the boxes of ``found`` that overlap no box of ``kept`` by more than ``iou``."""
    if len(kept) == 0 or len(found) == 0:
        return np.arange(len(found))
    return np.flatnonzero(iou_matrix(found.xyxy, kept.xyxy).max(axis=1) <= iou)
