"""Training data for the plate detector: the shared real scene sets, synthetic composites, demo frames.

``prepare_detector_dataset`` writes a ready ultralytics (YOLO) dataset outside the repository, by default
into ``paths.cache_dir() / f"det-data-v{VERSION}-{imgsz}-s{seed}-n{synthetic}"``::

    data.yaml                    path (absolute), train/val/test folders, names {0: plate}
    manifest.json                parameters, counts per source and split, box-width bins, split rule
    images/{train,val,test}/*.jpg  long side at most ``imgsz`` (never upscaled), JPEG quality 92
    labels/{train,val,test}/*.txt  one ``0 cx cy w h`` line per plate, normalised to 0..1 (empty: no plate)

File names start with a source tag (``andrewmvd_``, ``tn_``, ``es_``, ``fr_``, ``synmask_``, ``synbg_``,
``demo_``), so a training report can break results down by source without the manifest.

**Data mix.**

* Real scenes (train and val): ``andrewmvd-car-plates`` (web photos, many Indian plates; byte-identical
  duplicates collapsed to one image per group, the copy with the most boxes), ``tn-plate-detection``
  (Tunisia, one box per image even when other plates show), ``es-uc3m-plate-detection`` (Spain, 320 px,
  small plates, colour casts, night shots).
* ``fr-plate-scenes`` is the European TEST set: written to ``images/test`` only, never to train or val,
  and never used as a background for composites.
* ``synmask`` (half of ``synthetic``): a real TRAIN scene whose labelled plates are inpainted away, with a
  synthetic plate (any layout of ``synth_plates.LAYOUTS``, so EU/UK/US/BR/other) pasted near each old
  plate: size from the old box and the plates' physical widths, a mild random 3-D pose, brightness and
  contrast taken from the old plate, the scene's colour cast, blur and sensor noise. About 8% of the
  masked plates get no new plate, so an inpainted smudge is not a plate.
* ``synbg`` (the other half): synthetic plates on other backgrounds, so every region including the EU
  (absent from the real train data) is seen: procedural road scenes with car rears carrying plates,
  random textures with shapes and non-plate text, and plate-free regions of real train scenes. Plates
  are pasted directly or as ``synth_sample`` car-rear tiles (with their camera degradations) feathered
  into the background.
* ``demo`` : every ``demo_every``-th frame of the project's demo clip with its ground-truth boxes
  (frames without a visible plate are kept as negatives). Synthetic, so train only.

Every synthetic image is drawn from its own generator ``default_rng([seed, kind, index])``: the output is
deterministic, and does not shift when an unreadable image is skipped.

**Split rule (fixed, real images only).** ``scene_split``: fr -> "test"; es-uc3m keeps its source folders
(``images/val`` is the UC3M-LP authors' own test split, ~20% of the subset: an official, comparable split;
a thumbnail check found no near-duplicates worth re-splitting for); andrewmvd and tn -> "val" when
``sha1(DET_SPLIT_SALT + group)``'s first 8 bytes, read as a big-endian fraction of 2**64, are below
``VAL_FRACTION`` (0.18), else "train". A group is ``"<set>:<relative file>"``; for andrewmvd's duplicate
groups it is the set name and the group's first file in sorted order, so byte-identical copies can never
end up in both splits. Like ``datasets.split_of`` the split needs no RNG, is the same on every machine and
does not move when images are added or removed. Synthetic images go to train only, and the composites
use train-split scenes only, so no val pixel is ever trained on.

**Box sanity.** Boxes are clipped to their image; after resizing, boxes narrower or lower than
``MIN_BOX_PX`` (3 px) are dropped (counted in the manifest); unreadable images are skipped with a logged
warning (counted). Nothing here imports torch or ultralytics.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from tqdm import tqdm

from anpr_edge import paths
from anpr_edge.demo_clip import DemoClip, default_demo_clip
from anpr_edge.errors import ConfigError
from anpr_edge.train.datasets import (
    Box,
    clip_box,
    datasets_root,
    jitter_box,
    read_image,
)
from anpr_edge.train.synth_plates import (
    LAYOUTS,
    Layout,
    random_text,
    render_plate,
    synth_sample,
)

log = logging.getLogger("anpr_edge.det_data")

# Bump whenever the written dataset would change for the same parameters (the cache name carries it).
VERSION = 1
DET_SPLIT_SALT = "anpr-edge-det-split-v1"
VAL_FRACTION = 0.18
MIN_BOX_PX = 3.0
JPEG_QUALITY = 92
CLASS_NAMES = {0: "plate"}
SPLITS = ("train", "val", "test")
WIDTH_BINS = (("<40", 0.0, 40.0), ("40-80", 40.0, 80.0), (">80", 80.0, math.inf))

AM, TN, ES, FR = "andrewmvd-car-plates", "tn-plate-detection", "es-uc3m-plate-detection", "fr-plate-scenes"
SYN_MASKED, SYN_BACKGROUND, DEMO = "synth-masked", "synth-background", "demo-clip"

SceneSplit = Literal["train", "val", "test"]


@dataclass(frozen=True)
class DetSource:
    """A real detector set in the shared datasets folder and how its split is decided."""

    name: str
    tag: str  # file-name prefix in the prepared dataset
    rule: Literal["hash", "folder", "test"]
    note: str


DET_SOURCES: dict[str, DetSource] = {
    s.name: s
    for s in (
        DetSource(AM, "andrewmvd", "hash", "web photos; byte-identical duplicates kept once per group"),
        DetSource(TN, "tn", "hash", "Tunisia; one box per image"),
        DetSource(ES, "es", "folder", "Spain, 320 px; source train/val folders kept as the split"),
        DetSource(FR, "fr", "test", "France; held-out test set, never trained or validated on"),
    )
}
SOURCE_TAGS = {**{s.name: s.tag for s in DET_SOURCES.values()}, SYN_MASKED: "synmask", SYN_BACKGROUND: "synbg",
               DEMO: "demo"}


@dataclass(frozen=True)
class SceneImage:
    """One real scene: the image file, its plate boxes (x1, y1, x2, y2 in stored-image pixels), the set
    it came from and its split unit (``group``: images of one group always share a split)."""

    path: Path
    boxes: tuple[Box, ...]
    source: str
    group: str


@dataclass(frozen=True, eq=False)
class PreparedDataset:
    """A prepared detector dataset: where it is and what it holds.

    ``counts[source][split]`` is ``{"images": n, "boxes": m}``; ``totals[split]`` the same over sources.
    ``reused`` is True when an existing dataset with the same parameters was returned untouched.
    """

    root: Path
    data_yaml: Path
    manifest_path: Path
    counts: dict[str, dict[str, dict[str, int]]]
    totals: dict[str, dict[str, int]]
    manifest: dict[str, Any]
    reused: bool = False

    def images_dir(self, split: str) -> Path:
        return self.root / "images" / split

    def labels_dir(self, split: str) -> Path:
        return self.root / "labels" / split


# ------------------------------------------------------------------------------------ YOLO labels
def box_to_yolo(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """(cx, cy, w, h) of a pixel box (x1, y1, x2, y2), normalised by the image size."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x1 + x2) / 2.0 / width, (y1 + y2) / 2.0 / height, (x2 - x1) / width, (y2 - y1) / height


def yolo_to_box(label: Sequence[float], width: int, height: int) -> Box:
    """The pixel box (x1, y1, x2, y2) of a normalised (cx, cy, w, h) label."""
    cx, cy, w, h = (float(v) for v in label)
    return ((cx - w / 2.0) * width, (cy - h / 2.0) * height, (cx + w / 2.0) * width, (cy + h / 2.0) * height)


def yolo_line(box: Sequence[float], width: int, height: int, cls: int = 0) -> str:
    """One label line; 6 decimals keep the round trip within a thousandth of a pixel at 640 px."""
    return f"{cls} " + " ".join(f"{v:.6f}" for v in box_to_yolo(box, width, height))


def parse_yolo_line(line: str, width: int, height: int) -> tuple[int, Box]:
    cls, *values = line.split()
    if len(values) != 4:
        raise ValueError(f"expected 'class cx cy w h', got {line!r}")
    return int(cls), yolo_to_box([float(v) for v in values], width, height)


# ------------------------------------------------------------------------------------ box sanity
def fit_long_side(image: np.ndarray, boxes: Sequence[Box], imgsz: int) -> tuple[np.ndarray, list[Box]]:
    """``image`` shrunk (INTER_AREA) so its long side is at most ``imgsz``, never enlarged, boxes scaled."""
    h, w = image.shape[:2]
    scale = imgsz / max(h, w)
    if scale >= 1.0:
        return image, [tuple(float(v) for v in b) for b in boxes]  # type: ignore[misc]
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    sx, sy = nw / w, nh / h  # the rounded size's own factors, so boxes stay on the plate pixels
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return resized, [(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in boxes]


def sanitize_boxes(
    boxes: Sequence[Box], width: int, height: int, min_px: float = MIN_BOX_PX
) -> tuple[list[Box], int, int]:
    """(kept boxes clipped to the image, number dropped as too small or outside, number clipped)."""
    kept: list[Box] = []
    dropped = clipped = 0
    for box in boxes:
        inside = clip_box(tuple(float(v) for v in box), width, height)  # type: ignore[arg-type]
        if inside is None or inside[2] - inside[0] < min_px or inside[3] - inside[1] < min_px:
            dropped += 1
            continue
        clipped += inside != tuple(float(v) for v in box)
        kept.append(inside)
    return kept, dropped, clipped


def width_bin(width: float) -> str:
    return next(name for name, low, high in WIDTH_BINS if low <= width < high)


# ---------------------------------------------------------------------------------------- loaders
def _set_dir(root: Path | None, name: str) -> Path:
    folder = (root or datasets_root()) / name
    if not folder.is_dir():
        raise ConfigError(f"shared detector set {name!r} not found at {folder}")
    return folder


def _read_boxes_csv(path: Path) -> dict[str, list[Box]]:
    """file -> boxes from ``boxes.csv``/``labels.csv`` (columns by name, extra columns such as text ignored)."""
    boxes: dict[str, list[Box]] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "xmin", "ymin", "xmax", "ymax"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for row in reader:
            name = (row["file"] or "").strip()
            if not name:
                continue
            cells = [(row[c] or "").strip() for c in ("xmin", "ymin", "xmax", "ymax")]
            entry = boxes.setdefault(name, [])
            if not any(cells):  # a listed image without a plate: a negative
                continue
            try:
                x1, y1, x2, y2 = (float(c) for c in cells)
            except ValueError:
                raise ConfigError(f"{path}:{reader.line_num}: box is not four numbers: {cells}") from None
            if x2 <= x1 or y2 <= y1:
                raise ConfigError(f"{path}:{reader.line_num}: empty or inverted box {cells}")
            entry.append((x1, y1, x2, y2))
    return boxes


def _read_voc(folder: Path, pairs: Sequence[tuple[str, str]]) -> dict[str, list[Box]]:
    """file -> boxes from Pascal VOC xml files; ``pairs`` are (annotation folder, image folder)."""
    boxes: dict[str, list[Box]] = {}
    for ann_dir, img_dir in pairs:
        for xml_path in sorted((folder / ann_dir).glob("*.xml")):
            try:
                tree = ET.parse(xml_path)
            except ET.ParseError as error:
                raise ConfigError(f"{xml_path}: malformed VOC xml: {error}") from None
            name = tree.findtext("filename") or xml_path.with_suffix(".jpg").name
            entry = boxes.setdefault(f"{img_dir}/{name.strip()}", [])
            for bnd in tree.iter("bndbox"):
                x1, y1, x2, y2 = (float(bnd.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
                if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
                    raise ConfigError(f"{xml_path}: bad bndbox {(x1, y1, x2, y2)}")
                entry.append((x1, y1, x2, y2))
    return boxes


def _annotations(folder: Path, csv_name: str, voc_pairs: Sequence[tuple[str, str]]) -> dict[str, list[Box]]:
    """The set's CSV when present (it is the README's reference), else its VOC xml files."""
    if (folder / csv_name).is_file():
        return _read_boxes_csv(folder / csv_name)
    boxes = _read_voc(folder, voc_pairs)
    if not boxes:
        raise ConfigError(f"{folder}: neither {csv_name} nor VOC annotations found")
    return boxes


def _scenes(folder: Path, source: str, boxes: dict[str, list[Box]], groups: dict[str, str] | None = None) -> list[SceneImage]:
    return [
        SceneImage(folder / name, tuple(boxes[name]), source, f"{source}:{(groups or {}).get(name, name)}")
        for name in sorted(boxes)
    ]


def read_duplicate_groups(path: Path) -> list[list[str]]:
    """Groups of byte-identical files (one group per line, space separated; '#' starts a comment)."""
    if not path.is_file():
        return []
    groups = []
    for line in path.read_text(encoding="utf-8").splitlines():
        members = line.split("#", 1)[0].split()
        if len(members) > 1:
            groups.append(sorted(members))
    return groups


def load_andrewmvd(root: Path | None = None, *, dedupe: bool = True) -> list[SceneImage]:
    """andrewmvd-car-plates scenes; with ``dedupe`` one per duplicate group: the copy with most boxes.

    Copies of one picture were boxed independently, so they disagree slightly; keeping one avoids
    weighting those pictures 2-4 times and makes val scores honest. Ties go to the first file by name.
    """
    folder = _set_dir(root, AM)
    boxes = _annotations(folder, "boxes.csv", [("train/annotations", "train/images"), ("val/annotations", "val/images")])
    group_of: dict[str, str] = {}
    for members in read_duplicate_groups(folder / "duplicates.txt"):
        present = [m for m in members if m in boxes]  # a removed file may still be listed
        for member in present:
            group_of[member] = present[0]
    scenes = _scenes(folder, AM, boxes, group_of)
    if not dedupe:
        return scenes
    best: dict[str, SceneImage] = {}
    for scene in scenes:  # sorted by file, so the strict '>' keeps the first of equals
        if scene.group not in best or len(scene.boxes) > len(best[scene.group].boxes):
            best[scene.group] = scene
    return sorted(best.values(), key=lambda s: s.path)


def load_tn(root: Path | None = None) -> list[SceneImage]:
    """tn-plate-detection scenes (one box each)."""
    folder = _set_dir(root, TN)
    return _scenes(folder, TN, _read_boxes_csv(folder / "boxes.csv"))


def load_es_uc3m(root: Path | None = None) -> list[SceneImage]:
    """es-uc3m-plate-detection scenes; names keep the split folder (``images/train/00001.jpg``), as file
    numbers restart at 00001 in each split."""
    folder = _set_dir(root, ES)
    return _scenes(folder, ES, _read_boxes_csv(folder / "boxes.csv"))


def load_fr(root: Path | None = None) -> list[SceneImage]:
    """fr-plate-scenes (the held-out European test scenes): labels.csv, else the VOC files."""
    folder = _set_dir(root, FR)
    return _scenes(folder, FR, _annotations(folder, "labels.csv", [("annotations", "images")]))


LOADERS = {AM: load_andrewmvd, TN: load_tn, ES: load_es_uc3m, FR: load_fr}


def load_scenes(root: Path | None = None) -> dict[str, list[SceneImage]]:
    """Every shared detector set, by source name."""
    root = root or datasets_root()
    return {name: loader(root) for name, loader in LOADERS.items()}


# ------------------------------------------------------------------------------------------ split
def group_split(group: str, val_fraction: float = VAL_FRACTION) -> Literal["train", "val"]:
    """The fixed split of a group id (see the module docstring)."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1]: {val_fraction}")
    digest = hashlib.sha1((DET_SPLIT_SALT + group).encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2.0**64 < val_fraction else "train"


def scene_split(scene: SceneImage, val_fraction: float = VAL_FRACTION) -> SceneSplit:
    """train, val or test for a real scene, by its source's rule."""
    rule = DET_SOURCES[scene.source].rule
    if rule == "test":
        return "test"
    if rule == "folder":
        parts = Path(scene.group.split(":", 1)[1]).parts  # images/<split>/<file>
        return "val" if len(parts) >= 2 and parts[-2] == "val" else "train"
    return group_split(scene.group, val_fraction)


def split_scenes(scenes: Sequence[SceneImage], val_fraction: float = VAL_FRACTION) -> dict[str, list[SceneImage]]:
    out: dict[str, list[SceneImage]] = {s: [] for s in SPLITS}
    for scene in scenes:
        out[scene_split(scene, val_fraction)].append(scene)
    return out


SPLIT_RULE = (
    f"real images only: {FR} -> test; {ES} -> its source folder (images/train, images/val = UC3M-LP test "
    f"split); {AM} and {TN} -> val iff int(sha1('{DET_SPLIT_SALT}' + group)[:8 bytes]) / 2**64 < "
    f"{VAL_FRACTION}, group = '<set>:<file>' or, for {AM} duplicate groups, '<set>:<first file of the group>'"
    "; synthetic and demo images -> train only, composites built from train-split scenes only"
)


# ---------------------------------------------------------------------------------- image helpers
def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def _region(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
    x2, y2 = min(math.ceil(box[2]), w), min(math.ceil(box[3]), h)
    return image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]


def _colour_cast(image: np.ndarray) -> np.ndarray:
    """Per-channel gain of the scene against grey (gray world), so a pasted plate takes the camera's cast."""
    means = image.reshape(-1, 3).astype(np.float64).mean(0) + 1.0
    return np.clip(means / means.mean(), 0.8, 1.25).astype(np.float32)


def _noise_sigma(image: np.ndarray) -> float:
    """Sensor noise estimate: robust spread of the fine residual (MAD), bounded."""
    gray = _luma(image).astype(np.float32)
    if min(gray.shape) < 5:
        return 1.0
    residual = gray - cv2.GaussianBlur(gray, (0, 0), 1.0)
    return float(np.clip(1.4826 * np.median(np.abs(residual)), 0.5, 6.0))


def _physical_width(layout: Layout) -> float:
    """Plate width in mm: how big it is next to the plate it replaces (most real plates are 520 mm)."""
    if layout.lines > 1:
        return 300.0
    return {"US": 305.0, "BR": 400.0}.get(layout.region, 520.0)


def _pick_layout(rng: np.random.Generator, two_line: float | None = None) -> Layout:
    """A layout by ``Layout.weight``; ``two_line`` forces that share of two-line layouts."""
    names = list(LAYOUTS)
    if two_line is not None:
        lines = 2 if rng.random() < two_line else 1
        names = [n for n in names if (LAYOUTS[n].lines > 1) == (lines > 1)]
    weights = np.array([LAYOUTS[n].weight for n in names], np.float64)
    return LAYOUTS[names[int(rng.choice(len(names), p=weights / weights.sum()))]]


def _render_for(layout: Layout, width: float, rng: np.random.Generator) -> np.ndarray:
    """A clean plate rendered a bit larger than ``width`` px, so the warp only ever shrinks it."""
    height = int(np.clip(round(width / layout.aspect * 1.6), 24, 110))
    return render_plate(random_text(layout, rng), layout, rng, height=height)


def plate_quad(
    center: Sequence[float], width: float, aspect: float, rng: np.random.Generator, *, yaw_sd: float = 12.0
) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of a ``width`` x ``width / aspect`` plate around ``center``, seen at a mild
    random angle (yaw, downward pitch, roll) through a pinhole camera. Float64, 4 x 2."""
    w, h = float(width), float(width) / aspect
    yaw = math.radians(float(np.clip(rng.normal(0.0, yaw_sd), -35, 35)))
    pitch = math.radians(float(np.clip(rng.normal(6.0, 8.0), -15, 25)))
    roll = math.radians(float(np.clip(rng.normal(0.0, 3.0), -9, 9)))
    cy_, sy_, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    rot = (np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]) @ np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
           @ np.array([[cy_, 0, sy_], [0, 1, 0], [-sy_, 0, cy_]]))
    corners = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]]) @ rot.T
    focal = w * rng.uniform(2.0, 8.0)
    projected = focal * corners[:, :2] / (corners[:, 2:3] + focal)
    return projected + np.asarray(center, np.float64)


def _shift_inside(quad: np.ndarray, width: int, height: int, margin: float = 1.0) -> np.ndarray:
    """``quad`` moved the least so it lies in the image (when it fits): a pasted plate is never cut."""
    lo, hi = quad.min(0), quad.max(0)
    dx = max(margin - lo[0], 0.0) - max(hi[0] - (width - margin), 0.0)
    dy = max(margin - lo[1], 0.0) - max(hi[1] - (height - margin), 0.0)
    return quad + [dx, dy]


def _quad_box(quad: np.ndarray, width: int, height: int) -> Box | None:
    lo, hi = quad.min(0), quad.max(0)
    return clip_box((float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])), width, height)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _overlaps(box: Sequence[float], others: Sequence[Sequence[float]], limit: float = 0.0) -> bool:
    return any(_iou(box, o) > limit for o in others)


# ----------------------------------------------------------------------------------- mask & paste
def mask_plates(image: np.ndarray, boxes: Sequence[Box], rng: np.random.Generator, *, grow: float = 0.15) -> np.ndarray:
    """A copy of ``image`` with every box (grown a little, to take the plate's frame too) inpainted away.

    Inpainting runs on a downscaled neighbourhood (the plate at most ~40 px wide): it is fast, and the
    smooth fill a large-scale inpaint gives is what a plain plate holder looks like; the scene's own
    noise is added back so the patch has the same grain.
    """
    out = image.copy()
    h, w = image.shape[:2]
    sigma = _noise_sigma(image)
    for box in boxes:
        bw, bh = box[2] - box[0], box[3] - box[1]
        gx, gy = max(2.0, grow * bw), max(2.0, 2.0 * grow * bh)
        m = (box[0] - gx, box[1] - gy, box[2] + gx, box[3] + gy)
        mx1, my1 = max(int(m[0]), 0), max(int(m[1]), 0)
        mx2, my2 = min(math.ceil(m[2]), w), min(math.ceil(m[3]), h)
        if mx2 <= mx1 or my2 <= my1:
            continue
        cx, cy = 0.6 * (mx2 - mx1) + 4, 1.0 * (my2 - my1) + 4  # context around the hole
        rx1, ry1, rx2, ry2 = max(int(mx1 - cx), 0), max(int(my1 - cy), 0), min(int(mx2 + cx), w), min(int(my2 + cy), h)
        roi = out[ry1:ry2, rx1:rx2]
        hole = np.zeros(roi.shape[:2], np.uint8)
        hole[my1 - ry1 : my2 - ry1, mx1 - rx1 : mx2 - rx1] = 255
        factor = min(1.0, 40.0 / max(mx2 - mx1, 1))
        size = (max(round(roi.shape[1] * factor), 3), max(round(roi.shape[0] * factor), 3))
        small = cv2.resize(roi, size, interpolation=cv2.INTER_AREA)
        small_hole = cv2.dilate((cv2.resize(hole, size, interpolation=cv2.INTER_AREA) > 0).astype(np.uint8) * 255,
                                np.ones((3, 3), np.uint8))
        filled = cv2.inpaint(small, small_hole, 3, cv2.INPAINT_TELEA)
        filled = cv2.resize(filled, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        filled += rng.normal(0.0, sigma, filled.shape).astype(np.float32)
        # A feathered edge: a hard rectangle of smooth fill would itself be a box-shaped cue.
        soft = cv2.GaussianBlur(hole.astype(np.float32) / 255.0, (0, 0), max(1.0, 0.04 * (mx2 - mx1)))
        soft = np.maximum(soft, hole.astype(np.float32) / 255.0)[..., None]
        roi[:] = np.clip(np.rint(roi * (1.0 - soft) + filled * soft), 0, 255).astype(np.uint8)
    return out


def paste_plate(
    image: np.ndarray,
    plate: np.ndarray,
    quad: np.ndarray,
    rng: np.random.Generator,
    *,
    luma: float,
    contrast: float | None = None,
    cast: np.ndarray | None = None,
    blur: float = 0.0,
    noise: float = 0.0,
) -> Box | None:
    """Warp ``plate`` (BGR) onto ``quad`` of ``image`` in place, lit like the scene; returns its box.

    The plate's grey level is moved to mean ``luma`` with standard deviation ``contrast`` (never more
    contrast than rendered), then tinted by ``cast`` (per-channel gains); ``blur`` (Gaussian sigma, px) and
    ``noise`` (sigma, grey levels) match the scene's optics and sensor. None when the quad misses the image.
    """
    h, w = image.shape[:2]
    p = plate.astype(np.float32)
    gray = _luma(plate).astype(np.float32)
    gain = 1.0 if contrast is None else float(np.clip(contrast / max(float(gray.std()), 1.0), 0.3, 1.0))
    p = (p - float(gray.mean())) * gain + luma
    if cast is not None:
        p *= cast[None, None, :]
    p = np.clip(p, 0, 255)
    # Shrink with area averaging to about the final size first: a perspective warp alone would alias.
    # float(): on numpy 1.x round() of a numpy scalar is not an int
    tw = max(round(float(max(np.linalg.norm(quad[1] - quad[0]), np.linalg.norm(quad[2] - quad[3])))), 2)
    th = max(round(float(max(np.linalg.norm(quad[3] - quad[0]), np.linalg.norm(quad[2] - quad[1])))), 2)
    if tw < p.shape[1]:
        p = cv2.resize(p, (tw, min(th, p.shape[0])), interpolation=cv2.INTER_AREA)
    ph, pw = p.shape[:2]
    pad = math.ceil(2 * blur) + 2
    x1, y1 = max(math.floor(quad[:, 0].min()) - pad, 0), max(math.floor(quad[:, 1].min()) - pad, 0)
    x2, y2 = min(math.ceil(quad[:, 0].max()) + pad, w), min(math.ceil(quad[:, 1].max()) + pad, h)
    if x2 <= x1 or y2 <= y1:
        return None
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    matrix = cv2.getPerspectiveTransform(src, (quad - [x1, y1]).astype(np.float32))
    size = (x2 - x1, y2 - y1)
    warped = cv2.warpPerspective(p, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpPerspective(np.ones((ph, pw), np.float32), matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    roi = image[y1:y2, x1:x2].astype(np.float32)
    out = roi * (1.0 - alpha) + warped * alpha
    if blur > 0.15:  # blur plate and its rim together, so the edge is as soft as the scene's edges
        weight = np.clip(cv2.GaussianBlur(alpha[..., 0], (0, 0), blur + 1.0) * 2.0, 0, 1)[..., None]
        out = out * (1.0 - weight) + cv2.GaussianBlur(out, (0, 0), blur) * weight
    if noise > 0:
        out += rng.normal(0.0, noise, out.shape).astype(np.float32) * alpha
    image[y1:y2, x1:x2] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return _quad_box(quad, w, h)


def paste_tile(
    image: np.ndarray, rng: np.random.Generator, center: Sequence[float], plate_width: float
) -> Box | None:
    """Paste a ``synth_sample`` car-rear tile (plate, its surroundings, camera effects) with its plate
    ``plate_width`` px wide, centred near ``center``, edges feathered outside the plate; returns the box."""
    h, w = image.shape[:2]
    sample = synth_sample(rng)
    sx1, sy1, sx2, sy2 = sample.box
    factor = float(plate_width) / max(sx2 - sx1, 1.0)
    tile_h, tile_w = sample.image.shape[:2]
    size = (max(round(tile_w * factor), 2), max(round(tile_h * factor), 2))
    tile = cv2.resize(sample.image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
    fx, fy = size[0] / tile_w, size[1] / tile_h
    bx1, by1, bx2, by2 = sx1 * fx, sy1 * fy, sx2 * fx, sy2 * fy
    # The tile's own lighting, pulled half way towards the background's, so it does not glow or sink.
    bg_mean = float(_luma(image).mean()) + 1.0
    tile = np.clip(tile.astype(np.float32) * np.clip((bg_mean / (float(_luma(tile).mean()) + 1.0)) ** 0.5, 0.6, 1.4), 0, 255)
    # Place so the plate box is in the image, then feather inside the margin around the plate.
    ox = float(np.clip(center[0] - (bx1 + bx2) / 2, 1 - bx1, w - 1 - bx2))
    oy = float(np.clip(center[1] - (by1 + by2) / 2, 1 - by1, h - 1 - by2))
    margin = max(min(bx1, by1, size[0] - bx2, size[1] - by2) * 0.9, 1.0)
    ys, xs = np.arange(size[1], dtype=np.float32), np.arange(size[0], dtype=np.float32)
    edge = np.minimum(np.minimum(ys, size[1] - 1 - ys)[:, None], np.minimum(xs, size[0] - 1 - xs)[None, :])
    alpha = np.clip(edge / margin, 0, 1)[..., None]
    ix, iy = round(ox), round(oy)
    x1, y1, x2, y2 = max(ix, 0), max(iy, 0), min(ix + size[0], w), min(iy + size[1], h)
    if x2 <= x1 or y2 <= y1:
        return None
    t = tile[y1 - iy : y2 - iy, x1 - ix : x2 - ix]
    a = alpha[y1 - iy : y2 - iy, x1 - ix : x2 - ix]
    roi = image[y1:y2, x1:x2].astype(np.float32)
    image[y1:y2, x1:x2] = np.clip(np.rint(roi * (1 - a) + t * a), 0, 255).astype(np.uint8)
    return clip_box((bx1 + ix, by1 + iy, bx2 + ix, by2 + iy), w, h)


# ------------------------------------------------------------------------------ (a) masked scenes
def masked_scene_composite(
    image: np.ndarray, boxes: Sequence[Box], rng: np.random.Generator, *, empty_rate: float = 0.08
) -> tuple[np.ndarray, list[Box]]:
    """A real scene with its labelled plates replaced by synthetic ones; returns (image, new boxes).

    Each new plate sits near the old one (``jitter_box``), sized by the two plates' physical widths, lit
    with the old plate's brightness and contrast and the scene's colour cast, softened and grained like
    the scene. A plate that would overlap an earlier new one is left out.
    """
    h, w = image.shape[:2]
    cast, noise = _colour_cast(image), _noise_sigma(image)
    looks = [(float(_luma(_region(image, b)).mean()), float(_luma(_region(image, b)).std())) for b in boxes]
    out = mask_plates(image, boxes, rng)
    placed: list[Box] = []
    for box, (mean, std) in zip(boxes, looks):
        if rng.random() < empty_rate:
            continue
        # A squarish old plate is a two-line or US-size one (~300 mm wide), else a ~520 mm one: that gives
        # the scene's mm-to-px scale, and a squarish slot mostly gets a squarish plate again.
        squarish = (box[2] - box[0]) < 2.6 * (box[3] - box[1])
        layout = _pick_layout(rng, two_line=0.6 if squarish else None)
        moved = jitter_box(box, rng, shift=0.12, scale=0.1)
        width = max((moved[2] - moved[0]) * _physical_width(layout) / (300.0 if squarish else 520.0), 6.0)
        plate = _render_for(layout, width, rng)
        quad = plate_quad(((moved[0] + moved[2]) / 2, (moved[1] + moved[3]) / 2), width,
                          plate.shape[1] / plate.shape[0], rng)
        quad = _shift_inside(quad, w, h)
        new_box = _quad_box(quad, w, h)
        if new_box is None or _overlaps(new_box, placed, 0.1):
            continue
        blur = float(rng.uniform(0.2, 0.8) * max(1.0, width / 120.0) ** 0.5)
        luma = float(np.clip(mean * rng.uniform(0.9, 1.12), 25, 245))
        pasted = paste_plate(out, plate, quad, rng, luma=luma, contrast=max(std, 12.0) * rng.uniform(0.85, 1.15),
                             cast=cast, blur=blur, noise=noise)
        if pasted is not None:
            placed.append(pasted)
    return out, placed


# ------------------------------------------------------------------------- (b) other backgrounds
_SIZES = ((640, 480), (640, 360), (480, 640), (640, 640), (640, 427), (512, 384))
_CAR_BODY = ((232, 232, 230), (26, 26, 28), (168, 170, 174), (98, 100, 104), (40, 30, 150), (140, 72, 40),
             (46, 70, 32), (150, 186, 200), (24, 186, 236), (40, 60, 92), (30, 92, 210), (200, 200, 205))
_WORDS = ("SALE", "PARKING", "EXIT", "OPEN 24H", "TAXI", "PIZZA", "BUS", "STOP", "P", "30", "50", "HOTEL",
          "PHARMACIE", "BAR", "AUTO", "BANK", "02 41 88 13", "SERVICE", "ENTRY", "No 12", "KM 45", "TOTAL",
          "ONE WAY", "GARAGE", "POLICE", "SCHOOL", "3.99", "LIDL", "CAFE", "M", "A7", "ZONE 30", "1200")


def _smooth_noise(rng: np.random.Generator, width: int, height: int, octaves: int = 5) -> np.ndarray:
    """Fractal-ish value noise in 0..1 (cheap: a few upsampled random grids)."""
    field = np.zeros((height, width), np.float32)
    amp = 1.0
    for k in range(octaves):
        cells = 2 ** (k + 1)
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        field += cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) * amp
        amp *= 0.55
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def _random_colour(rng: np.random.Generator, low: int = 20, high: int = 235) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, 3))  # type: ignore[return-value]


def _clutter(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Shapes and non-plate text: windows, poles, signs, shop names, the detector's hard negatives."""
    h, w = img.shape[:2]
    for _ in range(count):
        kind = rng.choice(["rect", "line", "circle", "text", "sign"], p=[0.3, 0.2, 0.1, 0.25, 0.15])
        colour = _random_colour(rng)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == "rect":
            rw, rh = int(rng.integers(2, max(w // 3, 3))), int(rng.integers(2, max(h // 3, 3)))
            cv2.rectangle(img, (x, y), (x + rw, y + rh), colour, -1 if rng.random() < 0.6 else int(rng.integers(1, 4)))
        elif kind == "line":
            cv2.line(img, (x, y), (int(rng.integers(0, w)), int(rng.integers(0, h))), colour, int(rng.integers(1, 6)), cv2.LINE_AA)
        elif kind == "circle":
            cv2.circle(img, (x, y), int(rng.integers(4, max(h // 6, 5))), colour, -1, cv2.LINE_AA)
        else:
            word = _WORDS[int(rng.integers(len(_WORDS)))]
            scale = float(rng.uniform(0.4, 2.2))
            thickness = max(1, int(scale * rng.uniform(1.0, 3.0)))
            font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX,
                                   cv2.FONT_HERSHEY_COMPLEX]))
            if kind == "sign":  # text on a board: the closest thing to a plate that is not one
                (tw, th), _ = cv2.getTextSize(word, font, scale, thickness)
                pad = int(th * rng.uniform(0.3, 0.8))
                cv2.rectangle(img, (x - pad, y - th - pad), (x + tw + pad, y + pad), _random_colour(rng), -1)
            cv2.putText(img, word, (x, y), font, scale, colour, thickness, cv2.LINE_AA)


def _texture_scene(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    field = _smooth_noise(rng, width, height)[..., None]
    c1, c2 = np.array(_random_colour(rng), np.float32), np.array(_random_colour(rng), np.float32)
    img = np.clip(c1 + (c2 - c1) * field, 0, 255).astype(np.uint8)
    _clutter(img, rng, int(rng.integers(3, 14)))
    return img


def _draw_car(img: np.ndarray, rng: np.random.Generator, cx: float, yb: float, cw: float) -> tuple[float, float]:
    """A car seen from behind (shadow, tyres, body, cabin, rear window, lights, bumper); returns the
    plate centre."""
    def poly(points: Sequence[tuple[float, float]], colour: Sequence[float]) -> None:
        pts = np.round(np.array([[cx + px * cw, yb - py * cw] for px, py in points]) * 16).astype(np.int32)
        cv2.fillPoly(img, [pts], tuple(float(c) for c in colour), cv2.LINE_AA, shift=4)

    body = np.array(_CAR_BODY[int(rng.integers(len(_CAR_BODY)))], np.float32) * rng.uniform(0.8, 1.15)
    body = np.clip(body, 0, 255)
    shadow = (0.58, -0.03), (-0.58, -0.03), (-0.55, 0.04), (0.55, 0.04)
    poly(shadow, (20, 20, 22))
    for side in (-1, 1):
        poly([(side * 0.46, 0.0), (side * 0.32, 0.0), (side * 0.32, 0.12), (side * 0.46, 0.12)], (24, 24, 26))
    poly([(-0.42, 0.6), (0.42, 0.6), (0.34, 0.86), (-0.34, 0.86)], body * 0.92)  # cabin
    poly([(-0.37, 0.62), (0.37, 0.62), (0.31, 0.82), (-0.31, 0.82)], np.array((70, 62, 58)) * rng.uniform(0.6, 1.3))
    poly([(-0.5, 0.08), (0.5, 0.08), (0.5, 0.56), (0.44, 0.62), (-0.44, 0.62), (-0.5, 0.56)], body)  # body
    for side in (-1, 1):  # tail lights
        poly([(side * 0.47, 0.4), (side * 0.3, 0.4), (side * 0.3, 0.5), (side * 0.47, 0.5)], (30, 30, 190))
    bumper = body * 0.55 if rng.random() < 0.5 else np.array((30, 30, 32), np.float32)
    poly([(-0.5, 0.08), (0.5, 0.08), (0.5, 0.18), (-0.5, 0.18)], bumper)
    poly([(-0.17, 0.2), (0.17, 0.2), (0.17, 0.34), (-0.17, 0.34)], body * 0.75)  # plate recess
    return cx, yb - 0.27 * cw


def _road_composite(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, list[Box]]:
    """A street seen from a pole or dashboard: sky or facades, asphalt with lane marks converging to a
    vanishing point, 1-4 cars from behind, far ones first, most with a plate; one camera pass at the end.

    Each plate is pasted right after its car, and a nearer car may not cover an earlier plate (it is
    moved or left out), so every visible plate is labelled and every label is fully visible.
    """
    w, h = width, height
    horizon = int(h * rng.uniform(0.22, 0.45))
    img = np.empty((h, w, 3), np.uint8)
    top = np.array(_random_colour(rng, 90, 240), np.float32)
    ramp = np.linspace(0.75, 1.1, max(horizon, 1), dtype=np.float32)[:, None, None]
    img[:horizon] = np.clip(top * ramp, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:  # facades, signs and windows instead of open sky
        _clutter(img[:horizon], rng, int(rng.integers(4, 12)))
    grey = rng.uniform(55, 125)
    road = _smooth_noise(rng, w, h - horizon, 4)[..., None] * 25 + np.linspace(0.8, 1.15, h - horizon)[:, None, None] * grey
    img[horizon:] = np.clip(road * rng.uniform(0.95, 1.05, 3), 0, 255).astype(np.uint8)
    vx = w * rng.uniform(0.3, 0.7)
    spacing = w * rng.uniform(0.35, 0.6)
    paint = (230, 230, 230) if rng.random() < 0.8 else (40, 200, 230)
    for k in range(-3, 4):
        bottom = vx + k * spacing
        steps = 14
        for i in range(steps):
            if k != 0 and i % 2:  # dashed lane lines, solid centre
                continue
            t0, t1 = (i / steps) ** 1.6, ((i + 1) / steps) ** 1.6
            p0 = (vx + (bottom - vx) * t0, horizon + (h - horizon) * t0)
            p1 = (vx + (bottom - vx) * t1, horizon + (h - horizon) * t1)
            cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), paint, max(1, int(3 * t1)), cv2.LINE_AA)
    boxes: list[Box] = []
    for yb in np.sort(rng.uniform(horizon + 0.25 * (h - horizon), h * 1.02, int(rng.integers(1, 5)))):
        s = (yb - horizon) / (h - horizon)
        cw = s * w * rng.uniform(0.28, 0.5)
        for _attempt in range(6):
            cx = float(np.clip(vx + rng.uniform(-1, 1) * spacing * 1.2 * s, cw * 0.3, w - cw * 0.3))
            car = (cx - 0.6 * cw, yb - 0.9 * cw, cx + 0.6 * cw, yb + 0.05 * cw)
            if not _overlaps(car, boxes):
                break
        else:
            continue
        px, py = _draw_car(img, rng, cx, float(yb), cw)
        if rng.random() < 0.15:  # a car without a plate: the recess alone is not a plate
            continue
        layout = _pick_layout(rng)
        plate_w = cw * 0.29 * _physical_width(layout) / 520.0 * rng.uniform(0.9, 1.1)
        if plate_w < 6:
            continue
        plate = _render_for(layout, plate_w, rng)
        quad = plate_quad((px, py), plate_w, plate.shape[1] / plate.shape[0], rng, yaw_sd=6.0)
        box = _quad_box(quad, w, h)
        if box is None or box[2] - box[0] < 0.8 * plate_w or box[3] - box[1] < 3:
            continue  # cut by the frame edge: neither drawn nor labelled
        pasted = paste_plate(img, plate, quad, rng, luma=float(rng.uniform(140, 225)),
                             contrast=float(rng.uniform(40, 85)), blur=float(rng.uniform(0.0, 0.5)))
        if pasted is not None:
            boxes.append(pasted)
    return _camera_pass(img, rng), boxes


def _real_background(
    rng: np.random.Generator, scenes: Sequence[SceneImage], imgsz: int
) -> tuple[np.ndarray, float] | None:
    """A plate-free region of a real train scene (plates inpainted, random crop, maybe mirrored) at most
    ``imgsz`` on the long side, and the typical plate width there; None when the image is unreadable."""
    scene = scenes[int(rng.integers(len(scenes)))]
    try:
        image = read_image(scene.path)
    except ConfigError as error:
        log.warning("skipping unreadable background %s", error)
        return None
    image = mask_plates(image, scene.boxes, rng)
    h, w = image.shape[:2]
    frac = rng.uniform(0.45, 1.0)
    cw, ch = max(int(w * frac), 16), max(int(h * frac), 16)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image[y : y + ch, x : x + cw]
    if rng.random() < 0.5:  # mirrored before any plate goes on, so plate text is never mirrored
        image = image[:, ::-1]
    widths = [b[2] - b[0] for b in scene.boxes] or [0.12 * w]
    image, _ = fit_long_side(np.ascontiguousarray(image), [], imgsz)
    return image, float(np.median(widths)) * image.shape[1] / cw


def _camera_pass(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Whole-image lighting, blur and noise, so pasted plates and background share one camera."""
    f = img.astype(np.float32)
    if rng.random() < 0.2:  # dusk or night
        f *= rng.uniform(0.3, 0.6)
    else:
        f *= rng.uniform(0.8, 1.2)
    f *= rng.uniform(0.92, 1.08, 3).astype(np.float32)
    sigma = rng.uniform(0.0, 1.0)
    if sigma > 0.3:
        f = cv2.GaussianBlur(f, (0, 0), sigma)
    f += rng.normal(0.0, rng.uniform(0.5, 5.0), f.shape).astype(np.float32)
    return np.clip(f, 0, 255).astype(np.uint8)


def background_composite(
    rng: np.random.Generator, scenes: Sequence[SceneImage], *, imgsz: int = 640
) -> tuple[np.ndarray, list[Box]] | None:
    """Synthetic plates on a procedural road scene, a random texture or a plate-free real region.

    Road scenes get a plate on most cars (lit as a bright plate, then the whole frame goes through one
    camera pass); textures and real regions get 1-4 plates, pasted directly or as ``synth_sample``
    car-rear tiles, sized log-uniformly (textures) or like the real scene's plates. None when the real
    background cannot be read.
    """
    kind = rng.choice(["road", "texture", "real"], p=[0.4, 0.3, 0.3]) if scenes else rng.choice(["road", "texture"])
    w, h = _SIZES[int(rng.integers(len(_SIZES)))]
    scale = imgsz / 640.0
    w, h = max(int(w * scale), 32), max(int(h * scale), 32)
    boxes: list[Box] = []
    if kind == "road":
        return _road_composite(rng, w, h)
    if kind == "texture":
        img, typical = _texture_scene(rng, w, h), None
    else:
        found = _real_background(rng, scenes, imgsz)
        if found is None:
            return None
        img, typical = found
        h, w = img.shape[:2]
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(8):
            if typical is None:
                width = math.exp(rng.uniform(math.log(0.025), math.log(0.3))) * max(w, h)
            else:
                width = float(np.clip(typical * rng.uniform(0.6, 1.6), 10.0, 0.35 * w))
            center = (rng.uniform(0.08, 0.92) * w, rng.uniform(0.2 if typical is None else 0.35, 0.95) * h)
            guess = (center[0] - 0.6 * width, center[1] - 0.4 * width, center[0] + 0.6 * width, center[1] + 0.4 * width)
            if not _overlaps(guess, boxes):
                break
        else:
            continue
        if rng.random() < 0.25:
            box = paste_tile(img, rng, center, width)
        else:
            layout = _pick_layout(rng)
            plate = _render_for(layout, width, rng)
            quad = _shift_inside(plate_quad(center, width, plate.shape[1] / plate.shape[0], rng), w, h)
            local = float(_luma(_region(img, _quad_box(quad, w, h) or (0, 0, w, h))).mean())
            box = paste_plate(img, plate, quad, rng, luma=float(np.clip(local * rng.uniform(0.8, 1.5) + rng.uniform(0, 60), 60, 235)),
                              contrast=float(rng.uniform(30, 80)), cast=rng.uniform(0.93, 1.07, 3).astype(np.float32),
                              blur=float(rng.uniform(0.2, 0.8)), noise=_noise_sigma(img) if typical else float(rng.uniform(0.5, 3)))
        if box is not None and not _overlaps(box, boxes):
            boxes.append(box)
    if kind == "texture":
        img = _camera_pass(img, rng)
    return img, boxes


# ------------------------------------------------------------------------------- (c) demo frames
def demo_frames(clip: DemoClip, every: int) -> Iterator[tuple[int, np.ndarray, list[Box]]]:
    """(frame index, BGR frame, plate boxes) for every ``every``-th frame of the demo clip, including
    frames without a visible plate (negatives). The clip's boxes have inclusive x2/y2; ours are exclusive."""
    if every <= 0:
        return
    capture = cv2.VideoCapture(str(clip.path))
    if not capture.isOpened():
        raise ConfigError(f"cannot open the demo clip {clip.path}")
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % every == 0:
                yield index, frame, [(b[0], b[1], b[2] + 1.0, b[3] + 1.0) for _, b in clip.plates_in_frame(index)]
            index += 1
    finally:
        capture.release()


# ------------------------------------------------------------------------------------- writing
class _Tally:
    """Counts and box-width bins per source and split, as they go into the manifest."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: {"images": 0, "boxes": 0, "empty": 0}))
        self.bins: dict[str, dict[str, dict[str, dict[str, int]]]] = {
            k: defaultdict(lambda: defaultdict(lambda: {n: 0 for n, _, _ in WIDTH_BINS})) for k in ("written", "original", "at_imgsz")
        }
        self.dropped: dict[str, int] = defaultdict(int)
        self.clipped: dict[str, int] = defaultdict(int)
        self.unreadable: dict[str, int] = defaultdict(int)
        self.names: set[str] = set()

    def add(self, source: str, split: str, widths: dict[str, list[float]], dropped: int, clipped: int) -> None:
        entry = self.counts[source][split]
        entry["images"] += 1
        entry["boxes"] += len(widths["written"])
        entry["empty"] += not widths["written"]
        self.dropped[source] += dropped
        self.clipped[source] += clipped
        for kind, values in widths.items():
            for value in values:
                self.bins[kind][source][split][width_bin(value)] += 1


def _encode_jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def _stem(source: str, name: str, tally: _Tally) -> str:
    """A unique, shell- and YAML-safe file stem starting with the source tag."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{SOURCE_TAGS[source]}_{name}").strip("_")
    unique, k = stem, 1
    while unique in tally.names:
        k += 1
        unique = f"{stem}_{k}"
    tally.names.add(unique)
    return unique


def _write_sample(
    root: Path, split: str, source: str, name: str, image: np.ndarray, boxes: Sequence[Box], imgsz: int, tally: _Tally
) -> None:
    h0, w0 = image.shape[:2]
    original, outside, clipped = sanitize_boxes(boxes, w0, h0, min_px=1e-6)
    resized, scaled = fit_long_side(image, original, imgsz)
    h, w = resized.shape[:2]
    to_imgsz = imgsz / max(h, w)  # ultralytics scales the long side to imgsz, up as well as down
    kept: list[Box] = []
    widths: dict[str, list[float]] = {"written": [], "original": [], "at_imgsz": []}
    for before, after in zip(original, scaled):
        if after[2] - after[0] < MIN_BOX_PX or after[3] - after[1] < MIN_BOX_PX:
            continue
        kept.append(after)
        widths["written"].append(after[2] - after[0])
        widths["original"].append(before[2] - before[0])
        widths["at_imgsz"].append((after[2] - after[0]) * to_imgsz)
    stem = _stem(source, name, tally)
    (root / "images" / split / f"{stem}.jpg").write_bytes(_encode_jpeg(resized))
    lines = [yolo_line(b, w, h) for b in kept]
    (root / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tally.add(source, split, widths, outside + len(original) - len(kept), clipped)


def _data_yaml(root: Path) -> str:
    # json.dumps gives a valid YAML double-quoted scalar for any path (spaces, colons, '#').
    names = "\n".join(f"  {k}: {v}" for k, v in CLASS_NAMES.items())
    return (
        f"# anpr-edge plate detector data, written by anpr_edge.train.det_data (version {VERSION})\n"
        f"path: {json.dumps(str(root))}\ntrain: images/train\nval: images/val\ntest: images/test\n"
        f"nc: {len(CLASS_NAMES)}\nnames:\n{names}\n"
    )


def _fingerprint(scenes: dict[str, list[SceneImage]], root: Path, clip: DemoClip | None) -> str:
    """A hash of what goes in: every scene's file name, size and boxes, and the demo clip's identity, so
    a cached dataset is rebuilt when the shared data or the demo clip change."""
    digest = hashlib.sha1()
    for source in sorted(scenes):
        for scene in scenes[source]:
            try:
                size = scene.path.stat().st_size
            except OSError:
                size = -1
            rel = os.path.relpath(scene.path, root)
            digest.update(f"{source}|{scene.group}|{rel}|{size}|{scene.boxes}\n".encode())
    if clip is not None:
        digest.update(f"demo|{clip.path.name}|{clip.frames}|{clip.width}x{clip.height}|{clip.plates}".encode())
    return digest.hexdigest()


def _finish_manifest(tally: _Tally, params: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    counts = {src: {sp: dict(v) for sp, v in sorted(d.items())} for src, d in sorted(tally.counts.items())}
    totals = {sp: {"images": 0, "boxes": 0, "empty": 0} for sp in SPLITS}
    for per_split in counts.values():
        for sp, v in per_split.items():
            for key in totals[sp]:
                totals[sp][key] += v[key]
    by_split: dict[str, dict[str, dict[str, int]]] = {}
    for kind, per_source in tally.bins.items():
        by_split[kind] = {sp: {n: 0 for n, _, _ in WIDTH_BINS} for sp in SPLITS}
        for per in per_source.values():
            for sp, bins in per.items():
                for n, v in bins.items():
                    by_split[kind][sp][n] += v
    return {
        "version": VERSION,
        "params": params,
        "split_rule": SPLIT_RULE,
        "val_fraction": VAL_FRACTION,
        "counts": counts,
        "totals": totals,
        "box_width_bins": by_split,
        "box_width_bins_by_source": {
            kind: {src: {sp: dict(b) for sp, b in per.items()} for src, per in sorted(per_source.items())}
            for kind, per_source in tally.bins.items()
        },
        "box_width_bins_note": "plate box width in px: 'written' at the stored size, 'original' in the source "
        "image (for composites: the canvas they were drawn on), 'at_imgsz' after ultralytics scales the long side "
        "to imgsz (it enlarges small images such as es-uc3m's 320 px ones)",
        "dropped_small_boxes": dict(sorted(tally.dropped.items())),
        "clipped_boxes": dict(sorted(tally.clipped.items())),
        "unreadable_images": dict(sorted(tally.unreadable.items())),
        "min_box_px": MIN_BOX_PX,
        "jpeg_quality": JPEG_QUALITY,
        **extra,
    }


def _prepared(root: Path, manifest: dict[str, Any], reused: bool) -> PreparedDataset:
    return PreparedDataset(
        root=root,
        data_yaml=root / "data.yaml",
        manifest_path=root / "manifest.json",
        counts=manifest["counts"],
        totals=manifest["totals"],
        manifest=manifest,
        reused=reused,
    )


def _existing(root: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("params") == params and (root / "data.yaml").is_file():
        return manifest
    return None


def default_out_dir(imgsz: int = 640, seed: int = 0, synthetic: int = 2000) -> Path:
    return paths.cache_dir() / f"det-data-v{VERSION}-{imgsz}-s{seed}-n{synthetic}"


def prepare_detector_dataset(
    out_dir: Path | None = None,
    *,
    imgsz: int = 640,
    synthetic: int = 2000,
    demo_every: int = 10,
    seed: int = 0,
    progress: bool = True,
    demo_clip: DemoClip | None = None,
) -> PreparedDataset:
    """Write (or reuse) the detector's ultralytics dataset; see the module docstring for what goes in.

    ``synthetic`` composites are split evenly between masked real scenes and other backgrounds;
    ``demo_every`` = 0 leaves the demo clip out (``demo_clip`` defaults to ``default_demo_clip()``).
    When ``out_dir`` already holds a dataset with the same parameters and input data it is returned
    as is (``reused``); otherwise everything is built in a temporary sibling folder that replaces
    ``out_dir`` only when complete. A folder that is not a prepared dataset is never overwritten.
    """
    if imgsz < 32:
        raise ConfigError(f"imgsz must be at least 32: {imgsz}")
    if synthetic < 0 or demo_every < 0:
        raise ConfigError(f"synthetic and demo_every must be >= 0: {synthetic}, {demo_every}")
    root = datasets_root()
    scenes = load_scenes(root)
    clip = (demo_clip or default_demo_clip()) if demo_every > 0 else None
    params = {"version": VERSION, "imgsz": imgsz, "synthetic": synthetic, "demo_every": demo_every, "seed": seed,
              "val_fraction": VAL_FRACTION, "data": _fingerprint(scenes, root, clip)}
    out = Path(out_dir) if out_dir is not None else default_out_dir(imgsz, seed, synthetic)
    out = out.expanduser().resolve()
    if (manifest := _existing(out, params)) is not None:
        return _prepared(out, manifest, reused=True)
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise ConfigError(f"{out} exists and is not a prepared detector dataset; choose an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        manifest = _build(tmp, out, root, scenes, clip, params, imgsz=imgsz, synthetic=synthetic, demo_every=demo_every,
                          seed=seed, progress=progress, started=started)
        if (ready := _existing(out, params)) is not None:  # a concurrent run finished first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
            return _prepared(out, ready, reused=True)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _prepared(out, manifest, reused=False)


def _build(
    tmp: Path,
    final: Path,
    data_root: Path,
    scenes: dict[str, list[SceneImage]],
    clip: DemoClip | None,
    params: dict[str, Any],
    *,
    imgsz: int,
    synthetic: int,
    demo_every: int,
    seed: int,
    progress: bool,
    started: float,
) -> dict[str, Any]:
    for kind in ("images", "labels"):
        for split in SPLITS:
            (tmp / kind / split).mkdir(parents=True)
    tally = _Tally()
    split_of_scene = {id(s): scene_split(s) for ss in scenes.values() for s in ss}
    unreadable: set[Path] = set()
    n_masked = synthetic // 2
    n_background = synthetic - n_masked
    n_demo = (clip.frames + demo_every - 1) // demo_every if clip is not None else 0
    n_real = sum(len(v) for v in scenes.values())
    bar = tqdm(total=n_real + synthetic + n_demo, desc="detector data", unit="img", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        for source, items in scenes.items():
            bar.set_postfix_str(source)
            for scene in items:
                bar.update()
                try:
                    image = read_image(scene.path)
                except ConfigError as error:
                    log.warning("skipping unreadable image: %s", error)
                    tally.unreadable[source] += 1
                    unreadable.add(scene.path)
                    continue
                rel = Path(os.path.relpath(scene.path, data_root / source)).with_suffix("")
                name = "_".join(part for part in rel.parts if part != "images")
                _write_sample(tmp, split_of_scene[id(scene)], source, name, image, scene.boxes, imgsz, tally)
        # Composites draw from the train split only (no val pixel is ever trained on), and only from
        # scenes that decoded above, so every requested composite is made.
        train_scenes = [s for ss in scenes.values() for s in ss
                        if split_of_scene[id(s)] == "train" and s.path not in unreadable]
        bar.set_postfix_str(SYN_MASKED)
        for i in range(n_masked if train_scenes else 0):
            bar.update()
            rng = np.random.default_rng([seed, 1, i])
            scene = train_scenes[int(rng.integers(len(train_scenes)))]
            try:
                image = read_image(scene.path)
            except ConfigError as error:  # changed since the real pass read it
                log.warning("skipping unreadable image: %s", error)
                tally.unreadable[SYN_MASKED] += 1
                continue
            composite, boxes = masked_scene_composite(image, scene.boxes, rng)
            _write_sample(tmp, "train", SYN_MASKED, f"{i:05d}", composite, boxes, imgsz, tally)
        bar.set_postfix_str(SYN_BACKGROUND)
        for i in range(n_background):
            bar.update()
            rng = np.random.default_rng([seed, 2, i])
            made = background_composite(rng, train_scenes, imgsz=imgsz)
            if made is None:
                tally.unreadable[SYN_BACKGROUND] += 1
                continue
            _write_sample(tmp, "train", SYN_BACKGROUND, f"{i:05d}", made[0], made[1], imgsz, tally)
        if clip is not None:
            bar.set_postfix_str(DEMO)
            for index, frame, boxes in demo_frames(clip, demo_every):
                bar.update()
                _write_sample(tmp, "train", DEMO, f"f{index:05d}", frame, boxes, imgsz, tally)
    finally:
        bar.close()
    andrewmvd_files = len(load_andrewmvd(data_root, dedupe=False)) if AM in scenes else 0
    extra = {
        "duplicates_dropped": {AM: andrewmvd_files - len(scenes.get(AM, []))},
        "mix": {SYN_MASKED: n_masked, SYN_BACKGROUND: n_background, DEMO: f"every {demo_every}th frame" if clip else "none"},
        "seconds": round(time.monotonic() - started, 1),
    }
    manifest = _finish_manifest(tally, params, extra)
    (tmp / "data.yaml").write_text(_data_yaml(final), encoding="utf-8")
    # The manifest last: its presence marks a complete dataset.
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest
