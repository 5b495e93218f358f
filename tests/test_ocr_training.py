"""OCR training on tiny data: loss goes down, the export round-trips, and the CLI uses the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (pip install torch==2.13.0)")

from anpr_edge.train.ocr_train import (  # noqa: E402
    OcrDataSettings,
    OcrModelSettings,
    OcrTrainConfig,
    encode_texts,
    learning_rate,
    train_ocr,
)

REPO = Path(__file__).resolve().parent.parent
TEXTS = ["AB12", "CD34", "EF56", "GH78", "JK90", "LM13", "NP24", "QR35", "ST46", "UV57", "WX68", "YZ79"]


def plate_image(text: str) -> np.ndarray:
    image = np.full((40, 120, 3), 235, np.uint8)
    cv2.putText(image, text, (6, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (20, 20, 20), 2, cv2.LINE_AA)
    return image


@pytest.fixture()
def tiny_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A shared-datasets root holding a tiny 'us-nyc-plate-crops' set of rendered plates."""
    folder = tmp_path / "datasets" / "us-nyc-plate-crops"
    (folder / "images").mkdir(parents=True)
    rows = ["file,text,xmin,ymin,xmax,ymax"]
    for n, text in enumerate(TEXTS * 2):
        name = f"images/{n}_{text}.png"
        cv2.imwrite(str(folder / name), plate_image(text))
        rows.append(f"{name},{text},,,,")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("ANPR_EDGE_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setenv("ANPR_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    return folder


def tiny_config(tmp_path: Path, **data: object) -> OcrTrainConfig:
    return OcrTrainConfig(
        model=OcrModelSettings(height=32, width=96, max_len=6, channels=(8, 16, 24), dim=32, heads=2, decoder_layers=1, dropout=0.0),
        data=OcrDataSettings(real_sets=["us-nyc-plate-crops"], test_sets=[], synthetic_samples=0, **data),
        batch_size=16, lr=3e-3, minutes=2, eval_every=10, threads=1,
        checkpoint_dir=tmp_path / "ckpt", output=tmp_path / "engines" / "ocr.onnx",
    )


def exported_equals_best_checkpoint(config: OcrTrainConfig, checkpoint: str = "best.pt") -> tuple[torch.nn.Module, torch.Tensor, np.ndarray]:
    """Check that the exported ONNX gives what the best checkpoint (or another) gives in PyTorch (probabilities
    and attention, batch 5: another size than exported); returns the model, the crops and the ONNX probabilities."""
    import onnxruntime as ort

    from anpr_edge.train.ocr_model import OcrModelConfig, PlateOcrNet

    best = torch.load(config.checkpoint_dir / checkpoint, weights_only=False)
    model = PlateOcrNet(OcrModelConfig.from_dict(best["model_config"]))
    model.load_state_dict(best["model"])
    model.eval()
    crops = torch.rand(5, 3, 32, 96)
    with torch.no_grad():
        probs, attention = model(crops)
    session = ort.InferenceSession(str(config.output), providers=["CPUExecutionProvider"])
    onnx_probs, onnx_attention = session.run(None, {"crops": crops.numpy()})
    np.testing.assert_allclose(onnx_probs, probs.numpy(), atol=1e-4)
    np.testing.assert_allclose(onnx_attention, attention.numpy(), atol=1e-4)
    assert onnx_attention.shape == (5, 6, 4, 12)
    return model, crops, onnx_probs


def test_targets_and_schedule() -> None:
    targets = encode_texts(["A1", "B"], "AB01", 4)
    assert targets.tolist() == [[1, 4, 0, 0], [2, 0, 0, 0]]
    assert learning_rate(1.0, 0.0) < 0.05 and learning_rate(1.0, 0.03) == pytest.approx(1.0)
    assert learning_rate(1.0, 1.0) == pytest.approx(0.0, abs=1e-9)


def test_fit_ctc_head_trains_the_head_alone(tmp_path: Path, tiny_shared: Path) -> None:
    """A run continued from an ONNX (which has no CTC head) fits the head on the frozen encoder first."""
    from anpr_edge.train.ocr_train import (
        BatchSampler,
        PlateOcrNet,
        fit_ctc_head,
        load_real_sets,
    )

    config = tiny_config(tmp_path)
    real, _, _ = load_real_sets(config)
    sampler = BatchSampler(config, real, (np.zeros((0, 32, 96, 3), np.uint8), []), np.random.default_rng(0))
    model = PlateOcrNet(config.model.network())
    model.train()
    others = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("ctc.")}
    head = model.ctc.weight.detach().clone()
    before, after = fit_ctc_head(model, sampler, batches=4, iterations=150)
    assert after < 0.7 * before  # the head learnt to read the columns
    assert not torch.equal(model.ctc.weight, head) and model.training  # mode restored
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in others.items())  # nothing else moved
    assert all(p.grad is None for p in model.parameters())


def test_training_lowers_loss_and_export_round_trips(tmp_path: Path, tiny_shared: Path) -> None:
    import onnxruntime as ort

    config = tiny_config(tmp_path)
    result = train_ocr(config, max_steps=60, progress=False)
    losses = [h["loss"] for h in result.history]
    assert result.steps == 60 and len(losses) >= 6
    assert losses[-1] < losses[0] * 0.8, losses
    assert result.onnx == config.output and config.output.is_file()

    # The ONNX model gives what PyTorch gives, on the same input, for another batch size than exported.
    _, crops, onnx_probs = exported_equals_best_checkpoint(config)
    session = ort.InferenceSession(str(config.output), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["charset"] == config.model.charset and meta["max_len"] == "6"

    # Re-exporting the finished run gives the same model.
    from anpr_edge.train.ocr_train import export_checkpoint

    again = export_checkpoint(config.model_copy(update={"output": tmp_path / "again.onnx"}))
    assert again.steps == 60 and again.best_step == result.best_step
    session_again = ort.InferenceSession(str(tmp_path / "again.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session_again.run(None, {"crops": crops.numpy()})[0], onnx_probs, atol=1e-5)

    # --export-last: the run's final weights, whichever step validated best.
    last_config = config.model_copy(update={"output": tmp_path / "last.onnx"})
    last = export_checkpoint(last_config, which="last")
    assert last.final_weights and not again.final_weights and last.best_step == result.best_step < 60
    exported_equals_best_checkpoint(last_config, "last.pt")
    meta = ort.InferenceSession(str(last_config.output), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert meta.custom_metadata_map["best_step"] == "60"
    from anpr_edge.train.ocr_card import write_model_card

    card = write_model_card(last_config, last).read_text()
    assert f"Exported: the final weights, step 60 (`--export-last`; the best validated step was {result.best_step})" in card

    # Resuming continues from the last checkpoint instead of starting over.
    resumed = train_ocr(config, resume=True, max_steps=65, export=False, progress=False)
    assert resumed.steps == 65

    # Continuing from the exported model (a later session has only the committed ONNX): step 0 scores what
    # the exported model scored, and the new export records the whole training history.
    continued_config = config.model_copy(update={"checkpoint_dir": tmp_path / "ckpt2", "output": tmp_path / "cont.onnx"})
    continued = train_ocr(continued_config, max_steps=3, progress=False, init_weights=config.output)
    assert continued.init_from == "ocr.onnx" and continued.prior_steps == 60
    assert continued.history[0]["step"] == 0
    start_score = continued.history[0]["us-nyc-plate-crops"]
    assert start_score == pytest.approx(result.val["us-nyc-plate-crops"], abs=1e-9)
    assert continued.best_score >= start_score
    meta = ort.InferenceSession(str(tmp_path / "cont.onnx"), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert meta.custom_metadata_map["train_steps"] == "63"
    assert meta.custom_metadata_map["continued_from"] == "ocr.onnx"


def test_training_refuses_the_test_set(tmp_path: Path, tiny_shared: Path) -> None:
    from anpr_edge.errors import ConfigError

    config = tiny_config(tmp_path).model_copy(
        update={"data": OcrDataSettings(real_sets=["fr-plate-scenes"], synthetic_samples=0)}
    )
    with pytest.raises(ConfigError, match="held-out test set"):
        train_ocr(config, max_steps=1, progress=False)


def test_leave_one_region_out_trains_without_each_set_and_scores_all(tmp_path: Path, tiny_shared: Path) -> None:
    from anpr_edge.errors import ConfigError
    from anpr_edge.train.loro import format_table, leave_one_region_out, run_configs

    # A second tiny region next to the fixture's us set.
    other = tiny_shared.parent / "br-plate-crops"
    (other / "images").mkdir(parents=True)
    rows = ["file,text,xmin,ymin,xmax,ymax"]
    for n, text in enumerate(TEXTS * 2):
        cv2.imwrite(str(other / f"images/{n}.png"), plate_image(text[::-1]))
        rows.append(f"images/{n}.png,{text[::-1]},,,,")
    (other / "labels.csv").write_text("\n".join(rows) + "\n")
    config = tiny_config(tmp_path).model_copy(
        update={"data": OcrDataSettings(real_sets=["us-nyc-plate-crops", "br-plate-crops"], test_sets=[],
                                        synthetic_samples=0)})

    runs = leave_one_region_out(config, tmp_path / "loro", max_steps=2, progress=False)
    assert [r.left_out for r in runs] == [None, "us-nyc-plate-crops", "br-plate-crops"]
    assert [r.trained_on for r in runs] == [("us-nyc-plate-crops", "br-plate-crops"), ("br-plate-crops",),
                                           ("us-nyc-plate-crops",)]
    for run in runs:  # every model scored on the same validation splits, each its own file
        assert set(run.exact) == {"us-nyc-plate-crops:val", "br-plate-crops:val"} and run.steps == 2
        assert Path(run.onnx).is_file()
    assert len({r.onnx for r in runs}) == 3
    assert not (REPO / "engines" / "ocr-all.onnx").exists()
    table = format_table(runs).splitlines()
    assert table[3].startswith("| all but us-nyc-plate-crops |") and table[3].count("**") == 2
    assert "(all: " in table[3]
    assert json.loads((tmp_path / "loro" / "loro.json").read_text())[2]["left_out"] == "br-plate-crops"

    with pytest.raises(ConfigError, match="not among the training sets"):
        leave_one_region_out(config, tmp_path / "loro2", left_out=["cn-plate-crops"], max_steps=1, progress=False)
    only = run_configs(config, tmp_path / "loro3", ["br-plate-crops"], reference=False)  # --no-reference
    assert [(name, c.data.real_sets) for name, c in only] == [("br-plate-crops", ["us-nyc-plate-crops"])]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "anpr_edge", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env}, cwd=REPO)


def test_train_eval_ocr_and_explain_commands(tmp_path: Path, tiny_shared: Path) -> None:
    training = tmp_path / "train.yaml"
    training.write_text(
        "model: {height: 32, width: 96, max_len: 6, channels: [8, 16, 24], dim: 32, heads: 2, decoder_layers: 1}\n"
        "data: {real_sets: [us-nyc-plate-crops], test_sets: [], synthetic_samples: 0}\n"
        f"batch_size: 16\neval_every: 5\nthreads: 1\ncheckpoint_dir: {tmp_path / 'ckpt'}\n"
    )
    env = {"ANPR_EDGE_DATASETS": os.environ["ANPR_EDGE_DATASETS"], "ANPR_EDGE_CACHE_DIR": os.environ["ANPR_EDGE_CACHE_DIR"]}
    model = tmp_path / "out" / "ocr.onnx"
    trained = run_cli("train-ocr", "--config", str(training), "--max-steps", "10", "--seed", "3", "--output", str(model),
                      env=env)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads(trained.stdout)
    assert summary["onnx"] == str(model) and summary["steps"] == 10
    card = model.with_suffix(".md").read_text()
    assert "## Accuracy" in card and "us-nyc-plate-crops:val" in card and "batch 32:" in card
    assert "seed 3)" in card  # --seed reaches the run (and the pool it draws)
    # The export fits the read map on the validation crops; this tiny set has too few, and the card says so.
    assert "## Read confidence\nNo read map was fitted" in card

    evaluated = run_cli("eval-ocr", "--model", str(model), "--json", "--failures", str(tmp_path / "fail"),
                        str(tiny_shared / "labels.csv"), env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    (record,) = [json.loads(line) for line in evaluated.stdout.splitlines()]
    assert record["count"] == len(TEXTS) * 2 and 0.0 <= record["exact_match"] <= 1.0 and record["cer"] >= 0.0
    written = list((tmp_path / "fail").rglob("*.png"))
    assert len(written) == round((1 - record["exact_match"]) * record["count"])

    # The shared sets' train splits beside their validation splits: every plate of the tiny set in one of them.
    from anpr_edge.ocr_eval import shared_eval_sets

    splits = shared_eval_sets("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", ["us-nyc-plate-crops"], train_splits=True)
    counts = {name: len(items) for name, items in splits}
    assert set(counts) == {"us-nyc-plate-crops:val", "us-nyc-plate-crops:train"}
    assert [name for name, _ in shared_eval_sets("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", ["us-nyc-plate-crops"])] == [
        "us-nyc-plate-crops:val"]
    assert sum(counts.values()) == len(TEXTS) * 2 and min(counts.values()) > 0
    alone = run_cli("eval-ocr", "--model", str(model), "--train-splits", env=env)
    assert alone.returncode == 2 and "--train-splits goes with --shared" in alone.stderr

    config = tmp_path / "config.yaml"
    config.write_text(f"models: {{ocr: {{path: {model}}}}}\ncameras: [{{id: a, source: demo}}]\n")
    explained = run_cli("ocr", "--json", "--config", str(config), "--explain", str(tmp_path / "explain"),
                        str(tiny_shared / "images" / "0_AB12.png"), env=env)
    assert explained.returncode == 0, explained.stderr
    (read,) = [json.loads(line) for line in explained.stdout.splitlines()]
    sheet = cv2.imread(read["explain"])
    assert sheet is not None and sheet.shape[0] > 64  # the crop plus one heat-map row per character


def test_train_ocr_without_torch_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from anpr_edge.cli import main\n"
        "raise SystemExit(main(['train-ocr', '--max-steps', '1']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 1
    assert "pip install torch==2.13.0" in result.stderr and "Traceback" not in result.stderr


def test_cached_greedy_decoding_equals_the_masked_reference() -> None:
    from anpr_edge.train.ocr_model import OcrModelConfig, PlateOcrNet

    torch.manual_seed(0)
    model = PlateOcrNet(OcrModelConfig(height=32, width=96, max_len=6, channels=(8, 16, 24), dim=32, heads=2)).eval()
    images = torch.rand(4, 3, 32, 96)
    with torch.no_grad():
        fast, attention = model(images)
    torch.testing.assert_close(fast, model.forward_reference(images), atol=1e-5, rtol=1e-4)
    assert attention.shape == (4, 6, 4, 12)
    torch.testing.assert_close(attention.sum(dim=(2, 3)), torch.ones(4, 6))


def test_parallel_decoder_learns_exports_without_a_loop_and_starts_from_an_autoregressive_model(
    tmp_path: Path, tiny_shared: Path
) -> None:
    import onnx

    from anpr_edge.train.ocr_model import PlateOcrNet

    base = tiny_config(tmp_path)
    parallel_model = base.model.model_copy(update={"decoder": "parallel"})
    config = base.model_copy(update={"model": parallel_model, "output": tmp_path / "parallel.onnx", "encoder_lr_scale": 0.5})
    result = train_ocr(config, max_steps=60, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.8, losses

    # One pass reads every position: the graph has no per-step argmax feeding the next step, and ONNX gives
    # what PyTorch gives.
    graph = onnx.load(str(config.output)).graph
    assert not any(node.op_type in ("ArgMax", "Loop") for node in graph.node)
    model, crops, onnx_probs = exported_equals_best_checkpoint(config)
    assert model.config.decoder == "parallel" and not hasattr(model, "embed")
    np.testing.assert_allclose(onnx_probs.sum(axis=-1), 1.0, atol=1e-5)

    # An autoregressive model's encoder and decoder layers carry over into a parallel one (--init-weights
    # with --decoder parallel): the encoder reproduces the source's map exactly.
    ar_config = base.model_copy(update={"checkpoint_dir": tmp_path / "ar", "output": tmp_path / "ar.onnx"})
    train_ocr(ar_config, max_steps=5, progress=False)
    continued = config.model_copy(update={"checkpoint_dir": tmp_path / "cont", "output": tmp_path / "cont.onnx"})
    started = train_ocr(continued, max_steps=1, export=False, progress=False, init_weights=ar_config.output)
    assert started.init_from == "ar.onnx" and started.prior_steps == 5

    from anpr_edge.train.ocr_train import _init_from

    class OneBatch:
        def next(self) -> tuple[torch.Tensor, list[str]]:
            return torch.rand(8, 3, 32, 96), ["AB12"] * 8

    source = PlateOcrNet(base.model.network())
    target = PlateOcrNet(parallel_model.network())
    _init_from(source, ar_config.output, base.model.network(), OneBatch())  # type: ignore[arg-type]
    _init_from(target, ar_config.output, parallel_model.network(), OneBatch())  # type: ignore[arg-type]
    source.eval()
    target.eval()
    with torch.no_grad():
        torch.testing.assert_close(target.encode(crops), source.encode(crops))

    # And back: a parallel model starts an autoregressive one (its character embedding starts fresh).
    back = PlateOcrNet(base.model.network())
    _init_from(back, config.output, base.model.network(), OneBatch())  # type: ignore[arg-type]
    back.eval()
    with torch.no_grad():
        torch.testing.assert_close(back.encode(crops), model.encode(crops))

    # A model of another shape is still refused, whatever its decoder.
    from anpr_edge.errors import ConfigError

    wider = parallel_model.model_copy(update={"dim": 48})
    with pytest.raises(ConfigError, match="another network config"):
        _init_from(PlateOcrNet(wider.network()), ar_config.output, wider.network(), OneBatch())  # type: ignore[arg-type]


def test_encoder_learning_rate_scale_splits_encoder_from_decoder() -> None:
    from anpr_edge.train.ocr_model import OcrModelConfig, PlateOcrNet
    from anpr_edge.train.ocr_train import parameter_groups

    model = PlateOcrNet(OcrModelConfig(height=32, width=96, max_len=6, channels=(8, 16, 24), dim=32, heads=2))
    (only,) = parameter_groups(model, 1.0)
    assert len(only["params"]) == len(list(model.parameters()))
    encoder, decoder = parameter_groups(model, 0.3)
    names = {id(p): n.split(".")[0] for n, p in model.named_parameters()}
    assert {names[id(p)] for p in encoder["params"]} == {"encoder", "position", "context", "ctc"}
    assert {names[id(p)] for p in decoder["params"]} == {"slots", "embed", "decoder", "norm", "classifier"}
    assert encoder["lr_scale"] == 0.3 and decoder["lr_scale"] == 1.0
    assert len(encoder["params"]) + len(decoder["params"]) == len(list(model.parameters()))


def test_weight_average_is_what_is_validated_selected_and_exported(tmp_path: Path, tiny_shared: Path) -> None:
    from anpr_edge.errors import ConfigError
    from anpr_edge.train.ocr_card import _ema

    # Validated only at the end (eval_every beyond the run), so the best checkpoint is the final average.
    config = tiny_config(tmp_path).model_copy(update={"ema_decay": 0.9, "eval_every": 1000})
    result = train_ocr(config, max_steps=20, progress=False)
    assert [h["step"] for h in result.history] == [20]
    last = torch.load(config.checkpoint_dir / "last.pt", weights_only=False)
    best = torch.load(config.checkpoint_dir / "best.pt", weights_only=False)
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert averaged.keys() == best["model"].keys() == last["model"].keys()
    for name, value in best["model"].items():
        torch.testing.assert_close(value, averaged[name])
    # The average is not the raw weights (it lags them), and BatchNorm statistics are averaged too.
    moved = [n for n, v in last["model"].items() if v.is_floating_point() and not torch.equal(v, averaged[n])]
    assert any("running_mean" in n for n in moved) and any(n.endswith("weight") for n in moved)
    exported_equals_best_checkpoint(config)
    assert "moving average, decay 0.9" in _ema(config) and _ema(tiny_config(tmp_path)) == ""

    # Resuming keeps averaging from the saved average; a checkpoint without one is refused.
    resumed = train_ocr(config, resume=True, max_steps=22, export=False, progress=False)
    assert resumed.steps == 22
    plain = config.model_copy(update={"ema_decay": 0.0, "checkpoint_dir": tmp_path / "plain"})
    train_ocr(plain, max_steps=2, export=False, progress=False)
    with pytest.raises(ConfigError, match="without ema_decay"):
        train_ocr(plain.model_copy(update={"ema_decay": 0.9}), resume=True, max_steps=3, export=False, progress=False)


def test_network_without_a_context_layer_trains_exports_and_continues(tmp_path: Path, tiny_shared: Path) -> None:
    """``context_layers: 0`` (the fast recipe): the map goes straight to the decoder; the export still equals
    PyTorch, and the exported model is a valid --init-weights start (its weights are recovered exactly)."""
    import onnx

    from anpr_edge.errors import ConfigError
    from anpr_edge.train.ocr_model import PlateOcrNet
    from anpr_edge.train.ocr_train import load_train_config

    base = tiny_config(tmp_path)
    config = base.model_copy(update={"model": base.model.model_copy(update={"context_layers": 0})})
    model = PlateOcrNet(config.model.network())
    assert not any(name.startswith("context.") for name, _ in model.named_parameters())
    result = train_ocr(config, max_steps=40, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.8, losses
    exported_equals_best_checkpoint(config)
    with_context = PlateOcrNet(base.model.network())
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in with_context.parameters())
    # No self-attention over the map cells: the only Softmax nodes are the decoder's, two per step.
    softmaxes = sum(node.op_type == "Softmax" for node in onnx.load(str(config.output)).graph.node)
    assert softmaxes == 2 * config.model.max_len + config.model.max_len, softmaxes

    continued = config.model_copy(update={"checkpoint_dir": tmp_path / "cont", "output": tmp_path / "cont.onnx"})
    started = train_ocr(continued, max_steps=1, export=False, progress=False, init_weights=config.output)
    assert started.prior_steps == 40 and started.history[0]["step"] == 0
    assert started.history[0]["us-nyc-plate-crops"] == pytest.approx(result.val["us-nyc-plate-crops"], abs=1e-9)

    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model: {context_layers: 2}\n")
    with pytest.raises(ConfigError, match="context_layers"):
        load_train_config(recipe)


def test_distillation_loss_is_zero_on_the_teachers_own_logits_and_pulls_towards_them() -> None:
    from anpr_edge.train.ocr_train import distillation_loss

    torch.manual_seed(0)
    teacher = torch.randn(4, 6, 11)
    assert distillation_loss(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(4, 6, 11, requires_grad=True)
    optimizer = torch.optim.SGD([student], lr=50.0)
    losses = []
    for _ in range(100):
        loss = distillation_loss(student, teacher, 2.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 0.1 and losses[-1] < losses[0] * 0.1, losses[::10]
    # The student's distributions end close to the teacher's (logits may differ by a constant per row).
    np.testing.assert_allclose(torch.softmax(student, -1).detach().numpy(), torch.softmax(teacher, -1).numpy(), atol=0.02)


def test_a_smaller_network_distils_from_a_trained_model_on_another_crop(tmp_path: Path, tiny_shared: Path) -> None:
    """``teacher``: a network without the context layer, on a smaller crop, learns beside the labels the
    per-character distributions of a trained model (its crop resized from the batch's); the card says so. A
    teacher that reads another charset or length is refused with a ConfigError naming it."""
    from anpr_edge.errors import ConfigError
    from anpr_edge.train.ocr_card import write_model_card
    from anpr_edge.train.ocr_train import load_teacher, teacher_logits

    teacher_config = tiny_config(tmp_path)
    train_ocr(teacher_config, max_steps=40, progress=False)
    base = tiny_config(tmp_path)
    student_config = base.model_copy(update={
        "model": base.model.model_copy(update={"context_layers": 0, "height": 24, "width": 80}),
        "teacher": teacher_config.output, "distill_weight": 1.0,
        "checkpoint_dir": tmp_path / "student", "output": tmp_path / "student.onnx",
    })
    teacher = load_teacher(teacher_config.output, student_config.model.network())
    logits = teacher_logits(teacher, torch.rand(3, 3, 24, 80), torch.zeros(3, 6, dtype=torch.long))
    assert logits.shape == (3, 6, student_config.model.network().n_symbols) and not logits.requires_grad

    result = train_ocr(student_config, max_steps=40, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] * 0.8, losses
    card = write_model_card(student_config, result).read_text()
    assert "distilled from `ocr.onnx`" in card

    longer = base.model.model_copy(update={"max_len": 8})
    with pytest.raises(ConfigError, match="teacher: .*ocr.onnx.*must match"):
        load_teacher(teacher_config.output, longer.network())
    with pytest.raises(ConfigError, match="teacher: .*missing.onnx: no such file"):
        load_teacher(tmp_path / "missing.onnx", longer.network())


def test_a_trained_model_starts_a_network_on_another_crop_size_without_the_context_layer(
    tmp_path: Path, tiny_shared: Path
) -> None:
    """--init-weights from a model with another crop size and a context layer (the shipped model as the start
    of the mid recipe): convolutions and decoder carry over unchanged, the position embedding is resized to the
    new map (a constant one stays constant), the context layer is dropped; other differences are refused."""
    from anpr_edge.errors import ConfigError
    from anpr_edge.train.ocr_model import PlateOcrNet
    from anpr_edge.train.ocr_train import transfer_weights

    base = tiny_config(tmp_path)
    source_result = train_ocr(base, max_steps=5, progress=False)
    assert source_result.onnx is not None
    smaller = base.model.model_copy(update={"height": 24, "width": 64, "context_layers": 0})
    config = base.model_copy(update={"model": smaller, "checkpoint_dir": tmp_path / "small", "output": tmp_path / "small.onnx"})
    result = train_ocr(config, max_steps=20, progress=False, init_weights=base.output)
    assert result.init_from == "ocr.onnx" and result.prior_steps == 5
    assert result.history[0]["us-nyc-plate-crops"] >= 0.0 and result.onnx is not None

    source, target = PlateOcrNet(base.model.network()), PlateOcrNet(smaller.network())
    with torch.no_grad():
        source.position.fill_(0.25)
    transfer_weights(source, target)
    assert target.position.shape == (1, 3 * 8, base.model.dim)
    assert torch.allclose(target.position, torch.full_like(target.position, 0.25))
    for name, value in target.state_dict().items():
        if name != "position":
            assert torch.equal(value, source.state_dict()[name]), name

    # Encoder widths are not transferable: a clear error naming what may differ.
    wider = base.model.model_copy(update={"channels": (8, 16, 32)})
    refused = base.model_copy(update={"model": wider, "checkpoint_dir": tmp_path / "wide"})
    with pytest.raises(ConfigError, match="only decoder, height, width, context_layers may differ"):
        train_ocr(refused, max_steps=1, export=False, progress=False, init_weights=base.output)
    # A model without a context layer cannot start one that has it (the default recipe from a mid model).
    with pytest.raises(ConfigError, match="no context layer"):
        train_ocr(base.model_copy(update={"checkpoint_dir": tmp_path / "back"}), max_steps=1, export=False,
                  progress=False, init_weights=config.output)


def test_the_fast_recipe_loads_and_builds_the_network_it_describes() -> None:
    from anpr_edge.train.ocr_model import PlateOcrNet
    from anpr_edge.train.ocr_train import load_train_config

    config = load_train_config(REPO / "anpr_edge" / "train" / "recipes" / "ocr-fast.yaml")
    network = config.model.network()
    assert (network.height, network.width, network.context_layers, network.decoder_layers) == (48, 160, 0, 1)
    model = PlateOcrNet(network).eval()
    with torch.no_grad():
        probs, attention = model(torch.rand(2, 3, 48, 160))
    assert probs.shape == (2, network.max_len, network.n_symbols) and attention.shape == (2, network.max_len, 6, 20)


@pytest.mark.parametrize("recipe", ["ocr-mid.yaml", "ocr-mid-160x64.yaml", "ocr-mid-192x64.yaml"])
def test_the_mid_recipes_can_start_from_the_shipped_model(recipe: str) -> None:
    """Their usage line says --init-weights engines/ocr.onnx: the shipped network's weights fit them."""
    from anpr_edge.train.ocr_model import PlateOcrNet
    from anpr_edge.train.ocr_train import load_train_config, transfer_weights
    from anpr_edge.train.onnx_weights import onnx_model_config

    config = load_train_config(REPO / "anpr_edge" / "train" / "recipes" / recipe)
    assert config.model.context_layers == 0 and config.ema_decay > 0
    shipped = PlateOcrNet(onnx_model_config(REPO / "engines" / "ocr.onnx"))
    target = PlateOcrNet(config.model.network())
    transfer_weights(shipped, target)
    assert torch.equal(target.classifier.weight, shipped.classifier.weight)
    rows, cols = config.model.network().feature_size
    assert target.position.shape == (1, rows * cols, config.model.dim)


def test_bench_ocr_nets_times_recipes_and_models_side_by_side(tmp_path: Path) -> None:
    small = tmp_path / "small.yaml"
    small.write_text("model: {height: 32, width: 96, max_len: 6, channels: [8, 16, 24], dim: 32, heads: 2, "
                     "decoder_layers: 1, context_layers: 0}\n")
    wide = tmp_path / "wide.yaml"
    wide.write_text("model: {height: 32, width: 128, max_len: 6, channels: [8, 16, 24], dim: 32, heads: 2}\n")
    done = run_cli("bench-ocr-nets", str(small), str(wide), "--batch", "4", "--json", "-", env={})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    small_net, wide_net = report["networks"]
    assert (small_net["name"], small_net["crop"], small_net["map_cells"]) == ("small.yaml", [96, 32], 4 * 12)
    assert (wide_net["crop"], wide_net["map_cells"]) == ([128, 32], 4 * 16)
    assert small_net["parameters"] < wide_net["parameters"]  # no context layer, narrower map
    assert all(n["single_ms"] > 0 and n["batched_ms"] > 0 for n in report["networks"])
    assert report["batch"] == 4 and report["machine"]

    # A trained model is timed as it is; a missing file names itself and is a usage error, not a traceback.
    shipped = REPO / "engines" / "ocr.onnx"
    table = run_cli("bench-ocr-nets", str(shipped), "--batch", "2", env={})
    assert table.returncode == 0, table.stderr
    assert f"| {shipped} | 192x64 |" in table.stdout
    missing = run_cli("bench-ocr-nets", str(tmp_path / "nope.yaml"), env={})
    assert missing.returncode == 2 and "nope.yaml: no such training recipe" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_model_card_names_the_command_as_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    from anpr_edge.train.ocr_card import _command

    args = ["train-ocr", "--minutes", "95", "--seed", "1"]
    for program in ("/usr/local/bin/anpr-edge", "/repo/anpr_edge/__main__.py"):  # console script, python -m
        monkeypatch.setattr(sys, "argv", [program, *args])
        assert _command() == "anpr-edge train-ocr --minutes 95 --seed 1"
    monkeypatch.setattr(sys, "argv", ["/tmp/my_script.py"])
    assert _command() == "anpr-edge train-ocr (called from Python)"
