"""``anpr-edge bench-sizes``: latency and accuracy against the detector's input size, with a plot.

For each size (``--sizes``, default 320,416,512,640) the bundled (or configured) detector runs at that
letterbox size on the same labelled full images: the shared scene sets' fixed validation splits and the
fr-plate-scenes test set (``read_eval.shared_scene_sets``), plus any label CSV with boxes given. Per size:
detector ms per image (median; ``PlateDetector.detect`` alone), ms per image of the whole read path
(detector + crop + OCR, median and p95; file decoding excluded), and per set detector recall and precision
at IoU 0.5 and, where images have text, end-to-end exact match (``read_eval.evaluate_read``, the same
scoring as ``eval-read``). ``--plot FILE.png`` draws both against the size (``plots.plot_sizes``; needs
matplotlib, else the plot is skipped with a message). The detector must accept any input size (an ONNX
export with dynamic height/width, as ``train-detector`` makes it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anpr_edge.argtypes import non_negative_int, positive_int
from anpr_edge.bench.accuracy import eval_config, spread
from anpr_edge.bench.stage_bench import (
    backend_name,
    input_size_arg,
    machine_info,
    median,
    now_utc,
    quantile,
    rounded,
    write_json,
)
from anpr_edge.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from anpr_edge.config import AppConfig
    from anpr_edge.read_eval import LabeledScene, ReadEvalReport
    from anpr_edge.values import PlateRead

log = logging.getLogger("anpr_edge.bench")

DEFAULT_SIZES = (320, 416, 512, 640)


@dataclass
class SizeResult:
    input_size: int
    detector_ms: list[float] = field(default_factory=list)
    reports: list[ReadEvalReport] = field(default_factory=list)

    @property
    def read_ms(self) -> list[float]:
        return [ms for report in self.reports for ms in report.ms]

    def as_dict(self) -> dict[str, Any]:
        sets = {}
        for report in self.reports:
            d = report.as_dict()
            sets[report.name] = {"images": d["images"], "plates": d["plates"], "recall": d["recall"],
                                 "precision": d["precision"], "exact_match": d["exact_match"],
                                 "text_images": d["text_images"], "recall_by_width": d["recall_by_width"]}
        plates = sum(r.plates for r in self.reports)
        return {
            "input_size": self.input_size,
            "detector_ms_median": rounded(median(self.detector_ms), 2),
            "detector_ms_p95": rounded(quantile(self.detector_ms, 0.95), 2),
            "read_ms_median": rounded(median(self.read_ms), 2),
            "read_ms_p95": rounded(quantile(self.read_ms, 0.95), 2),
            "recall_all": rounded(sum(r.found for r in self.reports) / plates, 4) if plates else None,
            "sets": sets,
        }


def sweep_sizes(config: AppConfig, sizes: Sequence[int], sets: Sequence[tuple[str, Sequence[LabeledScene]]], *,
                progress: bool | None = None) -> list[SizeResult]:
    """Each size in turn: load the models with that detector size and score every set."""
    from anpr_edge.pipeline import PlateReader, best_first
    from anpr_edge.read_eval import evaluate_read

    results = []
    for size in sizes:
        sized = eval_config(config, threads=config.inference.threads, input_size=size, backend=None)
        reader = PlateReader.from_config(sized, photos=False)
        result = SizeResult(size)

        def read(image: np.ndarray, reader: PlateReader = reader, result: SizeResult = result) -> list[PlateRead]:
            began = time.perf_counter()
            (detections,) = reader.detector.detect([image])
            result.detector_ms.append((time.perf_counter() - began) * 1000.0)
            reads = reader.read_detections(image, detections)
            return best_first(reads)  # as PlateReader.read orders them

        for name, scenes in sets:
            result.reports.append(evaluate_read(f"{name}", scenes, read, progress=progress is not False,
                                                min_confidence=sized.models.ocr.min_confidence))
        log.info("detector %d px: recall %s, detector %.1f ms, read path %.1f ms per image (median)", size,
                 result.as_dict()["recall_all"], median(result.detector_ms), median(result.read_ms))
        results.append(result)
    return results


def percent_cell(value: float | None) -> str:
    """A fraction as a table cell: 0.8125 -> "81.2%", None -> "-"."""
    return "-" if value is None else f"{100 * value:.1f}%"


def format_table(results: Sequence[SizeResult]) -> str:
    rows = [r.as_dict() for r in results]
    names = list(rows[0]["sets"]) if rows else []
    with_text = [n for n in names if any(r["sets"][n]["text_images"] for r in rows)]
    head = ["detector px", "detector ms median", "read path ms median", "read path ms p95", "recall (all)",
            *[f"recall {n}" for n in names], *[f"exact {n}" for n in with_text]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        cells = [str(r["input_size"]), f"{r['detector_ms_median']:.1f}", f"{r['read_ms_median']:.1f}",
                 f"{r['read_ms_p95']:.1f}", percent_cell(r["recall_all"]),
                 *[percent_cell(r["sets"][n]["recall"]) for n in names], *[percent_cell(r["sets"][n]["exact_match"]) for n in with_text]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [input_size_arg(part.strip()) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected sizes such as 320,416,512,640: {text!r}")
    return sorted(set(sizes))


def cmd_bench_sizes(args: argparse.Namespace) -> int:
    from anpr_edge.config import default_config, load_config
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.read_eval import read_scene_labels, shared_scene_sets
    from anpr_edge.service import model_versions

    config = eval_config(load_config(args.config) if args.config else default_config(), threads=args.threads,
                         input_size=None, backend=args.backend)
    reader = PlateReader.from_config(config)  # a missing model is a clear error before any set is read
    native = reader.detector.input_size
    sets: list[tuple[str, list[LabeledScene]]] = shared_scene_sets() if args.shared else []
    sets += [(p, read_scene_labels(p)) for p in args.labels]
    if not sets:
        raise ConfigError("bench-sizes: no labelled full images (give label CSVs with boxes, or drop --no-shared)")
    sets = [(name, spread(scenes, args.limit)) for name, scenes in sets]
    settings = {"sizes": args.sizes, "model_input_size": native, "threads": config.inference.threads,
                "backend": backend_name(reader.detector.backend), "detector_confidence": reader.detector.confidence,
                "models": model_versions(reader), "limit": args.limit, "labels": list(args.labels),
                "shared": args.shared}
    del reader
    date = now_utc()
    machine = machine_info()
    results = sweep_sizes(config, args.sizes, sets, progress=False if args.no_progress else None)
    report: dict[str, Any] = {"command": "bench-sizes", "date": date, "machine": machine, "settings": settings,
              "sizes": [r.as_dict() for r in results]}
    plot = None
    if args.plot:
        from anpr_edge.bench.plots import plot_sizes

        title = (f"anpr-edge bench-sizes, {date[:10]}: {machine.get('cpu')}, {config.inference.threads} thread(s), "
                 f"{settings['backend']}" + (f", --limit {args.limit}" if args.limit else ""))
        plot = plot_sizes(report["sizes"], args.plot, title=title)
        report["plot"] = None if plot is None else str(plot)
    if args.json != "-":
        m = machine
        sys.stdout.write(
            f"anpr-edge bench-sizes ({date}): {settings['backend']}, {settings['threads']} thread(s) per model, "
            f"score >= {settings['detector_confidence']}; the model's own size is {native} px.\n"
            f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('usable_cores')} usable), {m.get('os')}, "
            f"Python {m.get('python')}, ONNX Runtime {m.get('onnxruntime')}; load average {m.get('load_average')}.\n\n"
            + format_table(results) + "\n" + (f"\nPlot: {plot}\n" if plot else ""))
        sys.stdout.flush()
    if args.json:
        write_json(report, args.json)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``bench-sizes`` to the main CLI's subparsers object."""
    parser = commands.add_parser(
        "bench-sizes",
        help="latency and accuracy per detector input size (recall on the shared sets, end-to-end exact match), "
        "with a PNG plot",
        description="Run the read path at each detector input size on the shared scene sets' fixed splits (and "
        "label CSVs with boxes): detector and read-path ms per image, detector recall/precision at IoU 0.5, "
        "end-to-end exact match where images have text. --plot writes latency and accuracy against the size "
        "as a PNG (needs matplotlib: pip install 'anpr-edge[bench]').",
    )
    parser.add_argument("labels", nargs="*", metavar="LABELS.csv", help="label CSVs of full images with boxes")
    parser.add_argument("--sizes", type=parse_sizes, default=list(DEFAULT_SIZES), metavar="PX,PX,...",
                        help="detector input sizes, multiples of 32 (default 320,416,512,640)")
    parser.add_argument("--no-shared", dest="shared", action="store_false", help="leave out the shared scene sets")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="at most N images per set, spread evenly")
    parser.add_argument("--threads", type=non_negative_int, default=1, metavar="N",
                        help="threads per model (default 1)")
    parser.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"), help="inference backend")
    parser.add_argument("--config", metavar="FILE", help="YAML config (models, thresholds, crop padding)")
    parser.add_argument("--plot", metavar="FILE.png", help="write the plot here (e.g. docs/bench-sizes.png)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': JSON on "
                        "stdout instead of the table)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=cmd_bench_sizes)
