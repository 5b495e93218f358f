"""ONNX Runtime backend: the CPU default (no network calls, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from anpr_edge.backends import InferenceBackend, TensorSpec
from anpr_edge.errors import BackendError

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def _spec(arg: ort.NodeArg) -> TensorSpec:
    # Symbolic dimensions ("batch", "N") and unknown ones are dynamic.
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_ORT_TYPES.get(arg.type, np.float32)))


class OnnxRuntimeBackend(InferenceBackend):
    def __init__(self, path: Path, *, threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # One model runs at a time per inference thread; parallelism comes from inside the ops.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT's warnings would flood stderr
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - ORT raises several pybind types for bad files
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BackendError(f"cannot load model {path}: {first_line}") from None
        self.path = path
        self.threads = threads
        self.inputs = tuple(_spec(arg) for arg in self._session.get_inputs())
        self.outputs = tuple(_spec(arg) for arg in self._session.get_outputs())
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self._output_names = [spec.name for spec in self.outputs]

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            return list(self._session.run(self._output_names, feeds))
        except Exception as error:  # noqa: BLE001
            raise BackendError(f"{self.path.name}: inference failed: {str(error).strip().splitlines()[0]}") from None
