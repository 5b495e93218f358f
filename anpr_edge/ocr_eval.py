"""OCR evaluation through the runtime path (ONNX model + ``PlateRecognizer``), with an optional baseline.

For each labelled set: exact-match rate (the whole plate right), character error rate (Levenshtein
distance / label length, from ``rapidfuzz``), and ms per crop; failures can be written to a folder
(crop image named after truth and read) for inspection. Crops are made as the runtime makes them:
labelled crop images are fitted whole, labelled scenes are cut at their box with the configured padding;
with the configured ``crop.photo_cuts`` each plate is also read in those cuts and the reads are voted into one
(``evaluate(..., cuts=...)``, ``voting.combine_views``), as ``PlateReader`` does. A baseline reads the box cut.

Baseline: Tesseract 5 (Debian ``tesseract-ocr`` + ``pytesseract``) on the same crops, single line,
restricted to the charset, scored the same way.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rapidfuzz.distance import Levenshtein

from anpr_edge.config import FormatsConfig
from anpr_edge.crop import CropCut, plate_cuts
from anpr_edge.errors import AnprError
from anpr_edge.ocr import PlateRecognizer, normalize_text
from anpr_edge.train import datasets
from anpr_edge.train.datasets import LabeledImage, read_image
from anpr_edge.values import PlateRead
from anpr_edge.voting import combine_view_groups

log = logging.getLogger(__name__)


@dataclass
class Failure:
    file: str
    truth: str
    read: str
    confidence: float


@dataclass
class SetScore:
    name: str
    count: int
    exact: float
    cer: float
    ms_per_plate: float
    failures: list[Failure] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"set": self.name, "count": self.count, "exact_match": round(self.exact, 4),
                "cer": round(self.cer, 4), "ms_per_plate": round(self.ms_per_plate, 3)}


def runtime_cuts(
    image: np.ndarray, item: LabeledImage, size: tuple[int, int], padding: float, rectify: bool = False,
    cuts: Sequence[CropCut] = (), image_margin: float = 0.0,
) -> list[np.ndarray]:
    """The crops the runtime reads for one labelled item: the box cut, then ``cuts`` (``crop.plate_cuts``). A
    labelled crop image is its own box with no padding (fitted whole), or with ``image_margin`` of its size
    added per side (edge pixels repeated): a tight crop set read as if a detector had boxed it with padding."""
    if item.box is None:  # a crop image: the plate fills it
        height, width = image.shape[:2]
        return [c.image for c in plate_cuts(image, (0, 0, width, height), size, image_margin, cuts, rectify=rectify)]
    return [c.image for c in plate_cuts(image, item.box, size, padding, cuts, rectify=rectify)]


def score(name: str, truths: Sequence[str], reads: Sequence[tuple[str, float]], files: Sequence[str], ms: float) -> SetScore:
    if not truths:
        return SetScore(name, 0, float("nan"), float("nan"), ms)
    exact = [read == truth for (read, _), truth in zip(reads, truths)]
    cer = [Levenshtein.distance(read, truth) / max(len(truth), 1) for (read, _), truth in zip(reads, truths)]
    failures = [Failure(f, t, r, c) for f, t, (r, c), ok in zip(files, truths, reads, exact) if not ok]
    return SetScore(name, len(truths), float(np.mean(exact)), float(np.mean(cer)), ms, failures)


# Reads plates: one (text, confidence) per plate from the crops of its cuts (the box cut first).
Reader = Callable[[list[list[np.ndarray]]], list[tuple[str, float]]]


def recognizer_reader(
    recognizer: PlateRecognizer, batch: int = 64, reformat: Callable[[PlateRead], PlateRead] | None = None
) -> Reader:
    """The model's reads, each plate's cuts voted into one (``voting.combine_views``); with ``reformat``, each
    plate's read under plate formats (``plate_formats.format_read``)."""

    def read(cut_sets: list[list[np.ndarray]]) -> list[tuple[str, float]]:
        crops = [crop for cuts in cut_sets for crop in cuts]
        reads = [r for start in range(0, len(crops), batch) for r in recognizer.read_images(crops[start : start + batch])]
        plates = combine_view_groups(reads, [len(cuts) for cuts in cut_sets], recognizer.charset)
        if reformat is not None:
            plates = [reformat(p) for p in plates]
        return [(p.text, p.confidence) for p in plates]

    return read


def tesseract_reader(charset: str) -> Reader:
    """Tesseract 5 as a single text line, limited to the charset."""
    try:
        import pytesseract
    except ImportError:
        raise AnprError("the tesseract baseline needs pytesseract: pip install pytesseract (and apt-get install tesseract-ocr)") from None
    try:
        pytesseract.get_tesseract_version()
    except Exception:  # noqa: BLE001 - pytesseract raises its own NotFound type
        raise AnprError("the tesseract baseline needs Tesseract: apt-get install tesseract-ocr") from None
    options = f"--psm 7 --oem 1 -c tessedit_char_whitelist={re.escape(charset)}"

    def read(cut_sets: list[list[np.ndarray]]) -> list[tuple[str, float]]:
        out = []
        for crop in (cuts[0] for cuts in cut_sets):  # the box cut
            big = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # Tesseract wants ~30 px glyphs
            text = pytesseract.image_to_string(cv2.cvtColor(big, cv2.COLOR_BGR2RGB), config=options)
            out.append((normalize_text(text, charset), 0.0))
        return out

    return read


def region_reformatter(formats_config: FormatsConfig, charset: str,
                       formats: Sequence[str]) -> Callable[[PlateRead], PlateRead] | None:
    """A read -> the same read under the plate ``formats`` with the configured thresholds (None without
    formats): the reader of the 'exact, region formats' columns."""
    from anpr_edge.plate_formats import format_read, load_formats

    if not formats:
        return None
    loaded = load_formats(formats, formats_config.custom)
    return lambda read: format_read(read, charset, loaded, min_ratio=formats_config.min_ratio,
                                    min_unaided_ratio=formats_config.min_unaided_ratio,
                                    trim_leading=formats_config.trim_leading)


def evaluate(name: str, items: Sequence[LabeledImage], reader: Reader, size: tuple[int, int], padding: float = 0.15,
             rectify: bool = False, cuts: Sequence[CropCut] = (), image_margin: float = 0.0,
             ) -> tuple[SetScore, list[np.ndarray]]:
    """Score ``reader`` on ``items``; returns the score and the crops (for writing failures).

    With ``cuts``, each item is read in several cuts, voted into one read by the model's reader, as
    ``PlateReader`` does (the crop returned is the box cut). ``image_margin``: see ``runtime_cuts``."""
    cut_sets = [runtime_cuts(read_image(item.path), item, size, padding, rectify, cuts, image_margin) for item in items]
    started = time.perf_counter()
    reads = reader(cut_sets)
    ms = (time.perf_counter() - started) * 1000.0 / max(len(items), 1)
    crops = [crop_set[0] for crop_set in cut_sets]
    return score(name, [item.text for item in items], reads, [str(item.path) for item in items], ms), crops


def write_failures(folder: Path, result: SetScore, crops: Sequence[np.ndarray], files: Sequence[str]) -> int:
    """Save each failed crop as ``<set>/<n>_<truth>_<read>.png`` (read ``_`` when empty)."""
    target = folder / result.name
    target.mkdir(parents=True, exist_ok=True)
    index = {f: i for i, f in enumerate(files)}
    for n, failure in enumerate(result.failures):
        cv2.imwrite(str(target / f"{n:04d}_{failure.truth}_{failure.read or '_'}.png"), crops[index[failure.file]])
    return len(result.failures)


def format_table(
    rows: Sequence[tuple[SetScore, SetScore | None]],
    formatted: Sequence[tuple[SetScore, tuple[str, ...]] | None] = (),
) -> str:
    """Markdown table: per set, the model's exact match and CER, the same reads under the region's plate
    formats where given (``formatted[i]`` for ``rows[i]``: score and format names), and the baseline's."""
    with_baseline = any(base is not None for _, base in rows)
    with_formats = any(f is not None for f in formatted)
    head = "| set | crops | exact match | CER | ms/plate |"
    rule = "| --- | ---: | ---: | ---: | ---: |"
    if with_formats:
        head, rule = head + " exact, region formats | CER, region formats |", rule + " ---: | ---: |"
    if with_baseline:
        head, rule = head + " baseline exact | baseline CER |", rule + " ---: | ---: |"
    lines = [head, rule]
    for n, (ours, base) in enumerate(rows):
        line = f"| {ours.name} | {ours.count} | {ours.exact:.1%} | {ours.cer:.3f} | {ours.ms_per_plate:.2f} |"
        if with_formats:
            entry = formatted[n] if n < len(formatted) else None
            line += (f" {entry[0].exact:.1%} ({'+'.join(entry[1])}) | {entry[0].cer:.3f} |" if entry is not None
                     else " - | - |")
        if with_baseline:
            line += f" {base.exact:.1%} | {base.cer:.3f} |" if base is not None else " | |"
        lines.append(line)
    return "\n".join(lines)


def shared_eval_sets(charset: str, names: Sequence[str] | None = None, train_splits: bool = False,
                     corrected: bool = True) -> list[tuple[str, list[LabeledImage]]]:
    """The fixed evaluation sets (all shared sets, or ``names``): each training set's validation split,
    and every test set whole; with ``train_splits``, each training set's train split too (``<set>:train``,
    what a model trained on: its gap to the validation split is how much it fits its own crops only).
    ``corrected=False``: the labels exactly as published, without the project's label corrections."""
    sets = []
    for shared in datasets.SHARED_SETS.values():
        if names is not None and shared.name not in names:
            continue
        labels = datasets.load_shared(shared.name, charset=charset, corrected=corrected)
        if labels.corrected:
            log.info("%s: %d published labels corrected (%s)", shared.name, len(labels.corrected),
                     datasets.LABEL_CORRECTIONS.name)
        items = labels.items if shared.role == "test" else labels.split()[1]
        if not items:
            reason = labels.skipped[0][1] if labels.skipped else "no rows"
            log.warning("%s: no usable rows (%d skipped: %s); left out", shared.name, len(labels.skipped), reason)
            continue
        sets.append((shared.name + ("" if shared.role == "test" else ":val"), items))
        if train_splits and shared.role != "test":
            sets.append((shared.name + ":train", labels.split()[0]))
    return sets


def latency_ms(recognizer: PlateRecognizer, batch: int, repeats: int = 20) -> float:
    """Median ms per crop of the recognizer's model on random crops of one batch size."""
    width, height = recognizer.crop_size
    crops = np.random.default_rng(0).random((batch, 3, height, width), dtype=np.float32)
    recognizer.backend.run(crops)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        recognizer.backend.run(crops)
        times.append((time.perf_counter() - started) * 1000.0 / batch)
    return float(np.median(times))
