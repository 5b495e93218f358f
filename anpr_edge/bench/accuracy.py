"""``anpr-edge eval``: accuracy on every labelled set, ours and the baselines, measured by one harness.

Sets: every labelled set of the shared datasets folder (``datasets_root()``; ``--no-shared`` leaves them out)
and any label CSV given (``file,text,xmin,ymin,xmax,ymax`` or the tutorials' ``files,text,xmin,xmax,ymin,ymax``).

- **Plate crops with text** (the shared crop sets' fixed validation splits, the fr-plate-scenes test set
  cut at its labelled boxes, a CSV's rows): the OCR through the runtime path. Each crop is made as the
  runtime makes it (``ocr_eval.runtime_cuts``: a crop image fitted whole, a scene cut at its box with the
  configured padding, plus the configured ``crop.photo_cuts``, their reads voted into one) and read alone
  (one batch per plate, as a frame with one plate is). Exact match, character error rate (Levenshtein
  distance / label length) and ms per plate (median, p95).
- **Full images with boxes** (the shared scene sets' val splits and the fr-plate-scenes test set; a CSV
  with boxes): the whole ``read`` path (``read_eval.evaluate_read``): detector recall and precision at IoU
  0.5, false positives per image, end-to-end exact match where an image has one labelled text (its most
  confident read), ms per image (file decoding excluded).
- **Baselines** (``--baseline rapidocr,tesseract``), on the same plate regions and images, timed the same
  way (one at a time, ``--threads`` threads): RapidOCR on the crops and on the whole images (it has its own
  text detector), Tesseract on the crops. A baseline's crop is the same region as ours (the same box and
  padding) at the image's own resolution, since general OCRs resize for themselves and lose reads on our
  fitted 192x64 crop's replicated borders; ``--baseline-input runtime`` gives them our exact pixels. A general OCR returns every text line it finds; the reported
  text is the plate-like line (``baselines.pick_plate``: 4-10 characters with a digit, the longest), and the
  oracle "some line is the plate" (``exact_any_line``) is given as its upper bound. A baseline that is not
  installed is skipped with the reason and the command that installs it.

``--limit N`` keeps N items per set, spread evenly over the set (sets are sorted by region or folder, so
the first N would not be a sample). Results: Markdown tables on stdout, ``--json FILE`` for the figures.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from rapidfuzz.distance import Levenshtein

from anpr_edge.argtypes import non_negative_int, positive_int
from anpr_edge.bench.baselines import BASELINES, LineReader, any_line_matches, load_baselines, pick_plate
from anpr_edge.bench.stage_bench import (
    backend_name,
    emit_report,
    input_size_arg,
    machine_info,
    median,
    now_utc,
    quantile,
    rounded,
)
from anpr_edge.errors import ConfigError

if TYPE_CHECKING:
    from anpr_edge.config import AppConfig
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.read_eval import LabeledScene, ReadEvalReport
    from anpr_edge.train.datasets import LabeledImage

log = logging.getLogger("anpr_edge.bench")

T = TypeVar("T")


# ------------------------------------------------------------------------------------------- scores
@dataclass
class TextScore:
    """One reader on one set's crops or images: exact (picked text), exact (any line), CER, ms per item."""

    count: int = 0
    exact: int = 0
    exact_any: int = 0
    cer_total: float = 0.0
    ms: list[float] = field(default_factory=list)
    failed: int = 0

    def add(self, truth: str, lines: Sequence[tuple[str, float]], ms: float) -> str:
        picked = pick_plate(lines)
        self.count += 1
        self.exact += int(picked == truth)
        self.exact_any += int(picked == truth or any_line_matches(lines, truth))
        self.cer_total += Levenshtein.distance(picked, truth) / max(len(truth), 1)
        self.ms.append(ms)
        return picked

    def as_dict(self) -> dict[str, Any]:
        n = self.count
        return {
            "count": n,
            "exact_match": rounded(self.exact / n, 4) if n else None,
            "exact_any_line": rounded(self.exact_any / n, 4) if n else None,
            "cer": rounded(self.cer_total / n, 4) if n else None,
            "ms_median": rounded(median(self.ms), 2),
            "ms_p95": rounded(quantile(self.ms, 0.95), 2),
            "failed": self.failed,
        }


@dataclass
class CropSetResult:
    name: str
    ours: TextScore
    baselines: dict[str, TextScore] = field(default_factory=dict)
    formats: tuple[str, ...] = ()  # the region's plate formats, when ours_formats was scored under them
    ours_formats: TextScore | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"set": self.name, "ours": self.ours.as_dict(),
                "ours_with_formats": None if self.ours_formats is None else
                {"formats": list(self.formats), **self.ours_formats.as_dict()},
                "baselines": {name: score.as_dict() for name, score in self.baselines.items()}}


@dataclass
class ImageSetResult:
    name: str
    ours: ReadEvalReport
    baselines: dict[str, TextScore] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"set": self.name, "ours": self.ours.as_dict(),
                "baselines": {name: score.as_dict() for name, score in self.baselines.items()}}


@dataclass
class EvalReport:
    date: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    crops: list[CropSetResult] = field(default_factory=list)
    images: list[ImageSetResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"command": "eval", "date": self.date, "machine": self.machine, "settings": self.settings,
                "crops": [c.as_dict() for c in self.crops], "images": [i.as_dict() for i in self.images],
                "notes": list(self.notes)}


# -------------------------------------------------------------------------------------------- sets
def spread(items: Sequence[T], limit: int | None) -> list[T]:
    """At most ``limit`` items, evenly spaced over ``items`` (all of them without a limit)."""
    if limit is None or len(items) <= limit:
        return list(items)
    return [items[(i * len(items)) // limit] for i in range(limit)]


@dataclass
class EvalSets:
    crops: list[tuple[str, list[LabeledImage]]] = field(default_factory=list)
    images: list[tuple[str, list[LabeledScene]]] = field(default_factory=list)


def shared_sets(charset: str) -> EvalSets:
    """The shared sets' fixed evaluation splits: crops with text (val splits, and fr-plate-scenes at its
    boxes) and full images with boxes (the scene sets' val splits and fr-plate-scenes)."""
    from anpr_edge.ocr_eval import shared_eval_sets
    from anpr_edge.read_eval import shared_scene_sets

    return EvalSets(crops=shared_eval_sets(charset), images=shared_scene_sets())


def csv_sets(path: str | Path, charset: str) -> EvalSets:
    """A user's label CSV: crops with text (rows without a box are crop images; rows with one are cut at
    it) and, when it has boxes, its full images (text optional)."""
    from anpr_edge.read_eval import read_scene_labels
    from anpr_edge.train import datasets

    path = Path(path)
    name = path.parent.name or path.stem
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            header = [(c or "").strip() for c in next(csv.reader(handle), [])]
    except FileNotFoundError:
        raise ConfigError(f"label file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: not a readable label CSV ({error})") from None
    sets = EvalSets()
    has_boxes = all(c in header for c in ("xmin", "ymin", "xmax", "ymax"))
    if "text" in header:
        labels = datasets.read_labels(path, charset=charset, name=name)
        for line, reason in labels.skipped:
            log.warning("%s:%d: skipped: %s", path, line, reason)
        if labels.items:
            sets.crops.append((name, labels.items))
        has_boxes = has_boxes and any(item.box is not None for item in labels.items)
    if has_boxes:
        try:
            sets.images.append((name, read_scene_labels(path)))
        except ConfigError as error:  # e.g. crops and scenes mixed in one file: the crops were still read
            log.warning("%s: full images not scored: %s", path, error)
    if not sets.crops and not sets.images:
        raise ConfigError(f"{path}: no usable labelled rows (needs text, or boxes, or both)")
    return sets


# ---------------------------------------------------------------------------------------- evaluation
def _progress(items: Sequence[T], label: str, progress: bool | None) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=label, unit="img", file=sys.stderr, dynamic_ncols=True, leave=False,
                disable=None if progress is None else not progress)


def native_crop(image: np.ndarray, item: LabeledImage, padding: float) -> np.ndarray:
    """The plate region at the image's own resolution: a crop image whole, a scene's box with ``padding``
    (fraction of the box per side, as the runtime pads) clipped to the image; not resized."""
    if item.box is None:
        return image
    x1, y1, x2, y2 = item.box
    dx, dy = padding * (x2 - x1), padding * (y2 - y1)
    height, width = image.shape[:2]
    left, top = max(int(np.floor(x1 - dx)), 0), max(int(np.floor(y1 - dy)), 0)
    right, bottom = min(int(np.ceil(x2 + dx)), width), min(int(np.ceil(y2 + dy)), height)
    return image[top:bottom, left:right]


BASELINE_INPUTS = ("native", "runtime")


def evaluate_crops(name: str, items: Sequence[LabeledImage], reader: PlateReader, baselines: Sequence[LineReader],
                   *, padding: float, baseline_input: str = "native", progress: bool | None = None,
                   formats: tuple[str, ...] = ()) -> CropSetResult:
    """Ours and each baseline on the same plate regions of ``items``, one crop at a time.

    Ours reads the runtime's cuts (``ocr_eval.runtime_cuts``: the region fitted to the model's input size, and
    the configured ``crop.photo_cuts``, voted into one read as `anpr-edge read` does).
    The baselines read the same region at the image's own resolution (``native_crop``: general OCRs do
    their own resizing, and the fitted 192x64 crop's replicated borders cost them reads), or with
    ``baseline_input="runtime"`` the very same pixels as ours. With ``formats`` (the region's plate
    formats), our reads are also scored with them applied.
    """
    from anpr_edge.ocr_eval import runtime_cuts
    from anpr_edge.voting import combine_views
    from anpr_edge.train.datasets import read_image

    if baseline_input not in BASELINE_INPUTS:
        raise ValueError(f"baseline_input must be one of {BASELINE_INPUTS}: {baseline_input!r}")
    recognizer = reader.recognizer
    result = CropSetResult(name, TextScore(), {b.name: TextScore() for b in baselines})
    regional = _regional(reader, formats)
    if regional is not None:
        result.formats, result.ours_formats = formats, TextScore()
    crops: list[tuple[str, list[np.ndarray], np.ndarray]] = []
    for item in items:
        try:
            image = read_image(item.path)
        except ConfigError as error:
            result.ours.failed += 1
            log.warning("%s: %s", name, error)
            continue
        ours = runtime_cuts(image, item, recognizer.crop_size, padding, reader.rectify, reader.extra_cuts)
        theirs = ours[0] if baseline_input == "runtime" or not baselines else native_crop(image, item, padding)
        crops.append((item.text, ours, theirs))
    for truth, cuts, _ in _progress(crops, f"{name}: ours", progress):
        began = time.perf_counter()
        read = combine_views(recognizer.read_images(cuts), recognizer.charset)
        ms = (time.perf_counter() - began) * 1000.0
        result.ours.add(truth, [(read.text, read.confidence)], ms)
        if regional is not None and result.ours_formats is not None:
            (formatted,) = regional.format_reads([read])
            result.ours_formats.add(truth, [(formatted.text, formatted.confidence)], ms)
    for baseline in baselines:
        score = result.baselines[baseline.name]
        for truth, _, crop in _progress(crops, f"{name}: {baseline.name}", progress):
            began = time.perf_counter()
            try:
                lines = baseline.read_crop(crop)
            except Exception as error:  # noqa: BLE001 - a baseline failing on one crop scores it as unread
                log.debug("%s on a crop of %s: %s", baseline.name, name, error)
                score.failed += 1
                lines = []
            score.add(truth, lines, (time.perf_counter() - began) * 1000.0)
    return result


def _regional(reader: PlateReader, formats: tuple[str, ...]) -> PlateReader | None:
    """The reader under the region's plate formats (None without them); custom formats from its config."""
    from anpr_edge.plate_formats import load_formats

    return reader.with_formats(load_formats(formats)) if formats else None


def evaluate_images(name: str, scenes: Sequence[LabeledScene], reader: PlateReader,
                    baselines: Sequence[LineReader], *, min_confidence: float = 0.0,
                    progress: bool | None = None, formats: tuple[str, ...] = ()) -> ImageSetResult:
    """The whole read path on ``scenes`` (detector + crop + OCR), and each baseline able to read whole
    images on those with one labelled text."""
    from anpr_edge.images import ImageError, load_image
    from anpr_edge.read_eval import evaluate_read

    regional = _regional(reader, formats)
    ours = evaluate_read(name, scenes, lambda image: reader.read([image])[0], min_confidence=min_confidence,
                         progress=progress is not False, formats=formats,
                         reformat=None if regional is None else lambda read: regional.format_reads([read])[0])
    result = ImageSetResult(name, ours)
    with_text = [(s, t[0]) for s in scenes if len(t := [x for x in s.texts if x]) == 1]
    for baseline in baselines:
        if not baseline.whole_images or not with_text:
            continue
        score = result.baselines[baseline.name] = TextScore()
        for scene, truth in _progress(with_text, f"{name}: {baseline.name}", progress):
            try:
                image = load_image(scene.path)
            except ImageError:
                score.failed += 1
                continue
            began = time.perf_counter()
            try:
                lines = baseline.lines(image)
            except Exception as error:  # noqa: BLE001
                log.debug("%s on %s: %s", baseline.name, scene.path, error)
                score.failed += 1
                lines = []
            score.add(truth, lines, (time.perf_counter() - began) * 1000.0)
    return result


def run_eval(config: AppConfig, reader: PlateReader, sets: EvalSets, baselines: Sequence[LineReader], *,
             limit: int | None = None, baseline_input: str = "native", progress: bool | None = None,
             settings: dict[str, Any] | None = None) -> EvalReport:
    """Every set, ours and the baselines; the shared sets also with their region's plate formats."""
    from anpr_edge.train.datasets import region_formats

    report = EvalReport(date=now_utc(), machine=machine_info(), settings=dict(settings or {}))
    for name, items in sets.crops:
        chosen = spread(items, limit)
        result = evaluate_crops(name, chosen, reader, baselines, padding=config.crop.padding,
                                baseline_input=baseline_input, progress=progress, formats=region_formats(name))
        report.crops.append(result)
        log.info("%s: %d crops, exact match %s", name, result.ours.count, _pct(result.ours.as_dict()["exact_match"]))
    for name, scenes in sets.images:
        result_images = evaluate_images(name, spread(scenes, limit), reader, baselines, progress=progress,
                                        min_confidence=config.models.ocr.min_confidence,
                                        formats=region_formats(name))
        report.images.append(result_images)
    if limit is not None:
        report.notes.append(f"--limit {limit}: at most {limit} items per set, spread evenly; not the full sets")
    if baselines and any(name.startswith("tn-plate-crops") for name, _ in sets.crops):
        report.notes.append("tn-plate-crops: the labels write the plate's Arabic word as T or N (see its README); "
                            "a general OCR cannot produce that, so the baselines' exact match there is not a "
                            "comparison of reading skill (their CER still is, on the digits)")
    return report


# -------------------------------------------------------------------------------------------- tables
def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_report(report: EvalReport) -> str:
    """Markdown: the crop table (ours and each baseline) and the full-image table."""
    s, m = report.settings, report.machine
    names = [b for b in s.get("baselines", {})]
    lines = [
        f"anpr-edge eval ({report.date}): detector {s.get('input_size')} px, score >= {s.get('detector_confidence')}, "
        f"{s.get('threads')} thread(s) per model, models {s.get('models')}.",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('usable_cores')} usable), {m.get('os')}, "
        f"Python {m.get('python')}, ONNX Runtime {m.get('onnxruntime')}.",
    ]
    for name, info in s.get("baselines", {}).items():
        lines.append(f"Baseline {name} {info['version']}: {info['note']}; crops: {s.get('baseline_input')} "
                     "(native: the plate region at the image's resolution; runtime: our OCR's input pixels).")
    for name, reason in s.get("baselines_skipped", {}).items():
        lines.append(f"Baseline {name} not run: {reason}")
    if report.crops:
        crop_formats = any(row.ours_formats is not None for row in report.crops)
        head = ["set", "crops", "exact", *(["exact, region formats"] if crop_formats else []), "CER", "ms median",
                "ms p95"]
        for name in names:
            head += [f"{name} exact", f"{name} any line", f"{name} CER", f"{name} ms median"]
        lines += ["", "Plate crops (OCR; one crop at a time):", "",
                  "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for row in report.crops:
            ours = row.ours.as_dict()
            regional = ([] if not crop_formats else ["-"] if row.ours_formats is None else
                        [f"{_pct(row.ours_formats.as_dict()['exact_match'])} ({'+'.join(row.formats)})"])
            cells = [row.name, str(ours["count"]), _pct(ours["exact_match"]), *regional,
                     f"{ours['cer']:.3f}" if ours["cer"] is not None else "-", _ms(ours["ms_median"]),
                     _ms(ours["ms_p95"])]
            for name in names:
                base = row.baselines.get(name)
                if base is None:
                    cells += ["-"] * 4
                    continue
                b = base.as_dict()
                cells += [_pct(b["exact_match"]), _pct(b["exact_any_line"]),
                          f"{b['cer']:.3f}" if b["cer"] is not None else "-", _ms(b["ms_median"])]
            lines.append("| " + " | ".join(cells) + " |")
    if report.images:
        whole = [n for n in names if any(n in row.baselines for row in report.images)]
        image_formats = any(row.ours.formats for row in report.images)
        head = ["set", "images", "plates", "recall@0.5", "precision", "FP/img", "exact (e2e)",
                *(["exact (e2e), region formats"] if image_formats else []), "ms median", "ms p95"]
        for name in whole:
            head += [f"{name} exact", f"{name} any line", f"{name} ms median", f"{name} ms p95"]
        lines += ["", "Full images (detector + crop + OCR; file decoding excluded):", "",
                  "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for image_row in report.images:
            d = image_row.ours.as_dict()
            exact = (f"{_pct(d['exact_match'])} ({image_row.ours.exact}/{image_row.ours.text_images})"
                     if image_row.ours.text_images else "-")
            fp = d["false_positives_per_image"]
            regional_exact = ([] if not image_formats else
                              [f"{_pct(d['exact_match_with_formats'])} ({image_row.ours.exact_formats}/"
                               f"{image_row.ours.text_images}, {'+'.join(image_row.ours.formats)})"]
                              if image_row.ours.formats and image_row.ours.text_images else ["-"])
            cells = [image_row.name, str(d["images"]), str(d["plates"]), _pct(d["recall"]), _pct(d["precision"]),
                     "-" if fp is None else f"{fp:.2f}", exact, *regional_exact, _ms(d["ms_median"]),
                     _ms(d["ms_p95"])]
            for name in whole:
                base = image_row.baselines.get(name)
                if base is None:
                    cells += ["-"] * 4
                    continue
                b = base.as_dict()
                cells += [f"{_pct(b['exact_match'])} ({base.exact}/{base.count})", _pct(b["exact_any_line"]),
                          _ms(b["ms_median"]), _ms(b["ms_p95"])]
            lines.append("| " + " | ".join(cells) + " |")
    if report.notes:
        lines += ["", *[f"- {note}" for note in report.notes]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- command
def parse_baselines(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BASELINES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(BASELINES)}: {text!r}")
    return names


def eval_config(base: AppConfig, *, threads: int, input_size: int | None, backend: str | None) -> AppConfig:
    inference = base.inference.model_copy(update={"threads": threads, **({"backend": backend} if backend else {})})
    models = base.models
    if input_size is not None:
        models = models.model_copy(update={"detector": models.detector.model_copy(update={"input_size": input_size})})
    return base.model_copy(update={"inference": inference, "models": models})


def collect_sets(labels: Sequence[str], charset: str, *, shared: bool) -> EvalSets:
    sets = EvalSets()
    if shared:
        from anpr_edge.train.datasets import datasets_root

        try:
            datasets_root()
        except ConfigError as error:
            if not labels:
                raise
            log.warning("shared sets left out: %s", error)
        else:
            found = shared_sets(charset)
            sets.crops += found.crops
            sets.images += found.images
    for path in labels:
        found = csv_sets(path, charset)
        sets.crops += found.crops
        sets.images += found.images
    if not sets.crops and not sets.images:
        raise ConfigError("eval: no labelled set (give label CSV files, or drop --no-shared)")
    return sets


def cmd_eval(args: argparse.Namespace) -> int:
    from anpr_edge.config import default_config, load_config
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.service import model_versions

    config = eval_config(load_config(args.config) if args.config else default_config(), threads=args.threads,
                         input_size=args.input_size, backend=args.backend)
    reader = PlateReader.from_config(config)
    sets = collect_sets(args.labels, reader.recognizer.charset, shared=args.shared)
    baselines, skipped = load_baselines(args.baseline or [], threads=args.threads, charset=reader.recognizer.charset)
    settings = {
        "threads": config.inference.threads, "backend": backend_name(reader.detector.backend),
        "input_size": reader.detector.input_size, "detector_confidence": reader.detector.confidence,
        "crop_padding": config.crop.padding, "models": model_versions(reader), "limit": args.limit,
        "labels": list(args.labels), "shared": args.shared,
        "baselines": {b.name: {"version": b.version, "note": b.note} for b in baselines},
        "baselines_skipped": skipped, "baseline_input": args.baseline_input,
    }
    report = run_eval(config, reader, sets, baselines, limit=args.limit, baseline_input=args.baseline_input,
                      progress=False if args.no_progress else None, settings=settings)
    emit_report(format_report(report), report.as_dict(), args.json)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the main CLI's subparsers object."""
    parser = commands.add_parser(
        "eval",
        help="accuracy on every labelled set (shared sets and label CSVs): OCR exact match and CER, detector "
        "recall/precision, end-to-end exact match, with RapidOCR/Tesseract baselines on the same inputs",
        description="Score the runtime path on every labelled set of the shared datasets folder and on label "
        "CSVs: plate crops (OCR exact match, CER, ms per crop) and full images with boxes (detector recall and "
        "precision at IoU 0.5, end-to-end exact match, ms per image). --baseline adds RapidOCR (crops and whole "
        "images) and Tesseract (crops) measured on the same inputs by the same harness (install them with "
        "pip install 'anpr-edge[bench]' and apt-get install tesseract-ocr; a missing one is skipped with the "
        "reason). Markdown tables on stdout, --json for the figures.",
    )
    parser.add_argument("labels", nargs="*", metavar="LABELS.csv", help="label CSV files (crops and/or full images)")
    parser.add_argument("--no-shared", dest="shared", action="store_false",
                        help="leave out the shared datasets' sets (only the CSVs given)")
    parser.add_argument("--baseline", type=parse_baselines, metavar="NAMES",
                        help=f"comma-separated baselines to run on the same inputs: {','.join(BASELINES)}")
    parser.add_argument("--baseline-input", choices=BASELINE_INPUTS, default="native",
                        help="what the baselines read for a crop: the plate region at the image's own resolution "
                        "(native, default) or the very pixels our OCR reads, fitted to its input size (runtime)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="at most N items per set, spread evenly")
    parser.add_argument("--threads", type=non_negative_int, default=1, metavar="N",
                        help="threads per model, ours and the baselines' (default 1)")
    parser.add_argument("--input-size", type=input_size_arg, metavar="PX", help="detector input size (multiple of 32)")
    parser.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"), help="inference backend")
    parser.add_argument("--config", metavar="FILE", help="YAML config (models, thresholds, crop padding)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': JSON on "
                        "stdout instead of the tables)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=cmd_eval)
