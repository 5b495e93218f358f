"""TensorRT plans: build from the ONNX models, cache them under an exact key, INT8 entropy calibration.

Supported TensorRT: 8.6 (JetPack 5 and 6.0) and 10.x (JetPack 6.1+, x86-64 wheels). TensorRT and pycuda are
imported lazily, inside the functions that need them, so this module imports anywhere; ``require_tensorrt``
turns "not installed", "only the type stubs are installed" (``tensorrt-stubs`` makes ``import tensorrt``
succeed as an empty namespace package) and "no usable GPU" into one ``BackendError`` each.

**Cache.** A plan is only valid for the exact model file, TensorRT version, GPU model and compute
capability, precision, optimisation profile (max batch, per-sample input shape) and, for INT8, the
calibration data. ``PlanKey`` holds all of them; the plan's file name spells the readable parts and ends
with a digest of the whole key, and a JSON sidecar next to the plan repeats the full key, which is checked
before a plan is loaded, so a stale plan is never used: it is rebuilt next to the old one. The folder is
``inference.engine_cache_dir`` or ``$ANPR_EDGE_CACHE_DIR/engines`` (``paths.cache_dir()``; the systemd unit
sets ``/var/cache/anpr-edge``). INT8 calibration caches go to its ``calibration/`` sub-folder (writable;
``calib/`` in the install is read-only under systemd).

**Profiles.** One optimisation profile per engine, batch ``1..max_batch`` (opt = max), the rest of the
input shape fixed: the OCR's crop size comes from the model; the detector's square input from
``models.detector.input_size``, else the model's ``imgsz`` metadata. The detector's max batch defaults to
the number of enabled cameras plus their tiles (``AppConfig.detector_batch``: frames are batched across
cameras), the OCR's to 64 (all crops of a step).

**INT8.** Implicit quantisation with ``IInt8EntropyCalibrator2`` (deprecated since TensorRT 10.1, still
working in 10.x; where a TensorRT has no such class, INT8 building says so and FP16 stays available).
FP16 is enabled alongside INT8 so layers without INT8 kernels fall back to FP16, not FP32. Explicit Q/DQ
quantisation is not done here (it needs a quantised ONNX export).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anpr_edge import paths
from anpr_edge.argtypes import positive_int
from anpr_edge.errors import BackendError, ConfigError

if TYPE_CHECKING:
    import tensorrt as trt

    from anpr_edge.config import AppConfig

log = logging.getLogger("anpr_edge.tensorrt")

PRECISIONS = ("fp16", "int8", "fp32")
DEFAULT_OCR_BATCH = 64
DEFAULT_DETECTOR_BATCH = 8
DEFAULT_WORKSPACE_MB = 1024
# Bump when the way plans are built changes (flags, profiles) so older cached plans are not reused.
PLAN_FORMAT = 1
CUDA_DEVICE = 0  # pick the GPU with CUDA_VISIBLE_DEVICES


# ------------------------------------------------------------------------------------ availability
class TensorRTUnavailable(BackendError):
    """TensorRT, pycuda or a GPU is missing here."""


def require_tensorrt() -> str:
    """The installed TensorRT's version, or ``TensorRTUnavailable`` saying why it cannot be used."""
    try:
        import tensorrt
    except ImportError as error:
        raise TensorRTUnavailable(f"TensorRT is not installed (import tensorrt: {error})") from None
    except OSError as error:  # the bindings are there but libnvinfer is not
        raise TensorRTUnavailable(f"TensorRT's libraries cannot be loaded: {error}") from None
    version = getattr(tensorrt, "__version__", None)
    if not isinstance(version, str) or not hasattr(tensorrt, "Runtime"):
        raise TensorRTUnavailable(
            "the 'tensorrt' package found is only type stubs (tensorrt-stubs), not the TensorRT library"
        )
    return version


def require_cuda() -> Any:
    """pycuda's driver module, initialised, with at least one GPU; else ``TensorRTUnavailable``."""
    try:
        import pycuda.driver as cuda
    except (ImportError, OSError) as error:
        raise TensorRTUnavailable(f"pycuda is not usable (import pycuda.driver: {error})") from None
    try:
        cuda.init()
        count = int(cuda.Device.count())
    except Exception as error:  # noqa: BLE001 - pycuda raises its own LogicError/RuntimeError types
        raise TensorRTUnavailable(f"no usable CUDA driver: {error}") from None
    if count == 0:
        raise TensorRTUnavailable("no CUDA GPU found")
    return cuda


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "gpu"

    @property
    def sm(self) -> str:
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def gpu_info(device: int = CUDA_DEVICE) -> GpuInfo:
    cuda = require_cuda()
    dev = cuda.Device(device)
    major, minor = dev.compute_capability()
    return GpuInfo(str(dev.name()), (int(major), int(minor)))


def tensorrt_major(version: str) -> int:
    return int(version.split(".")[0])


# --------------------------------------------------------------------------------------- cache keys
@lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_sha256(path: Path) -> str:
    stat = Path(path).stat()
    return _file_sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class PlanKey:
    """Everything a serialized plan depends on. Two keys are equal only if a plan of one serves the other."""

    model: str  # the ONNX file's stem, for people reading the cache folder
    model_sha256: str
    tensorrt: str
    gpu: str
    compute_capability: str
    precision: str
    max_batch: int
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    calibration: str = ""  # INT8: calibration_digest of the frames; empty otherwise
    format: int = PLAN_FORMAT

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.precision == "int8" and not self.calibration:
            raise ValueError("an INT8 plan key needs the calibration digest")
        if self.precision != "int8" and self.calibration:
            raise ValueError("only INT8 plans depend on calibration data")
        if self.max_batch < 1:
            raise ValueError("max_batch must be at least 1")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanKey:
        data = dict(data)
        data["input_shape"] = tuple(data["input_shape"])
        return cls(**data)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    @property
    def filename(self) -> str:
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu.lower()).strip("-") or "gpu"
        shape = "x".join(str(d) for d in self.input_shape)
        return (f"{self.model}-{self.model_sha256[:12]}-trt{self.tensorrt}-{gpu}-sm{self.compute_capability}-"
                f"{self.precision}-b{self.max_batch}-{shape}-{self.digest[:10]}.plan")


def plan_key(
    model_path: Path,
    *,
    tensorrt_version: str,
    gpu: GpuInfo,
    precision: str,
    max_batch: int,
    input_shape: Sequence[int],
    calibration: str = "",
) -> PlanKey:
    return PlanKey(
        model=Path(model_path).stem,
        model_sha256=model_sha256(Path(model_path)),
        tensorrt=tensorrt_version,
        gpu=gpu.name,
        compute_capability=gpu.sm,
        precision=precision,
        max_batch=int(max_batch),
        input_shape=tuple(int(d) for d in input_shape),
        calibration=calibration,
    )


def engine_cache_dir(configured: Path | None = None) -> Path:
    """``inference.engine_cache_dir`` when set, else ``engines/`` in the per-machine cache (``paths.cache_dir()``)."""
    return Path(configured).expanduser() if configured is not None else paths.cache_dir() / "engines"


def calibration_cache_path(cache_dir: Path, key: PlanKey) -> Path:
    """Where TensorRT's calibration table for ``key``'s model, TensorRT version and frames is kept."""
    return (cache_dir / "calibration" /
            f"{key.model}-{key.model_sha256[:12]}-trt{key.tensorrt}-{key.calibration[:12]}.cache")


def _sidecar(plan: Path) -> Path:
    return plan.with_suffix(".json")


def read_plan_key(plan: Path) -> PlanKey | None:
    """The key recorded next to ``plan``; None when the plan or its sidecar is missing or unreadable."""
    try:
        data = json.loads(_sidecar(plan).read_text(encoding="utf-8"))
        return PlanKey.from_dict(data["key"]) if plan.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cached_plan(cache_dir: Path, key: PlanKey) -> Path | None:
    """The plan for exactly ``key``, if it was built; a file of that name whose sidecar disagrees is stale."""
    plan = cache_dir / key.filename
    recorded = read_plan_key(plan)
    if recorded is None:
        return None
    if recorded != key:
        log.warning("ignoring %s: it was built for %s", plan.name, _differences(recorded, key))
        return None
    return plan


def find_plan(cache_dir: Path, want: PlanKey, *, min_batch: int | None, any_calibration: bool) -> Path | None:
    """A cached plan matching ``want`` in every field but the max batch (at least ``min_batch``: the smallest
    such; ``None``: the largest) and, with ``any_calibration``, the calibration frames (the newest)."""
    if not cache_dir.is_dir():
        return None
    ignore = {"max_batch"} | ({"calibration"} if any_calibration else set())
    target = {k: v for k, v in want.as_dict().items() if k not in ignore}
    found: list[tuple[int, float, Path]] = []
    for sidecar in cache_dir.glob(f"{want.model}-*.json"):
        plan = sidecar.with_suffix(".plan")
        key = read_plan_key(plan)
        if key is None or plan.name != key.filename:
            continue
        if {k: v for k, v in key.as_dict().items() if k not in ignore} != target:
            continue
        if min_batch is not None and key.max_batch < min_batch:
            continue
        order = key.max_batch if min_batch is None else -key.max_batch
        found.append((order, plan.stat().st_mtime, plan))
    return max(found)[2] if found else None


def _differences(a: PlanKey, b: PlanKey) -> str:
    da, db = a.as_dict(), b.as_dict()
    return ", ".join(f"{k} {da[k]!r} (now {db[k]!r})" for k in da if da[k] != db[k])


def write_plan(cache_dir: Path, key: PlanKey, plan: bytes, info: dict[str, Any] | None = None) -> Path:
    """Write the plan and its sidecar atomically (a crash never leaves a half plan under the real name)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / key.filename
    _atomic_write(target, plan)
    record = {"key": key.as_dict(), "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(info or {})}
    _atomic_write(_sidecar(target), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return target


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------- model shapes
@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about an ONNX model without TensorRT (read with ONNX Runtime)."""

    input_name: str
    input_shape: tuple[int | None, ...]  # with the batch dimension (None: dynamic)
    metadata: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=8)
def _model_info(path: str, mtime_ns: int) -> ModelInfo:
    from anpr_edge.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(Path(path), threads=1)
    try:
        if len(backend.inputs) != 1:
            raise BackendError(f"{Path(path).name}: TensorRT engines are built for single-input models only")
        spec = backend.inputs[0]
        return ModelInfo(spec.name, spec.shape, dict(backend.metadata))
    finally:
        backend.close()


def model_info(path: Path) -> ModelInfo:
    return _model_info(str(Path(path).resolve()), Path(path).stat().st_mtime_ns)


def sample_shape(info: ModelInfo, input_size: int | None = None) -> tuple[int, ...]:
    """The per-sample input shape a plan is built for: the model's fixed dimensions, and for dynamic image
    sides ``input_size``, else the model's ``imgsz`` metadata (ultralytics exports)."""
    dims = list(info.input_shape[1:])
    if any(d is None for d in dims):
        size = input_size or _imgsz(info.metadata)
        if size is None:
            raise BackendError("the model's input has dynamic dimensions and no input size is configured")
        dims = [size if d is None else d for d in dims]
    elif input_size is not None and len(dims) == 3 and (dims[1], dims[2]) != (input_size, input_size):
        raise BackendError(f"input size {input_size} does not match the model's fixed input {dims[1]}x{dims[2]}")
    return tuple(int(d) for d in dims if d is not None)


def _imgsz(metadata: dict[str, str]) -> int | None:
    import ast

    text = metadata.get("imgsz")
    if not text:
        return None
    try:
        parsed = ast.literal_eval(text)
        return int(parsed[0] if isinstance(parsed, (list, tuple)) else parsed)
    except (ValueError, SyntaxError, TypeError, IndexError):
        return None


# -------------------------------------------------------------------------------------- building
_TRT_LOGGER: Any = None


def trt_logger() -> trt.ILogger:
    """One process-wide TensorRT logger (it must outlive every builder, runtime and engine) feeding ``logging``."""
    global _TRT_LOGGER
    if _TRT_LOGGER is None:
        require_tensorrt()
        import tensorrt as trt

        levels = {
            trt.ILogger.Severity.INTERNAL_ERROR: logging.ERROR,
            trt.ILogger.Severity.ERROR: logging.ERROR,
            trt.ILogger.Severity.WARNING: logging.WARNING,
            trt.ILogger.Severity.INFO: logging.DEBUG,  # TensorRT's INFO is build chatter
        }

        class _Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
                level = levels.get(severity)
                if level is not None:  # VERBOSE is dropped
                    log.log(level, "TensorRT: %s", msg)

        _TRT_LOGGER = _Logger()
    logger: trt.ILogger = _TRT_LOGGER
    return logger


def make_entropy_calibrator(batches: Iterable[np.ndarray], batch_size: int, cache_path: Path) -> trt.IInt8Calibrator:
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` (float32, exactly ``batch_size`` samples each) from
    one device buffer allocated at the first batch; the calibration table is read from and written to
    ``cache_path`` (a later build with the same model, TensorRT and frames skips the calibration run).
    Call with a CUDA context current (``CudaContext``)."""
    require_tensorrt()
    import tensorrt as trt

    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise BackendError(f"TensorRT {trt.__version__} has no IInt8EntropyCalibrator2 (implicit INT8 calibration "
                           "was removed): build with --precision fp16")
    cuda = require_cuda()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches: Iterator[np.ndarray] = iter(batches)
            self.device: Any = None
            self.nbytes = 0
            self.count = 0

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int]:
            batch = next(self.batches, None)
            if batch is None:
                return []  # no more data: calibration ends
            host = np.ascontiguousarray(batch, dtype=np.float32)
            if len(host) != batch_size:
                raise BackendError(f"calibration batch of {len(host)} samples, expected {batch_size}")
            if self.device is None:
                self.device, self.nbytes = cuda.mem_alloc(host.nbytes), host.nbytes
            elif host.nbytes != self.nbytes:
                raise BackendError("calibration batches must all have one shape")
            cuda.memcpy_htod(self.device, host)
            self.count += 1
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:  # type: ignore[override]
            # None (not an empty buffer) tells TensorRT there is no table yet; the stub types only a buffer.
            if cache_path.is_file():
                log.info("using the INT8 calibration table %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            _atomic_write(cache_path, bytes(cache))
            log.info("wrote the INT8 calibration table %s (%d batches)", cache_path, self.count)

        def free(self) -> None:
            if self.device is not None:
                self.device.free()
                self.device = None

    return EntropyCalibrator()


def build_plan(
    onnx_path: Path,
    key: PlanKey,
    *,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    calibration: Callable[[], Iterable[np.ndarray]] | None = None,
    calibration_cache: Path | None = None,
    calibration_batch: int = 8,
) -> bytes:
    """Parse ``onnx_path`` with TensorRT's ONNX parser and build a serialized plan for ``key`` (its precision,
    batch 1..``key.max_batch``, per-sample shape ``key.input_shape``). INT8 needs ``calibration`` (a
    callable returning the batches) and ``calibration_cache``. Needs a CUDA context current."""
    version = require_tensorrt()
    import tensorrt as trt

    logger = trt_logger()
    builder = trt.Builder(logger)
    flags = 0
    if tensorrt_major(version) < 10:  # 8.x: explicit batch must be asked for (10.x: always, flag deprecated)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT {version} cannot parse {Path(onnx_path).name}: {errors}")
    if network.num_inputs != 1:
        raise BackendError(f"{Path(onnx_path).name}: TensorRT engines are built for single-input models only")
    name = network.get_input(0).name
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    sample = list(key.input_shape)
    profile = builder.create_optimization_profile()
    profile.set_shape(name, trt.Dims([1, *sample]), trt.Dims([key.max_batch, *sample]), trt.Dims([key.max_batch, *sample]))
    config.add_optimization_profile(profile)
    calibrator = None
    if key.precision in ("fp16", "int8"):
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16: the %s plan may be slow", key.precision)
        config.set_flag(trt.BuilderFlag.FP16)
    if key.precision == "int8":
        if calibration is None or calibration_cache is None:
            raise BackendError("an INT8 plan needs calibration data")
        if not builder.platform_has_fast_int8:
            log.warning("this GPU has no fast INT8: the INT8 plan may be no faster than FP16")
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = make_entropy_calibrator(calibration(), calibration_batch, calibration_cache)
        config.int8_calibrator = calibrator
        shape = trt.Dims([calibration_batch, *sample])
        calibration_profile = builder.create_optimization_profile()
        calibration_profile.set_shape(name, shape, shape, shape)
        config.set_calibration_profile(calibration_profile)
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            getattr(calibrator, "free")()
    if serialized is None:
        raise BackendError(f"TensorRT {version} could not build a {key.precision} plan for {Path(onnx_path).name} "
                           "(its errors are logged above)")
    return bytes(memoryview(serialized))


@dataclass(frozen=True)
class PlanRequest:
    """What a caller wants a plan for; ``ensure_plan`` turns it into a key, finds or builds the plan."""

    onnx_path: Path
    precision: str | None = None  # None: a cached INT8 plan if one was built, else FP16
    max_batch: int | None = None  # None: any cached plan (the largest), else ``default_batch``
    default_batch: int = DEFAULT_OCR_BATCH
    input_size: int | None = None
    cache_dir: Path | None = None
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    # INT8 only: a callable returning the batches, and the digest naming them.
    calibration: Callable[[], Iterable[np.ndarray]] | None = None
    calibration_digest: str = ""
    force: bool = False


def ensure_plan(request: PlanRequest) -> tuple[Path, PlanKey, bool]:
    """(plan path, its key, whether it was built now). Call with a CUDA context current."""
    version = require_tensorrt()
    gpu = gpu_info()
    info = model_info(request.onnx_path)
    cache_dir = engine_cache_dir(request.cache_dir)
    base = plan_key(request.onnx_path, tensorrt_version=version, gpu=gpu, precision="fp16",
                    max_batch=request.max_batch or request.default_batch,
                    input_shape=sample_shape(info, request.input_size))
    if not request.force:
        for precision in ([request.precision] if request.precision else ["int8", "fp16"]):
            want = _with_precision(base, precision, request.calibration_digest)
            if precision == "int8" and not request.calibration_digest:
                found = find_plan(cache_dir, want, min_batch=request.max_batch, any_calibration=True)
            else:
                found = find_plan(cache_dir, want, min_batch=request.max_batch, any_calibration=False)
            if found is not None:
                key = read_plan_key(found)
                assert key is not None
                return found, key, False
    precision = request.precision or "fp16"
    key = _with_precision(base, precision, request.calibration_digest)
    if precision == "int8" and request.calibration is None:
        raise BackendError(f"no INT8 plan for {request.onnx_path.name} is cached; build one with "
                           "`anpr-edge build-engines --precision int8` or `anpr-edge calibrate`")
    log.warning("building the TensorRT %s engine for %s (max batch %d) on %s: the first start on a machine "
                "may take minutes; later starts load it from %s", precision.upper(), request.onnx_path.name,
                key.max_batch, gpu.name, cache_dir)
    started = time.monotonic()
    plan = build_plan(request.onnx_path, key, workspace_mb=request.workspace_mb, calibration=request.calibration,
                      calibration_cache=calibration_cache_path(cache_dir, key) if precision == "int8" else None)
    seconds = time.monotonic() - started
    path = write_plan(cache_dir, key, plan, {"build_seconds": round(seconds, 1), "workspace_mb": request.workspace_mb,
                                             "onnx": str(request.onnx_path)})
    log.info("built %s in %.0f s (%.1f MB)", path.name, seconds, len(plan) / 1e6)
    return path, key, True


def _with_precision(key: PlanKey, precision: str, calibration: str) -> PlanKey:
    if precision == "int8":
        return replace(key, precision="int8", calibration=calibration or "pending")
    return replace(key, precision=precision, calibration="")


# ----------------------------------------------------------------------------------- commands
def _load_config(path: str | None) -> AppConfig:
    from anpr_edge.config import default_config, load_config

    return load_config(path) if path else default_config()


def calibration_source(config: AppConfig, folders: Sequence[Path]) -> tuple[Callable[..., Any], dict[str, Any]]:
    """Factories for the detector's and the OCR's calibration batches from ``folders`` with ``config``'s
    preprocessing, and a summary. The OCR crops come from the detector run on ONNX Runtime."""
    from anpr_edge import calibration as calib
    from anpr_edge.pipeline import load_detector, load_recognizer

    cpu = config.model_copy(update={"inference": config.inference.model_copy(update={"backend": "onnxruntime"})})
    detector = load_detector(cpu)
    recognizer = load_recognizer(cpu)
    images = calib.calibration_images(folders)
    if not images:
        raise ConfigError(f"no calibration images in {', '.join(str(f) for f in folders)}")
    params = calib.CalibrationParams(detector_input=detector.input_size, ocr_crop=recognizer.crop_size,
                                     padding=config.crop.padding, detector_confidence=detector.confidence,
                                     detector_iou=detector.iou)
    digest = calib.calibration_digest(images, params)

    def batches(role: str) -> Iterator[np.ndarray]:
        if role == "detector":
            return calib.detector_batches(images, detector.input_size, params.batch_size)
        return calib.ocr_batches(images, detector, recognizer.crop_size, config.crop.padding, params.batch_size)

    summary = {"images": len(images), "folders": [str(f) for f in folders], "digest": digest,
               "detector_input": detector.input_size, "ocr_crop": list(recognizer.crop_size)}
    return batches, summary


def resolve_calibration_folders(images: Sequence[str] | None, bundled: bool) -> list[Path]:
    from anpr_edge.calibration import bundled_calib_dir

    folders: list[Path] = []
    if bundled:
        found = bundled_calib_dir()
        if found is None:
            raise ConfigError("the bundled calibration frames (calib/) are not installed here: pass --images DIR")
        folders.append(found)
    folders.extend(Path(p) for p in images or [])
    if not folders:
        raise ConfigError("no calibration images: pass --images DIR")
    return folders


def build_engines(
    config: AppConfig,
    *,
    precision: str,
    workspace_mb: int,
    ocr_batch: int,
    detector_batch: int | None,
    cache_dir: Path | None,
    calibration_folders: Sequence[Path] = (),
    force: bool = False,
    roles: Sequence[str] = ("detector", "ocr"),
) -> list[dict[str, Any]]:
    """Find or build the detector and OCR plans for ``config``; one summary record per plan."""
    from anpr_edge.backends.tensorrt import CudaContext
    from anpr_edge.pipeline import _model_path

    batches: Callable[..., Any] | None = None
    digest = ""
    if precision == "int8":
        batches, summary = calibration_source(config, calibration_folders)
        digest = summary["digest"]
        log.info("INT8 calibration on %d frames from %s", summary["images"], ", ".join(summary["folders"]))
    models = {
        "detector": (_model_path(config.models.detector.path, paths.DETECTOR_MODEL, "plate detector", "models.detector.path"),
                     detector_batch or config.detector_batch, config.models.detector.input_size),
        "ocr": (_model_path(config.models.ocr.path, paths.OCR_MODEL, "plate OCR", "models.ocr.path"), ocr_batch, None),
    }
    records = []
    with CudaContext():
        for role in roles:
            onnx_path, max_batch, input_size = models[role]
            request = PlanRequest(
                onnx_path=onnx_path, precision=precision, max_batch=max_batch, input_size=input_size,
                cache_dir=cache_dir or config.inference.engine_cache_dir, workspace_mb=workspace_mb,
                calibration=functools.partial(batches, role) if batches is not None else None,
                calibration_digest=digest, force=force)
            started = time.monotonic()
            plan, key, built = ensure_plan(request)
            records.append({"model": role, "precision": key.precision, "max_batch": key.max_batch,
                            "input_shape": list(key.input_shape), "tensorrt": key.tensorrt, "gpu": key.gpu,
                            "plan": str(plan), "built": built, "seconds": round(time.monotonic() - started, 1)})
    return records


def cmd_build_engines(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    folders = resolve_calibration_folders(args.images, not args.no_bundled) if args.precision == "int8" else []
    records = build_engines(config, precision=args.precision, workspace_mb=args.workspace, ocr_batch=args.max_batch,
                            detector_batch=args.detector_batch, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                            calibration_folders=folders, force=args.force)
    for record in records:
        sys.stdout.write(json.dumps(record) + "\n")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    folders = resolve_calibration_folders(args.images, not args.no_bundled)
    if args.check:
        # CPU only: what the calibration would see (frames, detector batches, plate crops), no TensorRT.
        batches, summary = calibration_source(config, folders)
        summary["detector_batches"] = sum(1 for _ in batches("detector"))
        summary["ocr_batches"] = sum(1 for _ in batches("ocr"))
        sys.stdout.write(json.dumps(summary) + "\n")
        if summary["ocr_batches"] == 0:
            raise ConfigError("the detector found too few plates in these frames to calibrate the OCR")
        return 0
    records = build_engines(config, precision="int8", workspace_mb=args.workspace, ocr_batch=args.max_batch,
                            detector_batch=args.detector_batch, cache_dir=Path(args.cache_dir) if args.cache_dir else None,
                            calibration_folders=folders, force=True)
    for record in records:
        sys.stdout.write(json.dumps(record) + "\n")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML config (models, detector input size, cameras, crop)")
    parser.add_argument("--workspace", type=positive_int, default=DEFAULT_WORKSPACE_MB, metavar="MB",
                        help=f"TensorRT builder workspace in MB (default {DEFAULT_WORKSPACE_MB})")
    parser.add_argument("--max-batch", type=positive_int, default=DEFAULT_OCR_BATCH, metavar="N",
                        help=f"largest OCR batch of the plan's optimisation profile (default {DEFAULT_OCR_BATCH})")
    parser.add_argument("--detector-batch", type=positive_int, metavar="N",
                        help="largest detector batch (default: the config's enabled cameras)")
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="plan cache folder (default: inference.engine_cache_dir, else $ANPR_EDGE_CACHE_DIR/engines)")
    parser.add_argument("--no-bundled", action="store_true", help="INT8: do not use the bundled calib/ frames")


def register(commands: Any) -> None:
    """Add ``build-engines`` and ``calibrate`` to the main parser's subcommands."""
    build = commands.add_parser(
        "build-engines",
        help="build (or find cached) TensorRT plans for the detector and the OCR",
        description="Parse engines/*.onnx (or the config's models) with TensorRT's ONNX parser and build serialized "
        "plans with a dynamic-batch optimisation profile, cached under a name keyed by model hash, TensorRT version, "
        "GPU and compute capability, precision and profile. Prints one JSON line per plan. Needs TensorRT, pycuda "
        "and an NVIDIA GPU.",
    )
    _common(build)
    build.add_argument("--precision", choices=PRECISIONS, default="fp16", help="plan precision (default fp16)")
    build.add_argument("--images", action="append", metavar="DIR",
                       help="INT8: more calibration frames (repeatable), besides the bundled calib/")
    build.add_argument("--force", action="store_true", help="rebuild even when a matching plan is cached")
    build.set_defaults(handler=cmd_build_engines)

    calibrate = commands.add_parser(
        "calibrate",
        help="INT8-calibrate the TensorRT plans on this site's frames",
        description="Build INT8 plans calibrated (entropy calibrator) on the bundled calib/ frames plus DIR's "
        "frames, preprocessed exactly like the daemon does; the calibration table goes to the engine cache's "
        "calibration/ folder. The daemon then uses these INT8 plans. --check only reports, on the CPU, what the "
        "calibration would see.",
    )
    _common(calibrate)
    calibrate.add_argument("--images", action="append", required=True, metavar="DIR",
                           help="folder of this site's camera frames (repeatable)")
    calibrate.add_argument("--check", action="store_true",
                           help="count frames, detector batches and plate crops; no TensorRT needed")
    calibrate.set_defaults(handler=cmd_calibrate)
