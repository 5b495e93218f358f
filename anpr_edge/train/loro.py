"""`anpr-edge loro-ocr`: the leave-one-region-out table of the OCR (issue 3).

How well the OCR reads plates of a region it has never seen real crops of is what users at a new site
get, so it is measured, not assumed: for each real training set X (one region each), train the OCR with
the same recipe and budget on every other real set plus the synthetic plates, and score it on X's fixed
validation split; a reference run trains on all of them. Every model is scored on the same crops (each
set's validation split and the held-out French test) through the runtime path, so a row reads "trained
without X" and the X column of that row is the unseen-region figure to compare with the reference row.

Runs are from scratch, one after another, each under its own checkpoint folder and output under
``out_dir``; the bundled ``engines/ocr.onnx`` is never touched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from anpr_edge.backends import create_backend
from anpr_edge.errors import ConfigError
from anpr_edge.ocr import PlateRecognizer
from anpr_edge.ocr_eval import evaluate, recognizer_reader, shared_eval_sets
from anpr_edge.train.ocr_train import OcrTrainConfig, train_ocr

log = logging.getLogger(__name__)

REFERENCE = "all"


@dataclass(frozen=True)
class LoroRun:
    """One training run: ``left_out`` is the real set it did not train on (None: the reference)."""

    left_out: str | None
    trained_on: tuple[str, ...]
    steps: int
    minutes: float
    onnx: str
    exact: dict[str, float]  # eval set name -> exact match (0..1)
    cer: dict[str, float]


def run_configs(base: OcrTrainConfig, out_dir: Path, left_out: Sequence[str] | None = None, *,
                reference: bool = True) -> list[tuple[str | None, OcrTrainConfig]]:
    """The reference config (unless ``reference`` is False) and one per left-out set, each writing under ``out_dir``."""
    real = list(base.data.real_sets)
    targets = list(left_out) if left_out is not None else real
    unknown = [name for name in targets if name not in real]
    if unknown:
        raise ConfigError(f"--leave-out: {', '.join(unknown)} not among the training sets ({', '.join(real)})")
    if len(real) < 2:
        raise ConfigError("leave-one-region-out needs at least two real training sets (data.real_sets)")
    configs: list[tuple[str | None, OcrTrainConfig]] = []
    for name in ([None] if reference else []) + list(targets):
        tag = REFERENCE if name is None else f"without-{name}"
        data = base.data.model_copy(update={"real_sets": [s for s in real if s != name]})
        configs.append((name, base.model_copy(update={
            "data": data, "output": out_dir / f"ocr-{tag}.onnx", "checkpoint_dir": out_dir / f"checkpoints-{tag}",
        })))
    return configs


def score_model(onnx: Path, names: Sequence[str], padding: float) -> tuple[dict[str, float], dict[str, float]]:
    """Exact match and CER of ``onnx`` on the fixed evaluation sets ``names`` (validation splits, test sets)."""
    recognizer = PlateRecognizer(create_backend("onnxruntime", onnx, threads=1))
    exact, cer = {}, {}
    for name, items in shared_eval_sets(recognizer.charset, names):
        result, _ = evaluate(name, items, recognizer_reader(recognizer), recognizer.crop_size, padding)
        exact[name], cer[name] = result.exact, result.cer
    return exact, cer


def leave_one_region_out(base: OcrTrainConfig, out_dir: Path, *, left_out: Sequence[str] | None = None,
                         reference: bool = True, max_steps: int | None = None, progress: bool = True) -> list[LoroRun]:
    """Train the reference and the leave-one-out models (``base.minutes`` each) and score them all.

    ``reference=False`` skips the reference run: for re-measuring one unseen region after a change to the
    synthetic data, against a reference row measured before (same recipe and budget)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(base.data.real_sets) + list(base.data.test_sets)
    runs = []
    for name, config in run_configs(base, out_dir, left_out, reference=reference):
        log.info("leave-one-region-out: training %s (%g minutes)", f"without {name}" if name else "on all sets",
                 config.minutes)
        result = train_ocr(config, max_steps=max_steps, progress=progress)
        if result.onnx is None:
            raise ConfigError(f"the run without {name} exported no model")
        exact, cer = score_model(result.onnx, names, config.data.padding)
        runs.append(LoroRun(name, tuple(config.data.real_sets), result.steps, round(result.seconds / 60, 2),
                            str(result.onnx), exact, cer))
        (out_dir / "loro.json").write_text(json.dumps([asdict(r) for r in runs], indent=1) + "\n", encoding="utf-8")
    return runs


def format_table(runs: Sequence[LoroRun]) -> str:
    """Markdown: one row per run, one column per evaluation set (exact match); the left-out set's cell is
    bold (never trained on), followed by the reference row's figure on that set for comparison."""
    columns = list(runs[0].exact) if runs else []
    reference = next((r for r in runs if r.left_out is None), None)
    lines = ["| trained on | steps | minutes | " + " | ".join(columns) + " |",
             "|---|---:|---:|" + "---:|" * len(columns)]
    for run in runs:
        label = "all real sets" if run.left_out is None else f"all but {run.left_out}"
        cells = []
        for column in columns:
            value = run.exact.get(column, float("nan"))
            if run.left_out is not None and column.split(":")[0] == run.left_out:
                ref = reference.exact.get(column) if reference else None
                cells.append(f"**{value:.1%}** (all: {ref:.1%})" if ref is not None else f"**{value:.1%}**")
            else:
                cells.append(f"{value:.1%}")
        lines.append(f"| {label} | {run.steps} | {run.minutes:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
