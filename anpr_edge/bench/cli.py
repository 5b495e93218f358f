"""``anpr-edge bench-passages``: the passage benchmark on video (issue 5's targets).

``register(commands)`` adds the subcommand to the main parser. Like every subcommand: the result on stdout
(a Markdown table, or one JSON object with ``--json``), logs and progress bars on stderr, user mistakes as
``AnprError`` (one message, exit code 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace

from anpr_edge.argtypes import non_negative_int, positive_int
from anpr_edge.config import AppConfig, default_config, load_config
from anpr_edge.errors import ConfigError

log = logging.getLogger("anpr_edge.bench")


def bench_config(path: str | None, threads: int) -> AppConfig:
    """The config the benchmark runs with: the file's (or the built-in) models, tracking, voting, events and
    formats, with ``threads`` inference threads, texts in the clear (scoring needs them: no hashing) and
    crops kept in memory (no files written)."""
    config = load_config(path) if path else default_config()
    events = config.events.model_copy(update={
        "hash_text": False, "crop": "base64" if config.events.crop == "file" else config.events.crop})
    return config.model_copy(update={
        "inference": config.inference.model_copy(update={"threads": threads}), "events": events})


def cmd_bench_passages(args: argparse.Namespace) -> int:
    from anpr_edge.bench.passage_bench import (
        PassageBenchReport,
        bench_passages,
        format_report,
        smoke_traffic,
        traffic_clips,
    )
    from anpr_edge.bench.passage_clips import passage_clip_set
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.train.datasets import datasets_root

    if args.clips == 0 and not args.traffic:
        raise ConfigError("bench-passages: nothing to do (--clips 0 and no --traffic)")
    config = bench_config(args.config, args.threads)
    reader = PlateReader.from_config(config, photos=False)  # a missing model is a clear error before any clip is made
    seeds = tuple(dict.fromkeys(args.seed))
    seed = seeds[0] if len(seeds) == 1 else seeds
    report = PassageBenchReport(clips=0, seed=seed)
    if args.clips:
        clips = [clip for s in seeds for clip in passage_clip_set(args.clips, seed=s)]
        report = bench_passages(config, reader, clips, seed=seed)
    if args.traffic:
        paths = traffic_clips(datasets_root())
        if not paths:
            raise ConfigError(f"bench-passages --traffic: no clips in {datasets_root() / 'traffic-videos'}")
        report = replace(report, traffic=tuple(smoke_traffic(config, reader, paths)))
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``bench-passages`` to the main CLI's subparsers object."""
    bench = commands.add_parser(
        "bench-passages",
        help="event-level benchmark on labelled video: one event per passage, correct text, latency, speed",
        description="Render (or reuse from the cache) clips in which real plate photos from the shared sets' "
        "validation splits and the fr-plate-scenes test set drive towards the camera, with ground truth; run "
        "the `run` pipeline on them and score every passage: exactly one event, correct text, voting against "
        "the single best frame, duplicates, false events, early-event latency, frames/s and OCR reads skipped. "
        "--traffic adds the real traffic clips as a smoke test (events and their texts, no ground truth).",
    )
    bench.add_argument("--clips", type=non_negative_int, default=6, metavar="N", help="labelled clips (default 6; 0: none)")
    bench.add_argument("--seed", type=int, nargs="+", default=[1], metavar="S",
                       help="clip set seed (default 1); several pool their clip sets into one report")
    bench.add_argument("--traffic", action="store_true", help="also run the real clips in traffic-videos")
    bench.add_argument("--config", metavar="FILE", help="YAML config (models, tracking, voting, events, formats)")
    bench.add_argument("--threads", type=positive_int, default=1, metavar="N", help="inference threads per model (default 1)")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout instead of Markdown")
    bench.set_defaults(handler=cmd_bench_passages)
