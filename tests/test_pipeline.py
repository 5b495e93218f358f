"""PlateReader: the second look (``models.detector.fallback_size``) at photos where the detector finds nothing,
or only plates that read weakly (``fallback_below``); the order of a photo's reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_models import brightness_ocr, constant_detector

from anpr_edge.backends import create_backend
from anpr_edge.config import load_config
from anpr_edge.detector import PlateDetector
from anpr_edge.ocr import PlateRecognizer
from anpr_edge.pipeline import PlateReader, load_detector, load_fallback_detector
from anpr_edge.voting import combine_views

# One box, centre (32, 32), 20 x 10 in model pixels, score 0.6.
ROWS = np.array([[32, 32, 20, 10, 0.6]], np.float32)


class CountingDetector(PlateDetector):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.images_seen = 0

    def detect(self, images):  # type: ignore[no-untyped-def]
        self.images_seen += len(images)
        return super().detect(images)


def _reader(tmp_path: Path, primary_confidence: float, fallback_below: float | None = None,
            fallback_size: int = 128) -> tuple[PlateReader, CountingDetector]:
    backend = create_backend("onnxruntime", constant_detector(tmp_path / "d.onnx", ROWS, size=None))
    primary = PlateDetector(backend, input_size=64, confidence=primary_confidence)
    fallback = CountingDetector(backend, input_size=fallback_size, confidence=0.5)
    recognizer = PlateRecognizer(create_backend("onnxruntime", brightness_ocr(tmp_path / "ocr.onnx")))
    return PlateReader(primary, recognizer, fallback=fallback, fallback_below=fallback_below), fallback


def test_the_fallback_looks_again_only_where_the_first_pass_found_nothing(tmp_path: Path) -> None:
    image = np.full((200, 200, 3), 255, np.uint8)
    reader, fallback = _reader(tmp_path, primary_confidence=0.5)
    (reads,) = reader.read([image])
    assert fallback.images_seen == 0
    # The 64 px pass: scale 64/200, so the box maps to (68.75, 84.375)-(131.25, 115.625).
    np.testing.assert_allclose(reads[0].box, (68.75, 84.375, 131.25, 115.625), rtol=1e-5)

    reader, fallback = _reader(tmp_path, primary_confidence=0.9)  # the first pass finds nothing
    reads_per_image = reader.read([image, image])
    assert fallback.images_seen == 2
    for (read,) in reads_per_image:
        # Found by the 128 px pass: scale 128/200, box (22, 27)-(42, 37) in model pixels.
        np.testing.assert_allclose(read.box, (34.375, 42.1875, 65.625, 57.8125), rtol=1e-5)
        assert read.text == "A"
    assert reader.with_formats(()).fallback is fallback


def test_a_weak_read_gets_a_second_look_and_its_new_plates_are_read_too(tmp_path: Path) -> None:
    image = np.full((200, 200, 3), 255, np.uint8)
    reader, fallback = _reader(tmp_path, primary_confidence=0.5)
    ((first,),) = reader.read([image])
    # Below the threshold the 128 px pass looks again; its box is elsewhere, so the photo has two reads.
    reader, fallback = _reader(tmp_path, primary_confidence=0.5, fallback_below=min(first.confidence + 0.01, 1.0))
    (reads,) = reader.read([image])
    assert fallback.images_seen == 1 and len(reads) == 2
    boxes = sorted(tuple(round(v, 3) for v in r.box) for r in reads)
    assert boxes == [(34.375, 42.188, 65.625, 57.812), (68.75, 84.375, 131.25, 115.625)]
    # At or above the threshold: no second look.
    reader, fallback = _reader(tmp_path, primary_confidence=0.5, fallback_below=first.confidence * 0.99)
    (reads,) = reader.read([image])
    assert fallback.images_seen == 0 and len(reads) == 1
    # A second look that finds the same plate again adds nothing (its box overlaps the first one's).
    reader, fallback = _reader(tmp_path, primary_confidence=0.5, fallback_below=1.0, fallback_size=64)
    (reads,) = reader.read([image])
    assert fallback.images_seen == 1 and len(reads) == 1


def _config(tmp_path: Path, model: Path, detector: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"cameras:\n  - {{id: a, source: demo}}\nmodels:\n  detector:\n    path: {model}\n{detector}")
    return path


@pytest.mark.parametrize(
    ("detector", "size"),
    [("", 512), ("    fallback_size: 640\n", 640), ("    fallback_size: null\n", None),
     ("    input_size: 512\n", None), ("    input_size: 640\n    fallback_size: 512\n", None)],
)
def test_fallback_from_config(tmp_path: Path, detector: str, size: int | None) -> None:
    model = constant_detector(tmp_path / "d.onnx", ROWS, size=None)
    config = load_config(_config(tmp_path, model, detector))
    primary = load_detector(config)
    fallback = load_fallback_detector(config, primary)
    if size is None:
        assert fallback is None
    else:
        assert fallback is not None and fallback.input_size == size
        assert fallback.backend is primary.backend  # one ONNX Runtime session runs both sizes
        assert fallback.confidence == primary.confidence


def test_no_fallback_for_a_fixed_size_model_or_for_the_daemon(tmp_path: Path) -> None:
    fixed = constant_detector(tmp_path / "fixed.onnx", ROWS, size=64)
    config = load_config(_config(tmp_path, fixed))
    assert load_fallback_detector(config, load_detector(config)) is None
    dynamic = constant_detector(tmp_path / "dynamic.onnx", ROWS, size=None)
    config = load_config(_config(tmp_path, dynamic))
    assert PlateReader.from_config(config).fallback is not None
    assert PlateReader.from_config(config, photos=False).fallback is None


def test_each_plate_is_read_in_every_cut_and_the_cuts_voted_into_one_read(tmp_path: Path) -> None:
    # A mid-grey plate on a white wall: the brightness OCR reads 'A' more surely the more wall a cut holds, so
    # the wide cut reads it surer than the box cut; the plate's read is their vote, in `read` and in the
    # daemon's `read_detections` alike.
    image = np.full((200, 200, 3), 255, np.uint8)
    image[80:120, 60:140] = 140
    backend = create_backend("onnxruntime", constant_detector(tmp_path / "d.onnx", ROWS, size=None))
    detector = PlateDetector(backend, input_size=64, confidence=0.5)
    recognizer = PlateRecognizer(create_backend("onnxruntime", brightness_ocr(tmp_path / "ocr.onnx")))
    one_cut = PlateReader(detector, recognizer)
    with_cuts = PlateReader(detector, recognizer, extra_cuts=("wide", "level"))
    (detections,) = detector.detect([image])
    (box,) = detections.xyxy
    cuts = with_cuts.cuts(image, box)
    assert len(cuts) == 2  # nothing tilted: the box cut and the wide one
    box_read, wide_read = recognizer.read_crops(cuts)
    assert box_read.text == wide_read.text == "A" and wide_read.confidence > box_read.confidence

    ((plain,),) = one_cut.read([image])
    ((voted,),) = with_cuts.read([image])
    assert plain.confidence == pytest.approx(box_read.confidence)
    expected = combine_views([box_read, wide_read], recognizer.charset)
    assert (voted.text, voted.confidence) == (expected.text, pytest.approx(expected.confidence))
    assert np.allclose(voted.char_probs, expected.char_probs)  # type: ignore[arg-type]
    assert voted.text == "A"
    assert np.array_equal(voted.crop_image, cuts[0].image)  # the box cut is the plate's crop
    (daemon,) = with_cuts.read_detections(image, detections, camera_id="cam", frame_index=3)
    assert daemon.confidence == pytest.approx(voted.confidence) and daemon.frame_index == 3
    assert with_cuts.with_formats(()).extra_cuts == ("wide", "level")
    # Photos are read in crop.photo_cuts, the daemon's frames in crop.extra_cuts.
    config = load_config(_config(tmp_path, tmp_path / "d.onnx"))
    assert PlateReader.from_config(config).extra_cuts == ("wide", "cw", "ccw")
    assert PlateReader.from_config(config, photos=False).extra_cuts == ()


def test_a_plate_cut_by_the_photo_border_comes_after_the_whole_ones_however_sure(tmp_path: Path) -> None:
    # Two boxes in a 200 x 200 photo (detector input 64: x3.125): one flush with the left border, one inside.
    rows = np.array([[5, 32, 10, 10, 0.9], [32, 32, 10, 10, 0.9]], np.float32)
    detector = PlateDetector(create_backend("onnxruntime", constant_detector(tmp_path / "d.onnx", rows, size=None)),
                             input_size=64, confidence=0.5)
    recognizer = PlateRecognizer(create_backend("onnxruntime", brightness_ocr(tmp_path / "ocr.onnx")))
    image = np.full((200, 200, 3), 190, np.uint8)
    image[:, :40] = 255  # the cut plate's crop is brighter: the OCR is surer of it
    (reads,) = PlateReader(detector, recognizer).read([image])
    assert len(reads) == 2
    edge = next(r for r in reads if r.box[0] < 1.0)
    whole = next(r for r in reads if r.box[0] > 1.0)
    assert edge.confidence > whole.confidence
    assert reads == [whole, edge] and edge.at_frame_edge and not whole.at_frame_edge
