"""``anpr-edge bench-angles``: OCR exact match on synthetic plates seen from the side, by angle band.

The real sets are mostly plates seen from the front, so they cannot say how an OCR reads a plate photographed
from the pavement or by a camera at the side of a gate. This renders the same synthetic plates
(``synth_plates.synth_sample`` with its camera degradations, one seed) in bands of side angle (yaw, either
side), cuts each at its true box with the runtime's crop (an exact detector box) and reads them with each
model: exact match per band, model and layout. The plates are synthetic, so a model trained on the generator
scores its own training distribution here: compare models on it, not with the real validation sets.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anpr_edge.argtypes import positive_int
from anpr_edge.bench.stage_bench import machine_info, now_utc, write_json
from anpr_edge.errors import AnprError, ConfigError
from anpr_edge.values import PlateCrop

if TYPE_CHECKING:
    from anpr_edge.train.synth_plates import SynthSample

DEFAULT_LAYOUTS = ("eu_fr_siv", "eu_de", "uk_front", "us_generic", "br_mercosur")
DEFAULT_BANDS = ((0.0, 15.0), (15.0, 30.0), (30.0, 45.0), (45.0, 60.0))


@dataclass(frozen=True)
class AngleScore:
    """One model's reads of one band's plates."""

    model: str
    band: tuple[float, float]  # |yaw| in degrees
    plates: int
    exact: float
    by_layout: dict[str, float]


def parse_bands(text: str) -> tuple[tuple[float, float], ...]:
    """``"0:15,15:30"`` -> ((0, 15), (15, 30)); each band within 0-80 degrees, low < high."""
    bands = []
    for part in text.split(","):
        try:
            low, high = (float(v) for v in part.split(":"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not LOW:HIGH in degrees (e.g. 0:15,45:60)") from None
        if not 0.0 <= low < high <= 80.0:
            raise argparse.ArgumentTypeError(f"{part!r} must have 0 <= LOW < HIGH <= 80 degrees")
        bands.append((low, high))
    return tuple(bands)


def band_samples(layouts: Sequence[str], band: tuple[float, float], count: int, seed: int) -> list[SynthSample]:
    """``count`` synthetic plates per layout seen at |yaw| in ``band`` (the same for every model: one seed)."""
    from anpr_edge.train import synth_plates

    samples: list[SynthSample] = []
    for index, layout in enumerate(layouts):
        rng = np.random.default_rng([seed, index, round(band[0] * 10), round(band[1] * 10)])
        samples.extend(synth_plates.synth_sample(rng, [layout], yaw_deg=band) for _ in range(count))
    return samples


def cut_at_true_boxes(samples: Sequence[SynthSample], crop_size: tuple[int, int], padding: float) -> list[PlateCrop]:
    """Each plate cut at its true box with the runtime crop (an exact detector box)."""
    from anpr_edge.crop import crop_plate

    return [crop_plate(sample.image, sample.box, crop_size, padding) for sample in samples]


def band_plates(layouts: Sequence[str], band: tuple[float, float], count: int, seed: int,
                crop_size: tuple[int, int], padding: float) -> tuple[list[PlateCrop], list[str], list[str]]:
    """``band_samples`` cut for a model's crop size: crops, texts, layouts."""
    samples = band_samples(layouts, band, count, seed)
    return (cut_at_true_boxes(samples, crop_size, padding), [s.text for s in samples], [s.layout for s in samples])


def score_band(model: str, band: tuple[float, float], reads: Sequence[str], texts: Sequence[str],
               layouts: Sequence[str]) -> AngleScore:
    right = np.array([read == text for read, text in zip(reads, texts, strict=True)])
    names = np.array(layouts)
    by_layout = {name: float(right[names == name].mean()) for name in dict.fromkeys(layouts)}
    return AngleScore(model, band, len(texts), float(right.mean()) if len(right) else 0.0, by_layout)


def table(scores: Sequence[AngleScore], models: Sequence[str]) -> str:
    lines = ["| side angle (yaw) | plates | " + " | ".join(models) + " |",
             "| --- | ---: |" + " ---: |" * len(models)]
    for band in dict.fromkeys(s.band for s in scores):
        row = {s.model: s for s in scores if s.band == band}
        first = row[models[0]]
        lines.append(f"| {band[0]:g}-{band[1]:g} degrees | {first.plates} | "
                     + " | ".join(f"{row[m].exact:.1%}" for m in models) + " |")
    return "\n".join(lines)


def cmd_bench_angles(args: argparse.Namespace) -> int:
    from anpr_edge.backends import create_backend
    from anpr_edge.ocr import PlateRecognizer

    try:
        from anpr_edge.train import synth_plates
    except ImportError:
        raise AnprError("bench-angles renders synthetic plates: pip install -e '.[train]'") from None
    layouts = tuple(args.layouts.split(",")) if args.layouts else DEFAULT_LAYOUTS
    unknown = [name for name in layouts if name not in synth_plates.LAYOUTS]
    if unknown:
        raise ConfigError(f"--layouts: unknown layout(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(synth_plates.LAYOUTS))}")
    try:
        synth_plates.available_fonts()
    except RuntimeError as exc:
        raise AnprError(str(exc)) from None
    recognizers = {}
    for model in args.models:
        if not Path(model).is_file():
            raise ConfigError(f"{model}: no such ONNX model")
        recognizers[model] = PlateRecognizer(create_backend("onnxruntime", model, threads=args.threads))
    sizes = {r.crop_size for r in recognizers.values()}
    scores: list[AngleScore] = []
    for band in args.bands:
        samples = band_samples(layouts, band, args.count, args.seed)
        texts, names = [s.text for s in samples], [s.layout for s in samples]
        for size in sizes:  # models with another crop size read their own cuts of the same plates
            crops = cut_at_true_boxes(samples, size, args.padding)
            for model, recognizer in recognizers.items():
                if recognizer.crop_size == size:
                    reads = [read.text for read in recognizer.read_crops(crops)]
                    scores.append(score_band(model, band, reads, texts, names))
                    print(f"{model} {band[0]:g}-{band[1]:g} degrees: {scores[-1].exact:.1%}", file=sys.stderr)
    machine = machine_info()
    report = {"time": now_utc(), "machine": machine, "layouts": list(layouts), "count_per_layout": args.count,
              "seed": args.seed, "scores": [dict(asdict(s), band=list(s.band)) for s in scores]}
    if args.json == "-":
        write_json(report, "-")
        return 0
    print(f"anpr-edge bench-angles ({report['time']}): {args.count} plates per layout and band "
          f"({', '.join(layouts)}), seed {args.seed}, {machine.get('cpu')}\n")
    print(table(scores, list(args.models)))
    if args.json:
        write_json(report, args.json)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``bench-angles`` to the main CLI's subparsers object."""
    parser = commands.add_parser(
        "bench-angles",
        help="OCR exact match on synthetic plates seen from the side, by angle band",
        description="Render the same synthetic plates (one seed) in bands of side angle (yaw, either side), cut "
        "each at its true box with the runtime crop and read them with each OCR model: exact match per band "
        "(per layout in --json). Synthetic plates: compare models on them, not with the real sets. Needs the "
        "training extra and the plate fonts.",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL.onnx", help="OCR models")
    parser.add_argument("--layouts", metavar="L1,L2", help="synthetic layouts (default: "
                        f"{','.join(DEFAULT_LAYOUTS)})")
    parser.add_argument("--bands", type=parse_bands, default=DEFAULT_BANDS, metavar="LOW:HIGH,...",
                        help="side-angle bands in degrees (default 0:15,15:30,30:45,45:60)")
    parser.add_argument("--count", type=positive_int, default=200, metavar="N",
                        help="plates per layout and band (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="plate seed (default 1)")
    parser.add_argument("--padding", type=float, default=0.15, help="the runtime crop's padding (default 0.15)")
    parser.add_argument("--threads", type=positive_int, default=2, help="inference threads (default 2)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': JSON on "
                        "stdout instead of the table)")
    parser.set_defaults(handler=cmd_bench_angles)
