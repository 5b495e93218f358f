"""The detector training path: one ultralytics epoch on tiny data with the network blocked, then ONNX export
read back through the runtime detector. Proves ultralytics is kept offline (no DNS, no connection, no pip)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@cache
def _training_stack_problem() -> str | None:
    """Why ultralytics cannot train here (None: it can). Checked in a child: a torchvision built for another
    torch fails at import with a RuntimeError, which must not take the test process down."""
    probe = "import torch, torchvision, ultralytics; torchvision.ops.nms"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    if result.returncode == 0:
        return None
    last = (result.stderr.strip().splitlines() or ["?"])[-1]
    return f"needs the [train] extra with a working torch + torchvision + ultralytics ({last})"


def make_tiny_dataset(root: Path, count: int = 8, size: int = 96) -> Path:
    """Grey scenes with one light 'plate' rectangle each, in ultralytics' YOLO layout."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(count if split == "train" else 2):
            image = rng.integers(40, 120, (size, size, 3), dtype=np.uint8)
            w, h = int(rng.integers(24, 48)), int(rng.integers(8, 14))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            image[y : y + h, x : x + w] = 235
            cv2.putText(image, "AB12", (x + 2, y + h - 3), cv2.FONT_HERSHEY_PLAIN, 0.6, (20, 20, 20), 1)
            cv2.imwrite(str(root / "images" / split / f"{i}.jpg"), image)
            line = f"0 {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}\n"
            (root / "labels" / split / f"{i}.txt").write_text(line)
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: plate\n")
    return data


CHILD = textwrap.dedent(
    """
    import json, socket, subprocess, sys
    from pathlib import Path

    attempts = []

    def blocked(kind):
        def refuse(*args, **kwargs):
            attempts.append([kind, repr(args[:2])[:200]])
            raise OSError(f"network blocked by the test ({kind})")
        return refuse

    real_connect = socket.socket.connect
    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            return blocked("connect")(address)
        return real_connect(self, address)

    socket.socket.connect = connect
    socket.socket.connect_ex = lambda self, address: connect(self, address)
    socket.getaddrinfo = blocked("getaddrinfo")
    socket.gethostbyname = blocked("gethostbyname")
    real_popen = subprocess.Popen.__init__
    def popen(self, args, *a, **k):
        if "pip" in " ".join(map(str, args if isinstance(args, (list, tuple)) else [args])):
            attempts.append(["pip", repr(args)[:200]])
            raise OSError("pip blocked by the test")
        return real_popen(self, args, *a, **k)
    subprocess.Popen.__init__ = popen

    from anpr_edge.train.det_train import DetTrainOptions, export_onnx, train_detector
    data, run_dir, onnx = (Path(p) for p in sys.argv[1:4])
    result = train_detector(DetTrainOptions(minutes=5, epochs=1, imgsz=64, batch=4, threads=1, cache=False,
                                            multi_scale=0.5, data_yaml=data, run_dir=run_dir, output=onnx))
    export_onnx(result.best, onnx, imgsz=64)
    # Weights kept for a later session's --init-weights carry the total training behind them.
    from anpr_edge.train.det_train import Lineage, checkpoint_lineage, save_resume_weights
    own = checkpoint_lineage(result.best)
    saved = save_resume_weights(result.best, run_dir / "keep" / "resume.pt", Lineage(own.epochs + 16, own.minutes + 90))
    total = checkpoint_lineage(saved)
    print(json.dumps({"attempts": attempts, "epochs": result.epochs, "best": str(result.best),
                      "own": [own.epochs, own.minutes], "total": [total.epochs, total.minutes],
                      "saved_mb": saved.stat().st_size / 1e6}))
    """
)


@pytest.mark.slow
def test_one_offline_epoch_exports_a_model_the_runtime_reads(tmp_path: Path) -> None:
    if problem := _training_stack_problem():
        pytest.skip(problem)
    data = make_tiny_dataset(tmp_path / "data")
    onnx = tmp_path / "plate_det.onnx"
    env = {**os.environ, "ANPR_EDGE_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path / "home")}
    env.pop("YOLO_OFFLINE", None)  # the code under test must set it itself
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), str(tmp_path / "run"), str(onnx)],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["attempts"] == [], summary["attempts"]
    assert summary["epochs"] == 1 and Path(summary["best"]).is_file()
    # --multi-scale reaches ultralytics (it records the arguments it trained with).
    assert "multi_scale: 0.5" in (tmp_path / "run" / "args.yaml").read_text()
    own_epochs, own_minutes = summary["own"]
    assert own_epochs == 1 and 0 < own_minutes < 10
    assert summary["total"] == [17, pytest.approx(own_minutes + 90, abs=0.01)]
    assert summary["saved_mb"] < 15  # small enough to commit between sessions
    # stdout carried only our JSON: ultralytics' own logging went to stderr.
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout[:2000]
    assert "Ultralytics" in result.stderr
    # ultralytics wrote nothing to $HOME: settings and fonts live under the project cache. (ONNX Runtime
    # itself keeps a device id under ~/.cache/Microsoft, at every session creation; not ours to change.)
    home = tmp_path / "home"
    assert not [p for p in home.rglob("*") if "ultralytics" in str(p).lower() or "matplotlib" in str(p).lower()]
    assert (tmp_path / "cache" / "ultralytics" / "Ultralytics" / "Arial.ttf").is_file()

    # The export runs through the runtime path (no torch, no ultralytics) at two input sizes.
    from anpr_edge.backends import create_backend
    from anpr_edge.detector import PlateDetector

    backend = create_backend("onnxruntime", onnx, threads=1)
    assert backend.metadata.get("imgsz") == "[64, 64]"
    image = cv2.imread(str(next((tmp_path / "data" / "images" / "val").glob("*.jpg"))))
    for size in (64, 96):
        detector = PlateDetector(backend, input_size=size, confidence=0.0001)
        (found,) = detector.detect([image])
        assert found.xyxy.shape[1] == 4 and len(found) <= detector.max_detections


def test_the_detector_card_reads_as_read_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's eval-read table uses `anpr-edge read`'s reader for the new detector: PlateReader.from_config
    on the default config with that model, size and threshold (so the views, the second look and the read
    calibration that fallback_below is compared with are read's own), on ONNX Runtime."""
    import anpr_edge.train.det_card as det_card

    seen = []

    class Reader:
        def read(self, images):  # pragma: no cover - no scene is read here
            return [[] for _ in images]

    def from_config(config, *, photos=True):
        seen.append((config, photos))
        return Reader()

    monkeypatch.setattr(det_card.PlateReader, "from_config", staticmethod(from_config))
    monkeypatch.setattr(det_card, "shared_scene_sets", lambda: [])
    model = tmp_path / "det.onnx"
    assert det_card.evaluate_detector(model, input_size=416, threads=2, confidence=0.3) == []
    ((config, photos),) = seen
    assert photos and config.models.detector.path == model and config.models.detector.input_size == 416
    assert config.models.detector.confidence == 0.3 and config.models.ocr.path is None  # the bundled OCR
    assert (config.inference.backend, config.inference.threads) == ("onnxruntime", 2)
