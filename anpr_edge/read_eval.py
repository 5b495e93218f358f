"""`anpr-edge eval-read`: the whole `read` path (detector + crop + OCR) scored on labelled full images.

Per set: detector recall and precision at IoU 0.5 (greedy matching, best score first), recall per plate-width
bin (< 40, 40-80, > 80 px in the stored image), false positives per image, end-to-end exact match where the
labels have text (one image = one read: the image's most confident read against its labelled plate), and the
median / p95 milliseconds per image of ``PlateReader.read`` (decoding the file is not counted).

Labels: a CSV of full images with boxes, in either supported layout (``file,text,xmin,ymin,xmax,ymax`` or
the tutorials' ``files,text,xmin,xmax,ymin,ymax``; ``text`` may be empty or absent for boxes-only sets);
several rows for one file are several plates. ``--shared`` scores the fixed real splits of the shared scene
sets: the validation split of each training set and the held-out fr-plate-scenes test set.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from anpr_edge.errors import ConfigError
from anpr_edge.images import ImageError, load_image
from anpr_edge.values import PlateRead

Box = tuple[float, float, float, float]
IOU_MATCH = 0.5
WIDTH_BINS = (("<40", 0.0, 40.0), ("40-80", 40.0, 80.0), (">80", 80.0, float("inf")))
BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class LabeledScene:
    """A full image and its labelled plates (``texts[i]`` is None where the label has no text)."""

    path: Path
    boxes: tuple[Box, ...]
    texts: tuple[str | None, ...]


def width_bin(width: float) -> str:
    return next(name for name, low, high in WIDTH_BINS if low <= width < high)


def _canonical(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def read_scene_labels(csv_path: str | Path) -> list[LabeledScene]:
    """Scenes from a label CSV (see the module docstring); ``ConfigError`` naming the file and line otherwise."""
    path = Path(csv_path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = [(c or "").strip() for c in reader.fieldnames or []]
            reader.fieldnames = header
            rows = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise ConfigError(f"label file not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: not a readable label CSV ({error})") from None
    file_column = next((c for c in ("file", "files") if c in header), None)
    missing = [c for c in BOX_COLUMNS if c not in header]
    if file_column is None or missing:
        need = "a 'file' (or 'files') column" if file_column is None else f"box columns {', '.join(missing)}"
        raise ConfigError(f"{path}: needs {need}; header is {','.join(header)!r}")
    grouped: dict[str, list[tuple[Box, str | None]]] = defaultdict(list)
    for line, row in rows:
        name = (row.get(file_column) or "").strip()
        if not name:
            continue
        try:
            box = tuple(float((row.get(c) or "").strip()) for c in BOX_COLUMNS)
        except ValueError:
            raise ConfigError(f"{path}:{line}: box values must be numbers: {[row.get(c) for c in BOX_COLUMNS]}") from None
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ConfigError(f"{path}:{line}: empty or inverted box {box}")
        text = _canonical(row.get("text") or "") or None
        grouped[name].append((box, text))  # type: ignore[arg-type]
    if not grouped:
        raise ConfigError(f"{path}: no labelled images")
    return [
        LabeledScene(path.parent / name, tuple(b for b, _ in plates), tuple(t for _, t in plates))
        for name, plates in grouped.items()
    ]


def shared_scene_sets(root: Path | None = None) -> list[tuple[str, list[LabeledScene]]]:
    """The fixed real evaluation splits: each training scene set's val split, and fr-plate-scenes (test)."""
    from anpr_edge.train import det_data
    from anpr_edge.train.datasets import datasets_root

    root = root or datasets_root()
    sets = []
    for source, scenes in det_data.load_scenes(root).items():
        texts = _fr_texts(root) if source == det_data.FR else {}
        chosen = [s for s in scenes if det_data.scene_split(s) in ("val", "test")]
        labelled = [
            LabeledScene(s.path, tuple(s.boxes), tuple(texts.get(s.path.name) for _ in s.boxes)) for s in chosen
        ]
        split = "test" if source == det_data.FR else "val"
        sets.append((f"{source} ({split})", labelled))
    return sets


def _fr_texts(root: Path) -> dict[str, str]:
    labels = root / "fr-plate-scenes" / "labels.csv"
    if not labels.is_file():
        return {}
    return {s.path.name: s.texts[0] for s in read_scene_labels(labels) if s.texts and s.texts[0]}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_detections(predicted: np.ndarray, truth: np.ndarray, threshold: float = IOU_MATCH) -> np.ndarray:
    """For each true box, the index of the prediction matched to it (-1: missed).

    Predictions are taken in the given order (best score first) and each claims the unclaimed true box it
    overlaps most, if by ``threshold`` or more: the usual greedy rule of detection benchmarks.
    """
    matched = np.full(len(truth), -1, dtype=np.int64)
    if len(predicted) == 0 or len(truth) == 0:
        return matched
    ious = iou_matrix(predicted, truth)
    for p in range(len(predicted)):
        candidates = np.where(matched < 0, ious[p], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= threshold:
            matched[best] = p
    return matched


@dataclass
class ReadEvalReport:
    name: str
    images: int = 0
    failed_images: int = 0
    plates: int = 0
    found: int = 0
    predictions: int = 0
    by_width: dict[str, list[int]] = field(default_factory=lambda: {name: [0, 0] for name, _, _ in WIDTH_BINS})
    text_images: int = 0
    exact: int = 0
    formats: tuple[str, ...] = ()  # the region's plate formats, when exact_formats was scored under them
    exact_formats: int = 0
    ms: list[float] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)
    false_positive_boxes: list[dict[str, Any]] = field(default_factory=list)  # {"file", "box"}

    @property
    def false_positives(self) -> int:
        return len(self.false_positive_boxes)

    @property
    def recall(self) -> float:
        return self.found / self.plates if self.plates else float("nan")

    @property
    def precision(self) -> float:
        return (self.predictions - self.false_positives) / self.predictions if self.predictions else float("nan")

    @property
    def exact_match(self) -> float:
        return self.exact / self.text_images if self.text_images else float("nan")

    @property
    def exact_match_formats(self) -> float:
        return self.exact_formats / self.text_images if self.text_images and self.formats else float("nan")

    def ms_quantile(self, q: float) -> float:
        if not self.ms:
            return float("nan")
        return float(np.quantile(np.asarray(self.ms), q))

    def as_dict(self) -> dict[str, Any]:
        def r(value: float) -> float | None:
            return None if value != value else round(value, 6)  # 6 places: tables round again to 0.1%

        return {
            "set": self.name,
            "images": self.images,
            "failed_images": self.failed_images,
            "plates": self.plates,
            "recall": r(self.recall),
            "precision": r(self.precision),
            "false_positives_per_image": r(self.false_positives / self.images if self.images else float("nan")),
            "recall_by_width": {k: {"found": v[0], "plates": v[1], "recall": r(v[0] / v[1] if v[1] else float("nan"))}
                                for k, v in self.by_width.items()},
            "text_images": self.text_images,
            "exact_match": r(self.exact_match),
            "formats": list(self.formats),
            "exact_match_with_formats": r(self.exact_match_formats),
            "ms_median": r(statistics.median(self.ms) if self.ms else float("nan")),
            "ms_p95": r(self.ms_quantile(0.95)),
        }


ReadFunction = Callable[[np.ndarray], list[PlateRead]]
Reformat = Callable[[PlateRead], PlateRead]


def _best_text(reads: Sequence[PlateRead], min_confidence: float) -> str | None:
    best = next((r for r in reads if r.text and r.confidence >= min_confidence), None)
    return None if best is None else best.text


def evaluate_read(name: str, scenes: Sequence[LabeledScene], read: ReadFunction, *, progress: bool = True,
                  min_confidence: float = 0.0, formats: tuple[str, ...] = (),
                  reformat: Reformat | None = None,
                  on_scene: Callable[[LabeledScene], None] | None = None) -> ReadEvalReport:
    """Score ``read`` (one image -> its plate reads, best first) on ``scenes``.

    With ``reformat`` (a read -> the read under the region's plate formats ``formats``), end-to-end exact
    match is also scored with the formats applied to the same reads. ``on_scene`` is told each scene just
    before its image is read (a caller whose reading depends on the scene, such as its camera's ROI).
    """
    report = ReadEvalReport(name, formats=formats if reformat is not None else ())
    for scene in tqdm(scenes, desc=name, unit="img", file=sys.stderr, disable=not progress, dynamic_ncols=True):
        try:
            image = load_image(scene.path)
        except ImageError as error:
            report.failed_images += 1
            tqdm.write(f"{scene.path}: {error}", file=sys.stderr)
            continue
        if on_scene is not None:
            on_scene(scene)
        started = time.perf_counter()
        reads = read(image)
        report.ms.append((time.perf_counter() - started) * 1000.0)
        report.images += 1
        predicted = np.array([r.box for r in reads if r.box is not None], dtype=np.float32).reshape(-1, 4)
        truth = np.array(scene.boxes, dtype=np.float32).reshape(-1, 4)
        matched = match_detections(predicted, truth)
        report.plates += len(truth)
        report.found += int((matched >= 0).sum())
        report.predictions += len(predicted)
        taken = {int(i) for i in matched if i >= 0}
        report.false_positive_boxes += [{"file": str(scene.path), "box": [round(float(v), 1) for v in box]}
                                        for k, box in enumerate(predicted) if k not in taken]
        for box, hit in zip(truth, matched):
            cell = report.by_width[width_bin(float(box[2] - box[0]))]
            cell[1] += 1
            cell[0] += int(hit >= 0)
            if hit < 0:
                report.misses.append({"file": str(scene.path), "box": [round(float(v), 1) for v in box]})
        labelled = [t for t in scene.texts if t]
        if len(labelled) == 1:
            report.text_images += 1
            report.exact += int(_best_text(reads, min_confidence) == labelled[0])
            if reformat is not None:
                report.exact_formats += int(_best_text([reformat(r) for r in reads], min_confidence) == labelled[0])
    return report


def write_detection_errors(folder: Path, report: ReadEvalReport, scenes: Sequence[LabeledScene]) -> int:
    """Save each false positive and each missed plate of ``report`` with its surroundings, for a look by eye
    (are the false positives unlabelled plates, boxes off the label, or text and grilles?), as
    ``<set>/fp_<n>_<image>.png`` and ``<set>/miss_<n>_<image>.png``: the box in red, the image's labelled
    boxes in green, one box width of context left and right, two heights above and below. Returns the count."""
    labelled = {str(s.path): s.boxes for s in scenes}
    target = folder / "".join(c if c.isalnum() or c in "-_." else "_" for c in report.name)
    target.mkdir(parents=True, exist_ok=True)
    images: dict[str, np.ndarray | None] = {}  # an image with several errors is read once
    written = 0
    for kind, records in (("fp", report.false_positive_boxes), ("miss", report.misses)):
        for n, record in enumerate(records):
            if record["file"] not in images:
                try:
                    images[record["file"]] = load_image(record["file"])
                except ImageError:
                    images[record["file"]] = None
            image = images[record["file"]]
            if image is None:
                continue
            x1, y1, x2, y2 = record["box"]
            w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
            left, top = int(max(0, x1 - w)), int(max(0, y1 - 2 * h))
            right, bottom = int(min(image.shape[1], x2 + w)), int(min(image.shape[0], y2 + 2 * h))
            view = image[top:bottom, left:right].copy()  # drawn on: the cached image stays clean
            boxes = [(b, (0, 255, 0)) for b in labelled.get(record["file"], ())] + [(record["box"], (0, 0, 255))]
            for box, colour in boxes:
                cv2.rectangle(view, (int(box[0]) - left, int(box[1]) - top), (int(box[2]) - left, int(box[3]) - top),
                              colour, 1)
            cv2.imwrite(str(target / f"{kind}_{n:04d}_{Path(record['file']).stem}.png"), view)
            written += 1
    return written


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def format_table(reports: Sequence[ReadEvalReport]) -> str:
    """A Markdown table, one row per set (what docs/BENCHMARKS.md and the model card show)."""
    bins = [name for name, _, _ in WIDTH_BINS]
    with_formats = any(rep.formats for rep in reports)
    head = ["set", "images", "plates", "recall@0.5", *[f"recall w{b}" for b in bins], "precision", "FP/img",
            "exact match", *(["exact, region formats"] if with_formats else []), "ms median", "ms p95"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rep in reports:
        data = rep.as_dict()
        widths = [
            f"{_pct(v['recall'] if v['recall'] is not None else float('nan'))} ({v['found']}/{v['plates']})"
            if v["plates"] else "-"
            for v in data["recall_by_width"].values()
        ]
        cells = [rep.name, str(rep.images), str(rep.plates), _pct(rep.recall), *widths, _pct(rep.precision),
                 f"{data['false_positives_per_image']:.2f}" if data["false_positives_per_image"] is not None else "n/a",
                 f"{_pct(rep.exact_match)} ({rep.exact}/{rep.text_images})" if rep.text_images else "-",
                 *([f"{_pct(rep.exact_match_formats)} ({rep.exact_formats}/{rep.text_images}, "
                    f"{'+'.join(rep.formats)})" if rep.text_images and rep.formats else "-"] if with_formats else []),
                 f"{data['ms_median']:.1f}" if data["ms_median"] is not None else "n/a",
                 f"{data['ms_p95']:.1f}" if data["ms_p95"] is not None else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
