"""``anpr-edge fit-calibration``: fit the map from a vote's score to the published event confidence.

An event's ``confidence`` should be the chance that its text is right: a subscriber that keeps events at 0.9
and above expects about one in ten of the weakest kept to be wrong. The vote's raw ``score`` (the probability
of the voted text under the pooled reads) is not that: pooling many noisy reads spreads each position's
probability while the vote's choice is right more often than any one read, so votes come out under-confident,
by an amount that depends on the model. This command fits the map on the events of ``bench-passages --json``
runs (each event's ``score`` and whether its text is right), with isotonic regression
(``voting.fit_calibration``), reports the calibration error before and after on the events it was fitted on
and on a held-out plate source, and can write the map into the OCR model's metadata (``vote_calibration``),
where the daemon finds it: a model carries the map measured for it, and ``voting.calibration`` in the config
still overrides it.

``--reads`` fits the other map a model carries, ``read_calibration``: from one plate's read in a photo (its
views voted, as ``anpr-edge read`` and ``ocr`` read it) to the chance it is right, on the validation crops of
the sets the OCR trains on, with the French test held out. A label-smoothed model's own probability of a sure
read stays far below 1, so without it ``read`` would report 0.4 for reads that are right 99 times in 100.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anpr_edge.argtypes import positive_int
from anpr_edge.bench.passage_score import (
    CONFIDENCE_THRESHOLDS,
    ConfidenceSummary,
    summarize_confidence,
)
from anpr_edge.config import AppConfig
from anpr_edge.errors import ConfigError
from anpr_edge.ocr import READ_CALIBRATION_KEY, VOTE_CALIBRATION_KEY
from anpr_edge.voting import Calibration, fit_calibration

log = logging.getLogger("anpr_edge.bench")

DEFAULT_HOLDOUT = "fr-plate-scenes"  # the one plate source the OCR never trained on
# The sets whose validation crops the read map is fitted on: those the shipped OCR trains on (the Chinese set
# is not trained on by default: its reads are another population).
READ_FIT_SETS = ("us-nyc-plate-crops", "br-plate-crops", "tn-plate-crops")


@dataclass(frozen=True)
class JudgedEvent:
    """One event of a labelled run: the vote's raw score, whether its text was right, the plate's source."""

    score: float
    right: bool
    source: str | None  # None: a false event (it matched no passage)


def load_judged_events(paths: list[Path]) -> list[JudgedEvent]:
    """Every event with a text and a score in ``bench-passages --json`` outputs."""
    judged: list[JudgedEvent] = []
    for path in paths:
        try:
            report = json.loads(path.read_text())
        except OSError as error:
            raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not JSON ({error}); give the output of bench-passages --json") from None
        if not isinstance(report, dict) or not isinstance(report.get("passages"), list):
            raise ConfigError(f"{path}: no 'passages' list; give the output of bench-passages --json")
        missing = 0
        for passage in report["passages"]:
            if not isinstance(passage, dict) or not isinstance(passage.get("text"), str):
                raise ConfigError(f"{path}: a passage without its true text; give the output of bench-passages --json")
            for event in passage.get("events", ()):
                if not event.get("text"):
                    continue
                if event.get("score") is None:
                    missing += 1
                    continue
                judged.append(JudgedEvent(float(event["score"]), event["text"] == passage["text"], passage.get("source")))
        for event in report.get("false_events", ()):
            if event.get("text"):
                if event.get("score") is None:
                    missing += 1
                else:
                    judged.append(JudgedEvent(float(event["score"]), False, None))
        if missing:
            raise ConfigError(f"{path}: {missing} events have no 'score' (made by an older bench-passages): run it again")
    return judged


@dataclass(frozen=True)
class CalibrationFit:
    calibration: Calibration
    fitted: tuple[ConfidenceSummary, ConfidenceSummary]  # events it was fitted on: raw score, then mapped
    held_out: tuple[ConfidenceSummary, ConfidenceSummary] | None  # the held-out source's events, same
    holdout_source: str | None

    def as_dict(self) -> dict[str, Any]:
        def pair(p: tuple[ConfidenceSummary, ConfidenceSummary] | None) -> dict[str, Any] | None:
            return None if p is None else {"score": p[0].as_dict(), "calibrated": p[1].as_dict()}

        return {"calibration": [list(point) for point in self.calibration.points], "fitted": pair(self.fitted),
                "held_out": pair(self.held_out), "holdout_source": self.holdout_source}


def judged_reads(config: AppConfig) -> list[JudgedEvent]:
    """One judged read per crop of the validation splits of ``READ_FIT_SETS`` and of the held-out test, each
    read as ``anpr-edge read`` reads a plate (the box cut and ``crop.photo_cuts``, voted), with the raw
    confidence (no read calibration) as its score."""
    from anpr_edge.ocr_eval import recognizer_reader, runtime_cuts, shared_eval_sets
    from anpr_edge.pipeline import load_recognizer
    from anpr_edge.train.datasets import read_image

    recognizer = load_recognizer(config)
    reader = recognizer_reader(recognizer)
    judged: list[JudgedEvent] = []
    for name, items in shared_eval_sets(recognizer.charset, names=(*READ_FIT_SETS, DEFAULT_HOLDOUT)):
        cut_sets = [runtime_cuts(read_image(item.path), item, recognizer.crop_size, config.crop.padding,
                                 config.crop.rectify, config.crop.photo_cuts) for item in items]
        source = name.split(":")[0]
        judged += [JudgedEvent(confidence, text == item.text, source)
                   for (text, confidence), item in zip(reader(cut_sets), items)]
        log.info("%s: %d reads", name, len(items))
    return judged


def fit_events(events: list[JudgedEvent], *, holdout_source: str | None = DEFAULT_HOLDOUT,
               max_points: int = 8) -> CalibrationFit:
    """Fit the map on the events not of ``holdout_source`` and score it on both parts."""
    fit = [e for e in events if holdout_source is None or e.source != holdout_source]
    held = [e for e in events if holdout_source is not None and e.source == holdout_source]
    if len(fit) < 20:
        raise ConfigError(f"fit-calibration: {len(fit)} events to fit on; need at least 20 (more clips or seeds)")
    calibration = _rounded(fit_calibration([e.score for e in fit], [e.right for e in fit], max_points=max_points))

    def before_after(part: list[JudgedEvent]) -> tuple[ConfidenceSummary, ConfidenceSummary]:
        scores = np.array([e.score for e in part])
        right = np.array([e.right for e in part], dtype=bool)
        mapped = np.array([calibration(s) for s in scores])
        return summarize_confidence(scores, right), summarize_confidence(mapped, right)

    return CalibrationFit(calibration, before_after(fit), before_after(held) if held else None,
                          holdout_source if held else None)


def calibrate_model_reads(model: Path, config: AppConfig | None = None) -> CalibrationFit | None:
    """Fit ``model``'s read map on the shared validation crops and store it in the model (what ``train-ocr``
    does to every model it exports, so none ships reporting raw probabilities). None, with a warning, when
    there are too few crops to fit on (tiny test data)."""
    from anpr_edge.config import default_config

    config = (config or default_config()).with_ocr_model(Path(model).resolve())
    try:
        fit = fit_events(judged_reads(config), holdout_source=DEFAULT_HOLDOUT)
    except ConfigError as error:
        log.warning("%s: no read calibration fitted (%s); `read` will report raw probabilities", model, error)
        return None
    write_model_calibration(Path(model), fit.calibration, READ_CALIBRATION_KEY)
    return fit


def _rounded(calibration: Calibration, places: int = 4) -> Calibration:
    """The map with its points rounded as they are written (metadata, YAML), so what is scored is what ships."""
    points: list[tuple[float, float]] = []
    for x, y in calibration.points:
        x, y = round(x, places), round(y, places)
        if points and x <= points[-1][0]:
            continue
        points.append((x, max(y, points[-1][1]) if points else y))
    return Calibration(tuple(points))


def write_model_calibration(model: Path, calibration: Calibration, key: str = VOTE_CALIBRATION_KEY) -> None:
    """Store the map in the ONNX model's metadata under ``key`` (weights and graph untouched)."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("fit-calibration --write needs the onnx package: pip install 'anpr-edge[train]'") from None
    try:
        proto = onnx.load(str(model))
    except Exception as error:  # onnx raises several kinds for a file that is not a model
        raise ConfigError(f"{model}: not an ONNX model ({error})") from None
    keep = [p for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, json.dumps([list(point) for point in calibration.points])
    onnx.save(proto, str(model))


def format_fit(fit: CalibrationFit, *, reads: bool = False) -> str:
    def rows(name: str, pair: tuple[ConfidenceSummary, ConfidenceSummary]) -> list[str]:
        raw, mapped = pair
        line = []
        for label, s in (("score as it is", raw), ("calibrated", mapped)):
            kept = {t.threshold: t for t in s.thresholds}
            cells = [f"{100 * kept[t].kept_correct / kept[t].kept:.1f}% of {kept[t].kept}" if kept[t].kept else "-"
                     for t in CONFIDENCE_THRESHOLDS]
            line.append(f"| {name} | {label} | {s.events} | {s.correct / s.events:.3f} | {s.mean_confidence:.3f} | "
                        f"{s.calibration_error:.3f} | " + " | ".join(cells) + " |")
        return line

    head = ["reads" if reads else "events", "confidence", "n", "right", "mean confidence", "calibration error"]
    head += [f"right at >= {t:g}" for t in CONFIDENCE_THRESHOLDS]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    lines += rows("fitted on", fit.fitted)
    if fit.held_out is not None:
        lines += rows(f"held out ({fit.holdout_source})", fit.held_out)
    points = json.dumps([list(point) for point in fit.calibration.points])
    if reads:
        return "\n".join(lines) + f"\n\n{READ_CALIBRATION_KEY}: {points}\n"
    return "\n".join(lines) + f"\n\nvoting:\n  calibration: {points}\n"


def cmd_fit_calibration(args: argparse.Namespace) -> int:
    if args.reads == bool(args.passages):
        raise ConfigError("fit-calibration: give bench-passages --json outputs (the event map) or --reads (the read "
                          "map), not both")
    if not args.reads and (args.config or args.model):
        raise ConfigError("fit-calibration: --config and --model go with --reads (the passages files name their run)")
    if args.reads:
        from anpr_edge.config import command_config

        events = judged_reads(command_config(args.config, args.model))
    else:
        events = load_judged_events([Path(p) for p in args.passages])
    fit = fit_events(events, holdout_source=args.holdout_source or None, max_points=args.points)
    key = READ_CALIBRATION_KEY if args.reads else VOTE_CALIBRATION_KEY
    if args.write:
        write_model_calibration(Path(args.write), fit.calibration, key)
        log.info("wrote the map into %s (metadata %r)", args.write, key)
    if args.json:
        sys.stdout.write(json.dumps(fit.as_dict()) + "\n")
    else:
        sys.stdout.write(format_fit(fit, reads=args.reads))
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``fit-calibration`` to the main CLI's subparsers object."""
    parser = commands.add_parser(
        "fit-calibration",
        help="fit the map from a vote's score to the event confidence on bench-passages runs; "
        "optionally write it into the OCR model",
        description="Read the events of `anpr-edge bench-passages --json` runs (each event's raw vote score and "
        "whether its text is right), fit a monotone map from score to confidence (isotonic regression) on the "
        "events whose plate is not from the held-out source, and report, on those and on the held-out ones, the "
        "share right, the mean confidence, the expected calibration error and the share right above thresholds, "
        "before and after the map. --write stores the map in the OCR model's metadata, where the daemon uses it "
        "unless voting.calibration is set. --reads fits the map of single photo reads instead (the confidence `read` and "
        "`ocr` report), on the shared validation crops. Fit both again whenever the OCR model changes.",
    )
    parser.add_argument("passages", nargs="*", metavar="PASSAGES.json", help="outputs of bench-passages --json")
    parser.add_argument("--reads", action="store_true",
                        help="fit the read map instead (read_calibration: the confidence `read` and `ocr` report) on "
                        f"the validation crops of {', '.join(READ_FIT_SETS)}, read as `read` reads a plate")
    parser.add_argument("--config", metavar="FILE", help="with --reads: YAML config (crop views, model path)")
    parser.add_argument("--model", metavar="ONNX", help="with --reads: the OCR model to read with (default: the config's)")
    parser.add_argument("--holdout-source", default=DEFAULT_HOLDOUT, metavar="NAME",
                        help=f"plate source kept out of the fit and scored apart (default {DEFAULT_HOLDOUT}; '' for none)")
    parser.add_argument("--points", type=positive_int, default=8, metavar="N",
                        help="at most N points in the map (default 8)")
    parser.add_argument("--write", metavar="MODEL.onnx", help="store the map in this OCR model's metadata")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout instead of Markdown")
    parser.set_defaults(handler=cmd_fit_calibration)
