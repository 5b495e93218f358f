"""The detector model card (``engines/plate_det.md``), written from a finished training run.

The accuracy and speed figures are measured here through the runtime path (``PlateReader``: ONNX Runtime,
letterbox, our NMS, the bundled OCR), on the fixed real validation splits and the held-out French test set,
single-threaded; ultralytics' own validation metrics (PyTorch, its NMS) are quoted next to them.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from anpr_edge.config import default_config
from anpr_edge.pipeline import PlateReader
from anpr_edge.read_eval import ReadEvalReport, evaluate_read, format_table, shared_scene_sets
from anpr_edge.train.det_train import DetTrainOptions, Lineage, read_results_csv
from anpr_edge.train.ocr_card import machine


def evaluate_detector(onnx: Path, *, input_size: int, threads: int = 1, ocr: Path | None = None,
                      confidence: float = 0.35) -> list[ReadEvalReport]:
    """The `eval-read --shared` table for ``onnx`` with the bundled OCR (or ``ocr``)."""
    defaults = default_config()
    detector = defaults.models.detector.model_copy(update={"path": onnx, "input_size": input_size,
                                                           "confidence": confidence})
    ocr_model = defaults.models.ocr.model_copy(update={"path": ocr}) if ocr is not None else defaults.models.ocr
    config = defaults.model_copy(update={
        "models": defaults.models.model_copy(update={"detector": detector, "ocr": ocr_model}),
        "inference": defaults.inference.model_copy(update={"backend": "onnxruntime", "threads": threads}),
    })
    # Exactly the reader of `anpr-edge read` with the default config: its views of each plate, the second look
    # at the default fallback size, and the confidence fallback_below is compared with (the OCR's read map).
    reader = PlateReader.from_config(config)
    return [evaluate_read(name, scenes, lambda image: reader.read([image])[0]) for name, scenes in shared_scene_sets()]


def _manifest_table(manifest: dict[str, Any]) -> str:
    lines = ["| source | split | images | boxes | images without a plate |", "|---|---|---|---|---|"]
    for source, splits in manifest.get("counts", {}).items():
        for split, c in splits.items():
            lines.append(f"| {source} | {split} | {c['images']} | {c['boxes']} | {c['empty']} |")
    return "\n".join(lines)


def _history_table(rows: list[dict[str, float]]) -> str:
    keys = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)")
    lines = ["| epoch | minutes | box loss | precision | recall | mAP50 | mAP50-95 |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        values = " | ".join(f"{row.get(k, float('nan')):.3f}" for k in keys)
        lines.append(f"| {row.get('epoch', 0):.0f} | {row.get('time', 0) / 60:.1f} | "
                     f"{row.get('train/box_loss', float('nan')):.3f} | {values} |")
    return "\n".join(lines)


def write_model_card(options: DetTrainOptions, run_dir: Path, onnx: Path, *, hours: float,
                     reports: list[ReadEvalReport], data_manifest: dict[str, Any] | None,
                     path: Path | None = None, notes: str = "", prior: Lineage | None = None) -> Path:
    """``prior``: the training behind ``options.init_weights`` when this run continued earlier weights."""
    path = path or onnx.with_suffix(".md")
    history = read_results_csv(run_dir)
    epochs = int(history[-1]["epoch"]) if history else 0
    reproduce = (f"anpr-edge train-detector --minutes {options.minutes:g} --imgsz {options.imgsz} "
                 f"--batch {options.batch} --optimizer {options.optimizer}")
    if options.multi_scale:
        reproduce += f" --multi-scale {options.multi_scale:g}"
    lineage = ""
    sizes = ""
    if options.multi_scale:
        low, high = options.imgsz * (1 - options.multi_scale), options.imgsz * (1 + options.multi_scale)
        sizes = f", each batch drawn at a random size of {low:.0f}-{high:.0f} px (`--multi-scale {options.multi_scale:g}`)"
    if options.init_weights is not None:
        reproduce += f" --init-weights {options.init_weights}"
        if prior is not None:
            lineage = (f"\n- This run continued `{options.init_weights}` ({prior.epochs} epochs, {prior.minutes:.0f} "
                       f"minutes of earlier training, a schedule of its own): {prior.epochs + epochs} epochs and "
                       f"{prior.minutes + hours * 60:.0f} minutes of training in all. The epochs below are this run's.")
    params = ""
    try:
        args = (run_dir / "args.yaml").read_text(encoding="utf-8")
    except OSError:
        args = "(args.yaml not found)"
    size_mb = onnx.stat().st_size / 1e6
    text = f"""# Model card: `{onnx.name}` (YOLO plate detector)

Written by `anpr-edge train-detector` on {datetime.date.today().isoformat()}. Accuracy and speed below were
measured on the exported ONNX model through the runtime path (`anpr-edge eval-read --shared --threads 1`:
ONNX Runtime, letterbox, OpenCV NMS, fixed-size crop, the bundled OCR `engines/ocr.onnx`).

## Model
- Architecture: ultralytics `{options.model}` (YOLO11 nano), one class `plate`, trained **from scratch** (no
  pretrained weights are reachable offline){params}. ONNX opset 17, dynamic batch and input size, classic
  output `(batch, 5, anchors)` decoded by `anpr_edge/detector.py`; {size_mb:.1f} MB.
- Training size {options.imgsz} px (letterboxed square){sizes}; the runtime size is `models.detector.input_size`
  (default: the training size from the model's metadata).
- Training: {epochs} epochs in {hours * 60:.0f} minutes on {machine()} (CPU only: no GPU was available),
  batch {options.batch}, {options.optimizer} optimizer, ultralytics' default augmentation (mosaic, HSV, scale,
  translate, flips) with mosaic off for the last {options.close_mosaic} epochs; the epoch count follows
  the time budget (ultralytics `time`), so the learning-rate schedule ends annealed.
- Reproduce: `{reproduce}`
  (needs the `[train]` extra; makes no network call).{lineage}

## Data
Built by `anpr_edge/train/det_data.py` (dataset version 1, long side <= 640 px, cached outside the tree).
Real scenes are split by group (`andrewmvd-car-plates` duplicate groups never straddle splits), the
es-uc3m set keeps its authors' split, and `fr-plate-scenes` is a held-out test set (never trained on,
never used for selection or as a composite background). Synthetic composites (plates from the project's
generator pasted onto inpainted real train scenes and onto other backgrounds) and demo-clip frames are
train only; validation is real images only.

{_manifest_table(data_manifest or {})}

## Accuracy and speed (runtime path, single thread, {machine()})
Recall and precision at IoU 0.5; recall by plate width in the stored image; FP/img counts detections
matching no labelled box. Caveat: `tn-plate-detection` labels one plate per image even when others show,
and `andrewmvd-car-plates` leaves some background plates unlabelled, so their precision and FP/img are
pessimistic (a spot-check of the FPs is in the notes below). Exact match is end to end (detector + crop +
OCR; the image's most confident read against its label) where the labels have text (fr only). Times are
`PlateReader.read` per image, decoding excluded, as `anpr-edge read` runs by default: a photo in which the
first pass finds no plate, or only plates that read below `models.detector.fallback_below`, is looked at again
at `models.detector.fallback_size` (the daemon does not do this), and each plate is read in the views of
`crop.photo_cuts` ({", ".join(["box"] + list(default_config().crop.photo_cuts))}), voted into one read.

{format_table(reports)}

## ultralytics validation per epoch (PyTorch, its own NMS, val split of the real sets)
{_history_table(history)}

## Notes and limits
{notes or "-"}

## Training arguments
```yaml
{args.strip()}
```
"""
    path.write_text(text, encoding="utf-8")
    return path


def load_manifest(data_yaml: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_yaml.parent / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
