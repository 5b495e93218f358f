"""Fixed-size crops (padding, aspect kept, frame edges) and OCR decoding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import brightness_ocr

from anpr_edge.backends import create_backend
from anpr_edge.crop import (
    TURN_DEGREES,
    WIDE_EXTRA_PADDING,
    at_frame_edge,
    crop_plate,
    crop_region,
    estimate_roll,
    fit_crop,
    plate_cuts,
)
from anpr_edge.errors import BackendError
from anpr_edge.ocr import PlateRecognizer, decode_greedy, normalize_text
from anpr_edge.values import PlateRead
from anpr_edge.voting import combine_view_groups, combine_views


def test_crop_keeps_aspect_and_pads() -> None:
    image = np.zeros((400, 600, 3), np.uint8)
    box = (200.0, 180.0, 300.0, 210.0)  # a 100 x 30 plate
    image[180:210, 200:300] = 255
    crop = crop_plate(image, box, (160, 48), padding=0.1)
    assert crop.image.shape == (48, 160, 3)
    # The plate keeps its aspect ratio: 100x30 scaled by 160/(100*1.2) horizontally and vertically alike.
    mask = crop.image[..., 0] > 127
    ys, xs = np.nonzero(mask)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert width / height == pytest.approx(100 / 30, rel=0.08)
    # The whole plate is inside, with margin on every side.
    assert xs.min() > 0 and xs.max() < 159 and ys.min() > 0 and ys.max() < 47
    # The transform maps the plate's frame corners into the crop where the plate is.
    corners = cv2.transform(np.array([[[200, 180], [300, 210]]], np.float32), crop.transform)[0]
    assert corners[0] == pytest.approx([xs.min(), ys.min()], abs=1.5)
    assert corners[1] == pytest.approx([xs.max() + 1, ys.max() + 1], abs=1.5)


def test_crop_region_grows_to_output_aspect() -> None:
    x1, y1, x2, y2 = crop_region((0, 0, 100, 100), (200, 50), padding=0.0)  # square box, 4:1 output
    assert (x2 - x1) / (y2 - y1) == pytest.approx(4.0)
    assert (x1 + x2) / 2 == pytest.approx(50) and (y1 + y2) / 2 == pytest.approx(50)


def test_crop_at_frame_edge_replicates_border() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_plate(image, (-20, 80, 40, 120), (64, 32), padding=0.2)
    assert crop.image.shape == (32, 64, 3)
    assert (crop.image == 200).all()  # outside pixels replicate the edge, no black bars
    fully_outside = crop_plate(image, (500, 500, 560, 520), (64, 32))
    assert fully_outside.image.shape == (32, 64, 3)


@pytest.mark.parametrize(
    ("box", "cut"),
    [
        ((0.5, 500.0, 58.0, 531.0), True),  # flush with the left border (a car parked at the side)
        ((1352.0, 323.0, 1439.2, 351.0), True),  # with the right border of a 1440 px wide photo
        ((1341.8, 439.0, 1434.7, 470.2), True),  # 5.3 px (0.37%) from it: its last letter is cut
        ((600.0, 1050.0, 700.0, 1078.5), True),  # with the bottom (leaving the view)
        ((600.0, 10.0, 700.0, 40.0), False),  # 10 px below the top: whole
        ((1300.0, 439.0, 1425.0, 470.0), False),  # 15 px (1%) from the right: whole
        ((-30.0, 500.0, 40.0, 530.0), True),  # a box past the border
    ],
)
def test_a_plate_cut_by_the_frame_border_is_at_the_frame_edge(box: tuple[float, ...], cut: bool) -> None:
    assert at_frame_edge(box, (1080, 1440, 3)) is cut


def test_crops_and_reads_carry_whether_the_plate_is_at_the_frame_edge(tmp_path: Path) -> None:
    image = np.full((100, 400, 3), 230, np.uint8)
    inside, at_edge = (100.0, 40.0, 160.0, 60.0), (340.0, 40.0, 399.5, 60.0)
    assert not crop_plate(image, inside, (128, 32)).at_frame_edge
    assert crop_plate(image, at_edge, (128, 32)).at_frame_edge
    cuts = plate_cuts(image, at_edge, (128, 32), cuts=("wide",))
    assert len(cuts) == 2 and all(c.at_frame_edge for c in cuts)
    recognizer = PlateRecognizer(create_backend("onnxruntime", brightness_ocr(tmp_path / "ocr.onnx")))
    reads = recognizer.read_crops([crop_plate(image, inside, (128, 32)), crop_plate(image, at_edge, (128, 32))])
    assert [r.at_frame_edge for r in reads] == [False, True]


def _tilted_plate(degrees: float) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A white 200 x 44 plate with black character bars, turned by ``degrees`` in a grey frame; its box."""
    plate = np.full((44, 200, 3), 240, np.uint8)
    for x in range(14, 186, 24):
        cv2.rectangle(plate, (x, 8), (x + 12, 35), (20, 20, 20), -1)
    cv2.rectangle(plate, (x - 4, 8), (x + 2, 20), (240, 240, 240), -1)  # not quite symmetric
    frame = np.full((400, 600, 3), 110, np.uint8)
    frame[178:222, 200:400] = plate
    turn = cv2.getRotationMatrix2D((300.0, 200.0), -degrees, 1.0)  # OpenCV's positive angle turns anticlockwise
    frame = cv2.warpAffine(frame, turn, (600, 400), borderValue=(110, 110, 110))
    corners = cv2.transform(np.array([[[200, 178], [400, 178], [400, 222], [200, 222]]], np.float32), turn)[0]
    return frame, (*corners.min(0), *corners.max(0))


@pytest.mark.parametrize("degrees", [-18.0, 12.0])
def test_rectify_turns_a_tilted_plate_level(degrees: float) -> None:
    frame, box = _tilted_plate(degrees)
    plain = crop_plate(frame, box, (192, 64), padding=0.15)
    angle, coherence = estimate_roll(plain.image)
    assert angle == pytest.approx(degrees, abs=3.0) and coherence > 0.3
    level = crop_plate(frame, box, (192, 64), padding=0.15, rectify=True)
    assert abs(estimate_roll(level.image)[0]) < 2.0
    # The plate (bright) fills more of the crop's width once level, and the transform still maps the plate's
    # centre to the crop's centre.
    assert (level.image.mean(axis=(0, 2)) > 150).sum() > (plain.image.mean(axis=(0, 2)) > 150).sum()
    centre = cv2.transform(np.array([[[(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]]], np.float32), level.transform)[0, 0]
    assert centre == pytest.approx([96, 32], abs=1.0)


def test_rectify_leaves_level_plates_alone() -> None:
    frame, box = _tilted_plate(0.0)
    assert abs(estimate_roll(crop_plate(frame, box, (192, 64)).image)[0]) < 1.0
    plain = crop_plate(frame, box, (192, 64))
    assert np.array_equal(crop_plate(frame, box, (192, 64), rectify=True).image, plain.image)
    blank = np.full((100, 200, 3), 90, np.uint8)  # no edges at all: nothing to estimate
    assert estimate_roll(blank) == (0.0, 0.0)


def _bright_columns(image: np.ndarray) -> int:
    return int((image.mean(axis=(0, 2)) > 150).sum())


def test_plate_cuts_add_a_wide_cut_and_a_level_cut_only_for_tilted_plates() -> None:
    frame, box = _tilted_plate(0.0)
    cuts = plate_cuts(frame, box, (192, 64), 0.15, ["wide", "level"], camera_id="cam", frame_index=7,
                      detector_confidence=0.8)
    assert len(cuts) == 2  # a level plate's level cut would be the box cut again
    box_cut, wide = cuts
    assert np.array_equal(box_cut.image, crop_plate(frame, box, (192, 64), 0.15).image)
    assert np.array_equal(wide.image, crop_plate(frame, box, (192, 64), 0.15 + WIDE_EXTRA_PADDING).image)
    assert _bright_columns(wide.image) < _bright_columns(box_cut.image)  # more margin, smaller plate
    assert all(c.camera_id == "cam" and c.frame_index == 7 and c.detector_confidence == 0.8 for c in cuts)

    frame, box = _tilted_plate(15.0)
    box_cut, wide, level = plate_cuts(frame, box, (192, 64), 0.15, ["wide", "level"])
    assert abs(estimate_roll(level.image)[0]) < 2.0 < abs(estimate_roll(box_cut.image)[0])
    assert plate_cuts(frame, box, (192, 64), 0.15, [])[0].image.tobytes() == box_cut.image.tobytes()
    # With crop.rectify on, the box cut is already level: no second level cut.
    assert len(plate_cuts(frame, box, (192, 64), 0.15, ["level"], rectify=True)) == 1
    with pytest.raises(ValueError, match=r"unknown crop cut 'tall' \(known: wide, level, cw, ccw\)"):
        plate_cuts(frame, box, (192, 64), 0.15, ["tall"])  # type: ignore[list-item]


def test_turned_cuts_show_the_plate_turned_either_way() -> None:
    frame, box = _tilted_plate(0.0)
    box_cut, cw, ccw = plate_cuts(frame, box, (192, 64), 0.15, ["cw", "ccw"], frame_index=4)
    assert abs(estimate_roll(box_cut.image)[0]) < 1.0
    # estimate_roll > 0: rows run down to the right, as on a plate turned clockwise on the screen.
    assert estimate_roll(cw.image)[0] == pytest.approx(TURN_DEGREES, abs=1.5)
    assert estimate_roll(ccw.image)[0] == pytest.approx(-TURN_DEGREES, abs=1.5)
    assert cw.frame_index == ccw.frame_index == 4 and cw.box == box_cut.box
    # A box too tall for a plate turned that far has no turned cut.
    assert len(plate_cuts(frame, (250.0, 150.0, 300.0, 250.0), (192, 64), 0.15, ["cw", "ccw"])) == 1


def _one_hot_read(text: str, p: float, charset: str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", rows: int = 8,
                  **fields: object) -> PlateRead:
    """A read as the OCR gives it: each position ``p`` on its symbol (end token after the text), the rest spread."""
    probs = np.full((rows, len(charset) + 1), (1.0 - p) / len(charset), np.float32)
    for i, symbol in enumerate([charset.index(c) + 1 for c in text] + [0] * (rows - len(text))):
        probs[i, symbol] = p
    ((read_text, confidence, chars),) = decode_greedy(probs[None], charset)
    return PlateRead(read_text, confidence, chars, probs, **fields)  # type: ignore[arg-type]


def test_views_of_a_plate_are_voted_into_one_read() -> None:
    charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    # Certain views that agree give the read itself, on the OCR's own scale (the model is trained with label
    # smoothing 0.1: a certain symbol scores 0.9 + 0.1 / 37), so its confidence compares with one read's.
    certain = 0.9 + 0.1 / 37
    one = _one_hot_read("AB1", certain)
    same = combine_views([one, _one_hot_read("AB1", certain)], charset)
    assert same.text == "AB1" and same.confidence == pytest.approx(one.confidence, rel=1e-5)
    assert np.allclose(same.char_probs, one.char_probs, atol=1e-6)  # type: ignore[arg-type]
    first = _one_hot_read("AB1", 0.85, box=(1.0, 2.0, 3.0, 4.0), frame_index=9)
    # Two views of AB1 outvote one surer view of AB7 (the most confident read alone would be AB7), and the
    # vote's text is what its distributions decode to, with the box and frame of the first view (the box cut).
    voted = combine_views([first, _one_hot_read("AB7", 0.95), _one_hot_read("AB1", 0.85)], charset)
    assert voted.text == "AB1" and voted.box == (1.0, 2.0, 3.0, 4.0) and voted.frame_index == 9
    assert 0.0 < voted.confidence < first.confidence  # the disagreement costs confidence
    assert decode_greedy(voted.char_probs[None], charset)[0][0] == "AB1"  # type: ignore[index]
    # The length is voted too: one view that reads a character more loses to two that agree.
    assert combine_views([_one_hot_read("AB12", 0.9), first, _one_hot_read("AB1", 0.8)], charset).text == "AB1"
    assert combine_views([first], charset) is first
    grouped = combine_view_groups([first, _one_hot_read("CD2", 0.9), _one_hot_read("CD2", 0.9)], [1, 2], charset)
    assert [r.text for r in grouped] == ["AB1", "CD2"]
    with pytest.raises(ValueError, match="do not split"):
        combine_view_groups([first, first, first], [2, 2], charset)
    with pytest.raises(ValueError, match="no reads"):
        combine_views([], charset)


def test_fit_crop_any_size_image() -> None:
    for shape in [(80, 160, 3), (24, 94, 3), (300, 120, 3)]:
        assert fit_crop(np.zeros(shape, np.uint8), (128, 32)).shape == (32, 128, 3)


def test_normalize_text() -> None:
    assert normalize_text("ab-123 cd") == "AB123CD"
    assert normalize_text("皖A·12345") == "A12345"


def _one_hot(symbols: list[int], n_symbols: int, p: float = 0.9) -> np.ndarray:
    probs = np.full((len(symbols), n_symbols), (1 - p) / (n_symbols - 1), np.float32)
    probs[np.arange(len(symbols)), symbols] = p
    return probs


def test_decode_greedy_stops_at_end_token_and_scores_the_sequence() -> None:
    charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    n = len(charset) + 1
    sym = {ch: charset.index(ch) + 1 for ch in charset}
    rows = np.stack(
        [
            _one_hot([sym["A"], sym["B"], sym["1"], 0, sym["Z"]], n),  # "AB1", then end: Z is ignored
            _one_hot([sym["7"]] * 5, n),  # no end token: all positions
            _one_hot([0, 0, 0, 0, 0], n),  # empty read
        ]
    )
    (text1, conf1, chars1), (text2, _, chars2), (text3, conf3, chars3) = decode_greedy(rows, charset)
    assert text1 == "AB1" and len(chars1) == 3 and chars1[0] == pytest.approx(0.9)
    assert conf1 == pytest.approx(0.9**4, rel=1e-5)  # three characters and the end token
    assert text2 == "77777" and len(chars2) == 5
    assert text3 == "" and conf3 == 0.0 and chars3 == ()
    with pytest.raises(BackendError, match="does not fit a charset"):
        decode_greedy(rows[:, :, :10], charset)


def test_recognizer_reads_each_crop_of_a_batch(tmp_path: Path) -> None:
    recognizer = PlateRecognizer(create_backend("onnxruntime", brightness_ocr(tmp_path / "ocr.onnx")))
    assert recognizer.charset == "AB" and recognizer.crop_size == (128, 32)
    bright, dark = np.full((40, 150, 3), 240, np.uint8), np.full((90, 90, 3), 10, np.uint8)
    reads = recognizer.read_images([bright, dark, bright])
    assert [r.text for r in reads] == ["A", "B", "A"]
    assert all(r.confidence > 0.99 and len(r.char_confidences) == 1 for r in reads)
    assert reads[0].char_probs is not None and reads[0].char_probs.shape == (2, 3)


def test_eval_image_margin_reads_a_tight_crop_image_as_a_padded_detector_box_would_cut_it(tmp_path: Path) -> None:
    from anpr_edge.ocr_eval import runtime_cuts
    from anpr_edge.train.datasets import LabeledImage

    plate = np.full((24, 94, 3), 200, np.uint8)  # a tight 94x24 crop: dark characters to its edges
    plate[4:20, 0:6] = plate[4:20, 88:94] = 20
    item = LabeledImage(tmp_path / "p.png", "A12345", None, "test")
    tight, = runtime_cuts(plate, item, (192, 64), padding=0.15)
    padded, = runtime_cuts(plate, item, (192, 64), padding=0.15, image_margin=0.15)
    assert tight.shape == padded.shape == (64, 192, 3)
    # Fitted whole, the plate spans the crop's width; with the margin its edge pixels are repeated outwards around
    # it, so the plate takes less of the width and the dark edge characters' columns spread into the margin.
    dark_tight = np.flatnonzero(tight[32, :, 0] < 100)
    dark_padded = np.flatnonzero(padded[32, :, 0] < 100)
    assert dark_tight.min() == 0 and dark_tight.max() == 191
    left_band = [int((cols < 96).sum()) for cols in (dark_tight, dark_padded)]
    assert left_band[1] > 1.5 * left_band[0]
    assert padded[32, 96, 0] > 150  # the plate's middle is still the plate


def test_eval_ocr_image_margin_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from anpr_edge.cli import main

    image = np.full((24, 94, 3), 230, np.uint8)
    cv2.putText(image, "AB123", (4, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (10, 10, 10), 2)
    cv2.imwrite(str(tmp_path / "p.png"), image)
    (tmp_path / "labels.csv").write_text("file,text\np.png,AB123\n")
    # main() points the root logger at this test's captured stderr; conftest puts it back afterwards.
    assert main(["eval-ocr", str(tmp_path / "labels.csv"), "--image-margin", "0.15", "--json"]) == 0
    assert '"count": 1' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval-ocr", str(tmp_path / "labels.csv"), "--image-margin", "0.9"])
    assert "must be between 0 and 0.5" in capsys.readouterr().err
