"""Detector training data (anpr_edge.train.det_data): loaders, the fixed split, composites, the writer.

Tiny fake copies of the shared detector sets are made in tmp_path (same folder layouts and CSV/VOC
formats); the last test only loads the real shared sets, when present, and checks their counts.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from anpr_edge.demo_clip import generate_demo_clip
from anpr_edge.errors import ConfigError
from anpr_edge.train import det_data as dd
from anpr_edge.train.datasets import datasets_root


# ------------------------------------------------------------------------------------------ helpers
def fake_scene(width: int, height: int, boxes: list[tuple[int, int, int, int]], seed: int) -> np.ndarray:
    """A textured background with a white, black-lettered 'plate' in each box."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (8, 8, 3)).astype(np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for x1, y1, x2, y2 in boxes:
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), (235, 235, 235), -1)
        for k in range(4):
            cx = x1 + (k + 0.5) * (x2 - x1) / 4
            cv2.line(image, (int(cx), y1 + 2), (int(cx), max(y2 - 3, y1 + 2)), (20, 20, 20), 1)
    return image


def write_jpg(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data.tofile(str(path))  # names with spaces must work
    return path


def write_boxes_csv(path: Path, rows: list[tuple[str, tuple[int, int, int, int]]]) -> None:
    lines = ["file,xmin,ymin,xmax,ymax"] + [f"{f},{b[0]},{b[1]},{b[2]},{b[3]}" for f, b in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def voc_xml(filename: str, width: int, height: int, box: tuple[int, int, int, int]) -> str:
    return (
        f"<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size><object><name>licence plate</name><bndbox><xmin>{box[0]}</xmin>"
        f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object></annotation>"
    )


@pytest.fixture()
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Minimal copies of the four shared detector sets, and a private cache folder."""
    root = tmp_path / "datasets"
    monkeypatch.setenv("ANPR_EDGE_DATASETS", str(root))
    monkeypatch.setenv("ANPR_EDGE_CACHE_DIR", str(tmp_path / "cache"))

    am = root / dd.AM
    rows: list[tuple[str, tuple[int, int, int, int]]] = []
    for i in range(8):
        name = f"train/images/Cars{i}.jpg"
        write_jpg(am / name, fake_scene(240, 160, [(60, 90, 140, 110)], seed=i))
        rows.append((name, (60, 90, 140, 110)))
    for i in range(3):
        name = f"val/images/Cars{i}.jpg"
        write_jpg(am / name, fake_scene(240, 160, [(50, 80, 130, 100)], seed=100 + i))
        rows.append((name, (50, 80, 130, 100)))
    # One picture stored three times, boxed independently: train Cars1 (1 box), train Cars2 (2 boxes),
    # val Cars0 (1 box). Byte-identical files, as in the real set.
    shutil.copyfile(am / "train/images/Cars1.jpg", am / "train/images/Cars2.jpg")
    shutil.copyfile(am / "train/images/Cars1.jpg", am / "val/images/Cars0.jpg")
    rows.append(("train/images/Cars2.jpg", (10, 10, 50, 22)))
    write_boxes_csv(am / "boxes.csv", rows)
    (am / "duplicates.txt").write_text(
        "# groups of byte-identical images (md5), one group per line, space-separated\n"
        "train/images/Cars1.jpg train/images/Cars2.jpg val/images/Cars0.jpg\n"
        "train/images/Cars3.jpg train/images/Cars99.jpg\n",  # a removed file may still be listed
        encoding="utf-8",
    )

    tn = root / dd.TN
    tn_rows = []
    for i in range(1, 13):
        write_jpg(tn / f"images/{i}.jpg", fake_scene(300, 220, [(100, 150, 190, 172)], seed=200 + i))
        tn_rows.append((f"images/{i}.jpg", (100, 150, 190, 172)))
    (tn / "images/13.jpg").write_bytes(b"")  # an empty file, as 17 were in one source snapshot
    tn_rows.append(("images/13.jpg", (10, 10, 40, 20)))
    write_boxes_csv(tn / "boxes.csv", tn_rows)

    es = root / dd.ES
    es_rows = []
    for split, count in (("train", 3), ("val", 2)):
        for i in range(1, count + 1):  # numbering restarts per split, as in the real set
            name = f"images/{split}/{i:05d}.jpg"
            boxes = [(40, 60, 80, 75), (120, 40, 122, 42)]  # the second is 2x2 px: too small, dropped
            write_jpg(es / name, fake_scene(160, 120, boxes[:1], seed=300 + i + (10 if split == "val" else 0)))
            es_rows += [(name, b) for b in boxes]
    write_boxes_csv(es / "boxes.csv", es_rows)

    fr = root / dd.FR
    for i, stem in enumerate(("AB 123 CD", "1020 HG 90")):  # spaces in names; VOC only, no labels.csv
        box = (300, 420, 560, 480)
        write_jpg(fr / "images" / f"{stem}.jpg", fake_scene(900, 600, [box], seed=400 + i))
        (fr / "annotations").mkdir(parents=True, exist_ok=True)
        (fr / "annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", 900, 600, box), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory):
    return generate_demo_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=1.0, fps=10.0, width=320, height=180)


def read_labels(path: Path, width: int, height: int) -> list[tuple[float, float, float, float]]:
    boxes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cls, box = dd.parse_yolo_line(line, width, height)
        values = [float(v) for v in line.split()[1:]]
        assert cls == 0 and all(0.0 <= v <= 1.0 for v in values), line
        boxes.append(box)
    return boxes


# ------------------------------------------------------------------------------------ pure helpers
def test_yolo_label_round_trip() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        w, h = int(rng.integers(20, 2000)), int(rng.integers(20, 2000))
        x1, y1 = rng.uniform(0, w - 5), rng.uniform(0, h - 5)
        box = (x1, y1, rng.uniform(x1 + 1, w), rng.uniform(y1 + 1, h))
        label = dd.box_to_yolo(box, w, h)
        assert all(0.0 <= v <= 1.0 for v in label)
        assert np.allclose(dd.yolo_to_box(label, w, h), box, atol=1e-6)
        cls, back = dd.parse_yolo_line(dd.yolo_line(box, w, h), w, h)
        assert cls == 0 and np.allclose(back, box, atol=2e-3)  # 6 decimals of 2000 px
    assert dd.yolo_line((0, 0, 320, 240), 640, 480) == "0 0.250000 0.250000 0.500000 0.500000"


def test_resize_never_upscales_and_scales_boxes() -> None:
    small = np.zeros((120, 160, 3), np.uint8)
    image, boxes = dd.fit_long_side(small, [(10, 20, 30, 40)], 640)
    assert image is small and boxes == [(10.0, 20.0, 30.0, 40.0)]
    big = np.zeros((600, 900, 3), np.uint8)
    image, boxes = dd.fit_long_side(big, [(90, 60, 450, 300)], 300)
    assert image.shape[:2] == (200, 300)
    assert np.allclose(boxes[0], (30, 20, 150, 100))


def test_box_sanity_clips_and_drops() -> None:
    kept, dropped, clipped = dd.sanitize_boxes([(-5, 10, 50, 30), (10, 10, 12, 30), (200, 5, 300, 9), (5, 5, 20, 20)], 100, 80)
    assert kept == [(0.0, 10.0, 50.0, 30.0), (5.0, 5.0, 20.0, 20.0)]
    assert dropped == 2 and clipped == 1
    assert [dd.width_bin(w) for w in (39.9, 40, 80, 80.1)] == ["<40", "40-80", ">80", ">80"]


# -------------------------------------------------------------------------------- loaders & split
def test_andrewmvd_duplicate_groups_keep_one_copy(fake_root: Path) -> None:
    every = dd.load_andrewmvd(dedupe=False)
    assert len(every) == 11 and sum(len(s.boxes) for s in every) == 12
    groups = {s.path.relative_to(fake_root / dd.AM).as_posix(): s.group for s in every}
    dup = {groups["train/images/Cars1.jpg"], groups["train/images/Cars2.jpg"], groups["val/images/Cars0.jpg"]}
    assert len(dup) == 1 and groups["train/images/Cars3.jpg"] != groups["train/images/Cars4.jpg"]
    kept = dd.load_andrewmvd()
    names = {s.path.relative_to(fake_root / dd.AM).as_posix() for s in kept}
    assert len(kept) == 9  # 11 files, one group of 3 -> 1
    assert "train/images/Cars2.jpg" in names  # the copy with the most boxes
    assert not names & {"train/images/Cars1.jpg", "val/images/Cars0.jpg"}
    # Whatever the copy, a group has one split.
    assert len({dd.scene_split(s) for s in every if s.group in dup}) == 1


def test_split_is_deterministic_by_group_with_fixed_rules(fake_root: Path) -> None:
    assert dd.group_split("tn-plate-detection:images/1.jpg") == dd.group_split("tn-plate-detection:images/1.jpg")
    ids = [f"{dd.TN}:images/{i}.jpg" for i in range(4000)]
    val = sum(dd.group_split(g) == "val" for g in ids) / len(ids)
    assert 0.15 < val < 0.21
    assert {dd.group_split(g, 0.0) for g in ids[:50]} == {"train"} and {dd.group_split(g, 1.0) for g in ids[:50]} == {"val"}
    scenes = dd.load_scenes()
    assert [len(scenes[k]) for k in (dd.AM, dd.TN, dd.ES, dd.FR)] == [9, 13, 5, 2]
    es = {s.path.relative_to(fake_root / dd.ES).as_posix(): dd.scene_split(s) for s in scenes[dd.ES]}
    assert es == {"images/train/00001.jpg": "train", "images/train/00002.jpg": "train", "images/train/00003.jpg": "train",
                  "images/val/00001.jpg": "val", "images/val/00002.jpg": "val"}
    assert {dd.scene_split(s) for s in scenes[dd.FR]} == {"test"}
    assert all(dd.scene_split(s) != "test" for k in (dd.AM, dd.TN, dd.ES) for s in scenes[k])
    by_group: dict[str, set[str]] = {}
    for s in (*dd.load_andrewmvd(dedupe=False), *scenes[dd.TN], *scenes[dd.ES]):
        by_group.setdefault(s.group, set()).add(dd.scene_split(s))
    assert all(len(v) == 1 for v in by_group.values())
    assert scenes[dd.FR][0].boxes == ((300.0, 420.0, 560.0, 480.0),)  # read from VOC


# ------------------------------------------------------------------------------------- composites
def test_mask_and_paste_replace_the_plate_and_box_the_new_one() -> None:
    old = [(150, 200, 260, 225), (330, 150, 420, 172)]
    image = fake_scene(480, 320, old, seed=7)
    for i in range(6):
        rng = np.random.default_rng([3, i])
        out, boxes = dd.masked_scene_composite(image, old, rng, empty_rate=0.0)
        assert out.shape == image.shape and out.dtype == np.uint8 and boxes
        diff = np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=2)
        for x1, y1, x2, y2 in old:  # the old plate is gone: its letters and white no longer there
            assert diff[y1:y2, x1:x2].mean() > 20
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= 480 and 0 <= y1 < y2 <= 320
            region = diff[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))]
            assert (region > 8).mean() > 0.3  # the pasted plate fills its box
        # Outside the grown plate areas nothing moved (apart from the masks' feathered rims).
        far = np.ones(diff.shape, bool)
        for x1, y1, x2, y2 in [*old, *boxes]:
            far[max(int(y1) - 30, 0):int(y2) + 30, max(int(x1) - 40, 0):int(x2) + 40] = False
        assert diff[far].max() == 0


def test_mask_plates_alters_only_around_the_box() -> None:
    image = fake_scene(200, 150, [(60, 70, 140, 90)], seed=1)
    out = dd.mask_plates(image, [(60, 70, 140, 90)], np.random.default_rng(0))
    diff = np.abs(out.astype(np.int16) - image.astype(np.int16)).max(axis=2)
    assert diff[70:90, 60:140].mean() > 30
    assert diff[:40].max() == 0 and diff[:, :20].max() == 0


def test_background_composites_box_their_plates() -> None:
    for i in range(6):
        made = dd.background_composite(np.random.default_rng([5, i]), [], imgsz=320)
        assert made is not None
        image, boxes = made
        h, w = image.shape[:2]
        assert max(h, w) <= 320
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    a = dd.background_composite(np.random.default_rng([5, 0]), [], imgsz=320)
    b = dd.background_composite(np.random.default_rng([5, 0]), [], imgsz=320)
    assert a is not None and b is not None and np.array_equal(a[0], b[0]) and a[1] == b[1]


# ----------------------------------------------------------------------------------- the writer
def test_prepare_writes_a_yolo_dataset_and_is_idempotent(fake_root: Path, tiny_clip, tmp_path: Path) -> None:
    prepared = dd.prepare_detector_dataset(imgsz=256, synthetic=6, demo_every=4, seed=1, progress=False, demo_clip=tiny_clip)
    root = prepared.root
    assert root == (tmp_path / "cache" / f"det-data-v{dd.VERSION}-256-s1-n6").resolve() and not prepared.reused
    assert [p.name for p in root.parent.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    yaml = prepared.data_yaml.read_text(encoding="utf-8")
    assert f'path: "{root}"' in yaml and "train: images/train\nval: images/val\ntest: images/test\n" in yaml
    assert "names:\n  0: plate" in yaml

    written: dict[str, dict[str, tuple[int, int]]] = {s: {} for s in dd.SPLITS}
    for split in dd.SPLITS:
        images = sorted(prepared.images_dir(split).glob("*.jpg"))
        assert {p.stem for p in images} == {p.stem for p in prepared.labels_dir(split).glob("*.txt")}
        for path in images:
            image = cv2.imread(str(path))
            h, w = image.shape[:2]
            assert max(h, w) <= 256
            for box in read_labels(prepared.labels_dir(split) / f"{path.stem}.txt", w, h):
                assert box[2] - box[0] >= dd.MIN_BOX_PX - 1e-3 and box[3] - box[1] >= dd.MIN_BOX_PX - 1e-3
            written[split][path.stem] = (w, h)
    # fr: test only, and the test split is only fr (downscaled 900x600 -> 256x171).
    assert {s.split("_")[0] for s in written["test"]} == {"fr"} and len(written["test"]) == 2
    assert written["test"]["fr_AB_123_CD"] == (256, 171)
    assert not any(s.startswith("fr_") for split in ("train", "val") for s in written[split])
    # es: 160x120 stays 160x120 (never upscaled), its folders are its split, its 2x2 boxes are dropped.
    assert written["train"]["es_train_00001"] == (160, 120) and "es_val_00002" in written["val"]
    assert len(read_labels(prepared.labels_dir("train") / "es_train_00001.txt", 160, 120)) == 1
    # andrewmvd: one copy of the duplicate group, and no group on both sides.
    am = [s for split in ("train", "val") for s in written[split] if s.startswith("andrewmvd_")]
    assert len(am) == 9 and "andrewmvd_train_Cars2" in am
    assert not {"andrewmvd_train_Cars1", "andrewmvd_val_Cars0"} & set(am)
    # synthetic and demo images: train only.
    assert sum(s.startswith(("synmask_", "synbg_")) for s in written["train"]) == 6
    assert sum(s.startswith("demo_") for s in written["train"]) == 3  # frames 0, 4, 8 of 10
    assert not any(s.startswith(("synmask_", "synbg_", "demo_")) for s in (*written["val"], *written["test"]))

    manifest = json.loads(prepared.manifest_path.read_text(encoding="utf-8"))
    assert manifest["unreadable_images"] == {dd.TN: 1}
    assert manifest["dropped_small_boxes"][dd.ES] == 5
    assert manifest["duplicates_dropped"] == {dd.AM: 2}
    assert manifest["counts"][dd.FR] == {"test": {"images": 2, "boxes": 2, "empty": 0}}
    assert manifest["counts"][dd.TN]["train"]["images"] + manifest["counts"][dd.TN]["val"]["images"] == 12
    assert prepared.totals["train"]["images"] == len(written["train"])
    bins = manifest["box_width_bins"]
    assert sum(bins["written"]["test"].values()) == 2 and bins["original"]["test"] == {"<40": 0, "40-80": 0, ">80": 2}
    assert bins["written"]["test"] == {"<40": 0, "40-80": 2, ">80": 0}  # 260 px at 900 -> 74 px at 256

    # Same parameters: returned untouched. A different seed: a different folder.
    stamp = prepared.manifest_path.stat().st_mtime_ns
    again = dd.prepare_detector_dataset(imgsz=256, synthetic=6, demo_every=4, seed=1, progress=False, demo_clip=tiny_clip)
    assert again.reused and again.root == root and again.manifest_path.stat().st_mtime_ns == stamp
    assert again.counts == prepared.counts
    # Deterministic: a second build elsewhere writes the same bytes.
    other = dd.prepare_detector_dataset(tmp_path / "copy", imgsz=256, synthetic=6, demo_every=4, seed=1, progress=False,
                                        demo_clip=tiny_clip)
    for path in sorted(root.rglob("*.jpg"))[::5] + sorted(root.rglob("*.txt")):
        assert (other.root / path.relative_to(root)).read_bytes() == path.read_bytes(), path


def test_prepare_refuses_a_foreign_folder_and_replaces_a_stale_dataset(fake_root: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a prepared detector dataset"):
        dd.prepare_detector_dataset(foreign, imgsz=128, synthetic=0, demo_every=0, progress=False)
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "keep me"
    out = tmp_path / "det"
    first = dd.prepare_detector_dataset(out, imgsz=128, synthetic=0, demo_every=0, progress=False)
    second = dd.prepare_detector_dataset(out, imgsz=128, synthetic=2, demo_every=0, progress=False)
    assert not second.reused and second.manifest["params"]["synthetic"] == 2
    assert second.totals["train"]["images"] == first.totals["train"]["images"] + 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ------------------------------------------------------------------------------- real shared sets
def test_real_shared_detector_sets_match_their_readmes() -> None:
    if os.environ.get("ANPR_EDGE_DATASETS"):
        pytest.skip("ANPR_EDGE_DATASETS points elsewhere")
    try:
        root = datasets_root()
        scenes = dd.load_scenes(root)
        every = dd.load_andrewmvd(root, dedupe=False)
    except ConfigError as error:
        pytest.skip(f"shared detector sets not available: {error}")
    assert len(every) == 432 and sum(len(s.boxes) for s in every) == 470
    assert len(scenes[dd.AM]) == 298 == len({s.group for s in every})
    assert len(scenes[dd.TN]) == 900 and sum(len(s.boxes) for s in scenes[dd.TN]) == 900
    assert len(scenes[dd.ES]) == 945 and sum(len(s.boxes) for s in scenes[dd.ES]) == 1344
    assert len(scenes[dd.FR]) == 85 and sum(len(s.boxes) for s in scenes[dd.FR]) == 85
    splits = {name: dd.split_scenes(items) for name, items in scenes.items()}
    assert [len(splits[dd.ES][s]) for s in dd.SPLITS] == [756, 189, 0]
    assert [len(splits[dd.FR][s]) for s in dd.SPLITS] == [0, 0, 85]
    for name in (dd.AM, dd.TN):
        share = len(splits[name]["val"]) / len(scenes[name])
        assert 0.14 < share < 0.22 and not splits[name]["test"], (name, share)
    groups: dict[str, set[str]] = {}
    for scene in every:
        groups.setdefault(scene.group, set()).add(dd.scene_split(scene))
    assert all(len(v) == 1 for v in groups.values())  # no duplicate group on both sides
