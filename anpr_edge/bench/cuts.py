"""``anpr-edge bench-cuts``: which views of a plate to read and vote (``crop.photo_cuts``).

Every plate of the fixed evaluation sets (the validation splits and the French test) is read in the box cut
and in each candidate view: the runtime's cuts (``crop.plate_cuts``: wide, level, cw, ccw) and other
geometric views (less or more margin, turned 4 degrees, the box shifted). Every set of views, up to
``--max-views`` besides the box cut, is then scored by voting its reads into one (``voting.combine_views``,
as `anpr-edge read` does) on exactly the same reads. Views come in pairs where they have a mirror (cw with
ccw, left with right...), so a set never favours one side.

The sets are read twice: crop images fitted whole (``--image-margin 0``, as `anpr-edge ocr` reads them) and
with 15% margin added (as the runtime cuts a detector's box with ``crop.padding``). The ranking criterion is
the mean exact match over the validation splits of the sets the OCR trains on, averaged over both readings;
the French test is reported, never used to choose.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from anpr_edge.argtypes import non_negative_int, positive_int
from anpr_edge.crop import WIDE_EXTRA_PADDING, _rectified, crop_plate, plate_cuts
from anpr_edge.values import PlateRead

if TYPE_CHECKING:
    from anpr_edge.ocr import PlateRecognizer
    from anpr_edge.train.datasets import LabeledImage

log = logging.getLogger("anpr_edge.bench")

Size = tuple[int, int]
Box = tuple[float, float, float, float]
ViewMaker = Callable[[np.ndarray, Box, Size, float], "np.ndarray | None"]


def _runtime_cut(name: str) -> ViewMaker:
    def make(image: np.ndarray, box: Box, size: Size, padding: float) -> np.ndarray | None:
        cuts = plate_cuts(image, box, size, padding, [name])  # type: ignore[list-item]
        return cuts[1].image if len(cuts) > 1 else None  # a level plate has no "level" cut

    return make


def _padded(extra: float) -> ViewMaker:
    def make(image: np.ndarray, box: Box, size: Size, padding: float) -> np.ndarray | None:
        return crop_plate(image, box, size, max(padding + extra, 0.0)).image

    return make


def _turned(degrees: float) -> ViewMaker:
    def make(image: np.ndarray, box: Box, size: Size, padding: float) -> np.ndarray | None:
        turned = _rectified(image, box, size, padding, degrees)
        return None if turned is None else turned[0]

    return make


def _shifted(dx: float, dy: float) -> ViewMaker:
    def make(image: np.ndarray, box: Box, size: Size, padding: float) -> np.ndarray | None:
        x1, y1, x2, y2 = box
        w, h = x2 - x1, y2 - y1
        return crop_plate(image, (x1 + dx * w, y1 + dy * h, x2 + dx * w, y2 + dy * h), size, padding).image

    return make


# Candidate views besides the box cut. The runtime's cuts are made by the runtime's own function.
VIEWS: dict[str, ViewMaker] = {
    "wide": _runtime_cut("wide"),
    "level": _runtime_cut("level"),
    "cw": _runtime_cut("cw"),
    "ccw": _runtime_cut("ccw"),
    "wider": _padded(2 * WIDE_EXTRA_PADDING),
    "narrow": _padded(-0.05),
    "cw4": _turned(-4.0),
    "ccw4": _turned(4.0),
    "left": _shifted(-0.05, 0.0),
    "right": _shifted(0.05, 0.0),
    "up": _shifted(0.0, -0.1),
    "down": _shifted(0.0, 0.1),
}
# Views that are only tried together (a turn or shift one way only would favour one side).
PAIRS = (("cw", "ccw"), ("cw4", "ccw4"), ("left", "right"), ("up", "down"))
MARGINS = (0.0, 0.15)


@dataclass(frozen=True)
class CutSetScore:
    views: tuple[str, ...]
    reads: int  # OCR reads per plate at most (the box cut and the views)
    criterion: float  # mean exact match of the selection sets, averaged over the margins
    exact: dict[str, float]  # "<set> @ margin" -> exact match


def candidate_sets(views: Sequence[str], max_views: int) -> list[tuple[str, ...]]:
    """Every set of up to ``max_views`` views in which paired views (``PAIRS``) come together."""
    partner = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}
    out = []
    for n in range(max_views + 1):
        for chosen in itertools.combinations(views, n):
            if all(partner.get(v, v) in chosen for v in chosen):
                out.append(chosen)
    return out


def read_views(recognizer: PlateRecognizer, items: Sequence[LabeledImage], *, margin: float, padding: float,
               views: Sequence[str], progress: str = "") -> list[tuple[str, dict[str, PlateRead]]]:
    """Each item's truth and reads: ``"box"`` and every view it has (one OCR batch per plate)."""
    from tqdm import tqdm

    from anpr_edge.train.datasets import read_image

    out = []
    for item in tqdm(items, desc=progress, file=sys.stderr, leave=False, disable=None):
        image = read_image(item.path)
        if item.box is None:
            height, width = image.shape[:2]
            box, pad = (0.0, 0.0, float(width), float(height)), margin
        else:
            x1, y1, x2, y2 = (float(v) for v in item.box)
            box, pad = (x1, y1, x2, y2), padding
        crops = {"box": crop_plate(image, box, recognizer.crop_size, pad).image}
        for name in views:
            crop = VIEWS[name](image, box, recognizer.crop_size, pad)
            if crop is not None:
                crops[name] = crop
        out.append((item.text, dict(zip(crops, recognizer.read_images(list(crops.values()))))))
    return out


def score_sets(read_sets: dict[str, list[tuple[str, dict[str, PlateRead]]]], selection: Sequence[str],
               candidates: Sequence[tuple[str, ...]], charset: str) -> list[CutSetScore]:
    """Every candidate set of views voted on the same reads, best criterion first (fewer reads on a tie)."""
    from anpr_edge.voting import combine_views

    scores = []
    for views in candidates:
        exact = {}
        for key, rows in read_sets.items():
            right = [combine_views([reads[v] for v in ("box", *views) if v in reads], charset).text == truth
                     for truth, reads in rows]
            exact[key] = float(np.mean(right)) if right else float("nan")
        chosen = [exact[k] for k in exact if k.rsplit(" @ ", 1)[0] in selection]
        scores.append(CutSetScore(views, 1 + len(views), float(np.mean(chosen)), exact))
    return sorted(scores, key=lambda s: (-s.criterion, s.reads))


def format_table(scores: Sequence[CutSetScore], top: int, keep: Sequence[tuple[str, ...]]) -> str:
    keys = list(scores[0].exact)
    lines = ["| views besides the box cut | reads | criterion | " + " | ".join(keys) + " |",
             "|---|---:|---:|" + "---:|" * len(keys)]
    shown = list(scores[:top]) + [s for s in scores[top:] if s.views in keep]
    for s in shown:
        name = ", ".join(s.views) or "(box cut alone)"
        lines.append(f"| {name} | {s.reads} | {100 * s.criterion:.1f}% | "
                     + " | ".join(f"{100 * s.exact[k]:.1f}%" for k in keys) + " |")
    return "\n".join(lines)


def cmd_bench_cuts(args: argparse.Namespace) -> int:
    from anpr_edge.config import command_config
    from anpr_edge.ocr_eval import shared_eval_sets
    from anpr_edge.pipeline import load_recognizer
    from anpr_edge.train.ocr_train import OcrTrainConfig

    config = command_config(args.config, args.model)
    recognizer = load_recognizer(config)
    selection = [f"{name}:val" for name in OcrTrainConfig().data.real_sets]
    views = list(VIEWS)
    read_sets = {}
    for name, items in shared_eval_sets(recognizer.charset):
        for margin in MARGINS if any(item.box is None for item in items) else (None,):
            key = name if margin is None else f"{name} @ {margin:g}"
            read_sets[key] = read_views(recognizer, items, margin=margin or 0.0, padding=config.crop.padding,
                                        views=views, progress=key)
            log.info("%s: %d plates read in %d views", key, len(items), 1 + len(views))
    candidates = candidate_sets(views, args.max_views)
    scores = score_sets(read_sets, selection, candidates, recognizer.charset)
    configured = tuple(config.crop.photo_cuts)
    if args.json:
        sys.stdout.write(json.dumps({"selection": selection, "configured": list(configured),
                                     "sets": [asdict(s) for s in scores]}) + "\n")
    else:
        sys.stdout.write(format_table(scores, args.top, [(), configured]) + "\n")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``bench-cuts`` to the main CLI's subparsers object."""
    bench = commands.add_parser(
        "bench-cuts",
        help="score every set of plate views (crop.photo_cuts) voted into one read, on the evaluation sets",
        description="Read every plate of the shared evaluation sets in the box cut and in candidate views "
        "(the runtime's cuts wide, level, cw, ccw, and other margins, turns and shifts), as crop images fitted "
        "whole and with 15%% margin, then score every set of up to --max-views views by voting their reads into "
        "one, as `anpr-edge read` does. Ranked by the mean exact match on the validation splits the OCR trains "
        "on (both readings); the French test is shown, not used to rank. The table lists the best sets, the box "
        "cut alone and the configured crop.photo_cuts.",
    )
    bench.add_argument("--config", metavar="FILE", help="YAML config (OCR model, crop padding, photo_cuts)")
    bench.add_argument("--model", metavar="ONNX", help="OCR model (default: from --config or the bundled one)")
    bench.add_argument("--max-views", type=non_negative_int, default=3, metavar="N",
                       help="views besides the box cut in a set, at most (default 3)")
    bench.add_argument("--top", type=positive_int, default=12, metavar="N", help="best sets listed (default 12)")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout instead of Markdown")
    bench.set_defaults(handler=cmd_bench_cuts)
