"""The TensorRT path: what runs without a GPU (cache keys, backend selection, calibration data, operator
support, mypy against tensorrt-stubs), and GPU tests (marked ``gpu``) that build and compare real plans."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import re
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from anpr_edge import backends, calibration, paths, trt_build, trt_ops
from anpr_edge.backends import InferenceBackend, create_backend
from anpr_edge.config import default_config, load_config
from anpr_edge.detector import letterbox, to_tensor
from anpr_edge.errors import BackendError
from anpr_edge.pipeline import PlateReader, load_detector, load_recognizer

REPO = Path(__file__).resolve().parent.parent
GPU = trt_build.GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))


def _key(**changes: object) -> trt_build.PlanKey:
    fields: dict[str, object] = dict(model="ocr", model_sha256="ab" * 32, tensorrt="10.3.0", gpu=GPU.name,
                                     compute_capability=GPU.sm, precision="fp16", max_batch=64, input_shape=(3, 64, 192))
    fields.update(changes)
    return trt_build.PlanKey(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ cache keys
def test_plan_key_names_every_field_and_any_change_renames_the_plan() -> None:
    key = _key()
    assert key.filename.startswith("ocr-abababababab-trt10.3.0-nvidia-h100-80gb-hbm3-sm9.0-fp16-b64-3x64x192-")
    changes = {"model_sha256": "cd" * 32, "tensorrt": "8.6.1.6", "gpu": "Orin", "compute_capability": "8.7",
               "precision": "fp32", "max_batch": 32, "input_shape": (3, 64, 128)}
    names = {key.filename}
    for field, value in changes.items():
        names.add(_key(**{field: value}).filename)
    int8 = _key(precision="int8", calibration="1" * 64)
    names |= {int8.filename, _key(precision="int8", calibration="2" * 64).filename}
    assert len(names) == len(changes) + 3  # every field, and the calibration frames, give another file
    assert trt_build.PlanKey.from_dict(json.loads(json.dumps(int8.as_dict()))) == int8
    with pytest.raises(ValueError, match="calibration"):
        _key(precision="int8")
    with pytest.raises(ValueError, match="precision"):
        _key(precision="int4")


def test_plan_key_hashes_the_model_file(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"one")
    first = trt_build.plan_key(model, tensorrt_version="10.3.0", gpu=GPU, precision="fp16", max_batch=8,
                               input_shape=(3, 4, 4))
    assert first.model_sha256 == __import__("hashlib").sha256(b"one").hexdigest()
    time.sleep(0.01)
    model.write_bytes(b"two")  # retrained model, same name
    second = trt_build.plan_key(model, tensorrt_version="10.3.0", gpu=GPU, precision="fp16", max_batch=8,
                                input_shape=(3, 4, 4))
    assert second.model_sha256 != first.model_sha256 and second.filename != first.filename


def test_cached_plans_are_found_only_for_their_exact_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = _key()
    assert trt_build.cached_plan(tmp_path, key) is None
    plan = trt_build.write_plan(tmp_path, key, b"PLAN")
    assert plan.read_bytes() == b"PLAN" and trt_build.cached_plan(tmp_path, key) == plan
    assert json.loads(plan.with_suffix(".json").read_text())["key"]["tensorrt"] == "10.3.0"
    assert trt_build.cached_plan(tmp_path, _key(tensorrt="10.4.0")) is None
    # A plan whose sidecar records another key (copied in by hand, say) is stale: never loaded.
    sidecar = json.loads(plan.with_suffix(".json").read_text())
    sidecar["key"]["gpu"] = "Tesla T4"
    plan.with_suffix(".json").write_text(json.dumps(sidecar))
    with caplog.at_level(logging.WARNING):
        assert trt_build.cached_plan(tmp_path, key) is None
    assert "gpu 'Tesla T4'" in caplog.text
    assert not list(tmp_path.glob(".*"))  # atomic writes leave no temporary files


def test_find_plan_picks_by_batch_precision_and_calibration(tmp_path: Path) -> None:
    small, large = trt_build.write_plan(tmp_path, _key(max_batch=8), b"8"), trt_build.write_plan(tmp_path, _key(), b"64")
    int8 = trt_build.write_plan(tmp_path, _key(precision="int8", calibration="c" * 64), b"i8")
    trt_build.write_plan(tmp_path, _key(tensorrt="8.6.1.6", max_batch=128), b"other version")
    find = trt_build.find_plan
    assert find(tmp_path, _key(), min_batch=None, any_calibration=False) == large  # any batch: the largest
    assert find(tmp_path, _key(), min_batch=4, any_calibration=False) == small  # the smallest that fits
    assert find(tmp_path, _key(), min_batch=16, any_calibration=False) == large
    assert find(tmp_path, _key(), min_batch=100, any_calibration=False) is None  # the 8.6 plan never counts
    want = _key(precision="int8", calibration="pending")
    assert find(tmp_path, want, min_batch=None, any_calibration=True) == int8
    assert find(tmp_path, want, min_batch=None, any_calibration=False) is None
    assert find(tmp_path / "absent", _key(), min_batch=None, any_calibration=False) is None


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """TensorRT and the GPU replaced by stand-ins: ``ensure_plan`` runs its whole cache logic, builds are counted."""
    state: dict[str, object] = {"version": "10.3.0", "gpu": GPU, "builds": []}

    def build(onnx_path: Path, key: trt_build.PlanKey, **kwargs: object) -> bytes:
        state["builds"].append((key, kwargs))  # type: ignore[attr-defined]
        if key.precision == "int8":
            assert kwargs["calibration"] is not None and kwargs["calibration_cache"] is not None
        return f"plan for {key.digest}".encode()

    monkeypatch.setattr(trt_build, "require_tensorrt", lambda: state["version"])
    monkeypatch.setattr(trt_build, "gpu_info", lambda device=0: state["gpu"])
    monkeypatch.setattr(trt_build, "build_plan", build)
    return state


def test_ensure_plan_builds_once_and_rebuilds_when_anything_changes(
    tmp_path: Path, fake_trt: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    ocr = paths.bundled_model(paths.OCR_MODEL)
    request = trt_build.PlanRequest(onnx_path=ocr, cache_dir=tmp_path)
    builds: list = fake_trt["builds"]  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING):
        plan, key, built = trt_build.ensure_plan(request)
    assert built and len(builds) == 1 and key.precision == "fp16" and key.max_batch == 64
    assert key.input_shape == (3, 64, 192) and "may take minutes" in caplog.text
    assert trt_build.ensure_plan(request)[:2] == (plan, key) and len(builds) == 1  # cached: no rebuild
    fake_trt["version"] = "10.4.0"  # TensorRT upgraded
    assert trt_build.ensure_plan(request)[2] and len(builds) == 2
    fake_trt["gpu"] = trt_build.GpuInfo("Orin", (8, 7))  # plans moved to another GPU
    assert trt_build.ensure_plan(request)[2] and len(builds) == 3
    assert trt_build.ensure_plan(trt_build.PlanRequest(onnx_path=ocr, cache_dir=tmp_path, max_batch=128))[2]
    assert len(list(tmp_path.glob("*.plan"))) == 4
    # An INT8 plan, once built, is what the daemon (precision None) prefers.
    int8 = trt_build.PlanRequest(onnx_path=ocr, cache_dir=tmp_path, precision="int8", max_batch=64,
                                 calibration=lambda: iter(()), calibration_digest="d" * 64)
    _, int8_key, built = trt_build.ensure_plan(int8)
    assert built and builds[-1][1]["calibration_cache"] == tmp_path / "calibration" / \
        f"ocr-{int8_key.model_sha256[:12]}-trt10.4.0-{'d' * 12}.cache"
    assert trt_build.ensure_plan(request)[1] == int8_key
    with pytest.raises(BackendError, match="build-engines --precision int8"):
        trt_build.ensure_plan(trt_build.PlanRequest(onnx_path=ocr, cache_dir=tmp_path / "empty", precision="int8"))


def test_detector_profile_shape_comes_from_the_input_size_or_metadata() -> None:
    info = trt_build.model_info(paths.bundled_model(paths.DETECTOR_MODEL))
    assert info.input_shape[1:] == (3, None, None)
    assert trt_build.sample_shape(info) == (3, 320, 320)  # the export's imgsz metadata
    assert trt_build.sample_shape(info, 640) == (3, 640, 640)
    ocr = trt_build.model_info(paths.bundled_model(paths.OCR_MODEL))
    assert trt_build.sample_shape(ocr) == (3, 64, 192) and ocr.metadata["charset"]
    with pytest.raises(BackendError, match="does not match"):
        trt_build.sample_shape(ocr, 320)


def test_engine_cache_dir_is_in_the_cache_dir_or_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANPR_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    assert trt_build.engine_cache_dir() == tmp_path / "cache" / "engines"
    config_file = tmp_path / "c.yaml"
    config_file.write_text("cameras:\n  - {id: a, source: demo}\ninference: {engine_cache_dir: plans}\n")
    config = load_config(config_file)
    assert config.inference.engine_cache_dir == tmp_path / "plans"
    assert trt_build.engine_cache_dir(config.inference.engine_cache_dir) == tmp_path / "plans"


# ---------------------------------------------------------------------------------- backend selection
@pytest.fixture
def no_probe_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_TENSORRT_STATUS", {})


def test_tensorrt_absent_stub_only_or_without_gpu_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    with pytest.raises(trt_build.TensorRTUnavailable, match="TensorRT is not installed"):
        trt_build.require_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # what tensorrt-stubs gives
    with pytest.raises(trt_build.TensorRTUnavailable, match="only type stubs"):
        trt_build.require_tensorrt()
    real = types.ModuleType("tensorrt")
    real.__version__, real.Runtime = "10.3.0", object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", real)
    assert trt_build.require_tensorrt() == "10.3.0"
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(trt_build.TensorRTUnavailable, match="pycuda is not usable"):
        trt_build.require_cuda()
    assert backends.probe_tensorrt() == (False, "pycuda is not usable (import pycuda.driver: import of pycuda.driver halted; None in sys.modules)")
    driver = types.ModuleType("pycuda.driver")
    driver.init = lambda: None  # type: ignore[attr-defined]
    driver.Device = types.SimpleNamespace(count=lambda: 0)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", types.ModuleType("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    sys.modules["pycuda"].driver = driver  # type: ignore[attr-defined]
    assert backends.probe_tensorrt() == (False, "no CUDA GPU found")


def test_auto_uses_onnxruntime_without_tensorrt_and_logs_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_probe_cache: None
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    model = paths.bundled_model(paths.OCR_MODEL)
    with caplog.at_level(logging.INFO, logger="anpr_edge.backends"):
        backend = create_backend("auto", model, threads=1)
    assert type(backend).__name__ == "OnnxRuntimeBackend"
    assert "ocr.onnx: onnxruntime (auto: TensorRT is not installed" in caplog.text
    with pytest.raises(BackendError, match="inference.backend 'tensorrt' cannot run here: TensorRT is not installed"):
        create_backend("tensorrt", model)
    with pytest.raises(BackendError, match="unknown inference backend 'cuda'.*auto, onnxruntime, tensorrt"):
        create_backend("cuda", model)
    assert default_config().inference.backend == "auto"


class _Sentinel(InferenceBackend):
    def __init__(self, path: Path, **kwargs: object) -> None:
        self.path, self.kwargs, self.inputs, self.outputs, self.metadata = path, kwargs, (), (), {}

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return []


def test_auto_picks_tensorrt_when_present_and_falls_back_when_it_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_probe_cache: None
) -> None:
    monkeypatch.setattr(backends, "probe_tensorrt", lambda: (True, "TensorRT 10.3.0 on Orin (compute capability 8.7)"))
    made: list[_Sentinel] = []
    monkeypatch.setattr(backends, "_tensorrt", lambda path, **kw: made.append(_Sentinel(path, **kw)) or made[-1])
    model = paths.bundled_model(paths.DETECTOR_MODEL)
    with caplog.at_level(logging.INFO, logger="anpr_edge.backends"):
        backend = create_backend("auto", model, max_batch=4, input_size=320, cache_dir=Path("/x"))
    assert backend is made[0] and made[0].kwargs == {"max_batch": 4, "input_size": 320, "cache_dir": Path("/x"),
                                                     "precision": None}
    assert "plate_det.onnx: tensorrt (auto: TensorRT 10.3.0 on Orin" in caplog.text
    assert create_backend("tensorrt", model) is made[1]

    def broken(path: Path, **kw: object) -> InferenceBackend:
        raise BackendError("TensorRT 10.3.0 cannot parse plate_det.onnx: ...")

    monkeypatch.setattr(backends, "_tensorrt", broken)
    with caplog.at_level(logging.WARNING, logger="anpr_edge.backends"):
        assert type(create_backend("auto", model, threads=1)).__name__ == "OnnxRuntimeBackend"
    assert "TensorRT failed (TensorRT 10.3.0 cannot parse" in caplog.text
    with pytest.raises(BackendError, match="cannot parse"):
        create_backend("tensorrt", model)  # asked for explicitly: no silent fallback


def test_tensorrt_backend_default_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, object]] = []

    class Fake:
        def __init__(self, path: Path, **kwargs: object) -> None:
            seen.append(kwargs)

    import anpr_edge.backends.tensorrt as trt_backend

    monkeypatch.setattr(trt_backend, "TensorRTBackend", Fake)
    backends._tensorrt(paths.bundled_model(paths.DETECTOR_MODEL), max_batch=None, input_size=None, cache_dir=None,
                       precision=None)
    backends._tensorrt(paths.bundled_model(paths.OCR_MODEL), max_batch=None, input_size=None, cache_dir=None,
                       precision="int8")
    assert [s["default_batch"] for s in seen] == [trt_build.DEFAULT_DETECTOR_BATCH, trt_build.DEFAULT_OCR_BATCH]
    assert seen[1]["precision"] == "int8"


# ------------------------------------------------------------------------------------ calibration data
class _Recording(InferenceBackend):
    """Wraps a backend and keeps every batch the runtime hands it."""

    def __init__(self, inner: InferenceBackend) -> None:
        self.inner, self.path, self.inputs, self.outputs = inner, inner.path, inner.inputs, inner.outputs
        self.metadata, self.batches = inner.metadata, []

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.batches.append(next(iter(feeds.values())).copy())
        return self.inner._run(feeds)


@pytest.fixture(scope="module")
def calib_images() -> list[Path]:
    folder = calibration.bundled_calib_dir()
    assert folder is not None, "calib/ has no frames: run calib/generate.py"
    images = calibration.calibration_images([folder])
    # A fixed sample: synthetic scenes with plates and demo frames.
    return [p for p in images if p.name.startswith("synth_")][:14] + [p for p in images if p.name.startswith("demo_")][20:22]


def test_bundled_calibration_frames_are_project_made_and_small() -> None:
    folder = calibration.bundled_calib_dir()
    assert folder == REPO / "calib"
    images = calibration.calibration_images([folder])
    assert len(images) >= 150 and all(re.fullmatch(r"(synth|demo)_\d{3}\.jpg", p.name) for p in images)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5_000_000


def test_detector_calibration_batches_are_the_runtime_input(calib_images: list[Path]) -> None:
    config = default_config().model_copy(update={"inference": default_config().inference.model_copy(
        update={"backend": "onnxruntime", "threads": 1})})
    detector = load_detector(config)
    recording = _Recording(detector.backend)
    detector.backend = recording
    batches = list(calibration.detector_batches(calib_images, detector.input_size, 8))
    assert len(batches) == len(calib_images) // 8  # full batches only
    assert all(b.shape == (8, 3, 320, 320) and b.dtype == np.float32 for b in batches)
    assert 0.0 <= batches[0].min() and batches[0].max() <= 1.0
    for path in calib_images[:16]:
        detector.detect([__import__("cv2").imread(str(path))])
    runtime = np.concatenate(recording.batches)
    np.testing.assert_array_equal(np.concatenate(batches), runtime[: 8 * len(batches)])
    first = letterbox(__import__("cv2").imread(str(calib_images[0])), 320)[0]
    np.testing.assert_array_equal(batches[0][0], to_tensor([first])[0])


def test_ocr_calibration_batches_are_the_runtime_crops(calib_images: list[Path]) -> None:
    config = default_config().model_copy(update={"inference": default_config().inference.model_copy(
        update={"backend": "onnxruntime", "threads": 1})})
    detector, recognizer = load_detector(config), load_recognizer(config)
    recording = _Recording(recognizer.backend)
    recognizer.backend = recording
    reader = PlateReader(detector, recognizer, padding=config.crop.padding)
    crops = list(calibration.plate_crops(calib_images, detector, recognizer.crop_size, config.crop.padding))
    assert len(crops) >= 8, "the detector finds plates in the synthetic calibration scenes"
    batches = list(calibration.ocr_batches(calib_images, detector, recognizer.crop_size, config.crop.padding, 4))
    assert batches and all(b.shape == (4, 3, 64, 192) and b.dtype == np.float32 for b in batches)
    for path in calib_images:
        reader.read([__import__("cv2").imread(str(path))])  # the daemon's path: detect, crop, read
    runtime = np.concatenate(recording.batches)
    assert len(runtime) == len(crops)
    np.testing.assert_array_equal(np.concatenate(batches), runtime[: 4 * len(batches)])


def test_calibration_digest_names_images_and_preprocessing(calib_images: list[Path], tmp_path: Path) -> None:
    params = calibration.CalibrationParams(detector_input=320, ocr_crop=(192, 64), padding=0.15,
                                           detector_confidence=0.35, detector_iou=0.5)
    base = calibration.calibration_digest(calib_images[:3], params)
    assert base == calibration.calibration_digest(calib_images[:3], params)
    assert base != calibration.calibration_digest(calib_images[:4], params)
    assert base != calibration.calibration_digest(calib_images[:3], calibration.CalibrationParams(
        detector_input=640, ocr_crop=(192, 64), padding=0.15, detector_confidence=0.35, detector_iou=0.5))
    copy = tmp_path / calib_images[0].name
    copy.write_bytes(calib_images[0].read_bytes()[:-10] + b"0123456789")  # same name, other pixels
    assert base != calibration.calibration_digest([copy, *calib_images[1:3]], params)


def test_calibrate_check_reports_what_calibration_sees(calib_images: list[Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    for path in calib_images[:9]:
        shutil.copy(path, site / path.name)
    parser = argparse.ArgumentParser()
    trt_build.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["calibrate", "--images", str(site), "--no-bundled", "--check"])
    assert args.handler(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 9 and summary["detector_batches"] == 1 and summary["ocr_batches"] >= 1
    assert summary["detector_input"] == 320 and summary["ocr_crop"] == [192, 64]
    args = parser.parse_args(["build-engines", "--precision", "int8", "--max-batch", "32", "--workspace", "512"])
    assert (args.precision, args.max_batch, args.workspace, args.handler) == ("int8", 32, 512, trt_build.cmd_build_engines)


# ----------------------------------------------------------------------------------- operator support
@pytest.mark.parametrize("version", trt_ops.SUPPORTED)
@pytest.mark.parametrize("model", sorted(p.name for p in (REPO / "engines").glob("*.onnx")))
def test_every_operator_of_the_committed_models_is_supported(model: str, version: str) -> None:
    pytest.importorskip("onnx", reason="needs the onnx package (the dev extra)")
    assert trt_ops.model_problems(REPO / "engines" / model, version) == []


def test_operator_check_catches_what_tensorrt_cannot_parse(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="needs the onnx package (the dev extra)")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    nodes = [helper.make_node("LayerNormalization", ["x", "s", "b"], ["l"], axis=-1),
             helper.make_node("Resize", ["l", "", "sc"], ["r"], mode="cubic"),
             helper.make_node("Unsqueeze", ["r", "axes"], ["u"]),
             helper.make_node("Unique", ["u"], ["y"])]
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [4], [1.0] * 4) for n in ("s", "b", "sc")]
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    graph.input.append(helper.make_tensor_value_info("axes", TensorProto.INT64, [1]))
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    problems_86 = trt_ops.model_problems(path, "8.6")
    assert any("opset 18" in p for p in problems_86)
    assert any("Unique" in p and "not in TensorRT 8.6" in p for p in problems_86)
    assert any("mode 'cubic'" in p for p in problems_86)
    assert any("Unsqueeze" in p and "build-time constant" in p for p in problems_86)
    assert any("LayerNormalization" in p for p in trt_ops.model_problems(path, "8.5"))
    assert not any("opset" in p or "LayerNormalization" in p for p in trt_ops.model_problems(path, "10"))
    assert trt_ops.series("8.6.1.6") == "8.6" and trt_ops.series("10.3.0.26") == "10"


# ------------------------------------------------------------------------------------------ type check
def _patched_stubs(target: Path) -> Path:
    """A copy of tensorrt-stubs 10.13 that mypy can parse: parameters named ``in`` renamed, a non-default
    parameter after defaults given one, builtins that the module's ``bool`` dtype shadows spelled out."""
    site = Path(importlib.util.find_spec("tensorrt_stubs").origin).parent.parent  # type: ignore[union-attr]
    for package in ("tensorrt", "tensorrt_bindings"):
        shutil.copytree(site / package, target / package)
    stub = target / "tensorrt_bindings" / "tensorrt.pyi"
    text = stub.read_text()
    text = re.sub(r"([(,] *)in: ", r"\1in_: ", text)
    text = text.replace("channel_axis: int) -> IScaleLayer", "channel_axis: int = ...) -> IScaleLayer")
    text = re.sub(r"(->|:|\[|, ) ?bool\b(?!:)", lambda m: m.group(0).replace("bool", "builtins.bool"), text)
    text = text.replace("from __future__ import annotations\n",
                        "from __future__ import annotations\nimport builtins\nimport typing_extensions\n", 1)
    stub.write_text(text)
    return target


def test_mypy_tensorrt_modules(tmp_path: Path) -> None:
    """mypy with tensorrt-stubs (the TensorRT 10 Python API) over the TensorRT modules (pyproject [tool.mypy])."""
    if importlib.util.find_spec("mypy") is None or importlib.util.find_spec("tensorrt_stubs") is None:
        pytest.skip("needs mypy and tensorrt-stubs (pip install mypy; pip install --no-deps tensorrt-stubs)")
    stubs = _patched_stubs(tmp_path / "stubs")
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                             "--cache-dir", str(tmp_path / "cache")], cwd=REPO, capture_output=True, text=True,
                            env={**__import__("os").environ, "MYPYPATH": str(stubs)}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check has teeth: a call the TensorRT 10 API does not have is an error.
    bad = tmp_path / "bad.py"
    bad.write_text("import tensorrt as trt\n\ndef f(c: trt.IExecutionContext) -> None:\n"
                   "    c.execute_async_v2([0], 0)\n")
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                             "--cache-dir", str(tmp_path / "cache"), str(bad)], cwd=REPO, capture_output=True,
                            text=True, env={**__import__("os").environ, "MYPYPATH": str(stubs)}, timeout=300)
    assert 'has no attribute "execute_async_v2"' in result.stdout


# -------------------------------------------------------------------------------------------- GPU tests
def _gpu_skip_reason() -> str | None:
    usable, reason = backends.probe_tensorrt()
    return None if usable else f"needs TensorRT, pycuda and an NVIDIA GPU: {reason}"


gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(_gpu_skip_reason() is not None, reason=_gpu_skip_reason() or "")


@pytest.fixture(scope="module")
def gpu_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from anpr_edge.images import load_image

    config = default_config().model_copy(update={"inference": default_config().inference.model_copy(
        update={"backend": "onnxruntime", "threads": 0})})
    folder = calibration.bundled_calib_dir()
    assert folder is not None
    frames = [load_image(p) for p in calibration.calibration_images([folder])]
    return {"config": config, "cache": tmp_path_factory.mktemp("plans"), "frames": frames,
            "detector": load_detector(config), "ocr": load_recognizer(config)}


def _trt_models(env: dict[str, object], precision: str) -> tuple[object, object]:
    from anpr_edge.detector import PlateDetector
    from anpr_edge.ocr import PlateRecognizer

    ref_det, ref_ocr, cache = env["detector"], env["ocr"], env["cache"]
    records = trt_build.build_engines(env["config"], precision=precision, workspace_mb=1024, ocr_batch=64,  # type: ignore[arg-type]
                                      detector_batch=32, cache_dir=cache,  # type: ignore[arg-type]
                                      calibration_folders=[calibration.bundled_calib_dir()] if precision == "int8" else [])
    assert {r["model"] for r in records} == {"detector", "ocr"}
    detector = PlateDetector(create_backend("tensorrt", ref_det.backend.path, max_batch=32, cache_dir=cache,  # type: ignore[attr-defined]
                                            precision=precision),
                             confidence=ref_det.confidence, iou=ref_det.iou)  # type: ignore[attr-defined]
    ocr = PlateRecognizer(create_backend("tensorrt", ref_ocr.backend.path, max_batch=64, cache_dir=cache,  # type: ignore[attr-defined]
                                         precision=precision))
    return detector, ocr


@gpu
@needs_gpu
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_gpu_plans_match_onnxruntime(gpu_env: dict[str, object], precision: str) -> None:
    from anpr_edge.trt_verify import detector_parity, ocr_parity, real_crops

    detector, ocr = _trt_models(gpu_env, precision)
    assert detector.backend.max_batch == 32 and ocr.backend.max_batch == 64  # type: ignore[attr-defined]
    result = detector_parity(gpu_env["detector"], detector, gpu_env["frames"])  # type: ignore[arg-type]
    assert result["boxes"] > 50 and result["ok"], result
    try:
        crops = real_crops(ocr.crop_size, ocr.charset)  # type: ignore[attr-defined]
    except Exception as error:  # noqa: BLE001
        pytest.skip(f"OCR parity needs the shared datasets' real crops: {error}")
    texts = ocr_parity(gpu_env["ocr"], ocr, [c for _, c, _ in crops], [t for _, _, t in crops])  # type: ignore[arg-type]
    print(f"\n{precision}: detector {result}\nOCR {dict((k, v) for k, v in texts.items() if k != 'differences')}")
    if precision == "fp16":
        assert texts["ok"], texts
    else:  # the INT8 target: within 0.5 points of FP32 on the real validation crops
        assert abs(texts["accuracy"] - texts["reference_accuracy"]) <= 0.5, texts


@gpu
@needs_gpu
@pytest.mark.timeout(1800)
def test_gpu_batches_split_not_padded_and_throughput(gpu_env: dict[str, object]) -> None:
    from anpr_edge.trt_verify import throughput

    _, ocr = _trt_models(gpu_env, "fp16")
    backend = ocr.backend  # type: ignore[attr-defined]
    crops = np.random.default_rng(0).random((150, 3, 64, 192), dtype=np.float32)
    whole = backend.run(crops)[0]
    assert whole.shape[0] == 150  # 64 + 64 + 22: split at the profile's max batch
    np.testing.assert_allclose(backend.run(crops[:5])[0], whole[:5], atol=2e-3)  # 5 runs as 5, no padding
    assert backend._batch == 5  # noqa: SLF001
    rates = throughput(backend, crops[0], (1, 8, 32))
    print(f"\nOCR FP16 plates/s: {rates}")
    assert rates[32] > rates[1]


# ------------------------------------------------------------- the backend's buffer logic, on fakes
class _FakeCuda:
    """Just enough of pycuda.driver (host-side numpy) to run TensorRTBackend's buffer logic on a CPU."""

    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.allocations = 0
        self.context_stack: list[str] = []
        driver = self

        class Buffer:
            def __init__(self, nbytes: int) -> None:
                self.data = np.zeros(nbytes, np.uint8)
                driver.memory[id(self)] = self.data
                driver.allocations += 1

            def __int__(self) -> int:
                return id(self)

            def free(self) -> None:
                driver.memory.pop(id(self))

        class Context:
            def push(self) -> None:
                driver.context_stack.append("primary")

            def detach(self) -> None:
                pass

            @staticmethod
            def pop() -> None:
                driver.context_stack.pop()

        self.mem_alloc = Buffer
        self.Context = Context
        self.Device = lambda index: types.SimpleNamespace(retain_primary_context=Context)  # type: ignore[assignment]
        self.Device.count = lambda: 1  # type: ignore[attr-defined]
        self.Stream = lambda: types.SimpleNamespace(handle=0, synchronize=lambda: None)
        self.init = lambda: None

    def pagelocked_empty(self, count: int, dtype: np.dtype) -> np.ndarray:
        self.allocations += 1
        return np.zeros(count, dtype)

    def memcpy_htod_async(self, device: object, host: np.ndarray, stream: object) -> None:
        self.memory[int(device)][: host.nbytes] = np.ascontiguousarray(host).reshape(-1).view(np.uint8)  # type: ignore[call-overload]

    def memcpy_dtoh_async(self, host: np.ndarray, device: object, stream: object) -> None:
        host.reshape(-1).view(np.uint8)[:] = self.memory[int(device)][: host.nbytes]  # type: ignore[call-overload]


def _fake_tensorrt(cuda: _FakeCuda) -> types.ModuleType:
    """A TensorRT 10 stand-in: one engine, input 'x' (batch 1..4, 3, 2, 2) -> output 'y' (batch, 2) = per-sample
    (sum, max), computed from the device buffers bound with set_tensor_address."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"  # type: ignore[attr-defined]
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")  # type: ignore[attr-defined]
    trt.nptype = lambda dtype: np.float32  # type: ignore[attr-defined]

    class Context:
        def __init__(self) -> None:
            self.shape: tuple[int, ...] = (4, 3, 2, 2)
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            self.shape = tuple(shape)
            return 1 <= shape[0] <= 4

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return self.shape if name == "x" else (self.shape[0], 2)

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = address
            return True

        def execute_async_v3(self, stream: int) -> bool:
            n = self.shape[0]
            x = cuda.memory[self.addresses["x"]].view(np.float32)[: n * 12].reshape(n, 12)
            cuda.memory[self.addresses["y"]].view(np.float32)[: n * 2] = np.stack([x.sum(1), x.max(1)], 1).reshape(-1)
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, index: int) -> str:
            return ["x", "y"][index]

        def get_tensor_mode(self, name: str) -> str:
            return "in" if name == "x" else "out"

        def get_tensor_dtype(self, name: str) -> str:
            return "float"

        def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
            return [(1, 3, 2, 2), (4, 3, 2, 2), (4, 3, 2, 2)]

        def create_execution_context(self) -> Context:
            return Context()

    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda plan: Engine())  # type: ignore[attr-defined]
    return trt


def test_backend_buffers_batches_and_threads_on_fakes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import threading

    from anpr_edge.backends import tensorrt as trt_backend

    cuda = _FakeCuda()
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycuda", pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(cuda))
    monkeypatch.setattr(trt_build, "trt_logger", lambda: None)
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"plan")
    monkeypatch.setattr(trt_build, "model_info", lambda path: trt_build.ModelInfo("x", (None, 3, 2, 2), {"k": "v"}))
    monkeypatch.setattr(trt_build, "ensure_plan", lambda request: (plan, _key(max_batch=4, input_shape=(3, 2, 2)), False))
    backend = trt_backend.TensorRTBackend(tmp_path / "m.onnx")
    assert cuda.context_stack == ["primary"] and backend.metadata == {"k": "v"}
    assert backend.max_batch == 4 and backend.inputs[0].shape == (None, 3, 2, 2)
    assert [(o.name, o.shape) for o in backend.outputs] == [("y", (None, 2))]
    allocated = cuda.allocations
    x = np.arange(10 * 12, dtype=np.float32).reshape(10, 3, 2, 2)
    (y,) = backend.run(x)  # 4 + 4 + 2
    np.testing.assert_array_equal(y, np.stack([x.reshape(10, 12).sum(1), x.reshape(10, 12).max(1)], 1))
    (small,) = backend.run(x[:3] + 1000)  # 3 runs as 3: not padded to the profile's 4
    assert backend._batch == 3 and small.shape == (3, 2)  # noqa: SLF001
    assert y[0, 1] == 11.0  # results are copies: the next call did not overwrite the first's
    assert cuda.allocations == allocated  # no allocation per call
    errors: list[BaseException] = []
    worker = threading.Thread(target=lambda: errors.append(pytest.raises(BackendError, backend.run, x[:1]).value))
    worker.start()
    worker.join()
    assert "only in the thread that created it" in str(errors[0])
    backend.close()
    assert cuda.memory == {} and cuda.context_stack == []
