"""`anpr-edge train-detector`: train the YOLO plate detector with ultralytics, offline, time-boxed; export ONNX.

- Data: ``det_data.prepare_detector_dataset`` (real scenes split by group, synthetic composites, demo frames;
  fr-plate-scenes held out as the test set), cached outside the repository.
- Model: an ultralytics model *yaml* (default ``yolo11n.yaml``), trained from scratch: no pretrained weights
  can be reached, and a bare ``YOLO("yolo11n.pt")`` would try to download them.
- Time budget: ultralytics' own ``time`` argument, which re-estimates the number of epochs after each epoch
  so the learning-rate schedule (and the closing no-mosaic epochs) fit the budget and the run ends annealed.
  A run can be resumed (``--resume``) with a further budget; the hours already spent are kept in
  ``budget.json`` next to the run, because ultralytics counts its time budget from the (re)start.
- Offline: ``configure_offline`` must run before ultralytics is imported (it reads its environment at import):
  no DNS probe, update check, analytics, font download or pip auto-install. ``tests/test_det_train.py``
  trains with sockets blocked to prove it.
- Output: ultralytics logs to stdout; the whole run has its stdout sent to stderr at the file-descriptor level
  (``stdout_to_stderr``), so the command's stdout carries only its JSON result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anpr_edge import paths
from anpr_edge.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "yolo11n.yaml"
DEFAULT_OUTPUT = Path("engines") / paths.DETECTOR_MODEL
_OFFLINE_ENV = {
    "YOLO_OFFLINE": "1",  # no DNS probe at import, no update check, no analytics (utils.is_online)
    "YOLO_AUTOINSTALL": "0",  # never pip-install a missing requirement at run time
    "YOLO_VERBOSE": "1",
}


def ultralytics_dir() -> Path:
    return paths.cache_dir() / "ultralytics"


def configure_offline(config_dir: Path | None = None) -> Path:
    """Make ultralytics work without a network; call before the first ``import ultralytics``.

    Sets its config and matplotlib dirs under the project cache (nothing written to $HOME), and puts a
    TTF at ``<config>/Arial.ttf`` (+ ``Arial.Unicode.ttf``): ultralytics' ``check_font`` downloads Arial
    over HTTP on every dataset check otherwise, even with ``plots=False``. Any TTF will do for labels it
    never draws; matplotlib's bundled DejaVu Sans is always there when ultralytics is.
    """
    config_dir = (config_dir or ultralytics_dir()).expanduser().resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(_OFFLINE_ENV)
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("MPLCONFIGDIR", str(config_dir / "matplotlib"))
    # ultralytics appends "Ultralytics" to YOLO_CONFIG_DIR (utils.get_user_config_dir)
    fonts_dir = config_dir / "Ultralytics"
    fonts_dir.mkdir(parents=True, exist_ok=True)
    source = _any_ttf()
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = fonts_dir / name
        if not target.is_file():
            shutil.copyfile(source, target)
    return config_dir


def _any_ttf() -> Path:
    candidates = []
    try:
        import matplotlib

        candidates.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    except ImportError:
        pass
    candidates.append(Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError("no TTF font found for ultralytics (install matplotlib or Debian fonts-dejavu-core)")


def import_ultralytics() -> Any:
    """``ultralytics`` configured for offline use (settings sync off), or a clear error if not installed."""
    configure_offline()
    try:
        with stdout_to_stderr():  # it prints a settings notice on first import
            import ultralytics
            from ultralytics import settings
    except (ImportError, RuntimeError) as error:  # RuntimeError: a torchvision built for another torch
        raise ConfigError(
            f"train-detector needs the training extra (ultralytics with torch and torchvision): "
            f"pip install -e '.[train]' ({error})"
        ) from None
    # No analytics, and no experiment-tracker callbacks (they would log in to their servers if installed).
    settings.update({"sync": False, "clearml": False, "comet": False, "dvc": False, "mlflow": False,
                     "raytune": False, "tensorboard": False, "wandb": False, "vscode_msg": False})
    return ultralytics


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (Python and C level) to stderr for the duration."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# ------------------------------------------------------------------------------------------------ options
@dataclass(frozen=True)
class DetTrainOptions:
    """One training run. ``minutes`` is the time budget of this (re)start; ``epochs`` only caps it."""

    model: str = DEFAULT_MODEL
    imgsz: int = 320
    batch: int = 32
    minutes: float = 95.0
    epochs: int = 300
    workers: int = 2
    threads: int = 2
    seed: int = 0
    close_mosaic: int = 3
    # Each batch drawn at a random size within imgsz * (1 +- multi_scale) (ultralytics `multi_scale`): one
    # model for every runtime `input_size` (320 for the daemon, 512 for `read`'s second look) and more
    # small plates seen small. 0: every batch at imgsz.
    multi_scale: float = 0.0
    # ultralytics' "auto" picks MuSGD for long runs, whose Newton-Schulz orthogonalisation (bfloat16 matmuls)
    # took 58% of every CPU step here (py-spy): plain SGD trains ~2x more epochs in the same budget.
    optimizer: str = "SGD"
    cache: str | bool = "ram"
    fraction: float = 1.0  # share of the train split to use (tests)
    synthetic: int = 2000
    demo_every: int = 10
    data_yaml: Path | None = None  # a prepared dataset (default: prepare/reuse det_data's cached one)
    run_dir: Path | None = None  # default: <cache>/det-train/<model stem>-<imgsz>
    init_weights: Path | None = None  # start from these weights (a previous run's best.pt) instead of scratch
    output: Path = DEFAULT_OUTPUT
    extra: dict[str, Any] = field(default_factory=dict)  # further ultralytics train arguments

    def resolved_run_dir(self) -> Path:
        if self.run_dir is not None:
            return self.run_dir.expanduser().resolve()
        return (paths.cache_dir() / "det-train" / f"{Path(self.model).stem}-{self.imgsz}").resolve()


@dataclass(frozen=True)
class DetTrainResult:
    run_dir: Path
    best: Path
    last: Path
    epochs: int
    hours: float  # training time over all (re)starts
    ultralytics_metrics: dict[str, float]
    onnx: Path | None = None


# ---------------------------------------------------------------------------------------------- training
def _budget_path(run_dir: Path) -> Path:
    return run_dir / "budget.json"


def _spent_hours(run_dir: Path) -> float:
    try:
        return float(json.loads(_budget_path(run_dir).read_text(encoding="utf-8"))["hours"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _record_hours(run_dir: Path, hours: float) -> None:
    _budget_path(run_dir).write_text(json.dumps({"hours": round(hours, 4)}) + "\n", encoding="utf-8")


def _data_yaml(options: DetTrainOptions) -> Path:
    if options.data_yaml is not None:
        if not options.data_yaml.is_file():
            raise ConfigError(f"--data: not a file: {options.data_yaml}")
        return options.data_yaml.resolve()
    from anpr_edge.train.det_data import prepare_detector_dataset

    prepared = prepare_detector_dataset(imgsz=max(640, options.imgsz), synthetic=options.synthetic,
                                        demo_every=options.demo_every, seed=options.seed)
    log.info("detector data: %s (%s)", prepared.root, "reused" if prepared.reused else "prepared")
    return prepared.data_yaml


def train_detector(options: DetTrainOptions, *, resume: Path | None = None) -> DetTrainResult:
    """Train (or resume) within ``options.minutes``; returns where the weights are. Logs go to stderr."""
    import_ultralytics()
    import torch
    import ultralytics.utils.torch_utils as torch_utils
    from ultralytics import YOLO

    # ultralytics resets torch to cpu_count - 1 threads when it selects the CPU: one core of two here.
    torch_utils.NUM_THREADS = options.threads
    torch.set_num_threads(options.threads)
    run_dir = options.resolved_run_dir()
    spent = _spent_hours(run_dir) if resume is not None else 0.0
    started = time.monotonic()
    with stdout_to_stderr():
        if resume is not None:
            if not resume.is_file():
                raise ConfigError(f"--resume: no checkpoint at {resume}")
            # ultralytics counts `time` from this restart but compares the epoch count it derives from it
            # with the absolute epoch: give it the whole budget so far, so the schedule stays one schedule.
            model = YOLO(str(resume))
            model.train(resume=True, time=spent + options.minutes / 60.0, workers=options.workers,
                        cache=options.cache, plots=False)
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            data = _data_yaml(options)
            if options.init_weights is not None:
                # A later session continues from the committed weights of an earlier one: a new schedule
                # (warm-up, budget, annealing) on top of weights that already detect plates.
                if not options.init_weights.is_file():
                    raise ConfigError(f"--init-weights: no such file: {options.init_weights}")
                model = YOLO(str(options.init_weights.resolve()))
            else:
                model = YOLO(options.model)
            model.train(
                data=str(data),
                imgsz=options.imgsz,
                batch=options.batch,
                epochs=options.epochs,
                time=options.minutes / 60.0,
                workers=options.workers,
                seed=options.seed,
                deterministic=False,  # deterministic kernels cost speed on CPU and buy nothing here
                close_mosaic=options.close_mosaic,
                multi_scale=options.multi_scale,
                optimizer=options.optimizer,
                cache=options.cache,
                fraction=options.fraction,
                device="cpu",
                amp=False,  # the AMP check downloads weights; CPU training is fp32 anyway
                plots=False,
                pretrained=options.init_weights is not None,
                project=str(run_dir.parent),
                name=run_dir.name,
                exist_ok=True,
                verbose=True,
                **options.extra,
            )
    trainer = model.trainer
    hours = spent + (time.monotonic() - started) / 3600.0
    save_dir = Path(trainer.save_dir)
    _record_hours(save_dir, hours)
    metrics = {k: float(v) for k, v in (trainer.metrics or {}).items() if isinstance(v, (int, float))}
    return DetTrainResult(
        run_dir=save_dir,
        best=Path(trainer.best),
        last=Path(trainer.last),
        epochs=int(trainer.epoch) + 1,
        hours=hours,
        ultralytics_metrics=metrics,
    )


def export_onnx(weights: Path, output: Path, *, imgsz: int) -> Path:
    """Export ``weights`` to ONNX (opset 17, dynamic batch and size, classic output + our NMS) at ``output``.

    Dynamic height/width let the runtime pick its detector size (``models.detector.input_size``);
    the training size is kept in the metadata (``imgsz``) as the default.
    """
    import_ultralytics()
    from ultralytics import YOLO

    if not weights.is_file():
        raise ConfigError(f"no detector weights at {weights}")
    with stdout_to_stderr():
        exported = YOLO(str(weights)).export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, opset=17,
                                             nms=False, half=False, device="cpu")
    output.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(exported, output)
    return output


def read_results_csv(run_dir: Path) -> list[dict[str, float]]:
    """ultralytics' per-epoch ``results.csv`` as rows of floats (empty if there is none)."""
    import csv

    path = run_dir / "results.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = []
        for row in csv.DictReader(handle):
            parsed = {}
            for key, value in row.items():
                try:
                    parsed[key.strip()] = float(value)
                except (TypeError, ValueError):
                    continue
            rows.append(parsed)
    return rows


# ------------------------------------------------------------------------------------------------ lineage
LINEAGE_KEY = "anpr_edge_lineage"  # our key in a saved checkpoint: epochs and minutes of all its training


@dataclass(frozen=True)
class Lineage:
    """How much training a set of weights has had, over every session that continued it."""

    epochs: int
    minutes: float


def checkpoint_lineage(weights: Path) -> Lineage:
    """Epochs and minutes of training behind ``weights`` (an ultralytics .pt): our saved total when the
    checkpoint carries one (``save_resume_weights``), else the run's own ``train_results``."""
    import torch

    checkpoint = torch.load(str(weights), map_location="cpu", weights_only=False)
    saved = checkpoint.get(LINEAGE_KEY)
    if isinstance(saved, dict):
        return Lineage(int(saved["epochs"]), float(saved["minutes"]))
    results = checkpoint.get("train_results") or {}
    epochs, times = results.get("epoch") or [], results.get("time") or []
    return Lineage(int(epochs[-1]) if epochs else 0, float(times[-1]) / 60.0 if times else 0.0)


def save_resume_weights(best: Path, destination: Path, lineage: Lineage) -> Path:
    """Weights-only copy of ``best`` (no optimizer or EMA state: ~5 MB for a nano model) for a later session's
    ``--init-weights``, carrying the total training behind it so that session's card can say so."""
    import_ultralytics()
    from ultralytics.utils.torch_utils import strip_optimizer

    if not best.is_file():
        raise ConfigError(f"no detector weights at {best}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    with stdout_to_stderr():
        strip_optimizer(str(best), str(destination),
                        updates={LINEAGE_KEY: {"epochs": lineage.epochs, "minutes": round(lineage.minutes, 2)}})
    return destination

