"""Tiny ONNX models built with the ``onnx`` helper API, to test the backend and the model contracts.

They are test fixtures, not products: the real models are trained by the project's training code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _save(graph: onnx.GraphProto, path: Path, metadata: dict[str, str] | None = None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def affine_model(path: Path, *, batch: int | str = "batch") -> Path:
    """``y = 2 * x + 1`` and ``s = sum(x)`` per sample; x is float32 (batch, 3, 4, 4)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 4, 4])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, [batch, 1, 1, 1])
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["x2"]),
        helper.make_node("Add", ["x2", "one"], ["y"]),
        helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=1),
    ]
    inits = [
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
    ]
    graph = helper.make_graph(nodes, "affine", [x], [y, s], inits)
    return _save(graph, path, {"purpose": "test"})


def constant_detector(path: Path, rows: np.ndarray, *, size: int | None = 64, end2end: bool = False) -> Path:
    """A detector whose raw output is ``rows`` for every image of the batch.

    ``rows``: (anchors, 5) centre-xywh + score (classic layout, exported as (batch, 5, anchors)) or, with
    ``end2end``, (max_det, 6) x1, y1, x2, y2, score, class. ``size=None`` makes the input size dynamic.
    """
    dim: int | str = size if size is not None else "size"
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, dim, dim])
    constant = rows.astype(np.float32) if end2end else rows.astype(np.float32).T
    out_shape = ["batch", *constant.shape]
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)
    nodes = [
        # zero = 0 * sum(images) per sample, shape (batch, 1, 1): gives the constant a batch dimension.
        helper.make_node("ReduceSum", ["images", "axes"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["zeros"]),
        helper.make_node("Reshape", ["zeros", "shape"], ["zeros3"]),
        helper.make_node("Add", ["zeros3", "rows"], ["output0"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
        numpy_helper.from_array(constant[None], "rows"),
    ]
    graph = helper.make_graph(nodes, "constant_detector", [images], [output], inits)
    return _save(graph, path, {"imgsz": f"[{size or 64}, {size or 64}]", "task": "detect"})


def brightness_ocr(path: Path, *, height: int = 32, width: int = 128, charset: str = "AB") -> Path:
    """An OCR that reads 'A' on bright crops and 'B' on dark ones (then the end token), with softmax
    probabilities, in the project's OCR contract: (batch, 3, H, W) -> (batch, 2, 1 + len(charset))."""
    assert len(charset) == 2
    crops = helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["batch", 3, height, width])
    probs = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2, 3])
    nodes = [
        helper.make_node("ReduceMean", ["crops"], ["mean"], axes=[1, 2, 3], keepdims=0),  # (batch,)
        helper.make_node("Reshape", ["mean", "col"], ["m"]),  # (batch, 1)
        helper.make_node("Mul", ["m", "ten"], ["m10"]),
        helper.make_node("Sub", ["m10", "five"], ["a_logit"]),  # bright -> A
        helper.make_node("Neg", ["a_logit"], ["b_logit"]),  # dark -> B
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["z", "end_logit0"], ["e0"]),
        helper.make_node("Concat", ["e0", "a_logit", "b_logit"], ["step0"], axis=1),  # (batch, 3)
        helper.make_node("Add", ["z", "step1_logits"], ["step1"]),  # (batch, 3): end token
        helper.make_node("Unsqueeze", ["step0", "one_axis"], ["s0"]),
        helper.make_node("Unsqueeze", ["step1", "one_axis"], ["s1"]),
        helper.make_node("Concat", ["s0", "s1"], ["logits"], axis=1),  # (batch, 2, 3)
        helper.make_node("Softmax", ["logits"], ["probs"], axis=2),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1], np.int64), "col"),
        numpy_helper.from_array(np.array(10.0, np.float32), "ten"),
        numpy_helper.from_array(np.array(5.0, np.float32), "five"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([[-8.0]], np.float32), "end_logit0"),
        numpy_helper.from_array(np.array([[8.0, -8.0, -8.0]], np.float32), "step1_logits"),
        numpy_helper.from_array(np.array([1], np.int64), "one_axis"),
    ]
    graph = helper.make_graph(nodes, "brightness_ocr", [crops], [probs], inits)
    return _save(graph, path, {"charset": charset})


def constant_plate_config(folder: Path):
    """A one-camera demo config whose detector finds the same box in every frame and whose OCR reads crop
    brightness: the whole ``run`` pipeline in milliseconds a frame, for benchmark harness tests."""
    from anpr_edge.config import parse_config

    rows = np.array([[32, 32, 20, 10, 0.9]], np.float32)
    return parse_config({
        "models": {"detector": {"path": str(constant_detector(folder / "det.onnx", rows))},
                   "ocr": {"path": str(brightness_ocr(folder / "ocr.onnx"))}},
        "inference": {"threads": 1},
        "cameras": [{"id": "demo", "source": "demo"}],
    })
