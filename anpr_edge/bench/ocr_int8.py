"""``anpr-edge quantize-ocr``: an INT8 copy of an OCR model for ONNX Runtime on the CPU, to weigh speed against
accuracy.

ONNX Runtime's static quantisation (QDQ format, weights per channel as int8, activations as uint8) of the
operator types named (default: the convolutions, the encoder's share of the time), calibrated on the OCR crops
the runtime would cut from the calibration frames (``calib/`` and/or ``--images``: the detector of the config
finds the plates, ``crop_plate`` cuts them; the same crops as ``anpr-edge calibrate`` feeds TensorRT). The
copy keeps the model's metadata (charset, crop size), so ``eval-ocr --model``, ``bench-ocr-nets`` and
``models.ocr.path`` take it as they take the FP32 model. Measured on the shipped model (docs/BENCHMARKS.md,
OCR section): about 30% faster, the validation mean within 0.2 points but BR 2 points lower, so it is a tool
for CPU sites that need the time, not the default.
Needs the ``onnx`` package (training extra).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from anpr_edge.argtypes import positive_int
from anpr_edge.errors import AnprError, ConfigError

DEFAULT_OPS = ("Conv",)
QUANTIZABLE_OPS = ("Conv", "MatMul", "Gemm")
DEFAULT_MAX_CROPS = 512
# How the activations' ranges are set from the calibration crops: min/max, the 99.999th percentile of a histogram
# (ONNX Runtime's default for that method), or the entropy (KL) fit. Percentile lost the least on the validation
# splits with the shipped model (docs/BENCHMARKS.md), so it is the default.
CALIBRATION_METHODS = ("percentile", "minmax", "entropy")
_CALIB_BATCH = 8


def take_crops(batches: Iterable[np.ndarray], limit: int) -> np.ndarray:
    """Up to ``limit`` crops (N, 3, h, w) from OCR input batches, in order."""
    taken: list[np.ndarray] = []
    count = 0
    for batch in batches:
        taken.append(batch[: limit - count])
        count += len(taken[-1])
        if count >= limit:
            break
    if not taken:
        return np.zeros((0, 0, 0, 0), np.float32)
    return np.concatenate(taken).astype(np.float32, copy=False)


def quantize_ocr(
    model: Path, output: Path, crops: np.ndarray, ops: Sequence[str] = DEFAULT_OPS, calibration: str = "percentile"
) -> Path:
    """Write ``model`` with ``ops`` quantised to INT8 (static, QDQ, per channel), calibrated on ``crops`` with the
    ``calibration`` method (one of ``CALIBRATION_METHODS``)."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as error:  # onnxruntime.quantization imports the onnx package
        raise AnprError(f"quantize-ocr needs the onnx package (training extra: pip install -e '.[train]'): {error}") from None
    if calibration not in CALIBRATION_METHODS:
        raise ConfigError(f"calibration method {calibration!r}: use one of {', '.join(CALIBRATION_METHODS)}")
    method = {"percentile": CalibrationMethod.Percentile, "minmax": CalibrationMethod.MinMax,
              "entropy": CalibrationMethod.Entropy}[calibration]
    if len(crops) == 0:
        raise ConfigError("no calibration crops: the detector found no plate in the calibration frames")
    import onnxruntime as ort

    input_name = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = (crops[i:i + _CALIB_BATCH] for i in range(0, len(crops), _CALIB_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="anpr-int8-") as tmp:
        # Shape inference and graph clean-up first, as ONNX Runtime advises before static quantisation.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        # The histogram calibrators print their progress with print(): stdout is for the JSON record only.
        with contextlib.redirect_stdout(sys.stderr):
            quantize_static(str(prepared), str(output), Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=list(ops), calibrate_method=method)
    return output


def cmd_quantize_ocr(args: argparse.Namespace) -> int:
    from anpr_edge.config import default_config, load_config
    from anpr_edge.trt_build import calibration_source, resolve_calibration_folders

    model, output = Path(args.model), Path(args.output)
    if not model.is_file():
        raise ConfigError(f"{model}: no such ONNX model")
    if output.resolve() == model.resolve():
        raise ConfigError(f"--output {output} is the model itself: write the INT8 copy elsewhere")
    config = load_config(args.config) if args.config else default_config()
    config = config.with_ocr_model(model)
    folders = resolve_calibration_folders(args.images, not args.no_bundled)
    batches, summary = calibration_source(config, folders)
    crops = take_crops(batches("ocr"), args.max_crops)
    print(f"quantize-ocr: {len(crops)} calibration crops from {summary['images']} frames", file=sys.stderr)
    quantize_ocr(model, output, crops, args.ops, args.calibration)
    record = {"model": str(model), "output": str(output), "ops": list(args.ops), "calibration": args.calibration,
              "calibration_crops": len(crops),
              "calibration_frames": summary["images"], "mb": round(output.stat().st_size / 1e6, 2)}
    sys.stdout.write(json.dumps(record) + "\n")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``quantize-ocr`` to the main CLI's subparsers object."""
    parser = commands.add_parser(
        "quantize-ocr",
        help="write an INT8 copy of an OCR model for ONNX Runtime (static, calibrated on the calib/ frames)",
        description="Quantise the OCR model's convolutions (or the --ops named) to INT8 with ONNX Runtime's static "
        "quantisation (QDQ, per channel), calibrated on the plate crops the config's detector finds in the "
        "calibration frames. Time it with bench-ocr-nets and score it with eval-ocr --model before using it: on the "
        "shipped model it is about 30%% faster, its validation mean within 0.2 points but BR 2 points lower (docs/BENCHMARKS.md).",
    )
    parser.add_argument("model", metavar="MODEL.onnx", help="the FP32 OCR model")
    parser.add_argument("--output", required=True, metavar="FILE", help="where to write the INT8 copy")
    parser.add_argument("--ops", nargs="+", choices=QUANTIZABLE_OPS, default=list(DEFAULT_OPS), metavar="OP",
                        help=f"operator types to quantise, of {', '.join(QUANTIZABLE_OPS)} (default: Conv; MatMul "
                        "also quantises the attention: batch 32 a little faster, batch 1 no faster on the shipped model)")
    parser.add_argument("--calibration", choices=CALIBRATION_METHODS, default="percentile",
                        help="how activation ranges are set from the crops (default percentile: it lost the least)")
    parser.add_argument("--images", nargs="+", metavar="DIR", help="more calibration frames (a site's own)")
    parser.add_argument("--no-bundled", action="store_true", help="do not use the bundled calib/ frames")
    parser.add_argument("--max-crops", type=positive_int, default=DEFAULT_MAX_CROPS, metavar="N",
                        help=f"calibrate on at most N plate crops (default {DEFAULT_MAX_CROPS})")
    parser.add_argument("--config", metavar="FILE", help="YAML config (the detector that finds the plates, crop padding)")
    parser.set_defaults(handler=cmd_quantize_ocr)
