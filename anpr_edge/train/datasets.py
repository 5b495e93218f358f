"""Labelled plate images for OCR training: label CSVs, the shared real sets, the fixed split, crops.

Two label formats are read, recognised from the header and read by column name (so column order and
extra columns do not matter):

- ours: ``file,text,xmin,ymin,xmax,ymax``; the box columns are empty for images that already are crops;
- the attention-OCR tutorial's: ``files,text,xmin,xmax,ymin,ymax`` (a pandas export, often with a leading
  unnamed index column). Its README lists the box columns in that order while its CSV holds them as
  ``xmin,ymin,xmax,ymax``; reading by name is right for both.

Paths are relative to the CSV's folder. A row is either used, skipped with a reason (a label the charset
cannot express, an empty label, a box entirely outside its image), or the whole file is rejected with a
``ConfigError`` naming the CSV and line (a malformed file, a missing image, an inverted box): a skip is a
property of the data, an error is a mistake to fix.

Training crops are cut with the runtime's ``crop_plate`` (optionally from a jittered box, as a detector's
boxes would be off), so the OCR trains on exactly the crops it will see. Nothing here needs torch.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from anpr_edge.crop import crop_plate, fit_crop
from anpr_edge.errors import ConfigError
from anpr_edge.ocr import DEFAULT_CHARSET

Box = tuple[float, float, float, float]
Split = Literal["train", "val"]

BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")
FILE_COLUMNS = {"file": "anpr-edge", "files": "attention-ocr"}
# What people type between plate character groups; removed like ``normalize_text`` removes them. Anything
# else outside the charset makes the row a documented skip rather than a silently different label.
SEPARATORS = frozenset(" \t\r\n\u00a0-_.\u00b7\u2010\u2011\u2012\u2013\u2014\u2022\u30fb")
SPLIT_SALT = "anpr-edge-split-v1"
# Labels of the shared sets that the images clearly contradict (found by auditing misreads, one by one):
# applied by ``load_shared`` unless asked not to, so training and evaluation use what the plate shows.
LABEL_CORRECTIONS = Path(__file__).with_name("label_corrections.csv")
DATASETS_ENV = "ANPR_EDGE_DATASETS"
_REPO_DIR = Path(__file__).resolve().parent.parent.parent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabeledImage:
    """One labelled plate: an image file, its normalised text and, for a full scene, the plate box.

    ``box`` is (xmin, ymin, xmax, ymax) in pixels of the decoded image, clipped to it; ``None`` when the
    image already is a plate crop. ``source`` names the set (or CSV) it came from. ``published_text`` is the
    set's own label where the project corrected it (``LABEL_CORRECTIONS``): the split stays keyed on it, so a
    correction never moves a plate between train and validation.
    """

    path: Path
    text: str
    box: Box | None
    source: str
    published_text: str | None = None


@dataclass(frozen=True)
class LabelCorrection:
    """A shared set's label the project found wrong: the crop clearly shows ``corrected``, not ``published``.

    ``file`` is the row's file column; ``evidence`` says what the image shows (see ``LABEL_CORRECTIONS``).
    """

    set_name: str
    file: str
    published: str
    corrected: str
    evidence: str


@dataclass
class LabelSet:
    """The usable rows of one label CSV, and the rows skipped as (CSV line, reason).

    ``clipped`` lists the CSV lines whose box reached outside the image and was clipped to it.
    """

    items: list[LabeledImage]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    clipped: list[int] = field(default_factory=list)
    corrected: list[LabelCorrection] = field(default_factory=list)
    path: Path | None = None
    name: str = ""
    format: str = "anpr-edge"

    def __len__(self) -> int:
        return len(self.items)

    def split(self, val_fraction: float = 0.2) -> tuple[list[LabeledImage], list[LabeledImage]]:
        """(train, val) items by ``split_of`` their text."""
        return split_items(self.items, val_fraction)


@dataclass(frozen=True)
class SharedSet:
    """A real labelled set in the shared datasets folder.

    ``kind``: "crops" (each image is a plate) or "scenes" (full photos with a plate box). ``role``:
    "train" means its train split is trained on and its val split validates; "test" means it is never
    trained on (held out for end-to-end checks).
    """

    name: str
    folder: str
    kind: Literal["crops", "scenes"]
    region: str
    role: Literal["train", "test"]
    note: str = ""
    labels: str = "labels.csv"
    # The plate formats (anpr_edge.plate_formats) a site in this region would configure; evaluation reports
    # exact match with and without them.
    formats: tuple[str, ...] = ()
    # Labels start with one symbol the charset cannot express and the OCR is to skip, as it skips a
    # state emblem (the Chinese province of cn-plate-crops): it is dropped, and the rest is read and scored.
    drops_leading_symbol: bool = False

    def labels_path(self, root: Path | None = None) -> Path:
        return (root or datasets_root()) / self.folder / self.labels


SHARED_SETS: dict[str, SharedSet] = {
    s.name: s
    for s in (
        SharedSet("us-nyc-plate-crops", "us-nyc-plate-crops", "crops", "us", "train",
                  "NYC street photos (NY, NJ, taxi plates); 35 texts on several images", formats=("US",)),
        SharedSet("br-plate-crops", "br-plate-crops", "crops", "br", "train",
                  "Parana traffic cameras, AAA9999; 1144 crops of 530 plates", formats=("BR", "BR-MERCOSUR")),
        SharedSet("tn-plate-crops", "tn-plate-crops", "crops", "tn", "train",
                  "Tunisian plates; T and N stand for Arabic words", formats=("TN",)),
        SharedSet("cn-plate-crops", "cn-plate-crops", "crops", "cn", "train",
                  "94x24 crops of Chinese blue plates (Anhui mostly); the leading Chinese province is dropped "
                  "from the label unless the charset has it: the OCR reads the 6 Latin characters",
                  formats=("CN",), drops_leading_symbol=True),
        SharedSet("fr-plate-scenes", "fr-plate-scenes", "scenes", "fr", "test",
                  "the European test set: full photos with one plate box and its text; never trained on",
                  formats=("FR",)),
    )
}


def region_formats(set_name: str) -> tuple[str, ...]:
    """The plate formats of the shared set an evaluation set is named after (``br-plate-crops:val``,
    ``fr-plate-scenes (test)``...); () for other sets."""
    base = re.split(r":| \(", set_name, maxsplit=1)[0]
    shared = SHARED_SETS.get(base)
    return shared.formats if shared else ()


# ------------------------------------------------------------------------------------------ labels
def canonical_text(text: str, keep: str = "") -> str:
    """``text`` in upper case without separators (spaces, dashes, dots...) except those in ``keep``.

    Other characters are kept, so a label the charset cannot express stays visible as such.
    """
    return "".join(ch for ch in text.upper() if ch not in SEPARATORS or ch in keep)


def read_labels(
    csv_path: str | Path, *, charset: str = DEFAULT_CHARSET, name: str | None = None,
    drop_leading_symbol: bool = False,
) -> LabelSet:
    """Read a label CSV in either supported format (see the module docstring).

    Images of rows with a box are decoded once here to clip the box to the image; crops are only checked
    to exist. ``name`` becomes each item's ``source`` (default: the CSV's folder name). With
    ``drop_leading_symbol``, a first character outside the charset is dropped from the label (a symbol the
    OCR skips, like an emblem) rather than making the row a skip.
    """
    path = Path(csv_path)
    source = name or path.resolve().parent.name
    rows, file_column, has_box = _read_csv(path)
    label_set = LabelSet(items=[], path=path, name=source, format=FILE_COLUMNS[file_column])
    allowed = set(charset)
    for line, row in rows:
        where = f"{path}:{line}"
        file_name = (row.get(file_column) or "").strip()
        if not file_name:
            raise ConfigError(f"{where}: empty '{file_column}' column")
        image_path = path.parent / file_name
        if not image_path.is_file():
            raise ConfigError(f"{where}: image file not found: {image_path}")
        box = _parse_box(row, where) if has_box else None
        # A charset that lists a separator (say '-') keeps it, exactly as normalize_text would.
        text = canonical_text(row.get("text") or "", keep=charset)
        if drop_leading_symbol and text and text[0] not in allowed:
            text = text[1:]
        if not text:
            label_set.skipped.append((line, "empty text"))
            continue
        outside = sorted({ch for ch in text if ch not in allowed})
        if outside:
            reason = f"text {text!r} has characters outside the charset: {''.join(outside)}"
            label_set.skipped.append((line, reason))
            continue
        if box is not None:
            width, height = image_size(image_path)
            clipped = clip_box(box, width, height)
            if clipped is None:
                reason = f"box {_fmt_box(box)} is entirely outside the {width}x{height} image"
                label_set.skipped.append((line, reason))
                continue
            if clipped != box:
                label_set.clipped.append(line)
            box = clipped
        label_set.items.append(LabeledImage(image_path, text, box, source))
    return label_set


def _read_csv(path: Path) -> tuple[list[tuple[int, dict[str, str | None]]], str, bool]:
    """(line number, row) pairs, the file-name column and whether box columns exist; format errors raise."""
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark that would hide 'file'.
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [(column or "").strip() for column in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader if not _blank(row)]
    except FileNotFoundError:
        raise ConfigError(f"label file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a label CSV") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise ConfigError(f"{path}: malformed CSV: {error}") from None
    if not header:
        raise ConfigError(f"{path}: empty file (expected a header 'file,text,xmin,ymin,xmax,ymax')")
    file_columns = [c for c in FILE_COLUMNS if c in header]
    if len(file_columns) != 1:
        problem = "both 'file' and 'files' columns" if file_columns else "no 'file' (or 'files') column"
        raise ConfigError(f"{path}: {problem}; header is {','.join(header)!r}")
    missing = [c for c in ("text",) if c not in header]
    box_present = [c for c in BOX_COLUMNS if c in header]
    if box_present:
        missing += [c for c in BOX_COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}; header is {','.join(header)!r}")
    if not rows:
        raise ConfigError(f"{path}: no label rows after the header")
    return rows, file_columns[0], bool(box_present)


def _blank(row: dict[str, str | None]) -> bool:
    # A line of only commas (a spreadsheet's empty row) is as blank as an empty line, which csv skips.
    return not any(value.strip() for value in row.values() if isinstance(value, str))


def _parse_box(row: dict[str, str | None], where: str) -> Box | None:
    cells = [(row.get(c) or "").strip() for c in BOX_COLUMNS]
    if not any(cells):
        return None
    if not all(cells):
        empty = [c for c, v in zip(BOX_COLUMNS, cells) if not v]
        raise ConfigError(f"{where}: incomplete box, {', '.join(empty)} empty (leave all four empty for a crop)")
    values = []
    for column, cell in zip(BOX_COLUMNS, cells):
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {column} is not a number: {cell!r}")
        values.append(value)
    xmin, ymin, xmax, ymax = values
    if xmax <= xmin or ymax <= ymin:
        raise ConfigError(
            f"{where}: empty or inverted box (xmin={xmin:g}, ymin={ymin:g}, xmax={xmax:g}, ymax={ymax:g}); "
            "expected xmax > xmin and ymax > ymin"
        )
    return xmin, ymin, xmax, ymax


def clip_box(box: Box, width: int, height: int) -> Box | None:
    """``box`` clipped to a ``width`` x ``height`` image, or None when no part of it is inside."""
    x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
    x2, y2 = min(box[2], float(width)), min(box[3], float(height))
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _fmt_box(box: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in box) + ")"


# ------------------------------------------------------------------------------------------- images
def read_image(path: Path) -> np.ndarray:
    """Decode ``path`` as BGR like the runtime does; ``ConfigError`` naming the file when it cannot be.

    ``np.fromfile`` + ``imdecode`` rather than ``imread``: file names with spaces, '#' or non-ASCII
    characters then work on every platform.
    """
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as error:
        raise ConfigError(f"cannot read image {path}: {error.strerror or error}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        reason = "not an image OpenCV can decode" if data.size else "empty file"
        raise ConfigError(f"cannot read image {path}: {reason}")
    return image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image as decoded, EXIF orientation applied, so boxes match ``read_image``."""
    # A full decode, not a header parse: the header size ignores EXIF rotation, which imdecode applies.
    # Only scene images (rows with a box) come here, a small share of the data.
    height, width = read_image(path).shape[:2]
    return int(width), int(height)


# -------------------------------------------------------------------------------------------- split
def split_of(text: str, val_fraction: float = 0.2) -> Split:
    """The fixed split of a plate text: "val" for about ``val_fraction`` of all texts, else "train".

    The split is a function of the text alone: ``sha1(SPLIT_SALT + canonical text)``, its first 8 bytes
    read as a big-endian fraction of 2**64, is "val" when below ``val_fraction``. So every image of one
    plate lands in the same split (no plate is in both), the split is the same on every run and machine
    (no RNG, no ``hash()`` randomisation), and a set's split does not change when rows are added or
    removed. The canonical text is upper case without separators, so "AB-123" and "ab 123" agree. Changing
    ``SPLIT_SALT`` reshuffles everything; do that only together with a new model line.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"val_fraction must be in [0, 1]: {val_fraction}")
    digest = hashlib.sha1((SPLIT_SALT + canonical_text(text)).encode("utf-8")).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2.0**64 < val_fraction else "train"


def split_items(
    items: Iterable[LabeledImage], val_fraction: float = 0.2
) -> tuple[list[LabeledImage], list[LabeledImage]]:
    """(train, val) by ``split_of`` each item's text, order kept."""
    train: list[LabeledImage] = []
    val: list[LabeledImage] = []
    for item in items:
        (val if split_of(item.text, val_fraction) == "val" else train).append(item)
    return train, val


# ------------------------------------------------------------------------------------- shared sets
def datasets_root() -> Path:
    """The shared datasets folder: ``$ANPR_EDGE_DATASETS``, else ``<repo>/../shared/datasets``, else
    ``/work/shared/datasets`` (the first that exists)."""
    override = os.environ.get(DATASETS_ENV)
    if override:
        root = Path(override).expanduser()
        if not root.is_dir():
            raise ConfigError(f"${DATASETS_ENV} is {override!r}, which is not a folder")
        return root
    candidates = [_REPO_DIR.parent / "shared" / "datasets", Path("/work/shared/datasets")]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"no shared datasets folder: neither {candidates[0]} nor {candidates[1]} exists "
        f"(set ${DATASETS_ENV} to its location)"
    )


def load_shared(
    name: str, charset: str = DEFAULT_CHARSET, *, root: Path | None = None, corrected: bool = True,
) -> LabelSet:
    """The label set of the shared set ``name`` (a key of ``SHARED_SETS``).

    With ``corrected`` (the default) the project's ``LABEL_CORRECTIONS`` of this set replace the published
    labels they name (``published_text`` keeps the old one); ``corrected=False``
    gives the set exactly as published.
    """
    try:
        shared = SHARED_SETS[name]
    except KeyError:
        raise ConfigError(f"unknown shared set {name!r}; known: {', '.join(SHARED_SETS)}") from None
    labels = read_labels(shared.labels_path(root), charset=charset, name=name,
                         drop_leading_symbol=shared.drops_leading_symbol)
    if corrected:
        apply_corrections(labels, [c for c in label_corrections() if c.set_name == name])
    return labels


def label_corrections(path: Path = LABEL_CORRECTIONS) -> list[LabelCorrection]:
    """The corrections in ``path`` (CSV: ``set,file,published,corrected,evidence``)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [LabelCorrection(row["set"], row["file"], canonical_text(row["published"]),
                            canonical_text(row["corrected"]), row["evidence"]) for row in rows]


def apply_corrections(labels: LabelSet, corrections: Sequence[LabelCorrection]) -> None:
    """Replace, in place, the text of each item a correction names, when its label is still the published one.

    A correction whose file is gone or whose label changed upstream is not applied (the set was fixed or
    re-cut: the correction no longer says anything about it) and is logged.
    """
    root = labels.path.parent if labels.path is not None else None
    by_path = {((root / c.file) if root else Path(c.file)): c for c in corrections}
    for index, item in enumerate(labels.items):
        correction = by_path.pop(item.path, None)
        if correction is None:
            continue
        if item.text != correction.published:
            log.warning("%s: label of %s is %r, not the %r a correction expects; correction not applied",
                        labels.name, correction.file, item.text, correction.published)
            continue
        labels.items[index] = dataclasses.replace(item, text=correction.corrected, published_text=item.text)
        labels.corrected.append(correction)
    for correction in by_path.values():
        log.warning("%s: %s has no usable row; its label correction is not applied", labels.name, correction.file)


# -------------------------------------------------------------------------------------------- crops
def jitter_box(
    box: Sequence[float], rng: np.random.Generator, *, shift: float = 0.08, scale: float = 0.12
) -> Box:
    """``box`` moved and resized the way a detector's box is off from the labelled one.

    The centre moves by up to ``shift`` of the box width/height on each axis, and width and height are
    each scaled by a factor in [1 - scale, 1 + scale] (independently: detectors err on each edge).
    Draws exactly four numbers from ``rng``; nothing else changes.
    """
    if shift < 0.0 or not 0.0 <= scale < 1.0:
        raise ValueError(f"need shift >= 0 and 0 <= scale < 1: shift={shift}, scale={scale}")
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    dx, dy, sw, sh = rng.uniform(-1.0, 1.0, size=4)
    cx, cy = (x1 + x2) / 2.0 + dx * shift * w, (y1 + y2) / 2.0 + dy * shift * h
    half_w, half_h = w * (1.0 + sw * scale) / 2.0, h * (1.0 + sh * scale) / 2.0
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def precut_crop(
    image: np.ndarray, box: Sequence[float], size: tuple[int, int], rng: np.random.Generator,
    stretch: tuple[float, float] = (0.8, 1.3),
) -> np.ndarray:
    """``box`` cut out the way crop sets and other pipelines hand plates over: the plate's own box (a little
    off, ``jitter_box`` with shift 0.02 and scale 0.04), nothing around it, its width scaled by a factor drawn
    from ``stretch`` (crops resized to a fixed size lose the plate's aspect), then fitted to ``size`` as the
    runtime fits a crop image (``fit_crop``). Draws five numbers from ``rng``.
    """
    x1, y1, x2, y2 = jitter_box(box, rng, shift=0.02, scale=0.04)
    height, width = image.shape[:2]
    ix1, iy1 = min(max(round(x1), 0), width - 1), min(max(round(y1), 0), height - 1)
    ix2, iy2 = max(min(round(x2), width), ix1 + 1), max(min(round(y2), height), iy1 + 1)
    plate = image[iy1:iy2, ix1:ix2]
    factor = float(rng.uniform(*stretch))
    plate_w = max(round(plate.shape[1] * factor), 1)
    plate = cv2.resize(plate, (plate_w, plate.shape[0]), interpolation=cv2.INTER_AREA if factor < 1.0 else cv2.INTER_LINEAR)
    return fit_crop(plate, size)


def cut_crops(
    items: Iterable[LabeledImage],
    size: tuple[int, int] = (192, 64),
    padding: float = 0.15,
    *,
    jitter: float = 0.0,
    rng: np.random.Generator | None = None,
    copies: int = 1,
) -> Iterator[tuple[LabeledImage, np.ndarray]]:
    """(item, BGR crop of ``size`` = (width, height)) for each item, each image decoded once.

    Scene items are cut with the runtime's ``crop_plate`` and ``padding``; with ``jitter`` > 0 each of the
    ``copies`` uses its own box from ``jitter_box(box, rng, shift=jitter, scale=1.5 * jitter)`` (0.08 gives
    ``jitter_box``'s defaults). Crop items are fitted whole with ``fit_crop`` (as the runtime's ``ocr``
    command does), once: they have no box to jitter, so copies of them would be identical. ``rng`` defaults to a fixed
    seed so runs repeat. Raises ``ConfigError`` naming the file for an image that cannot be decoded.
    """
    if copies < 1:
        raise ValueError(f"copies must be at least 1: {copies}")
    rng = rng if rng is not None else np.random.default_rng(0)
    for item in items:
        image = read_image(item.path)
        if item.box is None:
            yield item, fit_crop(image, size)
            continue
        for _ in range(copies):
            box = jitter_box(item.box, rng, shift=jitter, scale=1.5 * jitter) if jitter > 0 else item.box
            yield item, crop_plate(image, box, size, padding).image
