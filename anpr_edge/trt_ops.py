"""ONNX operators that TensorRT's ONNX parser supports, per TensorRT version (data, no TensorRT needed).

Source: the ONNX-TensorRT parser's support matrix, ``docs/operators.md`` in github.com/onnx/onnx-tensorrt
(the rows marked ``Y``), and that repository's ``docs/Changelog.md``:

* ``8.5``: ``docs/operators.md`` on the ``release/8.5-GA`` branch ("TensorRT 8.5 supports operators up to
  Opset 17").
* ``8.6``: the 8.5 matrix plus what the changelog's "TensorRT 8.6 EA Release" section adds ("Added support
  for GroupNormalization, LayerNormalization, IsInf operations"); 8.6 GA adds no operator (N-D Trilu
  only). 8.6 supports opsets up to 17, like 8.5.
* ``10``: ``docs/operators.md`` of TensorRT 10.15 ("supports operators in the inclusive range of opset 9 to
  opset 24"); TensorRT 10.0's own matrix states opsets 9 to 20, so ``OPSETS`` uses that narrower range for
  the whole 10.x line.

``model_problems`` checks an ONNX graph against one version: every node's operator type is in the list,
the default-domain opset is in range, and the documented restrictions that can bite an export of ours
(Resize modes, constant ``axes``, LayerNormalization's single output) hold. The test suite runs it on the
committed models for every version in ``SUPPORTED``; ``build-engines`` does not need it (the parser itself
reports what it cannot import).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

_TRT_85 = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSwish HardSigmoid Identity If ImageScaler
InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

_TRT_86 = _TRT_85 | {"GroupNormalization", "LayerNormalization", "IsInf"}

_TRT_10 = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor
Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GridSample GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression
NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike
RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RMSNormalization
RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink
Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
TensorScatter ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# version -> the ONNX operator types its parser imports natively (no plugin).
OPERATORS: dict[str, frozenset[str]] = {"8.5": _TRT_85, "8.6": _TRT_86, "10": _TRT_10}
# version -> (lowest, highest) default-domain opset its parser accepts.
OPSETS: dict[str, tuple[int, int]] = {"8.5": (1, 17), "8.6": (1, 17), "10": (9, 20)}
# The versions the product supports (README): JetPack 5/6.0 ship 8.6, JetPack 6.1+ and x86 wheels 10.x.
SUPPORTED = ("8.6", "10")

# Restrictions from the same matrix that an exported detector or OCR can run into.
RESIZE_MODES = frozenset({"nearest", "linear"})
RESIZE_COORDINATES = frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"})
RESIZE_NEAREST = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})
# op type -> index of an input that must be a build-time constant (initializer or Constant node output).
CONSTANT_INPUTS = {"Slice": 3, "Unsqueeze": 1, "Squeeze": 1, "TopK": 1, "CumSum": 1}


def series(version: str) -> str:
    """The key of ``OPERATORS`` for an installed TensorRT version string ('8.6.1.6' -> '8.6', '10.3.0' -> '10')."""
    parts = version.split(".")
    return parts[0] if parts[0] != "8" else ".".join(parts[:2])


def model_problems(path: Path, version: str) -> list[str]:
    """What would keep TensorRT ``version`` (a key of ``OPERATORS``) from parsing the ONNX model at ``path``;
    empty when nothing does. Needs the ``onnx`` package (the ``dev``/``train`` extras)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    supported, (low, high) = OPERATORS[version], OPSETS[version]
    problems: list[str] = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not low <= opset.version <= high:
            problems.append(f"opset {opset.version} is outside TensorRT {version}'s range {low}..{high}")
        elif opset.domain not in ("", "ai.onnx"):
            problems.append(f"custom operator domain '{opset.domain}' needs a TensorRT plugin")
    constants = {init.name for init in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    for node in _nodes(model.graph.node):
        where = f"node '{node.name or node.output[0]}' ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: domain '{node.domain}' is not the ONNX default domain")
            continue
        if node.op_type not in supported:
            problems.append(f"{where}: not in TensorRT {version}'s supported operators")
            continue
        attrs: dict[str, Any] = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        if node.op_type == "Resize":
            checks = (("mode", "nearest", RESIZE_MODES), ("coordinate_transformation_mode", "half_pixel", RESIZE_COORDINATES),
                      ("nearest_mode", "round_prefer_floor", RESIZE_NEAREST))
            for name, default, allowed in checks:
                if attrs.get(name, default) not in allowed:
                    problems.append(f"{where}: {name} '{attrs.get(name, default)}' unsupported")
        index = CONSTANT_INPUTS.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] and node.input[index] not in constants:
            problems.append(f"{where}: input {index} ('{node.input[index]}') must be a build-time constant")
        if node.op_type == "LayerNormalization" and len([o for o in node.output if o]) > 1:
            problems.append(f"{where}: only the first output (Y) is supported")
    return problems


def _nodes(nodes: Iterable[Any]) -> Iterable[Any]:
    """Every node, including those of If/Loop/Scan subgraphs."""
    import onnx

    for node in nodes:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attribute.g.node)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for graph in attribute.graphs:
                    yield from _nodes(graph.node)
