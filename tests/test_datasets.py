"""Label CSVs, the fixed split, box jitter, crop cutting and the ``dataset`` commands (anpr_edge.train).

Tiny images are made in tmp_path; the last tests read the real shared sets when they are present.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import string
from pathlib import Path

import cv2
import numpy as np
import pytest

from anpr_edge.argtypes import parse_size
from anpr_edge.crop import crop_plate
from anpr_edge.errors import AnprError, ConfigError
from anpr_edge.ocr import DEFAULT_CHARSET
from anpr_edge.train.dataset_cli import register
from anpr_edge.train.datasets import (
    SHARED_SETS,
    LabelCorrection,
    LabeledImage,
    apply_corrections,
    canonical_text,
    clip_box,
    cut_crops,
    datasets_root,
    jitter_box,
    label_corrections,
    load_shared,
    precut_crop,
    read_labels,
    split_items,
    split_of,
)


# ------------------------------------------------------------------------------------------ helpers
def make_image(path: Path, width: int = 120, height: int = 80, value: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), value, np.uint8)
    cv2.rectangle(image, (0, 0), (width - 1, height - 1), (0, 0, 255), 1)
    ok, data = cv2.imencode(path.suffix or ".png", image)
    assert ok
    data.tofile(str(path))  # not cv2.imwrite: names with '#' or spaces must work too
    return path


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    return str(info.value)


def run_cli(*argv: str) -> int:
    """The ``dataset`` group as the main CLI will host it: its own parser calling ``register``."""
    parser = argparse.ArgumentParser(prog="anpr-edge")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.handler(args))


@pytest.fixture()
def scene_set(tmp_path: Path) -> Path:
    """A label folder in our format: two scenes with boxes and one crop, in a subfolder with odd names."""
    make_image(tmp_path / "set" / "scenes" / "car one #1.png", 200, 100)
    make_image(tmp_path / "set" / "scenes" / "car2.jpg", 160, 120)
    make_image(tmp_path / "set" / "crops" / "c.png", 90, 30)
    return write_csv(
        tmp_path / "set" / "labels.csv",
        "file,text,xmin,ymin,xmax,ymax\n"
        "scenes/car one #1.png,ab-12 3.c,10,20,90,50\n"
        "scenes/car2.jpg,XY 99,-10,100,60,140\n"  # partly outside: clipped
        "crops/c.png,  k·k 9 ,,,,\n",
    )


# ------------------------------------------------------------------------------------------- labels
def test_our_format_relative_paths_normalisation_and_clipping(scene_set: Path) -> None:
    labels = read_labels(scene_set)
    assert labels.format == "anpr-edge" and labels.name == "set" and not labels.skipped
    one, two, crop = labels.items
    assert one == LabeledImage(scene_set.parent / "scenes" / "car one #1.png", "AB123C", (10, 20, 90, 50), "set")
    assert two.box == (0.0, 100.0, 60.0, 120.0) and two.text == "XY99"  # clipped to the 160x120 image
    assert labels.clipped == [3]
    assert crop.box is None and crop.text == "KK9" and crop.path.is_file()
    assert read_labels(scene_set, name="mine").items[0].source == "mine"


def test_tutorial_format_reads_box_columns_by_name(tmp_path: Path) -> None:
    make_image(tmp_path / "img" / "0.png", 200, 100)
    # The tutorial's column order, with a box much wider than high so swapped columns would show.
    path = write_csv(tmp_path / "annot.csv", "files,text,xmin,xmax,ymin,ymax\nimg/0.png,MH 15-TC-554,10,190,40,60\n")
    labels = read_labels(path)
    assert labels.format == "attention-ocr"
    assert labels.items[0].box == (10.0, 40.0, 190.0, 60.0)
    assert labels.items[0].text == "MH15TC554"
    # Its pandas export: a leading unnamed index column, box columns in yet another order.
    path = write_csv(
        tmp_path / "export.csv", ",Unnamed: 0,files,text,xmin,ymin,xmax,ymax\n0,0,img/0.png,KA03 1351,10,40,190,60\n"
    )
    assert read_labels(path).items[0].box == (10.0, 40.0, 190.0, 60.0)


def test_out_of_charset_and_empty_text_are_skipped_with_reasons(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png")
    path = write_csv(
        tmp_path / "labels.csv",
        "file,text,xmin,ymin,xmax,ymax\n"
        "a.png,皖A12345,,,,\n"
        "a.png,HR 99 (TEMP) 6037,,,,\n"
        "a.png, - ,,,,\n"
        "a.png,,,,,\n"
        "a.png,ok1,,,,\n",
    )
    labels = read_labels(path)
    assert [item.text for item in labels.items] == ["OK1"]
    (line2, why2), (line3, why3), (line4, why4), (line5, why5) = labels.skipped
    assert (line2, line3, line4, line5) == (2, 3, 4, 5)
    assert "皖A12345" in why2 and "outside the charset" in why2 and why2.endswith("皖")
    assert why3.endswith("()")
    assert why4 == why5 == "empty text"
    # The same label is kept, unaltered, when the charset has the character.
    extended = read_labels(path, charset=DEFAULT_CHARSET + "皖")
    assert [item.text for item in extended.items] == ["皖A12345", "OK1"]
    # A leading symbol the OCR skips (a set's drops_leading_symbol) is dropped, only at the start, and only
    # when the charset cannot express it; anything else outside the charset is still a skip.
    dropped = read_labels(path, drop_leading_symbol=True)
    assert [item.text for item in dropped.items] == ["A12345", "OK1"] and len(dropped.skipped) == 3
    assert [i.text for i in read_labels(path, charset=DEFAULT_CHARSET + "皖", drop_leading_symbol=True).items] == [
        "皖A12345", "OK1"]
    write_csv(path, "file,text\na.png,A皖12345\na.png,皖\n")
    inner = read_labels(path, drop_leading_symbol=True)
    assert not inner.items and [why for _, why in inner.skipped][1] == "empty text"


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("", ["empty file"]),
        ("file,text,xmin,ymin,xmax,ymax\n", ["no label rows"]),
        ("file,xmin,ymin,xmax,ymax\na.png,1,1,5,5\n", ["missing column", "text"]),
        ("file,text,xmin,ymin,xmax\na.png,A1,1,1,5\n", ["missing column", "ymax"]),
        ("name,text\na.png,A1\n", ["no 'file'"]),
        ("file,text,xmin,ymin,xmax,ymax\na.png,A1,,,,\nmissing.png,A2,,,,\n", [":3:", "not found", "missing.png"]),
        ("file,text,xmin,ymin,xmax,ymax\na.png,A1,30,10,20,40\n", [":2:", "inverted", "xmin=30"]),
        ("file,text,xmin,ymin,xmax,ymax\na.png,A1,1,10,20,10\n", [":2:", "inverted"]),
        ("file,text,xmin,ymin,xmax,ymax\na.png,A1,1,two,20,40\n", [":2:", "ymin", "'two'"]),
        ("file,text,xmin,ymin,xmax,ymax\na.png,A1,1,nan,20,40\n", [":2:", "ymin"]),
        ("file,text,xmin,ymin,xmax,ymax\na.png,A1,1,2,,\n", [":2:", "incomplete box"]),
        ("file,text,xmin,ymin,xmax,ymax\n,A1,,,,\n", [":2:", "empty 'file'"]),
    ],
)
def test_hard_errors_name_the_csv_and_line(tmp_path: Path, content: str, fragments: list[str]) -> None:
    make_image(tmp_path / "a.png")
    path = write_csv(tmp_path / "labels.csv", content)
    message = error_of(read_labels, path)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_and_non_utf8_label_files(tmp_path: Path) -> None:
    assert "label file not found" in error_of(read_labels, tmp_path / "nope.csv")
    (tmp_path / "latin1.csv").write_bytes("file,text\nä.png,A1\n".encode("latin-1"))
    assert "not UTF-8" in error_of(read_labels, tmp_path / "latin1.csv")


def test_box_entirely_outside_the_image_is_skipped(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", 100, 50)
    path = write_csv(
        tmp_path / "labels.csv",
        "file,text,xmin,ymin,xmax,ymax\na.png,A1,100,10,140,30\na.png,A2,-40,-20,-1,30\na.png,A3,90,40,130,70\n",
    )
    labels = read_labels(path)
    assert [item.text for item in labels.items] == ["A3"]
    assert labels.items[0].box == (90.0, 40.0, 100.0, 50.0)
    assert [line for line, _ in labels.skipped] == [2, 3]
    assert all("entirely outside the 100x50 image" in reason for _, reason in labels.skipped)
    assert clip_box((0, 0, 10, 10), 5, 5) == (0, 0, 5, 5)


# -------------------------------------------------------------------------------------------- split
def test_split_is_fixed_and_by_canonical_text() -> None:
    texts = ["ABC1234", "AB123CD", "1020HG90", "128T8086", "KK9349", "AXK3125", "2A0D34M", "1AVNW4"]
    # Pinned: changing the salt or the hash would silently move plates between train and val.
    assert [split_of(t) for t in texts] == ["train", "train", "val", "train", "train", "train", "val", "val"]
    assert split_of("1020 hg-90") == split_of("1020HG90") == "val"
    assert canonical_text(" ab-12.3·c ") == "AB123C" and canonical_text("ab-1", keep="-") == "AB-1"
    assert split_of("ABC1234", 0.0) == "train" and split_of("ABC1234", 1.0) == "val"
    with pytest.raises(ValueError):
        split_of("ABC1234", 1.5)


def test_split_fraction_and_consistency_over_random_texts() -> None:
    rng = random.Random(1234)
    texts = ["".join(rng.choices(string.ascii_uppercase + string.digits, k=rng.randint(5, 8))) for _ in range(2000)]
    splits = [split_of(t) for t in texts]
    assert 0.17 < splits.count("val") / len(texts) < 0.23
    assert splits == [split_of(t) for t in texts]
    # A larger val fraction only moves texts from train to val, never back.
    assert all(split_of(t, 0.3) == "val" for t, s in zip(texts, splits) if s == "val")
    items = [LabeledImage(Path(f"{i}.png"), t, None, "x") for i, t in enumerate(texts + texts[:100])]
    train, val = split_items(items)
    assert not {i.text for i in train} & {i.text for i in val}
    assert len(train) + len(val) == len(items)


# ------------------------------------------------------------------------------------------- jitter
def test_jitter_stays_near_the_box() -> None:
    box = (100.0, 50.0, 300.0, 100.0)
    rng = np.random.default_rng(3)
    for _ in range(500):
        x1, y1, x2, y2 = jitter_box(box, rng, shift=0.08, scale=0.12)
        assert abs((x1 + x2) / 2 - 200.0) <= 0.08 * 200 + 1e-9
        assert abs((y1 + y2) / 2 - 75.0) <= 0.08 * 50 + 1e-9
        assert 0.88 * 200 - 1e-9 <= x2 - x1 <= 1.12 * 200 + 1e-9
        assert 0.88 * 50 - 1e-9 <= y2 - y1 <= 1.12 * 50 + 1e-9
    # Pure apart from the generator it is given: the same seed gives the same box.
    a = jitter_box(box, np.random.default_rng(9))
    assert a == jitter_box(box, np.random.default_rng(9)) and a != box
    assert jitter_box(box, np.random.default_rng(9), shift=0.0, scale=0.0) == box


# -------------------------------------------------------------------------------------------- crops
def test_precut_crop_is_the_plate_alone_fitted_like_a_crop_image() -> None:
    scene = np.zeros((300, 500, 3), np.uint8)  # dark scene, a white plate at (100, 120)-(340, 180)
    scene[120:180, 100:340] = 255
    scene[130:170, 200:230] = 0  # a character
    box = (100.0, 120.0, 340.0, 180.0)
    crop = precut_crop(scene, box, (192, 64), np.random.default_rng(1), stretch=(1.0, 1.0))
    assert crop.shape == (64, 192, 3)
    # No margin: the plate reaches both sides (a detector box with padding shows the dark scene there).
    assert crop[:, :3].mean() > 200 and crop[:, -3:].mean() > 200
    assert crop_plate(scene, box, (192, 64), 0.15).image[:, :3].mean() < 60
    # Same plate, squeezed to 0.8 of its width: fitted to the crop's width, its character stands taller.
    narrow = precut_crop(scene, box, (192, 64), np.random.default_rng(1), stretch=(0.8, 0.8))
    dark = [(image[..., 0] < 128).sum(axis=1) for image in (crop, narrow)]
    character_rows = [int(((row > 0) & (row < 100)).sum()) for row in dark]  # not the scene's rows the box took in
    assert character_rows[1] > 1.15 * character_rows[0]
    # The rng draws: four for the box, one for the stretch.
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    precut_crop(scene, box, (192, 64), a)
    b.uniform(size=5)
    assert a.random() == b.random()


def test_cut_crops_sizes_and_unreadable_image(scene_set: Path, tmp_path: Path) -> None:
    items = read_labels(scene_set).items
    crops = list(cut_crops(items, (96, 32), 0.1))
    assert [item for item, _ in crops] == items
    assert all(crop.shape == (32, 96, 3) and crop.dtype == np.uint8 for _, crop in crops)
    jittered = list(cut_crops(items, (96, 32), jitter=0.08, rng=np.random.default_rng(0), copies=3))
    assert [item.text for item, _ in jittered] == ["AB123C"] * 3 + ["XY99"] * 3 + ["KK9"]
    assert not np.array_equal(jittered[0][1], jittered[1][1])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = LabeledImage(tmp_path / "bad.png", "A1", None, "x")
    message = error_of(lambda: list(cut_crops([bad], (96, 32))))
    assert "bad.png" in message and "decode" in message


def test_dataset_crops_end_to_end(
    scene_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    make_image(scene_set.parent / "crops" / "d.png")
    with scene_set.open("a", encoding="utf-8") as handle:
        handle.write("crops/d.png,皖A1,,,,\n")
    out = tmp_path / "out"
    assert run_cli("dataset", "crops", str(scene_set), "--out", str(out), "--size", "64x24", "--jitter", "0.05",
                   "--copies", "2", "--seed", "1") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary == {"written": 5, "skipped": 1, "failed": 0, "out": str(out)}
    # Skips are logged (the main CLI sends logs to stderr), one line each with the CSV line and reason.
    assert ":5: skipped:" in caplog.text and "outside the charset" in caplog.text
    with (out / "labels.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "text", "xmin", "ymin", "xmax", "ymax"]
    assert [row[1] for row in rows[1:]] == ["AB123C", "AB123C", "XY99", "XY99", "KK9"]
    assert all(row[2:] == ["", "", "", ""] for row in rows[1:])
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(Path(row[0]).name for row in rows[1:])
    for row in rows[1:]:
        assert cv2.imread(str(out / row[0])).shape == (24, 64, 3)
    # The output is itself a crop label set in our format.
    again = read_labels(out / "labels.csv")
    assert len(again) == 5 and all(item.box is None for item in again.items)
    # A second run into the same folder must not silently mix two data sets.
    with pytest.raises(ConfigError, match="already exists"):
        run_cli("dataset", "crops", str(scene_set), "--out", str(out))


def test_dataset_crops_user_mistakes_and_failed_file(
    scene_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match="--jitter"):
        run_cli("dataset", "crops", str(scene_set), "--out", str(tmp_path / "o1"), "--copies", "3")
    with pytest.raises(ConfigError, match="not found"):
        run_cli("dataset", "crops", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o2"))
    with pytest.raises(SystemExit):
        run_cli("dataset", "crops", str(scene_set), "--out", str(tmp_path / "o3"), "--size", "192by64")
    assert parse_size("192x64") == (192, 64)
    # An image that exists but cannot be decoded is reported; the others are still written (exit code 1).
    (scene_set.parent / "crops" / "c.png").write_bytes(b"broken")
    assert run_cli("dataset", "crops", str(scene_set), "--out", str(tmp_path / "o4")) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["failed"] == 1
    assert "c.png" in caplog.text and "decode" in caplog.text


def test_datasets_root_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANPR_EDGE_DATASETS", str(tmp_path))
    assert datasets_root() == tmp_path
    monkeypatch.setenv("ANPR_EDGE_DATASETS", str(tmp_path / "nope"))
    assert "ANPR_EDGE_DATASETS" in error_of(datasets_root)
    assert "unknown shared set" in error_of(load_shared, "xx-plates")
    assert issubclass(ConfigError, AnprError)


# ------------------------------------------------------------------------------------- shared sets
def _shared_root() -> Path:
    try:
        return datasets_root()
    except ConfigError as error:
        pytest.skip(f"shared datasets not available: {error}")


def test_real_shared_sets_match_their_readmes(capsys: pytest.CaptureFixture[str]) -> None:
    root = _shared_root()
    expected_rows = {"us-nyc-plate-crops": 2012, "br-plate-crops": 1144, "tn-plate-crops": 890, "fr-plate-scenes": 85}
    assert set(SHARED_SETS) == set(expected_rows) | {"cn-plate-crops"}
    for name, rows in expected_rows.items():
        labels = load_shared(name, root=root)
        assert len(labels) == rows and not labels.skipped, (name, labels.skipped[:3])
        train, val = labels.split(0.2)
        assert not {i.text for i in train} & {i.text for i in val}
        assert 0.1 < len(val) / rows < 0.35, (name, len(val))
        kind = SHARED_SETS[name].kind
        assert all((item.box is None) == (kind == "crops") for item in labels.items)
    # The Chinese province is dropped from the label: the OCR reads (and is scored on) the Latin rest.
    cn = load_shared("cn-plate-crops", root=root)
    assert len(cn) == 1000 and not cn.skipped
    assert all(len(item.text) == 6 and item.text.isascii() for item in cn.items)
    assert next(i for i in cn.items if i.path.name == "京PL3N67.jpg").text == "PL3N67"
    cn_train, cn_val = cn.split(0.2)
    assert 150 < len(cn_val) < 260 and not {i.text for i in cn_train} & {i.text for i in cn_val}
    assert SHARED_SETS["fr-plate-scenes"].role == "test"
    assert run_cli("dataset", "list") == 0
    listed = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert listed["fr-plate-scenes"]["test"] == 85 and listed["fr-plate-scenes"]["train"] == 0
    assert listed["cn-plate-crops"]["skipped"] == 0
    assert listed["br-plate-crops"]["corrected"] == sum(c.set_name == "br-plate-crops" for c in label_corrections())
    assert listed["cn-plate-crops"]["train"] + listed["cn-plate-crops"]["val"] == 1000
    assert listed["us-nyc-plate-crops"]["train"] + listed["us-nyc-plate-crops"]["val"] == 2012


# ------------------------------------------------------------------------------------ label corrections
def test_a_correction_replaces_the_published_label_and_the_split_follows_the_real_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a.png", "b.png", "c.png"):
        make_image(tmp_path / "set" / name, 90, 30)
    labels = read_labels(write_csv(tmp_path / "set" / "labels.csv",
                                   "file,text,xmin,ymin,xmax,ymax\na.png,DZY9352,,,,\nb.png,ABC123,,,,\n"
                                   "c.png,XYZ999,,,,\n"), name="set")
    # Published texts and corrections chosen so the split moves: the crop joins its real plate's split.
    assert split_of("DZY9352") != split_of("DZV9351")
    corrections = [
        LabelCorrection("set", "a.png", "DZY9352", "DZV9351", "third letter is a V"),
        LabelCorrection("set", "c.png", "XYZ990", "XYZ991", "label changed upstream since"),
        LabelCorrection("set", "gone.png", "AAA111", "AAA112", "file removed upstream"),
    ]
    with caplog.at_level("WARNING"):
        apply_corrections(labels, corrections)
    by_file = {item.path.name: item for item in labels.items}
    assert (by_file["a.png"].text, by_file["a.png"].published_text) == ("DZV9351", "DZY9352")
    assert (by_file["b.png"].text, by_file["b.png"].published_text) == ("ABC123", None)
    assert (by_file["c.png"].text, by_file["c.png"].published_text) == ("XYZ999", None)  # stale: not applied
    assert labels.corrected == corrections[:1]
    train, val = labels.split()
    assert by_file["a.png"] in (val if split_of("DZV9351") == "val" else train)
    assert "c.png" in caplog.text and "XYZ990" in caplog.text and "gone.png" in caplog.text


def test_the_committed_label_corrections_are_well_formed_and_apply_to_the_shared_sets() -> None:
    corrections = label_corrections()
    assert corrections, "the corrections file is empty"
    assert len({(c.set_name, c.file) for c in corrections}) == len(corrections)
    for c in corrections:
        assert c.set_name in SHARED_SETS and SHARED_SETS[c.set_name].role == "train", c
        assert c.published != c.corrected and set(c.corrected) <= set(DEFAULT_CHARSET) and c.evidence, c
    root = _shared_root()
    for name in {c.set_name for c in corrections}:
        published = load_shared(name, root=root, corrected=False)
        corrected = load_shared(name, root=root)
        # Every correction of the set applied (none stale), and only the rows it names changed.
        assert sorted(c.file for c in corrected.corrected) == sorted(c.file for c in corrections if c.set_name == name)
        changed = {(a.text, b.text) for a, b in zip(published.items, corrected.items) if a != b}
        assert changed == {(c.published, c.corrected) for c in corrections if c.set_name == name}
