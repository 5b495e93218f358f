"""``anpr-edge bench-views``: OCR models read several degraded views of each labelled plate and vote.

A passage is read in many frames and its reads are voted (``anpr_edge.voting``); the passage benchmark
measures that end to end, but on about a hundred passages per clip set. This scores the same kind of vote on
every plate of the fixed evaluation sets (validation splits and the French test, ~975 plates): each plate is
seen ``frames`` times, each time smaller (as from further away: downscaled, sometimes blurred, JPEG-compressed)
and cut from a box moved and resized as a detector's box is off from the label's (``datasets.jitter_box``), and the views' reads are voted with the
runtime's weights (read confidence, plate width, sharpness). Reported per set: the vote, the single most
confident view, and the mean over views. Models are compared on exactly the same views (one seed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from anpr_edge.argtypes import positive_int
from anpr_edge.errors import ConfigError


@dataclass(frozen=True)
class ViewSettings:
    """How the views of a plate are made."""

    frames: int = 6
    min_scale: float = 0.35  # the plate at 35-100% of its photographed size
    box_shift: float = 0.08  # the box's centre moves by up to this share of its size (datasets.jitter_box)
    box_scale: float = 0.12  # ... and its width and height change by up to this share
    padding: float = 0.15  # the runtime crop's padding (config crop.padding)


@dataclass(frozen=True)
class ViewScore:
    model: str
    set: str
    plates: int
    vote: float  # share of plates whose voted text is the label
    best_view: float  # ... whose most confident view reads the label
    per_view: float  # share of all views read right


def degraded_views(image: np.ndarray, box: Sequence[float] | None, size: tuple[int, int], settings: ViewSettings,
                   rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """``settings.frames`` (crop, plate width in px) views of the plate at ``box`` (None: the image is the plate)."""
    from anpr_edge.crop import crop_plate
    from anpr_edge.train.datasets import jitter_box

    h, w = image.shape[:2]
    padding = settings.padding if box is not None else 0.05
    x1, y1, x2, y2 = box if box is not None else (0.0, 0.0, float(w), float(h))
    views = []
    for _ in range(settings.frames):
        scale = rng.uniform(settings.min_scale, 1.0)
        small = cv2.resize(image, (max(round(w * scale), 8), max(round(h * scale), 8)), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            small = cv2.GaussianBlur(small, (0, 0), rng.uniform(0.3, 1.0))
        encoded = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 85))])[1]
        small = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        moved = jitter_box((x1, y1, x2, y2), rng, shift=settings.box_shift, scale=settings.box_scale)
        views.append((crop_plate(small, [v * scale for v in moved], size, padding).image, (x2 - x1) * scale))
    return views


def score_views(models: Sequence[Path], settings: ViewSettings, seed: int, threads: int = 1,
                sets: Sequence[str] | None = None) -> list[ViewScore]:
    """Every model on the same views of the shared evaluation sets (all, or those named in ``sets``)."""
    from anpr_edge.backends import create_backend
    from anpr_edge.ocr import PlateRecognizer
    from anpr_edge.ocr_eval import shared_eval_sets
    from anpr_edge.train.datasets import read_image
    from anpr_edge.voting import VoteAccumulator, crop_sharpness, read_weight

    recognizers = [PlateRecognizer(create_backend("onnxruntime", path, threads=threads)) for path in models]
    size = recognizers[0].crop_size
    if any(r.crop_size != size or r.charset != recognizers[0].charset for r in recognizers):
        raise ConfigError("bench-views: the models must share crop size and charset (they read the same views)")
    rng = np.random.default_rng(seed)
    scores = []
    for name, items in shared_eval_sets(recognizers[0].charset, sets):
        views = [degraded_views(read_image(item.path), item.box, size, settings, rng) for item in items]
        crops = [crop for plate in views for crop, _ in plate]
        for path, recognizer in zip(models, recognizers):
            reads = [read for start in range(0, len(crops), 64) for read in recognizer.read_images(crops[start : start + 64])]
            voted = best = right = 0
            for n, (item, plate) in enumerate(zip(items, views)):
                plate_reads = reads[n * settings.frames : (n + 1) * settings.frames]
                accumulator = VoteAccumulator(recognizer.charset)
                for read, (crop, width) in zip(plate_reads, plate):
                    accumulator.add(read, read_weight(read.confidence, width_px=width, sharpness=crop_sharpness(crop)))
                vote = accumulator.vote()
                voted += vote is not None and vote.text == item.text
                best += max(plate_reads, key=lambda r: r.confidence).text == item.text
                right += sum(read.text == item.text for read in plate_reads)
            count = max(len(items), 1)
            scores.append(ViewScore(str(path), name, len(items), voted / count, best / count,
                                    right / (count * settings.frames)))
    return scores


def format_table(scores: Sequence[ViewScore]) -> str:
    lines = ["| model | set | plates | vote | best view | per view |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for s in scores:
        lines.append(f"| {s.model} | {s.set} | {s.plates} | {s.vote:.1%} | {s.best_view:.1%} | {s.per_view:.1%} |")
    for model in dict.fromkeys(s.model for s in scores):
        mine = [s for s in scores if s.model == model]
        n = sum(s.plates for s in mine)
        mean = {k: sum(getattr(s, k) * s.plates for s in mine) / max(n, 1) for k in ("vote", "best_view", "per_view")}
        lines.append(f"| {model} | all | {n} | {mean['vote']:.1%} | {mean['best_view']:.1%} | {mean['per_view']:.1%} |")
    return "\n".join(lines)


def cmd_bench_views(args: argparse.Namespace) -> int:
    models = [Path(m) for m in args.models]
    for path in models:
        if not path.is_file():
            raise ConfigError(f"bench-views: model file not found: {path}")
    if not 0.05 <= args.min_scale <= 1.0:
        raise ConfigError(f"bench-views: --min-scale must be within 0.05..1, not {args.min_scale}")
    if not 0.0 <= args.box_shift <= 0.5 or not 0.0 <= args.box_scale <= 0.5:
        raise ConfigError(f"bench-views: --box-shift and --box-scale must be within 0..0.5, not {args.box_shift} "
                          f"and {args.box_scale}")
    settings = ViewSettings(frames=args.frames, min_scale=args.min_scale, box_shift=args.box_shift,
                            box_scale=args.box_scale)
    scores = score_views(models, settings, args.seed, args.threads)
    if args.json:
        sys.stdout.write(json.dumps({"settings": asdict(settings), "seed": args.seed,
                                     "scores": [asdict(s) for s in scores]}) + "\n")
    else:
        sys.stdout.write(format_table(scores) + "\n")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``bench-views`` to the main CLI's subparsers object."""
    bench = commands.add_parser(
        "bench-views",
        help="OCR models vote over degraded views of every evaluation plate (a large-sample proxy of passages)",
        description="Read each plate of the shared evaluation sets (validation splits and the French test) in "
        "--frames views, each smaller, blurred or compressed and cut from a jittered box, and vote the reads as the "
        "tracker does. Per model and set: voted text right, most confident view right, views right. All models "
        "read the same views.",
    )
    bench.add_argument("models", nargs="+", metavar="MODEL.onnx", help="OCR models (same crop size and charset)")
    bench.add_argument("--frames", type=positive_int, default=6, metavar="N", help="views per plate (default 6)")
    bench.add_argument("--min-scale", type=float, default=0.35, metavar="S",
                       help="smallest view, as a share of the photographed size (default 0.35)")
    bench.add_argument("--box-shift", type=float, default=0.08, metavar="F",
                       help="the box's centre moves by up to this share of its size (default 0.08)")
    bench.add_argument("--box-scale", type=float, default=0.12, metavar="F",
                       help="the box's width and height change by up to this share (default 0.12)")
    bench.add_argument("--seed", type=int, default=0, metavar="S", help="views seed (default 0)")
    bench.add_argument("--threads", type=positive_int, default=1, metavar="N", help="inference threads (default 1)")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout instead of Markdown")
    bench.set_defaults(handler=cmd_bench_views)
