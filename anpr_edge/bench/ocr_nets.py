"""``anpr-edge bench-ocr-nets``: OCR inference speed of network shapes, before training them.

Training one OCR network takes hours on CPU, and its speed does not depend on its weights: this builds
each network with random weights, exports it as ``train-ocr`` does (the same static ONNX graph), and times
it as the model card does (``ocr_eval.latency_ms``: single-thread ONNX Runtime, median ms per crop at
batch 1 and batch 32 on random crops). Give training recipes (YAML, as for ``train-ocr --config``;
``default`` is the built-in recipe) and/or trained ONNX models (``.onnx``, timed as they are), so a new
shape is chosen against the speed targets and the shipped model on the same machine in the same run.
Needs the training extra (torch) for recipes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from anpr_edge.argtypes import positive_int
from anpr_edge.bench.stage_bench import machine_info, now_utc, write_json
from anpr_edge.errors import AnprError, ConfigError


@dataclass(frozen=True)
class NetTiming:
    """One network's speed: single-thread ms per crop at batch 1 and at ``batch``."""

    name: str
    parameters: int | None  # None for an ONNX model given as it is
    crop: tuple[int, int]  # width, height
    map_cells: int | None
    single_ms: float
    batched_ms: float
    file_mb: float


def time_onnx(name: str, path: Path, batch: int, parameters: int | None = None, map_cells: int | None = None) -> NetTiming:
    from anpr_edge.backends import create_backend
    from anpr_edge.ocr import PlateRecognizer
    from anpr_edge.ocr_eval import latency_ms

    recognizer = PlateRecognizer(create_backend("onnxruntime", path, threads=1))
    return NetTiming(name, parameters, recognizer.crop_size, map_cells, latency_ms(recognizer, 1),
                     latency_ms(recognizer, batch), path.stat().st_size / 1e6)


def time_recipe(name: str, recipe: str | None, batch: int, workdir: Path) -> NetTiming:
    """Build the recipe's network (seeded random weights), export it like ``train-ocr`` and time it."""
    import torch

    from anpr_edge.train.ocr_model import PlateOcrNet, count_parameters
    from anpr_edge.train.ocr_train import export_onnx, load_train_config

    network = load_train_config(recipe).model.network()
    torch.manual_seed(0)
    model = PlateOcrNet(network).eval()
    path = export_onnx(model, workdir / f"{len(list(workdir.iterdir()))}.onnx")
    rows, cols = network.feature_size
    return time_onnx(name, path, batch, count_parameters(model), rows * cols)


def table(timings: list[NetTiming], batch: int) -> str:
    lines = [f"| network | crop | map cells | parameters | ms/crop batch 1 | ms/crop batch {batch} | file MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for t in timings:
        lines.append(f"| {t.name} | {t.crop[0]}x{t.crop[1]} | {t.map_cells if t.map_cells is not None else '-'} | "
                     f"{f'{t.parameters:,}' if t.parameters is not None else '-'} | {t.single_ms:.2f} | "
                     f"{t.batched_ms:.2f} | {t.file_mb:.1f} |")
    return "\n".join(lines)


def cmd_bench_ocr_nets(args: argparse.Namespace) -> int:
    recipes = [item for item in args.networks if not item.endswith(".onnx")]
    for item in args.networks:
        if item.endswith(".onnx") and not Path(item).is_file():
            raise ConfigError(f"{item}: no such ONNX model")
        if item in recipes and item != "default" and not Path(item).is_file():
            raise ConfigError(f"{item}: no such training recipe (a YAML file, 'default' or an .onnx model)")
    if recipes:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise AnprError("bench-ocr-nets needs the training extra for recipes: pip install -e '.[train]'") from None
    timings: list[NetTiming] = []
    with tempfile.TemporaryDirectory(prefix="anpr-ocr-nets-") as tmp:
        for item in args.networks:
            if item in recipes:
                recipe = None if item == "default" else item
                timings.append(time_recipe(Path(item).name, recipe, args.batch, Path(tmp)))
            else:  # the path as given: two models may share a file name
                timings.append(time_onnx(item, Path(item), args.batch))
            print(f"{item}: {timings[-1].single_ms:.2f} / {timings[-1].batched_ms:.2f} ms", file=sys.stderr)
    machine = machine_info()
    report = {"time": now_utc(), "machine": machine, "batch": args.batch,
              "networks": [dict(vars(t), crop=list(t.crop)) for t in timings]}
    if args.json == "-":
        write_json(report, "-")
        return 0
    print(f"anpr-edge bench-ocr-nets ({report['time']}): single-thread ONNX Runtime {machine.get('onnxruntime')}, "
          f"{machine.get('cpu')}, {machine.get('cores')} cores, load average {machine.get('load_average')}\n")
    print(table(timings, args.batch))
    if args.json:
        write_json(report, args.json)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``bench-ocr-nets`` to the main CLI's subparsers object."""
    parser = commands.add_parser(
        "bench-ocr-nets",
        help="single-thread OCR speed of network shapes (training recipes, random weights) and ONNX models",
        description="Build each training recipe's network with random weights, export it as train-ocr does and "
        "time it as the model card does (single-thread ONNX Runtime, median ms per crop at batch 1 and batch N); "
        ".onnx arguments are timed as they are. Speed does not depend on the weights, so a shape can be chosen "
        "against the targets before hours of training. Recipes need the training extra (torch).",
    )
    parser.add_argument("networks", nargs="+", metavar="RECIPE.yaml|default|MODEL.onnx",
                        help="training recipes ('default': the built-in one) and/or ONNX models")
    parser.add_argument("--batch", type=positive_int, default=32, metavar="N", help="the batched size (default 32)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': JSON on stdout "
                        "instead of the table)")
    parser.set_defaults(handler=cmd_bench_ocr_nets)
