"""TensorRT backend: a cached plan (built from the ONNX model on first use) run with pycuda buffers.

**Threads and the CUDA context.** One inference thread owns the GPU work: the thread that creates the
backend retains the device's *primary* CUDA context (the one the CUDA runtime and TensorRT use) and makes it
current there (``CudaContext``, reference-counted per thread, so the detector and the OCR share it); every
``run`` must come from that thread (anything else is a ``BackendError``, not a silent wrong-context crash),
and ``close`` releases the context there too. The daemon builds its models and runs its inference loop in
the main thread, which is therefore the owner. Never use ``pycuda.autoinit``.

**Buffers.** At load, for the profile's largest batch, each input and output gets one pinned (page-locked)
host buffer and one device buffer, allocated once, with their addresses bound to the execution context
once. A call writes its batch into the front of the pinned input buffer, copies it to the device
asynchronously on the engine's own CUDA stream, enqueues the engine, copies the outputs back
asynchronously and synchronises the stream: no allocation on the GPU or in pinned memory per frame. Results
are copied out of the pinned buffers (callers keep them, e.g. a read's per-character probabilities).

**Batches.** ``max_batch`` is the optimisation profile's maximum; the base class splits larger batches;
smaller ones run at their own size (the input shape is set per call), never padded.

**API.** TensorRT 8.5+ and 10.x: named tensors, ``set_input_shape``, ``set_tensor_address`` and
``execute_async_v3`` (8.6 has them; 10.x removed the binding API). For an 8.x TensorRT without
``execute_async_v3``, or with ``execution="v2"``, the binding API (``set_binding_shape``,
``execute_async_v2``) runs the same buffers.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from anpr_edge import trt_build
from anpr_edge.backends import InferenceBackend, TensorSpec
from anpr_edge.errors import BackendError

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger("anpr_edge.tensorrt")

_thread = threading.local()


class CudaContext:
    """The GPU's primary CUDA context, retained and made current in the calling thread while held.

    Reference-counted per thread: nested holders (the detector's and the OCR's backends, a build inside
    the daemon) share one retain/push; the last ``release`` pops and releases it, in the same thread."""

    def __init__(self, device: int = trt_build.CUDA_DEVICE) -> None:
        self.device = device
        self.thread = threading.get_ident()
        self._held = False

    def acquire(self) -> CudaContext:
        cuda = trt_build.require_cuda()
        state = getattr(_thread, "cuda", None)
        if state is None:
            context = cuda.Device(self.device).retain_primary_context()
            context.push()
            state = _thread.cuda = {"context": context, "count": 0}
        state["count"] += 1
        self._held = True
        return self

    def release(self) -> None:
        if not self._held:
            return
        if threading.get_ident() != self.thread:
            raise BackendError("a CUDA context must be released by the thread that acquired it")
        self._held = False
        state = _thread.cuda
        state["count"] -= 1
        if state["count"] == 0:
            del _thread.cuda
            import pycuda.driver as cuda

            cuda.Context.pop()
            state["context"].detach()

    def __enter__(self) -> CudaContext:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class TensorRTBackend(InferenceBackend):
    """A TensorRT engine for one ONNX model. Not thread-safe: the creating thread owns it (module doc)."""

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int | None = None,
        default_batch: int = trt_build.DEFAULT_OCR_BATCH,
        input_size: int | None = None,
        precision: str | None = None,
        cache_dir: Path | None = None,
        workspace_mb: int = trt_build.DEFAULT_WORKSPACE_MB,
        execution: str = "auto",
    ) -> None:
        version = trt_build.require_tensorrt()
        self.path = Path(path)
        info = trt_build.model_info(self.path)
        self.metadata = dict(info.metadata)  # the plan does not carry ONNX metadata (the OCR's charset)
        self._owner = threading.get_ident()
        self._cuda_context: CudaContext | None = CudaContext().acquire()
        self._device_buffers: list[Any] = []
        try:
            self.plan, self.key, built = trt_build.ensure_plan(trt_build.PlanRequest(
                onnx_path=self.path, precision=precision, max_batch=max_batch, default_batch=default_batch,
                input_size=input_size, cache_dir=cache_dir, workspace_mb=workspace_mb))
            log.info("TensorRT %s: %s %s plan %s%s", version, self.path.name, self.key.precision.upper(),
                     self.plan.name, " (built now)" if built else "")
            self._load(execution)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------ loading
    def _load(self, execution: str) -> None:
        import pycuda.driver as cuda
        import tensorrt as trt

        self._runtime = trt.Runtime(trt_build.trt_logger())
        engine = self._runtime.deserialize_cuda_engine(self.plan.read_bytes())
        if engine is None:
            raise BackendError(f"TensorRT cannot load the plan {self.plan} (its errors are logged above); "
                               "delete it to have it rebuilt")
        self._engine: trt.ICudaEngine = engine
        context = engine.create_execution_context()
        if context is None:
            raise BackendError(f"{self.path.name}: TensorRT could not create an execution context (GPU memory?)")
        self._context: trt.IExecutionContext = context
        self._v3 = execution != "v2" and hasattr(context, "execute_async_v3")
        self._stream = cuda.Stream()  # one stream per engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._input_names, self._output_names = inputs, [n for n in names if n not in inputs]
        if len(inputs) != 1:
            raise BackendError(f"{self.path.name}: only single-input engines are supported")
        (name,) = inputs
        low, _opt, high = (tuple(d) for d in self._profile_shape(name))
        self._max_batch = int(high[0])
        sample = tuple(int(d) for d in high[1:])
        self.inputs = (TensorSpec(name, (None, *sample), np.dtype(trt.nptype(engine.get_tensor_dtype(name)))),)
        # Size every buffer for the largest batch once; outputs take their shapes from the engine at that batch.
        self._set_batch(self._max_batch)
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, Any] = {}
        outputs = []
        for tensor in names:
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(tensor)))
            shape = tuple(int(d) for d in self._tensor_shape(tensor))
            if any(d < 0 for d in shape):
                raise BackendError(f"{self.path.name}: output '{tensor}' has a data-dependent shape {shape}")
            host = cuda.pagelocked_empty(int(np.prod(shape)), dtype)
            device = cuda.mem_alloc(max(host.nbytes, 1))
            self._device_buffers.append(device)
            self._host[tensor], self._device[tensor] = host, device
            if tensor in self._output_names:
                outputs.append(TensorSpec(tensor, (None, *shape[1:]), dtype))
            if self._v3:
                context.set_tensor_address(tensor, int(device))
        self.outputs = tuple(outputs)
        self._bindings = [int(self._device[n]) for n in names]
        log.debug("%s: batch %d..%d, %d bytes of device buffers", self.path.name, low[0], self._max_batch,
                  sum(h.nbytes for h in self._host.values()))

    def _profile_shape(self, name: str) -> list[Any]:
        engine = self._engine
        if hasattr(engine, "get_tensor_profile_shape"):
            return list(engine.get_tensor_profile_shape(name, 0))
        index = getattr(engine, "get_binding_index")(name)  # TensorRT < 8.5
        return list(getattr(engine, "get_profile_shape")(0, index))

    def _tensor_shape(self, name: str) -> Any:
        if self._v3:
            return self._context.get_tensor_shape(name)
        return getattr(self._context, "get_binding_shape")(getattr(self._engine, "get_binding_index")(name))

    def _set_batch(self, batch: int) -> None:
        name = self._input_names[0]
        shape = (batch, *(int(d) for d in self.inputs[0].shape[1:] if d is not None))
        if self._v3:
            ok = self._context.set_input_shape(name, tuple(int(d) for d in shape))
        else:
            index = getattr(self._engine, "get_binding_index")(name)
            ok = getattr(self._context, "set_binding_shape")(index, tuple(int(d) for d in shape))
        if not ok:
            raise BackendError(f"{self.path.name}: TensorRT rejected input shape {shape}")
        self._batch = batch

    # -------------------------------------------------------------------------------------- running
    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        import pycuda.driver as cuda

        if threading.get_ident() != self._owner:
            raise BackendError(f"{self.path.name}: a TensorRT backend runs only in the thread that created it")
        (name,) = self._input_names
        batch = feeds[name]
        n = len(batch)
        if n != self._batch:
            self._set_batch(n)
        stream = self._stream
        staged = self._host[name][: batch.size].reshape(batch.shape)
        np.copyto(staged, batch, casting="same_kind")
        cuda.memcpy_htod_async(self._device[name], staged, stream)
        if self._v3:
            ok = self._context.execute_async_v3(stream.handle)
        else:
            ok = getattr(self._context, "execute_async_v2")(bindings=self._bindings, stream_handle=stream.handle)
        if not ok:
            raise BackendError(f"{self.path.name}: TensorRT inference failed")
        results = []
        for out in self._output_names:
            shape = tuple(int(d) for d in self._tensor_shape(out))
            view = self._host[out][: int(np.prod(shape))]
            cuda.memcpy_dtoh_async(view, self._device[out], stream)
            results.append((view, shape))
        stream.synchronize()
        return [view.reshape(shape).copy() for view, shape in results]

    def close(self) -> None:
        if threading.get_ident() != getattr(self, "_owner", threading.get_ident()):
            log.warning("%s: TensorRT backend closed from another thread; its GPU memory is freed at exit",
                        getattr(self, "path", "model"))
            return
        for device in getattr(self, "_device_buffers", []):
            device.free()
        self._device_buffers = []
        for attribute in ("_context", "_engine", "_runtime", "_stream", "_host", "_device"):
            if hasattr(self, attribute):
                delattr(self, attribute)  # TensorRT objects go before the context they live in
        context = getattr(self, "_cuda_context", None)
        if context is not None:
            self._cuda_context = None
            context.release()
