"""fit-calibration: events of bench-passages runs -> a score-to-confidence map, into the OCR model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_models import brightness_ocr

from anpr_edge.backends import create_backend
from anpr_edge.bench.calibration_fit import fit_events, format_fit, load_judged_events, write_model_calibration
from anpr_edge.cli import main
from anpr_edge.config import VotingConfig
from anpr_edge.errors import BackendError, ConfigError
from anpr_edge.ocr import VOTE_CALIBRATION_KEY, PlateRecognizer
from anpr_edge.passages import PassageBuilder
from anpr_edge.voting import DEFAULT_CALIBRATION, Calibration


def bench_json(path: Path, rng: np.random.Generator, *, n: int = 200, source: str = "us-nyc-plate-crops") -> Path:
    """A bench-passages --json output whose votes are under-confident: P(right) = sqrt(score)."""
    passages = []
    for i in range(n):
        score = float(rng.uniform(0.05, 1.0))
        right = bool(rng.uniform() < np.sqrt(score))
        passages.append({"clip": "clip-000", "id": f"c000p{i:02d}", "text": "AB123", "source": source,
                         "events": [{"text": "AB123" if right else "AB128", "confidence": score, "score": score}]})
    passages.append({"clip": "clip-000", "id": "unread", "text": "CD456", "source": source,
                     "events": [{"text": None, "confidence": 0.0, "score": None}]})  # claims nothing: skipped
    path.write_text(json.dumps({"passages": passages, "false_events": [{"text": "ZZ999", "score": 0.3}]}))
    return path


def test_fit_on_one_source_and_score_the_held_out_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    paths = [bench_json(tmp_path / "a.json", rng), bench_json(tmp_path / "b.json", rng, source="fr-plate-scenes")]
    events = load_judged_events(paths)
    assert len(events) == 402 and sum(e.source is None for e in events) == 2  # the false events, always wrong
    fit = fit_events(events, holdout_source="fr-plate-scenes")
    (raw, mapped), held = fit.fitted, fit.held_out
    assert raw.events == 202 and held is not None and held[0].events == 200  # false events: no source, fitted
    # Under-confident scores: the map lifts them, and the error shrinks on the events it never saw too.
    assert mapped.mean_confidence > raw.mean_confidence
    assert mapped.calibration_error < raw.calibration_error / 2
    assert held[1].calibration_error < held[0].calibration_error
    assert fit.calibration(0.25) > 0.3 and fit.calibration(0.8) == pytest.approx(np.sqrt(0.8), abs=0.08)
    text = format_fit(fit)
    assert "| held out (fr-plate-scenes) | calibrated | 200 |" in text and "calibration: [[0.0, " in text
    assert fit_events(events, holdout_source=None).held_out is None


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_judged_events([tmp_path / "missing.json"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="bad.json: not JSON"):
        load_judged_events([tmp_path / "bad.json"])
    (tmp_path / "other.json").write_text("[]")
    with pytest.raises(ConfigError, match="no 'passages' list"):
        load_judged_events([tmp_path / "other.json"])
    (tmp_path / "odd.json").write_text(json.dumps({"passages": [{"id": "x"}]}))
    with pytest.raises(ConfigError, match="odd.json: a passage without its true text"):
        load_judged_events([tmp_path / "odd.json"])
    (tmp_path / "old.json").write_text(json.dumps(
        {"passages": [{"text": "A", "source": "s", "events": [{"text": "A", "confidence": 0.5}]}]}))
    with pytest.raises(ConfigError, match="1 events have no 'score'"):
        load_judged_events([tmp_path / "old.json"])
    few = bench_json(tmp_path / "few.json", np.random.default_rng(1), n=5)
    with pytest.raises(ConfigError, match="need at least 20"):
        fit_events(load_judged_events([few]))


def test_the_model_carries_its_map_and_the_config_overrides_it(tmp_path: Path) -> None:
    model = brightness_ocr(tmp_path / "ocr.onnx")
    plain = PlateRecognizer(create_backend("onnxruntime", model, threads=1))
    assert plain.vote_calibration is None
    curve = Calibration(((0.0, 0.1), (0.5, 0.8), (1.0, 0.95)))
    write_model_calibration(model, curve)
    write_model_calibration(model, curve)  # again: replaced, not doubled
    recognizer = PlateRecognizer(create_backend("onnxruntime", model, threads=1))
    assert recognizer.vote_calibration == curve
    # The reads themselves are unchanged: only metadata was added.
    crop = np.full((32, 128, 3), 250, np.uint8)
    assert recognizer.read_images([crop])[0].text == plain.read_images([crop])[0].text == "A"

    assert PassageBuilder("cam").calibration == DEFAULT_CALIBRATION
    assert PassageBuilder("cam", model_calibration=curve).calibration == curve
    configured = VotingConfig(calibration=[(0.0, 0.0), (1.0, 0.5)])
    assert PassageBuilder("cam", voting=configured, model_calibration=curve).calibration(1.0) == 0.5

    import onnx

    proto = onnx.load(str(model))
    assert [p.key for p in proto.metadata_props].count(VOTE_CALIBRATION_KEY) == 1
    entry = next(p for p in proto.metadata_props if p.key == VOTE_CALIBRATION_KEY)
    entry.value = "[[0.5, 0.2], [0.1, 0.9]]"  # scores not increasing
    onnx.save(proto, str(model))
    with pytest.raises(BackendError, match="'vote_calibration' is not a valid calibration"):
        PlateRecognizer(create_backend("onnxruntime", model, threads=1))


def test_command_writes_the_map_into_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = bench_json(tmp_path / "run.json", np.random.default_rng(5), n=120)
    model = brightness_ocr(tmp_path / "ocr.onnx")
    assert main(["fit-calibration", str(runs), "--write", str(model), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["held_out"] is None and report["fitted"]["score"]["events"] == 121
    recognizer = PlateRecognizer(create_backend("onnxruntime", model, threads=1))
    assert recognizer.vote_calibration is not None
    assert [list(p) for p in recognizer.vote_calibration.points] == report["calibration"]
    assert main(["fit-calibration", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: cannot read" in capsys.readouterr().err


def test_the_bundled_ocr_carries_its_event_confidence_map() -> None:
    """A retrained model must be calibrated before it ships (README, Training the OCR): without its map the
    events' confidence would fall back to the raw score, which understates how often they are right."""
    from anpr_edge.paths import OCR_MODEL, bundled_model

    path = bundled_model(OCR_MODEL)
    if not path.is_file():
        pytest.skip("the bundled OCR is not in this checkout")
    calibration = PlateRecognizer(create_backend("onnxruntime", path, threads=1)).vote_calibration
    assert calibration is not None, f"{path}: run anpr-edge fit-calibration --write on it"
    assert calibration(0.5) > 0.5 and calibration(1.0) < 1.0  # votes were under-confident; never certain


def test_the_bundled_ocr_carries_its_read_confidence_map() -> None:
    """`read` and `ocr` report a read's confidence through the model's read map (fit-calibration --reads): a
    label-smoothed model's sure read has a raw probability near 0.4, which would look like a coin flip."""
    from anpr_edge.paths import OCR_MODEL, bundled_model

    path = bundled_model(OCR_MODEL)
    if not path.is_file():
        pytest.skip("the bundled OCR is not in this checkout")
    calibration = PlateRecognizer(create_backend("onnxruntime", path, threads=1)).read_calibration
    assert calibration is not None, f"{path}: run anpr-edge fit-calibration --reads --write on it"
    assert calibration(0.4) > 0.9 and calibration(0.05) < 0.5 and calibration(1.0) < 1.0


def test_reads_mode_arguments_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = bench_json(tmp_path / "run.json", np.random.default_rng(5), n=30)
    assert main(["fit-calibration", str(runs), "--reads"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["fit-calibration"]) == 2
    assert "--reads" in capsys.readouterr().err
    assert main(["fit-calibration", str(runs), "--model", "x.onnx"]) == 2
    assert "go with --reads" in capsys.readouterr().err
    assert main(["fit-calibration", "--reads", "--model", str(tmp_path / "nope.onnx")]) == 2
    assert "nope.onnx" in capsys.readouterr().err


def test_an_exported_model_gets_its_read_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train-ocr calls calibrate_model_reads on every model it exports: the map is fitted on the judged reads
    and written as read_calibration; with too few reads nothing is written and None says so."""
    import anpr_edge.bench.calibration_fit as fitting

    rng = np.random.default_rng(7)
    scores = rng.uniform(0.0, 0.5, 300)
    events = [fitting.JudgedEvent(float(s), bool(rng.uniform() < min(1.0, 2.2 * s)), "us-nyc-plate-crops") for s in scores]
    events += [fitting.JudgedEvent(0.4, True, "fr-plate-scenes")] * 10
    monkeypatch.setattr(fitting, "judged_reads", lambda config: events)
    model = brightness_ocr(tmp_path / "ocr.onnx")
    fit = fitting.calibrate_model_reads(model)
    assert fit is not None and fit.held_out is not None and fit.held_out[0].events == 10
    recognizer = PlateRecognizer(create_backend("onnxruntime", model, threads=1))
    assert recognizer.read_calibration == fit.calibration and recognizer.vote_calibration is None
    assert recognizer.read_calibration(0.45) > 0.9 > 0.45  # under-confident reads mapped up

    monkeypatch.setattr(fitting, "judged_reads", lambda config: events[:5])
    other = brightness_ocr(tmp_path / "other.onnx")
    assert fitting.calibrate_model_reads(other) is None
    assert PlateRecognizer(create_backend("onnxruntime", other, threads=1)).read_calibration is None
