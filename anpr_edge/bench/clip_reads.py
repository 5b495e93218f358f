"""``anpr-edge bench-clip-reads``: OCR models read the same detector crops of the passage clips.

The passage benchmark runs the whole loop, so two OCR models are compared on different crops: a model whose
vote settles sooner stops being read sooner, a near tie between two texts falls either way, and on ~60
passages per seed a handful of such coin flips decides the comparison. This takes the OCR out of that loop:
the config's detector runs once over every clip, each of its boxes that matches a passage's true box (the
plate fully in view, ``passage_score.overlap``) is cut exactly as the runtime cuts it (``PlateReader.cuts``:
padding, extra cuts, rectification), and every model reads all of those crops. Per model and plate set:

- **per read**: the share of crops read exactly right (raw, before plate formats): thousands of paired reads
  on the clips' own pixels (size, motion, H.264), the input the tracker votes over;
- **vote, settled**: the vote (runtime weights, then the plate formats, as ``PassageBuilder`` does) at the
  first read after which it is settled (``voting.settle_*``: what an early event reports), or over all reads
  when it never settles;
- **vote, all**: over every read of the passage.

Each further model is paired with the first: reads (and passages) only one of the two gets right, with a
two-sided sign test on the passages' all-reads vote.

``--weights`` votes the same reads under other read weights (``WEIGHTINGS``) and pairs each with the first
model's first weighting, so a change of the runtime's vote weights is checked on thousands of fixed reads
rather than on reruns of the tracking loop.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
from tqdm import tqdm

from anpr_edge.argtypes import positive_int
from anpr_edge.bench.passage_score import MATCH_IOU, overlap, scored
from anpr_edge.errors import ConfigError
from anpr_edge.voting import read_weight, size_factor

if TYPE_CHECKING:
    from anpr_edge.bench.passage_clips import ClipTruth
    from anpr_edge.config import AppConfig
    from anpr_edge.ocr import PlateRecognizer
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.values import PlateCrop
    from anpr_edge.voting import Vote


def _runtime_weight(confidence: float, width: float | None, sharpness: float | None) -> float:
    return read_weight(confidence, width_px=width, sharpness=sharpness)


# How much one read counts in a passage's vote, from its confidence, plate width (px, None when unknown) and
# crop sharpness. "runtime" is the service's own (voting.read_weight); the others are the alternatives a
# vote-weight change is checked against. The settle thresholds stay in runtime units, so compare the others
# on "vote, all".
WEIGHTINGS: dict[str, Callable[[float, float | None, float | None], float]] = {
    "runtime": _runtime_weight,
    "equal": lambda confidence, width, sharpness: 1.0,  # every read counts the same
    "confidence": lambda confidence, width, sharpness: _runtime_weight(confidence, None, None),  # no crop quality
    "confidence2": lambda confidence, width, sharpness: _runtime_weight(confidence, width, sharpness) * confidence,
    "width2": lambda confidence, width, sharpness: _runtime_weight(confidence, width, sharpness) * size_factor(width),
}


@dataclass(frozen=True)
class PassageCrops:
    """The crops of one passage's plate, one cut set per frame in which the detector found it."""

    clip: str
    id: str
    text: str
    source: str
    frames: tuple[int, ...]
    cut_sets: tuple[tuple[PlateCrop, ...], ...]


@dataclass(frozen=True)
class PassageReads:
    """What one model made of one passage's crops."""

    passage: PassageCrops
    texts: tuple[str, ...]  # one read per frame (the most confident cut)
    vote_settled: str | None  # the formatted vote when it first settled (or over all reads, if it never did)
    vote_all: str | None  # ... over all of them


@dataclass(frozen=True)
class ClipReadScore:
    model: str
    set: str
    passages: int
    reads: int
    per_read: float
    vote_settled: float
    vote_all: float


@dataclass(frozen=True)
class Pairing:
    """A model against the first one, on the same crops."""

    model: str
    base: str
    reads_only_base: int
    reads_only_model: int
    passages_only_base: int
    passages_only_model: int

    @property
    def sign_p(self) -> float:
        """Two-sided sign test on the passages only one of the two votes right."""
        return sign_test(self.passages_only_base, self.passages_only_model)


def sign_test(a: int, b: int) -> float:
    """Two-sided exact binomial p-value of ``a`` against ``b`` discordant pairs (1.0 with none)."""
    n = a + b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a, b) + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def collect_crops(clip: ClipTruth, reader: PlateReader, *, every: int = 1,
                  progress: bool = True) -> list[PassageCrops]:
    """Every ``every``-th frame of ``clip`` in which a scored passage is fully in view: ``reader``'s detector box that
    best matches it (``overlap`` >= ``MATCH_IOU``), cut as the runtime cuts it. Frames without such a passage
    are decoded but not detected."""
    passages = [p for p in clip.passages if scored(p)]
    frames: dict[str, list[int]] = defaultdict(list)
    cut_sets: dict[str, list[tuple[PlateCrop, ...]]] = defaultdict(list)
    capture = cv2.VideoCapture(str(clip.path))
    if not capture.isOpened():
        raise ConfigError(f"bench-clip-reads: cannot open clip {clip.path}")
    bar = tqdm(total=clip.frames, desc=clip.name, unit="frame", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, leave=False)
    index = -1
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            index += 1
            bar.update()
            if index % every:
                continue
            visible = [(p, p.boxes[index]) for p in passages if index in p.boxes]
            if not visible:
                continue
            found = reader.detector.detect([image])[0]
            for passage, truth in visible:
                scores = [overlap(box, truth) for box in found.xyxy]
                if not scores or max(scores) < MATCH_IOU:
                    continue
                best = max(range(len(scores)), key=scores.__getitem__)
                cuts = reader.cuts(image, found.xyxy[best], float(found.confidence[best]), clip.name, index)
                frames[passage.id].append(index)
                cut_sets[passage.id].append(tuple(cuts))
    finally:
        bar.close()
        capture.release()
    return [PassageCrops(clip.name, p.id, p.text, p.source, tuple(frames[p.id]), tuple(cut_sets[p.id]))
            for p in passages]


def read_passages(recognizer: PlateRecognizer, config: AppConfig, passages: Sequence[PassageCrops], *,
                  batch: int = 64, weightings: Sequence[str] = ("runtime",)) -> list[list[PassageReads]]:
    """``recognizer`` reads every crop; each passage's reads are voted as ``PassageBuilder`` votes them: read by
    read until the vote is settled (``voting.settle_*``), and over all of them. One result list per weighting
    (``WEIGHTINGS``), all over the same reads."""
    from anpr_edge.passages import formatted_vote
    from anpr_edge.plate_formats import load_formats
    from anpr_edge.voting import VoteAccumulator, combine_view_groups, crop_sharpness, is_settled

    formats = load_formats(config.formats.regions, config.formats.custom)
    flat = [crop for p in passages for cuts in p.cut_sets for crop in cuts]
    raw = [read for start in range(0, len(flat), batch) for read in recognizer.read_crops(flat[start : start + batch])]
    reads = combine_view_groups(raw, [len(cuts) for p in passages for cuts in p.cut_sets], recognizer.charset)

    def formatted(vote: Vote | None) -> str | None:
        vote = formatted_vote(vote, recognizer.charset, formats, config.formats)
        return None if vote is None else vote.text

    quality = [(None if read.box is None else read.box[2] - read.box[0],
                crop_sharpness(read.crop_image) if read.crop_image is not None else None) for read in reads]
    results: list[list[PassageReads]] = []
    for name in weightings:
        weigh = WEIGHTINGS[name]
        results.append([])
        start = 0
        for passage in passages:
            end = start + len(passage.cut_sets)
            accumulator = VoteAccumulator(recognizer.charset)
            settled: str | None = None
            vote = None
            for read, (width, sharpness) in zip(reads[start:end], quality[start:end]):
                accumulator.add(read, weigh(read.confidence, width, sharpness))
                vote = accumulator.vote()
                if settled is None and is_settled(vote, min_reads=config.voting.settle_reads,
                                                   min_agreement=config.voting.settle_agreement,
                                                   min_weight=config.voting.settle_weight):
                    settled = formatted(vote)
            final = formatted(vote)
            results[-1].append(PassageReads(passage, tuple(r.text for r in reads[start:end]),
                                            settled if settled is not None else final, final))
            start = end
    return results


def score(model: str, results: Sequence[PassageReads]) -> list[ClipReadScore]:
    """Per plate set, then all together."""
    groups: dict[str, list[PassageReads]] = defaultdict(list)
    for r in results:
        groups[r.passage.source].append(r)
    rows = []
    for name, mine in [*sorted(groups.items()), ("all", list(results))]:
        reads = sum(len(r.texts) for r in mine)
        right = sum(t == r.passage.text for r in mine for t in r.texts)
        n = max(len(mine), 1)
        rows.append(ClipReadScore(model, name, len(mine), reads, right / max(reads, 1),
                                  sum(r.vote_settled == r.passage.text for r in mine) / n,
                                  sum(r.vote_all == r.passage.text for r in mine) / n))
    return rows


def pair(base: str, model: str, a: Sequence[PassageReads], b: Sequence[PassageReads]) -> Pairing:
    reads_a = reads_b = pass_a = pass_b = 0
    for x, y in zip(a, b):
        truth = x.passage.text
        for tx, ty in zip(x.texts, y.texts):
            reads_a += tx == truth and ty != truth
            reads_b += ty == truth and tx != truth
        pass_a += x.vote_all == truth and y.vote_all != truth
        pass_b += y.vote_all == truth and x.vote_all != truth
    return Pairing(model, base, reads_a, reads_b, pass_a, pass_b)


@dataclass(frozen=True)
class ClipReadsReport:
    seeds: tuple[int, ...]
    clips: int
    scores: tuple[ClipReadScore, ...]
    pairings: tuple[Pairing, ...]

    def as_dict(self) -> dict[str, object]:
        return {"seeds": list(self.seeds), "clips": self.clips, "scores": [asdict(s) for s in self.scores],
                "pairings": [{**asdict(p), "sign_p": round(p.sign_p, 4)} for p in self.pairings]}


def bench_clip_reads(config: AppConfig, models: Sequence[Path], clips: Sequence[ClipTruth], *, threads: int = 1,
                     every: int = 1, progress: bool = True, seeds: Sequence[int] = (),
                     weightings: Sequence[str] = ("runtime",)) -> ClipReadsReport:
    """Each model (and weighting) over the same crops; rows are named ``MODEL`` or, with more than the runtime
    weighting, ``MODEL [WEIGHTING]``, and paired with the first."""
    from anpr_edge.backends import create_backend
    from anpr_edge.ocr import PlateRecognizer
    from anpr_edge.pipeline import PlateReader, load_detector

    recognizers = [PlateRecognizer(create_backend("onnxruntime", path, threads=threads)) for path in models]
    size = recognizers[0].crop_size
    if any(r.crop_size != size for r in recognizers):
        raise ConfigError("bench-clip-reads: the models must share a crop size (they read the same crops)")
    reader = PlateReader(load_detector(config), recognizers[0], padding=config.crop.padding, rectify=config.crop.rectify,
                         extra_cuts=config.crop.extra_cuts)
    passages = [p for clip in clips for p in collect_crops(clip, reader, every=every, progress=progress)]
    per_model = [results for r in recognizers for results in read_passages(r, config, passages, weightings=weightings)]
    plain = list(weightings) == ["runtime"]
    names = [str(m) if plain else f"{m} [{w}]" for m in models for w in weightings]
    scores = [row for name, results in zip(names, per_model) for row in score(name, results)]
    pairings = [pair(names[0], name, per_model[0], results) for name, results in zip(names[1:], per_model[1:])]
    return ClipReadsReport(tuple(seeds), len(clips), tuple(scores), tuple(pairings))


def format_report(report: ClipReadsReport) -> str:
    lines = [(f"Clip reads: {report.clips} clips (seeds {', '.join(map(str, report.seeds))}), every model on the "
             "same detector crops.\n"),
             "| model | set | passages | reads | per read | vote, settled | vote, all |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in report.scores:
        lines.append(f"| {s.model} | {s.set} | {s.passages} | {s.reads} | {s.per_read:.1%} | {s.vote_settled:.1%} "
                     f"| {s.vote_all:.1%} |")
    if report.pairings:
        lines += ["", ("| model | against | reads only it gets right | only the other | passages only it "
                  "| only the other | sign test p |"), "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for p in report.pairings:
            lines.append(f"| {p.model} | {p.base} | {p.reads_only_model} | {p.reads_only_base} | "
                         f"{p.passages_only_model} | {p.passages_only_base} | {p.sign_p:.3f} |")
    return "\n".join(lines)


def cmd_bench_clip_reads(args: argparse.Namespace) -> int:
    from anpr_edge.bench.cli import bench_config
    from anpr_edge.bench.passage_clips import passage_clip_set

    models = [Path(m) for m in args.models]
    for path in models:
        if not path.is_file():
            raise ConfigError(f"bench-clip-reads: model file not found: {path}")
    config = bench_config(args.config, args.threads)
    clips = [clip for seed in args.seeds for clip in passage_clip_set(args.clips, seed=seed)]
    report = bench_clip_reads(config, models, clips, threads=args.threads, every=args.every, seeds=args.seeds,
                              weightings=list(dict.fromkeys(args.weights)))
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``bench-clip-reads`` to the main CLI's subparsers object."""
    bench = commands.add_parser(
        "bench-clip-reads",
        help="OCR models read the same detector crops of the passage clips (paired; no tracking in the loop)",
        description="Run the config's detector over the passage benchmark's clips, cut each box that matches a "
        "passage's plate as the runtime does, and read every crop with each model. Per model and plate set: "
        "reads right, the vote when it settles (as an early event reports it) and over all reads; each model "
        "against the first: what only one of the two gets right, with a sign test on passages.",
    )
    bench.add_argument("models", nargs="+", metavar="MODEL.onnx", help="OCR models (same crop size)")
    bench.add_argument("--clips", type=positive_int, default=6, metavar="N", help="clips per seed (default 6)")
    bench.add_argument("--seeds", type=int, nargs="+", default=[1, 2], metavar="S",
                       help="clip set seeds, as bench-passages --seed (default 1 2)")
    bench.add_argument("--every", type=positive_int, default=2, metavar="N",
                       help="detect and read every N-th frame (default 2: neighbouring frames are near copies)")
    bench.add_argument("--weights", nargs="+", default=["runtime"], choices=list(WEIGHTINGS), metavar="NAME",
                       help="vote the reads under these read weights, each paired with the first: "
                       "runtime (the service's: confidence x plate width x sharpness), equal, confidence "
                       "(no crop quality), confidence2 (runtime x confidence), width2 (runtime x width factor); "
                       "default runtime")
    bench.add_argument("--config", metavar="FILE", help="YAML config (detector, crop, formats; default built in)")
    bench.add_argument("--threads", type=positive_int, default=1, metavar="N", help="inference threads (default 1)")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout instead of Markdown")
    bench.set_defaults(handler=cmd_bench_clip_reads)
