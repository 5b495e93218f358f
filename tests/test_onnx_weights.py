"""Reading weights back from an exported OCR model (``train-ocr --init-weights engines/ocr.onnx``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra")
pytest.importorskip("onnx", reason="training needs the [train] extra")

from anpr_edge.errors import ConfigError  # noqa: E402
from anpr_edge.train.ocr_model import OcrModelConfig, PlateOcrNet  # noqa: E402
from anpr_edge.train.ocr_train import export_onnx  # noqa: E402
from anpr_edge.train.onnx_weights import (  # noqa: E402
    load_onnx_weights,
    onnx_model_config,
    recalibrate_batchnorms,
)

SMALL = OcrModelConfig(height=32, width=96, max_len=6, channels=(8, 16, 16, 24), dim=32, heads=2, decoder_layers=2)


def trained_like(config: OcrModelConfig) -> PlateOcrNet:
    """A model whose batch norms hold non-trivial statistics, as after training."""
    torch.manual_seed(7)
    model = PlateOcrNet(config)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model.encode(torch.rand(8, 3, config.height, config.width) * 0.6 + 0.2)
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def test_weights_read_back_from_onnx_reproduce_the_model(tmp_path: Path) -> None:
    original = trained_like(SMALL)
    path = export_onnx(original, tmp_path / "ocr.onnx")
    assert onnx_model_config(path) == SMALL

    restored = PlateOcrNet(SMALL)
    missing = load_onnx_weights(restored, path, export_onnx)
    assert missing == ["ctc.bias", "ctc.weight"]  # the training-only head is not exported

    crops = torch.rand(5, 3, SMALL.height, SMALL.width)
    with torch.no_grad():
        np.testing.assert_allclose(restored.eval()(crops)[0].numpy(), original(crops)[0].numpy(), atol=1e-4)
        # Batch norm re-parameterised on a batch keeps the function (eval) and gives train-mode batch
        # statistics a starting point equal to the model.
        recalibrate_batchnorms(restored, crops)
        np.testing.assert_allclose(restored.eval()(crops)[0].numpy(), original(crops)[0].numpy(), atol=1e-4)
        restored.train()
        for module in restored.modules():
            if isinstance(module, torch.nn.Dropout):
                module.eval()
        train_mode = restored.encode(crops)
        np.testing.assert_allclose(train_mode.numpy(), original.encode(crops).numpy(), atol=1e-3)


def test_a_model_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = export_onnx(trained_like(SMALL), tmp_path / "ocr.onnx")
    other = OcrModelConfig(height=32, width=96, max_len=6, channels=(8, 16, 16, 32), dim=32, heads=2, decoder_layers=2)
    with pytest.raises(ConfigError, match="layout"):
        load_onnx_weights(PlateOcrNet(other), path, export_onnx)


def test_a_file_without_our_metadata_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    graph = helper.make_graph([], "empty", [], [])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ConfigError, match="not an OCR model"):
        onnx_model_config(path)
