"""Recover trainable PyTorch weights from an OCR model this project exported to ONNX.

Why: the committed ``engines/ocr.onnx`` is the only artefact that survives a session (checkpoints live
in a per-machine cache), so ``train-ocr --init-weights engines/ocr.onnx`` continues training from it
instead of from scratch.

The exporter renames and rewrites weights (batch norm folded into the convolutions, linear weights
transposed into anonymous ``MatMul`` constants, the decoder's position slots sliced per step), so the
mapping is found by a probe: a model of the same config with distinct random values in every parameter
is exported the same way, and each probe initializer is matched by value to the parameter it came from.
The real file's initializers, taken in the same order, then fill those parameters. The result is
checked against ONNX Runtime on random crops; any mismatch is an error, not a silent bad start.

Batch norm: the folded model has each BN as identity plus bias. Before training, each BN is
re-parameterised on a calibration batch (running statistics = the batch's, scale and shift set so the
layer still computes the same function), so train-mode batch statistics start where the model was.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from anpr_edge.errors import ConfigError
from anpr_edge.train.ocr_model import OcrModelConfig, PlateOcrNet

_TOLERANCE = 1e-4


def onnx_model_config(path: Path) -> OcrModelConfig:
    """The network config stored in the ONNX metadata by ``export_onnx``."""
    meta = onnx_metadata(path)
    if "config" not in meta:
        raise ConfigError(f"{path}: no 'config' metadata: not an OCR model exported by anpr-edge train-ocr")
    return OcrModelConfig.from_dict(json.loads(meta["config"]))


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _initializers(path: Path) -> list[tuple[str, np.ndarray]]:
    import onnx
    from onnx import numpy_helper

    return [(i.name, numpy_helper.to_array(i)) for i in onnx.load(str(path)).graph.initializer]


def _identity_batchnorms(model: nn.Module) -> None:
    """Every BN computes x * 1 + bias in eval mode, so the exporter folds it to exactly the conv's output
    plus the BN bias."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.weight.data.fill_(1.0)
            module.running_mean.zero_()
            module.running_var.fill_(1.0 - module.eps)


def _probe_mapping(config: OcrModelConfig, export: Callable[[PlateOcrNet, Path], Path]) -> list[tuple[str, slice | None, bool]]:
    """For each initializer of an export of ``config`` (in file order): the state-dict key it holds, the
    slice of that parameter along dim 1 (decoder slots) or None, and whether it is transposed."""
    torch.manual_seed(1234)
    probe = PlateOcrNet(config)
    with torch.no_grad():
        for name, param in probe.named_parameters():
            param.copy_(torch.randn_like(param))  # distinct values: every tensor is recognisable
    _identity_batchnorms(probe)
    params = {k: v.detach().numpy() for k, v in probe.state_dict().items() if v.dtype.is_floating_point}
    with tempfile.TemporaryDirectory() as tmp:
        path = export(probe, Path(tmp) / "probe.onnx")
        inits = _initializers(path)
    mapping: list[tuple[str, slice | None, bool]] = []
    for name, value in inits:
        found = _match(name, value, params)
        if found is None:
            raise RuntimeError(f"probe export: initializer {name} {value.shape} matches no parameter")
        mapping.append(found)
    return mapping


def _match(name: str, value: np.ndarray, params: dict[str, np.ndarray]) -> tuple[str, slice | None, bool] | None:
    if name in params and params[name].shape == value.shape and np.allclose(params[name], value, atol=_TOLERANCE):
        return name, None, False
    for key, param in params.items():
        if param.shape == value.shape and np.allclose(param, value, atol=_TOLERANCE):
            return key, None, False
        if param.ndim == 2 and param.T.shape == value.shape and np.allclose(param.T, value, atol=_TOLERANCE):
            return key, None, True
        if param.ndim == 3 and value.ndim == 3 and value.shape[1] == 1 and param.shape[2] == value.shape[2]:
            for i in range(param.shape[1]):
                if np.allclose(param[:, i : i + 1], value, atol=_TOLERANCE):
                    return key, slice(i, i + 1), False
    return None


def load_onnx_weights(
    model: PlateOcrNet, path: Path, export: Callable[[PlateOcrNet, Path], Path], check: bool = True
) -> list[str]:
    """Fill ``model`` (same config as the file) from an exported ONNX; returns the state-dict keys that the
    file does not hold (the training-only CTC head). Batch norms are left as identity + bias."""
    real = _initializers(path)
    mapping = _probe_mapping(model.config, export)
    if len(real) != len(mapping) or any(r[1].shape != _shape(model, m) for r, m in zip(real, mapping)):
        raise ConfigError(f"{path}: its graph does not have the layout of this code's export; cannot read its weights")
    _identity_batchnorms(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    filled: set[str] = set()
    for (_, value), (key, part, transposed) in zip(real, mapping):
        tensor = torch.from_numpy(np.array(value.T if transposed else value))
        if part is None:
            state[key] = tensor
        else:
            state[key][:, part] = tensor
        filled.add(key)
    model.load_state_dict(state)
    if check:
        _check_against_onnx(model, path)
    bn_keys = {f"{n}.{s}" for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)
               for s in ("weight", "running_mean", "running_var", "num_batches_tracked")}
    return sorted(k for k in state if k not in filled and k not in bn_keys)


def _shape(model: PlateOcrNet, entry: tuple[str, slice | None, bool]) -> tuple[int, ...]:
    key, part, transposed = entry
    tensor = model.state_dict()[key]
    if part is not None:
        tensor = tensor[:, part]
    return tuple(tensor.T.shape if transposed else tensor.shape)


def _check_against_onnx(model: PlateOcrNet, path: Path) -> None:
    import onnxruntime as ort

    config = model.config
    crops = torch.rand(4, 3, config.height, config.width, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        expected = model(crops)[0].numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["probs"], {"crops": crops.numpy()})[0]
    diff = float(np.abs(expected - got).max())
    if diff > 1e-3:
        raise ConfigError(f"{path}: weights read back differ from the file's output (max diff {diff:.1e})")


@torch.no_grad()
def recalibrate_batchnorms(model: PlateOcrNet, images: torch.Tensor) -> None:
    """Give each BN the statistics of its input on ``images`` while keeping the function it computes, so
    training (batch statistics) starts from the loaded model rather than from a shifted one."""
    stats: dict[nn.BatchNorm2d, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        x = inputs[0]
        stats[module] = (x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False))  # type: ignore[index]

    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    handles = [bn.register_forward_hook(hook) for bn in bns]
    model.eval()
    model.encode(images)
    for handle in handles:
        handle.remove()
    for bn in bns:
        mean, var = stats[bn]
        old_scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        old_shift = bn.bias - bn.running_mean * old_scale
        # y = x * old_scale + old_shift  ==  (x - mean) / sqrt(var + eps) * w + b
        bn.weight.copy_(old_scale * torch.sqrt(var + bn.eps))
        bn.bias.copy_(old_shift + mean * old_scale)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
