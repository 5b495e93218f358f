"""The ONNX Runtime backend on tiny models built with the onnx helper API."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_models import affine_model

from anpr_edge.backends import create_backend
from anpr_edge.errors import BackendError, ModelNotAvailableError


def test_runs_a_batch_and_exposes_specs(tmp_path: Path) -> None:
    backend = create_backend("onnxruntime", affine_model(tmp_path / "m.onnx"), threads=1)
    assert [s.name for s in backend.inputs] == ["x"] and backend.inputs[0].shape == (None, 3, 4, 4)
    assert [s.name for s in backend.outputs] == ["y", "s"]
    assert backend.metadata == {"purpose": "test"}
    assert backend.max_batch is None
    x = np.random.default_rng(0).random((5, 3, 4, 4), dtype=np.float32)
    y, s = backend.run(x)
    np.testing.assert_allclose(y, 2 * x + 1, rtol=1e-6)
    np.testing.assert_allclose(s.reshape(-1), x.sum(axis=(1, 2, 3)), rtol=1e-5)
    # The same through the mapping form, and float64 input is converted to the model's dtype.
    (y2, _) = backend.run({"x": x.astype(np.float64)})
    np.testing.assert_allclose(y2, y)


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_thread_count_is_configurable(tmp_path: Path, threads: int) -> None:
    backend = create_backend("onnxruntime", affine_model(tmp_path / "m.onnx"), threads=threads)
    assert backend.threads == threads
    assert backend._session.get_session_options().intra_op_num_threads == threads


def test_batches_larger_than_a_fixed_batch_are_split(tmp_path: Path) -> None:
    backend = create_backend("onnxruntime", affine_model(tmp_path / "b1.onnx", batch=1))
    assert backend.max_batch == 1
    x = np.arange(3 * 48, dtype=np.float32).reshape(3, 3, 4, 4)
    y, s = backend.run(x)
    assert y.shape == (3, 3, 4, 4) and s.shape == (3, 1, 1, 1)
    np.testing.assert_allclose(y, 2 * x + 1)


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    backend = create_backend("onnxruntime", affine_model(tmp_path / "m.onnx"))
    with pytest.raises(BackendError, match=r"input 'x' float32\[batch, 3, 4, 4\] does not accept .* \(2, 3, 5, 5\)"):
        backend.run(np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(BackendError, match="missing input 'x'"):
        backend.run({"images": np.zeros((1, 3, 4, 4), np.float32)})
    with pytest.raises(BackendError, match="non-zero batch"):
        backend.run(np.zeros((0, 3, 4, 4), np.float32))


def test_missing_and_invalid_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailableError, match="model file not found"):
        create_backend("onnxruntime", tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(BackendError, match=f"cannot load model {junk}"):
        create_backend("onnxruntime", junk)
    with pytest.raises(BackendError, match="unknown inference backend 'cuda'"):
        create_backend("cuda", affine_model(tmp_path / "m.onnx"))
    with pytest.raises(BackendError, match="tensorrt"):
        create_backend("tensorrt", affine_model(tmp_path / "m.onnx"))


def test_runtime_needs_neither_torch_nor_ultralytics(tmp_path: Path) -> None:
    """Import the whole runtime and run a model in a fresh interpreter where torch cannot be imported."""
    import subprocess
    import sys

    model = affine_model(tmp_path / "m.onnx")
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'ultralytics', 'torchvision'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "import anpr_edge.cli, anpr_edge.pipeline, anpr_edge.sources, anpr_edge.backends.onnxruntime\n"
        "from anpr_edge.backends import create_backend\n"
        f"b = create_backend('onnxruntime', {str(model)!r})\n"
        "print(b.run(np.ones((1, 3, 4, 4), np.float32))[0].mean())\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('torch', 'ultralytics')]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3.0"
