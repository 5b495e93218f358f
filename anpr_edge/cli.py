"""The ``anpr-edge`` command line.

Conventions every subcommand keeps: machine-readable output (JSON lines) on stdout, logs and progress on
stderr; a user mistake is one clear message on stderr and exit code 2, never a traceback; per-file
failures are reported for that file and the run goes on (exit code 1 at the end).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from anpr_edge import __version__
from anpr_edge.argtypes import number_between, positive_float, positive_int
from anpr_edge.config import AppConfig, command_config, default_config, load_config
from anpr_edge.errors import AnprError, ConfigError, SourceError
from anpr_edge.images import ImageError, load_image
from anpr_edge.logs import setup_logging
from anpr_edge.values import PlateRead

log = logging.getLogger("anpr_edge")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"}


# ------------------------------------------------------------------------------------------ helpers
def _config(path: str | None) -> AppConfig:
    return load_config(path) if path else default_config()


def _emit(record: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


def _round_box(box: Sequence[float] | None) -> list[float] | None:
    return None if box is None else [round(float(v), 1) for v in box]


def iter_image_paths(targets: Sequence[str]) -> Iterator[Path]:
    """Named files as given (so a non-image is reported), folders recursively (image files only)."""
    for target in targets:
        path = Path(target)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def _process_files(
    targets: Sequence[str],
    as_json: bool,
    work: Callable[[np.ndarray], dict[str, Any]],
    human: Callable[[dict[str, Any]], str],
) -> int:
    failed = 0
    for path in iter_image_paths(targets):
        try:
            image = load_image(path)
        except ImageError as error:
            failed += 1
            if as_json:
                _emit({"file": str(path), "error": str(error)}, sys.stdout)
            log.error("%s: %s", path, error)
            continue
        started = time.perf_counter()
        record = work(image)
        ms = (time.perf_counter() - started) * 1000.0
        record = {"file": str(path), **record, "ms": round(ms, 1)}
        if as_json:
            _emit(record, sys.stdout)
        else:
            sys.stdout.write(f"{path}: {human(record)}\n")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------- commands
def cmd_read(args: argparse.Namespace) -> int:
    from anpr_edge.pipeline import PlateReader

    config = _config(args.config)
    reader = PlateReader.from_config(config)
    threshold = config.models.ocr.min_confidence

    def work(image: np.ndarray) -> dict[str, Any]:
        (reads,) = reader.read([image])
        plates = [
            {"text": r.text, "confidence": round(r.confidence, 4), "box": _round_box(r.box), "format": r.format,
             "at_frame_edge": r.at_frame_edge}
            for r in reads
            if r.confidence >= threshold and r.text
        ]
        return {"plates": plates}

    def human(record: dict[str, Any]) -> str:
        plates = record["plates"]
        found = ", ".join(f"{p['text']} ({p['confidence']:.2f}) at {p['box']}{' (cut by the frame edge)' if p['at_frame_edge'] else ''}"
                          for p in plates) or "no plate"
        return f"{found}  [{record['ms']} ms]"

    return _process_files(args.paths, args.json, work, human)


def cmd_ocr(args: argparse.Namespace) -> int:
    from anpr_edge.crop import plate_cuts
    from anpr_edge.pipeline import load_recognizer
    from anpr_edge.voting import calibrated_read, combine_views

    config = _config(args.config)
    recognizer = load_recognizer(config)
    calibration = recognizer.read_calibration
    reformat = _reformatter(config, recognizer.charset, config.formats.regions)
    explained = 0

    def work(image: np.ndarray) -> dict[str, Any]:
        nonlocal explained
        if args.explain is None:
            # The image is the plate's box: read it in the configured cuts and vote them (as eval-ocr scores it).
            height, width = image.shape[:2]
            cuts = plate_cuts(image, (0, 0, width, height), recognizer.crop_size, 0.0, config.crop.photo_cuts,
                              rectify=config.crop.rectify)
            plate = combine_views(recognizer.read_crops(cuts), recognizer.charset)
            if reformat is not None:
                plate = reformat(plate)
            plate = calibrated_read(plate, calibration)
            return {"text": plate.text, "confidence": round(plate.confidence, 4), "format": plate.format}
        from anpr_edge.explain import attention_sheet

        ((crop, plate, attention),) = recognizer.explain([image])
        folder = Path(args.explain)
        folder.mkdir(parents=True, exist_ok=True)
        sheet = folder / f"{explained:04d}_{plate.text or '_'}.png"
        cv2.imwrite(str(sheet), attention_sheet(crop, plate, attention))
        explained += 1
        # The box cut alone here (its attention is what the sheet shows), mapped as the voted views are.
        plate = calibrated_read(plate, calibration)
        return {"text": plate.text, "confidence": round(plate.confidence, 4), "explain": str(sheet)}

    return _process_files(
        args.paths, args.json, work, lambda r: f"{r['text'] or '(nothing)'} ({r['confidence']:.2f})  [{r['ms']} ms]"
    )


def cmd_check_config(args: argparse.Namespace) -> int:
    from anpr_edge.pipeline import load_detector, load_recognizer
    from anpr_edge.regions import roi_window, tile_windows
    from anpr_edge.sources import open_source

    config = load_config(args.file)
    summary: dict[str, Any] = {"file": str(args.file), "device_id": config.device_id, "cameras": [], "models": {}}
    for n, camera in enumerate(config.cameras):
        entry: dict[str, Any] = {"id": camera.id, "kind": camera.source.kind, "source": str(camera.source)}
        entry["enabled"] = camera.enabled
        if camera.enabled and args.probe:
            source = open_source(camera)
            try:
                source.open()
                frame = source.read()
                if frame is None:
                    raise SourceError(f"camera '{camera.id}': no frame could be read from {camera.source}")
                entry["probe"] = {"width": frame.width, "height": frame.height, "fps": source.native_fps}
                window = roi_window(camera.roi if camera.detect_in_roi else None, frame.image.shape,
                                    camera.detect_margin)
                if window != (0, 0, frame.width, frame.height):
                    entry["probe"]["detector_window"] = list(window)
                if camera.detect_tiles > 1:
                    entry["probe"]["detector_tile_grid"] = camera.detect_tiles
                    entry["probe"]["detector_tiles"] = [list(t) for t in tile_windows(window, camera.detect_tiles)]
            except SourceError as error:
                raise ConfigError(f"{args.file}: cameras[{n}].source: {error}") from None
            finally:
                source.close()
        summary["cameras"].append(entry)
    for role, loader, key in (
        ("detector", load_detector, "models.detector.path"),
        ("ocr", load_recognizer, "models.ocr.path"),
    ):
        try:
            loaded = loader(config)
            summary["models"][role] = {"path": str(loaded.backend.path), "status": "ok"}
        except AnprError as error:
            explicit = getattr(config.models, role).path is not None
            if explicit:
                raise ConfigError(f"{args.file}: {key}: {error}") from None
            summary["models"][role] = {"path": None, "status": "missing", "message": str(error)}
    mqtt = config.mqtt
    summary["mqtt"] = {"enabled": mqtt.enabled, "host": mqtt.host, "port": mqtt.port, "tls": mqtt.tls is not None}
    if args.json:
        _emit(summary, sys.stdout)
        return 0
    lines = [f"{args.file}: OK", f"  device_id: {config.device_id}", f"  cameras: {len(config.cameras)}"]
    for entry in summary["cameras"]:
        state = "" if entry["enabled"] else " (disabled)"
        probe = entry.get("probe")
        seen = f"  -> {probe['width']}x{probe['height']}" + (f" @ {probe['fps']:g} fps" if probe["fps"] else "") if probe else ""
        if probe and "detector_window" in probe:
            x1, y1, x2, y2 = probe["detector_window"]
            gain = min(probe["width"] / (x2 - x1), probe["height"] / (y2 - y1))
            seen += f", detector looks at x {x1}-{x2}, y {y1}-{y2} (its ROI window: plates {gain:.1f}x larger to it)"
        if probe and "detector_tiles" in probe:
            tiles, side = probe["detector_tiles"], probe["detector_tile_grid"]
            tx1, ty1, tx2, ty2 = tiles[0]
            gain = min(probe["width"] / (tx2 - tx1), probe["height"] / (ty2 - ty1))
            seen += (f", and {side}x{side} tiles of about {tx2 - tx1}x{ty2 - ty1} "
                     f"(plates up to {gain:.1f}x larger to it; {len(tiles) + 1} detector inputs per frame)")
        lines.append(f"    {entry['id']}: {entry['kind']} {entry['source']}{state}{seen}")
    for role, entry in summary["models"].items():
        lines.append(f"  {role} model: " + (entry["path"] if entry["status"] == "ok" else f"MISSING - {entry['message']}"))
    lines.append(
        "  mqtt: " + (f"{mqtt.host}:{mqtt.port}" + (" (TLS)" if mqtt.tls else "") if mqtt.enabled else "disabled")
    )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_formats(args: argparse.Namespace) -> int:
    from anpr_edge.plate_formats import BUILTIN_FORMATS, load_formats, normalize_plate, text_format

    config = load_config(args.config) if args.config else None
    custom = dict(config.formats.custom) if config else {}
    configured = list(config.formats.regions) if config else []
    # With a config, texts are checked against its formats in its order; without one (or none configured),
    # against every known format, so a site can find which of them its plates fit.
    names = configured or list(dict.fromkeys([*BUILTIN_FORMATS, *custom]))
    try:
        formats = load_formats(names, custom)
    except ValueError as error:
        raise ConfigError(f"{args.config}: formats: {error}") from None
    if not args.texts:
        for plate_format in formats:
            record = {"format": plate_format.name, "patterns": list(plate_format.patterns),
                      "configured": plate_format.name in configured,
                      "custom": plate_format.name in custom}
            if args.json:
                _emit(record, sys.stdout)
            else:
                mark = " (configured)" if record["configured"] else ""
                sys.stdout.write(f"{plate_format.name}{mark}: {', '.join(plate_format.patterns)}\n")
        return 0
    for raw in args.texts:
        text = normalize_plate(raw)  # as the OCR reports plates: letters and digits only
        fits = [f.name for f in formats if f.matches(text)]
        first = text_format(text, formats)
        if args.json:
            _emit({"text": text, "format": first, "fits": fits}, sys.stdout)
        else:
            sys.stdout.write(f"{text}: " + (", ".join(fits) if fits else "no format") + "\n")
    return 0


def _needs_torch(command: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise AnprError(
            f"{command} needs the training extra: pip install torch==2.13.0 (CPU wheel) && pip install -e '.[train]'"
        ) from None


def cmd_train_ocr(args: argparse.Namespace) -> int:
    _needs_torch("train-ocr")
    from anpr_edge.train.ocr_card import write_model_card
    from anpr_edge.train.ocr_train import export_checkpoint, load_train_config, train_ocr

    config = load_train_config(args.config)
    updates: dict[str, Any] = {}
    if args.minutes is not None:
        updates["minutes"] = args.minutes
    if args.output is not None:
        updates["output"] = Path(args.output)
    if args.lr is not None:
        updates["lr"] = args.lr
    if args.encoder_lr_scale is not None:
        updates["encoder_lr_scale"] = args.encoder_lr_scale
    if args.decoder is not None:
        updates["model"] = config.model.model_copy(update={"decoder": args.decoder})
    if args.teacher is not None:
        updates["teacher"] = Path(args.teacher)
    if args.seed is not None:
        updates["seed"] = args.seed
    config = config.model_copy(update=updates)
    if args.export_only or args.export_last:
        result = export_checkpoint(config, which="last" if args.export_last else "best")
    else:
        result = train_ocr(config, resume=args.resume, max_steps=args.max_steps,
                           init_weights=Path(args.init_weights) if args.init_weights else None)
    card = None
    if result.onnx is not None:
        # Every exported model gets its read map (the confidence `read` reports) before its card is written.
        from anpr_edge.bench.calibration_fit import calibrate_model_reads

        card = write_model_card(config, result, read_fit=calibrate_model_reads(result.onnx))
    _emit({"onnx": str(result.onnx), "card": str(card) if card else None, "steps": result.steps,
           "minutes": round(result.seconds / 60, 1), "best_step": result.best_step,
           "exported": "last" if result.final_weights else "best",
           "exact_match": {k: round(v, 4) for k, v in result.val.items()}}, sys.stdout)
    return 0


def cmd_loro_ocr(args: argparse.Namespace) -> int:
    _needs_torch("loro-ocr")
    from dataclasses import asdict

    from anpr_edge import paths
    from anpr_edge.train.loro import format_table, leave_one_region_out
    from anpr_edge.train.ocr_train import load_train_config

    config = load_train_config(args.config).model_copy(update={"minutes": args.minutes})
    out_dir = Path(args.out) if args.out else paths.cache_dir() / "ocr-loro"
    runs = leave_one_region_out(config, out_dir, left_out=args.leave_out, reference=not args.no_reference,
                                max_steps=args.max_steps)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in runs], indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(format_table(runs) + "\n")
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    from anpr_edge.train.det_card import evaluate_detector, load_manifest, write_model_card
    from anpr_edge.train.det_train import (
        DetTrainOptions,
        Lineage,
        checkpoint_lineage,
        export_onnx,
        read_results_csv,
        save_resume_weights,
        train_detector,
    )

    options = DetTrainOptions(
        model=args.model, imgsz=args.imgsz, batch=args.batch, minutes=args.minutes, epochs=args.epochs,
        threads=args.threads, synthetic=args.synthetic, output=Path(args.output),
        data_yaml=Path(args.data) if args.data else None, run_dir=Path(args.run_dir) if args.run_dir else None,
        init_weights=Path(args.init_weights) if args.init_weights else None, optimizer=args.optimizer,
        multi_scale=args.multi_scale,
    )
    run_dir = options.resolved_run_dir()
    if args.export_only:
        hours = 0.0
        try:
            hours = float(json.loads((run_dir / "budget.json").read_text(encoding="utf-8"))["hours"])
        except (OSError, ValueError, KeyError):
            pass
    else:
        result = train_detector(options, resume=Path(args.resume) if args.resume else None)
        run_dir, hours = result.run_dir, result.hours
    weights = run_dir / "weights" / "best.pt"
    onnx = export_onnx(weights, options.output, imgsz=options.imgsz)
    reports = evaluate_detector(onnx, input_size=options.imgsz)
    data_yaml = options.data_yaml
    if data_yaml is None:
        from anpr_edge.train.det_data import default_out_dir

        data_yaml = default_out_dir(max(640, options.imgsz), options.seed, options.synthetic) / "data.yaml"
    prior = checkpoint_lineage(options.init_weights) if options.init_weights is not None else None
    card = write_model_card(options, run_dir, onnx, hours=hours, reports=reports,
                            data_manifest=load_manifest(data_yaml), prior=prior)
    saved = None
    if args.save_weights:
        epochs = len(read_results_csv(run_dir))
        total = Lineage(epochs + (prior.epochs if prior else 0), hours * 60 + (prior.minutes if prior else 0.0))
        saved = save_resume_weights(weights, Path(args.save_weights), total)
    _emit({"onnx": str(onnx), "card": str(card), "weights": str(weights), "run_dir": str(run_dir),
           "hours": round(hours, 3), "saved_weights": str(saved) if saved else None,
           "eval": [r.as_dict() for r in reports]}, sys.stdout)
    return 0


def _zoomed_out(name: str, scenes: list[Any], factor: int) -> list[Any]:
    """``scenes`` as seen from ``factor`` times further: each photo at its own resolution in one cell of a
    factor x factor mosaic whose other cells hold other photos of the set, plates inpainted, blurred."""
    from anpr_edge.bench.roi import cached_wide_views

    log.info("%s: %d photos zoomed out x%d", name, len(scenes), factor)
    return [view.scene for view in cached_wide_views(scenes, factor, mask_others=True)]


def cmd_eval_read(args: argparse.Namespace) -> int:
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.read_eval import (
        evaluate_read,
        format_table,
        read_scene_labels,
        shared_scene_sets,
        write_detection_errors,
    )
    from anpr_edge.train.datasets import region_formats

    config = _config(args.config)
    models = config.models
    if args.detector:
        if not Path(args.detector).is_file():
            raise ConfigError(f"--detector: file not found: {args.detector}")
        models = models.model_copy(update={"detector": models.detector.model_copy(
            update={"path": Path(args.detector).resolve()})})
    if args.input_size:
        models = models.model_copy(update={"detector": models.detector.model_copy(
            update={"input_size": args.input_size})})
    if args.confidence is not None:
        models = models.model_copy(update={"detector": models.detector.model_copy(
            update={"confidence": args.confidence})})
    config = config.model_copy(update={
        "models": models, "inference": config.inference.model_copy(update={"threads": args.threads})})
    sets = shared_scene_sets() if args.shared else []
    sets += [(Path(p).parent.name or Path(p).stem, read_scene_labels(p)) for p in args.labels]
    if not sets:
        raise ConfigError("eval-read: give label CSV files and/or --shared")
    if args.zoom_out:
        sets = [(name, _zoomed_out(name, scenes, args.zoom_out)) for name, scenes in sets]
    reader = PlateReader.from_config(config)
    shared_names = {name for name, _ in sets[: len(sets) - len(args.labels)]}
    reports = []
    for name, scenes in sets:
        formats = region_formats(name) if name in shared_names else tuple(args.formats or ())
        report = evaluate_read(name, scenes, lambda image: reader.read([image])[0],
                               min_confidence=config.models.ocr.min_confidence, formats=formats,
                               reformat=_reformatter(config, reader.recognizer.charset, formats))
        reports.append(report)
        if args.errors:
            count = write_detection_errors(Path(args.errors), report, scenes)
            log.info("%s: %d false positives and misses written to %s", name, count, args.errors)
        if args.json:
            _emit(report.as_dict(), sys.stdout)
    if not args.json:
        sys.stdout.write(format_table(reports) + "\n")
    return 0


def _format_list(value: str) -> tuple[str, ...]:
    """``--formats FR,EU``: known plate format names (argparse reports a bad one)."""
    from anpr_edge.plate_formats import load_formats

    names = tuple(n.strip() for n in value.split(",") if n.strip())
    try:
        load_formats(names)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return names


def _reformatter(config: AppConfig, charset: str, formats: Sequence[str]) -> Callable[[PlateRead], PlateRead] | None:
    """A read -> the same read under ``formats`` (None without formats), for the region-formats columns."""
    from anpr_edge.ocr_eval import region_reformatter

    return region_reformatter(config.formats, charset, formats)


def cmd_eval_ocr(args: argparse.Namespace) -> int:
    from anpr_edge.ocr_eval import (
        evaluate,
        format_table,
        recognizer_reader,
        shared_eval_sets,
        tesseract_reader,
        write_failures,
    )
    from anpr_edge.pipeline import load_recognizer
    from anpr_edge.train import datasets
    from anpr_edge.train.datasets import region_formats

    config = command_config(args.config, args.model)
    recognizer = load_recognizer(config)
    if (args.train_splits or args.published_labels) and not args.shared:
        flag = "--train-splits" if args.train_splits else "--published-labels"
        raise ConfigError(f"eval-ocr: {flag} goes with --shared")
    sets: list[tuple[str, list[Any]]] = (shared_eval_sets(recognizer.charset, train_splits=args.train_splits,
                                                          corrected=not args.published_labels)
                                         if args.shared else [])
    for csv_path in args.labels:
        labels = datasets.read_labels(Path(csv_path), charset=recognizer.charset)
        for line, reason in labels.skipped:
            log.warning("%s:%d: skipped: %s", csv_path, line, reason)
        sets.append((Path(csv_path).parent.name or Path(csv_path).stem, labels.items))
    if not sets:
        raise ConfigError("eval-ocr: give label CSV files and/or --shared")
    reader = recognizer_reader(recognizer)
    baseline = tesseract_reader(recognizer.charset) if args.baseline == "tesseract" else None
    shared_names = {name for name, _ in sets[: len(sets) - len(args.labels)]}
    rows, formatted = [], []
    for name, items in sets:
        ours, crops = evaluate(name, items, reader, recognizer.crop_size, config.crop.padding, config.crop.rectify,
                               config.crop.photo_cuts, args.image_margin)
        base = (evaluate(name, items, baseline, recognizer.crop_size, config.crop.padding, config.crop.rectify,
                         image_margin=args.image_margin)[0]
                if baseline else None)
        rows.append((ours, base))
        formats = region_formats(name) if name in shared_names else tuple(args.formats or ())
        reformat = _reformatter(config, recognizer.charset, formats)
        with_formats = (evaluate(name, items, recognizer_reader(recognizer, reformat=reformat), recognizer.crop_size,
                                 config.crop.padding, config.crop.rectify, config.crop.photo_cuts, args.image_margin)[0]
                        if reformat is not None else None)
        formatted.append((with_formats, formats) if with_formats is not None else None)
        if args.failures:
            write_failures(Path(args.failures), ours, crops, [str(item.path) for item in items])
        if args.json:
            record = ours.as_dict()
            if with_formats is not None:
                record["with_formats"] = {"formats": list(formats), **with_formats.as_dict()}
            if base is not None:
                record["baseline"] = {"name": args.baseline, **base.as_dict()}
            _emit(record, sys.stdout)
        log.info("%s: %d crops, exact match %.1f%%, CER %.3f", name, ours.count, 100 * ours.exact, ours.cer)
    if not args.json:
        sys.stdout.write(format_table(rows, formatted) + "\n")
    return 0


def cmd_demo_clip(args: argparse.Namespace) -> int:
    from anpr_edge.demo_clip import generate_demo_clip

    clip = generate_demo_clip(Path(args.output), seed=args.seed)
    log.info("wrote %s (%d frames, %dx%d @ %g fps) and its ground truth %s", clip.path, clip.frames,
             clip.width, clip.height, clip.fps, clip.path.with_suffix(".json"))
    return 0


class _Signals:
    """SIGINT/SIGTERM set ``stop`` (the service drains and exits); SIGHUP asks for a config reload."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._handle_reload)

    def _handle_stop(self, signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop.set()

    def _handle_reload(self, _signum: int, _frame: object) -> None:
        log.info("received SIGHUP: reloading the config")
        self.reload.set()


def cmd_run(args: argparse.Namespace) -> int:
    from anpr_edge.metrics import ServiceMetrics
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.sdnotify import SystemdNotifier
    from anpr_edge.service import EventRouter, Service, model_versions

    config = _run_config(args)
    setup_logging("DEBUG" if args.verbose else config.logging.level, config.logging.format)
    if not args.config and not args.source:
        log.info("no --config given: running the built-in demo (synthetic clip, events on stdout, no broker)")
    notifier = SystemdNotifier()
    try:
        with notifier.extending(120.0):  # a first start may build TensorRT engines for minutes
            reader: PlateReader | None = PlateReader.from_config(config, photos=False)
    except AnprError as error:
        reader = None
        log.warning("%s", error)
        log.warning("running sources only: frames are decoded and counted, no plates are read")
    signals = _Signals()
    signals.install()
    versions = model_versions(reader)
    metrics = ServiceMetrics(detector=versions.get("detector", "none"), ocr=versions.get("ocr", "none"))
    publisher = None
    if config.mqtt.enabled:
        from anpr_edge.publisher import MqttPublisher

        publisher = MqttPublisher(config.mqtt, config.device_id).start()
    sinks: list[Callable[[dict[str, Any]], None]] = []
    # Events go to stdout when asked, and whenever there is no broker to take them.
    if args.print_events or (config.outputs.stdout and publisher is None):
        sinks.append(lambda payload: _emit(payload, sys.stdout))
    jsonl = None
    if config.outputs.jsonl_file is not None:
        config.outputs.jsonl_file.parent.mkdir(parents=True, exist_ok=True)
        jsonl = open(config.outputs.jsonl_file, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        sinks.append(lambda payload: _emit(payload, jsonl))
    service = Service(config, reader, EventRouter(config.device_id, publisher, sinks), publisher=publisher,
                      metrics=metrics, notifier=notifier, max_frames=args.max_frames)
    http = _start_http(config, metrics, service)

    def reloaded() -> AppConfig | None:
        if not signals.reload.is_set():
            return None
        signals.reload.clear()
        try:
            return _run_config(args)
        except AnprError as error:  # a broken edit must not take the running cameras down
            log.error("config reload failed, keeping the running config: %s", error)
            return None

    started = time.monotonic()
    try:
        stats = service.run(signals.stop, reloaded)
    finally:
        if http is not None:
            http.stop()
        if publisher is not None:
            publisher.close(timeout=5.0)  # what is not acknowledged by then stays in the outbox
        if jsonl is not None:
            jsonl.close()
    log.info("stopped after %.1f s: %d frames, %d events, %d plate crops read (%d skipped: vote settled)",
             time.monotonic() - started, sum(stats.frames.values()), sum(stats.events.values()), stats.ocr_reads,
             stats.ocr_skipped)
    return 1 if stats.failed_cameras else 0


def _start_http(config: AppConfig, metrics: Any, service: Any) -> Any:
    """The /healthz and /metrics server, when enabled. A port already in use is logged, not fatal: losing
    health and metrics must not stop plate events."""
    if not config.http.enabled:
        return None
    from anpr_edge.health import HealthServer, web_for_service

    # The installer's web page too: a live view the service updates, recent events from its router.
    server = HealthServer.from_config(config.http, metrics, service.health, web=web_for_service(config, service))
    try:
        server.start()
    except ConfigError as error:
        log.error("%s; running without /healthz and /metrics", error)
        return None
    return server


def _run_config(args: argparse.Namespace) -> AppConfig:
    """The config for `run`, with the command-line overrides applied (and validated like the file)."""
    config = _config(args.config)
    updates: dict[str, Any] = {}
    if args.source:
        from pydantic import ValidationError

        from anpr_edge.config import CameraConfig, _describe

        try:
            camera = CameraConfig.model_validate({"id": "cli", "source": args.source})
        except ValidationError as error:
            problems = "; ".join(_describe(item) for item in error.errors(include_url=False))
            raise ConfigError(f"--source {args.source}: {problems}") from None
        updates["cameras"] = [camera]
    if args.realtime:
        updates["cameras"] = [c.model_copy(update={"realtime": True}) for c in updates.get("cameras", config.cameras)]
    if args.mqtt_url:
        from anpr_edge.publisher import mqtt_config_from_url

        updates["mqtt"] = mqtt_config_from_url(args.mqtt_url, config.mqtt)
    return config.model_copy(update=updates) if updates else config


# --------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anpr-edge",
        description="Edge number-plate recognition: camera/RTSP/file frames -> plate detector -> OCR -> events.",
    )
    parser.add_argument("--version", action="version", version=f"anpr-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="process the configured cameras (without --config: the built-in synthetic demo clip)",
        description="Process every enabled camera and write results as JSON lines on stdout. Without "
        "--config it runs the built-in demo: a synthetic clip the project generates, no camera or broker.",
    )
    run.add_argument("--config", metavar="FILE", help="YAML config (default: the built-in demo config)")
    run.add_argument("--max-frames", type=positive_int, metavar="N", help="stop each camera after N frames")
    run.add_argument("--source", metavar="URI", help="process this one source instead of the configured cameras "
                     "(a file, rtsp://..., /dev/videoN, or 'demo')")
    run.add_argument("--mqtt-url", metavar="URL", help="publish to this broker, overriding the config: "
                     "mqtt://[user[:password]@]host[:port] (mqtts:// for TLS)")
    run.add_argument("--print-events", action="store_true",
                     help="also print each event as a JSON line on stdout when publishing to MQTT")
    run.add_argument("--realtime", action="store_true",
                     help="play file sources at their native frame rate, as a camera would")
    run.set_defaults(handler=cmd_run)

    read = commands.add_parser(
        "read",
        help="read the plates in full images (files or folders)",
        description='One result per image. With --json, one object per line: {"file", "plates": [{"text", '
        '"confidence", "box"}], "ms"}, plates best first; a failed file gives {"file", "error"} and exit code 1.',
    )
    read.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    read.add_argument("--json", action="store_true", help="JSON lines on stdout")
    read.add_argument("--config", metavar="FILE", help="YAML config for models and thresholds")
    read.set_defaults(handler=cmd_read)

    ocr = commands.add_parser(
        "ocr",
        help="read the text of images that already are plate crops",
        description='With --json, one object per line: {"file", "text", "confidence", "ms"}; a failed file '
        'gives {"file", "error"} and exit code 1.',
    )
    ocr.add_argument("paths", nargs="+", metavar="PATH", help="plate crop images or folders")
    ocr.add_argument("--json", action="store_true", help="JSON lines on stdout")
    ocr.add_argument("--config", metavar="FILE", help="YAML config for the OCR model")
    ocr.add_argument("--explain", metavar="OUTDIR", help="save each crop's attention map per character as a PNG")
    ocr.set_defaults(handler=cmd_ocr)

    train_ocr = commands.add_parser(
        "train-ocr",
        help="train the attention OCR (real crops + synthetic plates) and export engines/ocr.onnx",
        description="Train on the train splits of the shared real crop sets plus synthetic plates, select on "
        "the fixed validation splits, export ONNX and write its model card. Time-boxed and resumable; needs "
        "the [train] extra.",
    )
    train_ocr.add_argument("--config", metavar="FILE", help="training YAML (default: the built-in recipe)")
    train_ocr.add_argument("--minutes", type=float, help="time budget (overrides the config)")
    train_ocr.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train_ocr.add_argument("--init-weights", metavar="MODEL",
                           help="start from an earlier model: an ONNX exported by train-ocr (e.g. engines/ocr.onnx) "
                                "or a best.pt/last.pt checkpoint (a new schedule; see --lr)")
    train_ocr.add_argument("--lr", type=positive_float, help="peak learning rate (overrides the config)")
    train_ocr.add_argument("--encoder-lr-scale", type=number_between(0.01, 1.0), metavar="F",
                           help="learning-rate factor for the encoder (0.01-1; overrides the config), e.g. 0.3 "
                                "while a new decoder learns on a trained encoder")
    train_ocr.add_argument("--decoder", choices=("autoregressive", "parallel"),
                           help="decoder kind (overrides the config's model.decoder); --init-weights may be a "
                                "model with the other kind (its encoder and decoder layers carry over)")
    train_ocr.add_argument("--teacher", metavar="MODEL",
                           help="distil from this trained OCR (an ONNX exported by train-ocr, e.g. engines/ocr.onnx; "
                                "overrides the config's teacher): the model also learns its per-character "
                                "distributions on every training batch")
    train_ocr.add_argument("--seed", type=int, metavar="N",
                           help="random seed (overrides the config's, default 0); it also picks the synthetic plate "
                                "pool, so a continuation with a new seed trains on plates it has not seen")
    train_ocr.add_argument("--output", metavar="ONNX", help="where to write the model (default engines/ocr.onnx)")
    train_ocr.add_argument("--max-steps", type=positive_int, metavar="N", help="stop after N steps (smoke runs)")
    train_ocr.add_argument("--export-only", action="store_true",
                           help="export the last run's best checkpoint and rewrite the model card, without training")
    train_ocr.add_argument("--export-last", action="store_true",
                           help="like --export-only, but the run's final weights rather than its best validated ones "
                                "(to score a continuation whose validation never beat its start)")
    train_ocr.set_defaults(handler=cmd_train_ocr)

    loro = commands.add_parser(
        "loro-ocr",
        help="leave-one-region-out table of the OCR: train without each real set, score on it",
        description="Train the OCR from scratch once on all real sets and once without each of them (the same "
        "recipe and budget each, synthetic plates always in), then score every model on every set's fixed "
        "validation split and the held-out test set: how well it reads a region it never saw real crops of. "
        "Markdown table on stdout. Needs the [train] extra; takes (sets + 1) x the budget.",
    )
    loro.add_argument("--config", metavar="FILE", help="training YAML (default: the built-in recipe)")
    loro.add_argument("--minutes", type=positive_float, default=20.0, help="budget of each run (default 20)")
    loro.add_argument("--leave-out", metavar="SET,SET", type=lambda v: [n.strip() for n in v.split(",") if n.strip()],
                      help="the sets to leave out one at a time (default: each real training set)")
    loro.add_argument("--no-reference", action="store_true",
                      help="skip the run on all sets (re-measure left-out sets against an earlier reference row)")
    loro.add_argument("--out", metavar="DIR", help="models and loro.json (default <cache>/ocr-loro)")
    loro.add_argument("--max-steps", type=positive_int, metavar="N", help="stop each run after N steps (smoke runs)")
    loro.add_argument("--json", metavar="FILE", help="also write the runs as JSON to FILE")
    loro.set_defaults(handler=cmd_loro_ocr)

    eval_ocr = commands.add_parser(
        "eval-ocr",
        help="exact match and character error rate of the OCR per labelled set",
        description="Score the OCR model on label CSVs (file,text[,box] or the tutorial format) and/or the "
        "shared sets (--shared: validation splits, and the held-out test set), through the runtime path.",
    )
    eval_ocr.add_argument("labels", nargs="*", metavar="LABELS.csv", help="label CSV files")
    eval_ocr.add_argument("--shared", action="store_true", help="the shared sets' validation splits and test set")
    eval_ocr.add_argument("--train-splits", action="store_true",
                          help="with --shared: also each training set's train split (the crops the model trained "
                          "on; the gap to the validation split is how much it fits only what it has seen)")
    eval_ocr.add_argument("--published-labels", action="store_true",
                          help="with --shared: score against the sets' labels exactly as published, without the "
                          "project's corrections of labels the images contradict (anpr_edge/train/"
                          "label_corrections.csv)")
    eval_ocr.add_argument("--model", metavar="ONNX", help="OCR model (default: from --config or the bundled one)")
    eval_ocr.add_argument("--config", metavar="FILE", help="YAML config (crop padding, model path)")
    eval_ocr.add_argument("--failures", metavar="DIR", help="write each misread crop to DIR/<set>/")
    eval_ocr.add_argument("--baseline", choices=["tesseract"], help="also score a baseline OCR on the same crops")
    eval_ocr.add_argument("--formats", metavar="F1,F2", type=_format_list,
                          help="plate formats of the label CSVs' region, for the 'exact, region formats' column "
                          "(the shared sets use their region's)")
    eval_ocr.add_argument("--image-margin", type=number_between(0.0, 0.5), default=0.0, metavar="F",
                          help="read crop images (sets without boxes) with F of their size added per side, edge "
                               "pixels repeated, as a detector box with padding would cut them (default 0: fitted "
                               "whole, as `anpr-edge ocr` reads them)")
    eval_ocr.add_argument("--json", action="store_true", help="JSON lines per set instead of a table")
    eval_ocr.set_defaults(handler=cmd_eval_ocr)

    train_det = commands.add_parser(
        "train-detector",
        help="train the YOLO plate detector (ultralytics, offline) and export engines/plate_det.onnx",
        description="Prepare (or reuse) the detector dataset, train an ultralytics model from its yaml within a "
        "time budget (the schedule fits the budget), export ONNX. Needs the [train] extra; makes no network call.",
    )
    train_det.add_argument("--minutes", type=float, default=95.0, help="time budget (default 95)")
    train_det.add_argument("--model", default="yolo11n.yaml", help="ultralytics model yaml (default yolo11n.yaml)")
    train_det.add_argument("--imgsz", type=positive_int, default=320, help="training image size (default 320)")
    train_det.add_argument("--batch", type=positive_int, default=32, help="batch size (default 32)")
    train_det.add_argument("--epochs", type=positive_int, default=300, help="upper bound on epochs (default 300)")
    train_det.add_argument("--threads", type=positive_int, default=2, help="PyTorch CPU threads (default 2)")
    train_det.add_argument("--optimizer", default="SGD", choices=["SGD", "AdamW", "MuSGD", "auto"],
                           help="ultralytics optimizer (default SGD: 'auto' picks MuSGD for long runs, about half "
                           "as fast on a CPU)")
    train_det.add_argument("--multi-scale", type=number_between(0.0, 0.9), default=0.0, metavar="F",
                           help="draw each batch at a random size within imgsz * (1 +- F) (default 0: all at imgsz)")
    train_det.add_argument("--synthetic", type=int, default=2000, help="synthetic composites in the data (default 2000)")
    train_det.add_argument("--data", metavar="DATA.yaml", help="a prepared dataset (default: prepare/reuse the cached one)")
    train_det.add_argument("--run-dir", metavar="DIR", help="run folder (default <cache>/det-train/<model>-<imgsz>)")
    train_det.add_argument("--init-weights", metavar="PT", help="start from these weights (a previous run's best.pt)")
    train_det.add_argument("--resume", metavar="LAST.pt", help="resume an interrupted run from its last.pt")
    train_det.add_argument("--output", default="engines/plate_det.onnx", metavar="ONNX", help="exported model path")
    train_det.add_argument("--export-only", action="store_true", help="export the run's best.pt without training")
    train_det.add_argument("--save-weights", metavar="PT",
                           help="also save the best weights (weights only, with their total training) for a later "
                           "session's --init-weights, e.g. engines/resume/plate_det-yolo11n-320.pt")
    train_det.set_defaults(handler=cmd_train_detector)

    eval_read = commands.add_parser(
        "eval-read",
        help="detector recall/precision and end-to-end exact match of `read` on labelled full images",
        description="Score detector + crop + OCR on label CSVs of full images with boxes (file,text,xmin,ymin,xmax,"
        "ymax or the tutorials' files,text,xmin,xmax,ymin,ymax; text optional) and/or the shared scene sets' fixed "
        "splits (--shared): recall and precision at IoU 0.5, recall per plate width, FP per image, exact match, "
        "median and p95 ms per image.",
    )
    eval_read.add_argument("labels", nargs="*", metavar="LABELS.csv", help="label CSV files")
    eval_read.add_argument("--shared", action="store_true", help="the shared scene sets' val splits and the test set")
    eval_read.add_argument("--config", metavar="FILE", help="YAML config (models, thresholds, crop)")
    eval_read.add_argument("--detector", metavar="ONNX", help="detector model (default: config or bundled)")
    eval_read.add_argument("--input-size", type=positive_int, metavar="PX", help="detector input size")
    eval_read.add_argument("--confidence", type=float, metavar="P", help="detector score threshold")
    eval_read.add_argument("--threads", type=positive_int, default=1, help="inference threads (default 1)")
    eval_read.add_argument("--formats", metavar="F1,F2", type=_format_list,
                           help="plate formats of the label CSVs' region, for the 'exact, region formats' column "
                           "(the shared sets use their region's)")
    eval_read.add_argument("--errors", metavar="DIR", help="write each false positive and missed plate, with its "
                           "surroundings and the labelled boxes drawn, to DIR/<set>/ for inspection")
    eval_read.add_argument("--zoom-out", type=int, choices=(2, 3, 4), metavar="N",
                           help="score the photos as seen from N times further (2-4): each at its own resolution "
                           "in one cell of an NxN mosaic of the set's other photos (plates inpainted, blurred), so "
                           "plates are N times smaller against the frame (mosaics cached)")
    eval_read.add_argument("--json", action="store_true", help="JSON lines per set instead of a table")
    eval_read.set_defaults(handler=cmd_eval_read)

    from anpr_edge.bench.accuracy import register as register_eval
    from anpr_edge.bench.angles import register as register_bench_angles
    from anpr_edge.bench.calibration_fit import register as register_fit_calibration
    from anpr_edge.bench.clip_reads import register as register_bench_clip_reads
    from anpr_edge.bench.cuts import register as register_bench_cuts
    from anpr_edge.bench.cli import register as register_bench_passages
    from anpr_edge.bench.mqtt_bench import register as register_bench_mqtt
    from anpr_edge.bench.ocr_int8 import register as register_quantize_ocr
    from anpr_edge.bench.ocr_nets import register as register_bench_ocr_nets
    from anpr_edge.bench.roi import register as register_bench_roi
    from anpr_edge.bench.service_bench import register as register_bench_service
    from anpr_edge.bench.sizes import register as register_bench_sizes
    from anpr_edge.bench.stage_bench import register as register_bench_stages
    from anpr_edge.bench.vote_views import register as register_bench_views
    from anpr_edge.mqtt_cli import register as register_mqtt
    from anpr_edge.probe import add_parser as register_probe
    from anpr_edge.train.dataset_cli import register as register_dataset
    from anpr_edge.trt_build import register as register_tensorrt

    register_dataset(commands)
    register_mqtt(commands)
    register_probe(commands)
    register_bench_service(commands)
    register_bench_stages(commands)  # bench
    register_eval(commands)  # eval
    register_bench_sizes(commands)  # bench-sizes
    register_bench_ocr_nets(commands)  # bench-ocr-nets
    register_bench_angles(commands)  # bench-angles
    register_quantize_ocr(commands)  # quantize-ocr
    register_bench_views(commands)  # bench-views
    register_bench_cuts(commands)  # bench-cuts
    register_bench_clip_reads(commands)  # bench-clip-reads
    register_bench_roi(commands)  # bench-roi
    register_tensorrt(commands)  # build-engines, calibrate
    register_bench_passages(commands)
    register_fit_calibration(commands)  # fit-calibration
    register_bench_mqtt(commands)

    check = commands.add_parser(
        "check-config",
        help="validate a config file and probe its sources and models",
        description="Validate every key, open each enabled camera's source and read one frame (bounded by its "
        "timeouts), and load the models. Exit code 0 when usable, 2 with the problem otherwise.",
    )
    check.add_argument("file", metavar="FILE", help="YAML config file")
    check.add_argument("--no-probe", dest="probe", action="store_false", help="do not open the camera sources")
    check.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    check.set_defaults(handler=cmd_check_config)

    formats = commands.add_parser(
        "formats",
        help="list the plate formats, or say which of them plate texts fit",
        description="Without TEXT: every known plate format (built in, and a config's custom ones) with its "
        "patterns; with --config, its formats.regions in their order. With TEXTs (only letters and digits count): "
        "the formats each fits as it is, the first of them being the one events report "
        "(plate_format). A way to choose formats.regions for a site, or to test a custom pattern.",
    )
    formats.add_argument("texts", nargs="*", metavar="TEXT", help="plate texts, e.g. AB-123-CD (only letters and digits count)")
    formats.add_argument("--config", metavar="FILE", help="YAML config: its formats.regions and custom formats")
    formats.add_argument("--json", action="store_true", help="one JSON object per format or text")
    formats.set_defaults(handler=cmd_formats)

    demo = commands.add_parser(
        "demo-clip",
        help="write the synthetic demo clip (and its ground-truth JSON) to a file",
        description="Render the built-in demo clip: synthetic cars with known plates driving through a road scene.",
    )
    demo.add_argument("output", metavar="OUT.mp4", help="output video path (a .json ground truth is written beside it)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7, the built-in clip)")
    demo.set_defaults(handler=cmd_demo_clip)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command's handler: its exit status, or one line on stderr for a user mistake."""
    setup_logging("DEBUG" if args.verbose else "INFO")
    try:
        return int(args.handler(args))
    except AnprError as error:
        # One clear line (or a short list) naming the problem; no traceback for a user mistake.
        sys.stderr.write(f"anpr-edge: error: {error}\n")
        return error.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `anpr-edge read --json dir | head`: the reader went away, which is not an error of ours.
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
