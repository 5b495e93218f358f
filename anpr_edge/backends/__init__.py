"""Inference backends: one small interface that runs a model on a batch.

The detector and the OCR are written against ``InferenceBackend`` only. ``run`` takes a batch (one array
for single-input models, or a mapping of input name to array) and returns the outputs in model order.
Batches larger than the model accepts are split and the results concatenated, so callers never need
to know a model's batch limit.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anpr_edge.errors import BackendError, ModelNotAvailableError

BACKENDS = ("auto", "onnxruntime", "tensorrt")

log = logging.getLogger("anpr_edge.backends")


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: ``None`` in ``shape`` marks a dynamic dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def max_batch(self) -> int | None:
        return self.shape[0] if self.shape else None

    def describe(self) -> str:
        dims = ", ".join("batch" if i == 0 and d is None else ("?" if d is None else str(d)) for i, d in enumerate(self.shape))
        return f"'{self.name}' {np.dtype(self.dtype).name}[{dims}]"


class InferenceBackend(ABC):
    """A loaded model. Not thread-safe: one inference thread owns it."""

    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: Mapping[str, str]

    def run(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> list[np.ndarray]:
        feeds = self._feeds(inputs)
        batch = len(next(iter(feeds.values())))
        limit = self.max_batch
        if limit is None or batch <= limit:
            return self._run(feeds)
        # Split an oversized batch; smaller ones go through as they are (no padding).
        parts = [self._run({k: v[i : i + limit] for k, v in feeds.items()}) for i in range(0, batch, limit)]
        return [np.concatenate([part[j] for part in parts]) for j in range(len(self.outputs))]

    @property
    def max_batch(self) -> int | None:
        limits = [spec.max_batch for spec in self.inputs if spec.max_batch is not None]
        return min(limits) if limits else None

    def _feeds(self, inputs: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(inputs, Mapping):
            if len(self.inputs) != 1:
                names = ", ".join(spec.name for spec in self.inputs)
                raise BackendError(f"{self.path.name}: model takes {len(self.inputs)} inputs ({names}); pass a mapping")
            inputs = {self.inputs[0].name: inputs}
        feeds: dict[str, np.ndarray] = {}
        batches = set()
        for spec in self.inputs:
            if spec.name not in inputs:
                raise BackendError(f"{self.path.name}: missing input {spec.describe()}")
            array = np.ascontiguousarray(inputs[spec.name], dtype=spec.dtype)
            fixed = spec.shape[1:]
            if array.ndim != len(spec.shape) or any(d is not None and d != a for d, a in zip(fixed, array.shape[1:])):
                raise BackendError(
                    f"{self.path.name}: input {spec.describe()} does not accept an array of shape {tuple(array.shape)}"
                )
            feeds[spec.name] = array
            batches.add(array.shape[0])
        unknown = set(inputs) - {spec.name for spec in self.inputs}
        if unknown:
            raise BackendError(f"{self.path.name}: unknown input(s): {', '.join(sorted(unknown))}")
        if len(batches) != 1 or 0 in batches:
            raise BackendError(f"{self.path.name}: inputs need one common, non-zero batch size (got {sorted(batches)})")
        return feeds

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch that fits the model."""

    def close(self) -> None:
        """Free the model's resources."""

    def __enter__(self) -> InferenceBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_TENSORRT_STATUS: dict[str, tuple[bool, str]] = {}


def probe_tensorrt() -> tuple[bool, str]:
    """Whether TensorRT can run here (it imports, it is the real library, pycuda sees a GPU), and why (not)."""
    from anpr_edge import trt_build

    try:
        version = trt_build.require_tensorrt()
        gpu = trt_build.gpu_info()
    except BackendError as error:
        return False, str(error)
    return True, f"TensorRT {version} on {gpu.name} (compute capability {gpu.sm})"


def tensorrt_status() -> tuple[bool, str]:
    """``probe_tensorrt()``, probed once per process."""
    if "status" not in _TENSORRT_STATUS:
        _TENSORRT_STATUS["status"] = probe_tensorrt()
    return _TENSORRT_STATUS["status"]


def create_backend(
    kind: str,
    path: str | Path,
    *,
    threads: int = 0,
    max_batch: int | None = None,
    input_size: int | None = None,
    cache_dir: Path | None = None,
    precision: str | None = None,
) -> InferenceBackend:
    """Load the model at ``path`` with the named backend. Raises ``ModelNotAvailableError``/``BackendError``.

    ``auto`` picks TensorRT when it imports and a GPU is present (``tensorrt_status``), else ONNX Runtime,
    and logs the choice; if TensorRT is there but fails on this model, it logs why and uses ONNX Runtime.
    The TensorRT-only arguments: ``max_batch`` (the optimisation profile's largest batch; ``None``: a
    cached plan's, else 64 for models with a fixed image size (the OCR) and 8 for the detector),
    ``input_size`` (the detector's square input), ``cache_dir`` (plan cache) and ``precision`` (``None``: a
    cached INT8 plan if one was built, else FP16).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotAvailableError(f"model file not found: {path}")
    if kind not in BACKENDS:
        raise BackendError(f"unknown inference backend '{kind}' (expected one of: {', '.join(BACKENDS)})")
    if kind in ("auto", "tensorrt"):
        usable, reason = tensorrt_status()
        if kind == "tensorrt" and not usable:
            raise BackendError(
                f"inference.backend 'tensorrt' cannot run here: {reason}. Install the [gpu] extra (x86-64) or use "
                "JetPack's TensorRT, or set inference.backend to 'auto' or 'onnxruntime'"
            )
        if usable:
            try:
                backend = _tensorrt(path, max_batch=max_batch, input_size=input_size, cache_dir=cache_dir,
                                    precision=precision)
            except BackendError as error:
                if kind == "tensorrt":
                    raise
                log.warning("inference backend for %s: TensorRT failed (%s); using ONNX Runtime", path.name, error)
            else:
                log.info("inference backend for %s: tensorrt (%s%s)", path.name, "auto: " if kind == "auto" else "",
                         reason)
                return backend
        else:
            log.info("inference backend for %s: onnxruntime (auto: %s)", path.name, reason)
    from anpr_edge.backends.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, threads=threads)


def _tensorrt(
    path: Path, *, max_batch: int | None, input_size: int | None, cache_dir: Path | None, precision: str | None
) -> InferenceBackend:
    from anpr_edge import trt_build
    from anpr_edge.backends.tensorrt import TensorRTBackend

    info = trt_build.model_info(path)
    dynamic_image = any(d is None for d in info.input_shape[1:])
    default_batch = trt_build.DEFAULT_DETECTOR_BATCH if dynamic_image else trt_build.DEFAULT_OCR_BATCH
    return TensorRTBackend(path, max_batch=max_batch, default_batch=default_batch, input_size=input_size,
                           precision=precision, cache_dir=cache_dir)
