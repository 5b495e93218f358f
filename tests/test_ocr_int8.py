"""`anpr-edge quantize-ocr`: the INT8 copy of the shipped OCR keeps its metadata, is really quantised, and reads
what the FP32 model reads on the calibration crops; user mistakes are usage errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx", reason="quantize-ocr needs the onnx package (training extra)")
import onnx

from anpr_edge.backends import create_backend
from anpr_edge.bench.ocr_int8 import take_crops
from anpr_edge.ocr import PlateRecognizer

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "engines" / "ocr.onnx"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anpr_edge", *args], capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ), cwd=REPO)


def test_take_crops_stops_at_the_limit() -> None:
    batches = (np.full((8, 3, 4, 6), i, np.float32) for i in range(5))
    crops = take_crops(batches, 20)
    assert crops.shape == (20, 3, 4, 6) and crops[-1, 0, 0, 0] == 2
    assert take_crops(iter([]), 5).shape[0] == 0


def test_quantize_ocr_writes_an_int8_copy_that_reads_like_the_model(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    chosen = sorted((REPO / "calib").glob("demo_*.jpg"))[:24]  # plates in full batches of 8 (as TensorRT's)
    for path in chosen:
        shutil.copy(path, frames / path.name)
    out = tmp_path / "int8" / "ocr-int8.onnx"
    done = run_cli("quantize-ocr", str(SHIPPED), "--output", str(out), "--no-bundled", "--images", str(frames),
                   "--max-crops", "16")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["ops"] == ["Conv"] and record["calibration"] == "percentile" and 0 < record["calibration_crops"] <= 16 and record["calibration_frames"] == len(chosen)

    model = onnx.load(str(out))
    kinds = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["charset"] == "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" and meta["max_len"] == "12"

    # The same crops read by both models: quantisation costs a point or two on real sets, not the reading.
    fp32 = PlateRecognizer(create_backend("onnxruntime", SHIPPED, threads=1))
    int8 = PlateRecognizer(create_backend("onnxruntime", out, threads=1))
    assert int8.crop_size == fp32.crop_size
    crops = _calibration_crops(frames)
    same = sum(a.text == b.text for a, b in zip(fp32.read_images(crops), int8.read_images(crops)))
    assert same >= len(crops) // 2, (same, len(crops))


def _calibration_crops(frames: Path) -> list[np.ndarray]:
    from anpr_edge.calibration import calibration_images, plate_crops
    from anpr_edge.config import default_config
    from anpr_edge.pipeline import load_detector

    config = default_config()
    found = list(plate_crops(calibration_images([frames]), load_detector(config), (192, 64), config.crop.padding))
    assert found, "the detector found no plate in the calibration frames"
    return found


def test_quantize_ocr_user_mistakes(tmp_path: Path) -> None:
    missing = run_cli("quantize-ocr", str(tmp_path / "nope.onnx"), "--output", str(tmp_path / "x.onnx"))
    assert missing.returncode == 2 and "nope.onnx: no such ONNX model" in missing.stderr
    same = run_cli("quantize-ocr", str(SHIPPED), "--output", str(SHIPPED))
    assert same.returncode == 2 and "is the model itself" in same.stderr
    assert "Traceback" not in missing.stderr + same.stderr
