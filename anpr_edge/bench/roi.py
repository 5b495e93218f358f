"""``anpr-edge bench-roi``: what the detector's ROI window (``cameras[].detect_in_roi``) buys on wide views.

There is no labelled wide-view footage in the shared data, so wide views are made from the real labelled
photos: each photo of a set is put, at its own resolution, into one cell of a ``grid`` x ``grid`` mosaic
whose other cells hold other photos of the same set (resized to the same cell; their plates are the other
lanes). The plate keeps its pixels while the frame is ``grid`` times wider and taller: the detector, which
letterboxes the whole frame to its input size, sees the plate ``grid`` times smaller, as a camera with a
wider view or a higher resolution would show it. The camera's ROI is the photo's cell.

Both ways the daemon can look are scored on the same mosaics, with the same scoring as ``eval-read``
(``read_eval.evaluate_read``: recall and precision at IoU 0.5 against the photo's labelled plates,
end-to-end exact match where the photos have text): ``frame``, the detector on the whole mosaic and the
detections outside the ROI dropped (``detect_in_roi: false``), and ``window``, the detector on the ROI's
window (``regions.roi_window``; the default). Per mode: detector ms per frame (median). Mosaics are
written once as JPEG (quality 95) under the cache; the cell is chosen per photo from a fixed seed.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from anpr_edge import paths
from anpr_edge.argtypes import non_negative_int, positive_int
from anpr_edge.bench.accuracy import eval_config, spread
from anpr_edge.bench.sizes import percent_cell
from anpr_edge.bench.stage_bench import (
    backend_name,
    machine_info,
    median,
    now_utc,
    rounded,
    write_json,
)
from anpr_edge.regions import detect_in_windows, inside_roi, roi_window

if TYPE_CHECKING:
    from anpr_edge.config import AppConfig
    from anpr_edge.read_eval import LabeledScene, ReadEvalReport
    from anpr_edge.values import PlateRead

log = logging.getLogger("anpr_edge.bench")

MOSAIC_VERSION = 2  # 2: zoomed-out views blur the other photos
OTHERS_BLUR = 0.02  # Gaussian sigma of the other photos in zoomed-out views, as a fraction of the cell width
MODES = ("frame", "window")
Roi = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class WideView:
    """A mosaic frame on disk, the labelled plates of its target photo (in mosaic pixels) and the ROI."""

    scene: LabeledScene
    roi: Roi


def _cell_roi(row: int, col: int, grid: int) -> Roi:
    x1, y1, x2, y2 = col / grid, row / grid, (col + 1) / grid, (row + 1) / grid
    return ((x1, y1), (x2, y1), (x2, y2), (x1, y2))


def make_wide_views(scenes: Sequence[LabeledScene], grid: int, folder: Path, *, seed: int = 0,
                    mask_others: bool = False) -> list[WideView]:
    """One mosaic per scene (written to ``folder`` unless already there): the scene at its own resolution
    in a random cell, the next scenes of the list, resized to its size, in the others. ``mask_others``:
    the other photos' labelled plates are inpainted away (``det_data.mask_plates``) and the rest blurred
    (sets leave background plates unlabelled), so the mosaic is one car's photo taken from further away
    rather than several lanes: what is found and read there is the photo's own."""
    from anpr_edge.images import load_image
    from anpr_edge.read_eval import LabeledScene
    from anpr_edge.train.det_data import mask_plates

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    views = []
    for n, scene in enumerate(scenes):
        cell = int(rng.integers(grid * grid))
        row, col = divmod(cell, grid)
        path = folder / f"{n:04d}-{scene.path.stem}.jpg"
        image = None
        if not path.is_file():
            image = load_image(scene.path)
            height, width = image.shape[:2]
            mosaic = np.empty((height * grid, width * grid, 3), np.uint8)
            others = [s for k in range(1, len(scenes)) if (s := scenes[(n + k) % len(scenes)]) is not scene]
            for k in range(grid * grid):
                r, c = divmod(k, grid)
                if k == cell:
                    tile = image
                else:
                    other = others[(k - (k > cell)) % len(others)]
                    tile = load_image(other.path)
                    if mask_others and other.boxes:
                        tile = mask_plates(tile, other.boxes, np.random.default_rng(seed + n))
                    tile = cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)
                    if mask_others:  # and the plates nobody labelled (parked cars behind) blurred beyond reading
                        tile = cv2.GaussianBlur(tile, (0, 0), OTHERS_BLUR * width)
                mosaic[r * height:(r + 1) * height, c * width:(c + 1) * width] = tile
            cv2.imwrite(str(path), mosaic, [cv2.IMWRITE_JPEG_QUALITY, 95])
        height, width = (image.shape[:2] if image is not None else _cell_size(path, grid))
        dx, dy = col * width, row * height
        boxes = tuple((x1 + dx, y1 + dy, x2 + dx, y2 + dy) for x1, y1, x2, y2 in scene.boxes)
        views.append(WideView(LabeledScene(path, boxes, scene.texts), _cell_roi(row, col, grid)))
    return views


def cached_wide_views(scenes: Sequence[LabeledScene], grid: int, *, mask_others: bool = False) -> list[WideView]:
    """``make_wide_views`` into the cache, one folder per list of scenes, grid and kind of mosaic."""
    key = hashlib.sha1("|".join(str(s.path) for s in scenes).encode()).hexdigest()[:10]
    kind = "zoom-out" if mask_others else "roi-mosaics"
    folder = paths.cache_dir() / f"{kind}-v{MOSAIC_VERSION}-g{grid}-{key}"
    return make_wide_views(scenes, grid, folder, mask_others=mask_others)


def _cell_size(path: Path, grid: int) -> tuple[int, int]:
    from anpr_edge.train.datasets import image_size

    width, height = image_size(path)
    return height // grid, width // grid


@dataclass
class ModeResult:
    grid: int
    mode: str
    tiles: int = 1
    detector_ms: list[float] = field(default_factory=list)
    reports: list[ReadEvalReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        sets = {}
        for report in self.reports:
            d = report.as_dict()
            sets[report.name] = {key: d[key] for key in ("images", "plates", "recall", "precision", "exact_match",
                                                          "text_images", "recall_by_width")}
        plates = sum(r.plates for r in self.reports)
        return {"grid": self.grid, "mode": self.mode, "tiles": self.tiles, "detector_ms_median": rounded(median(self.detector_ms), 2),
                "recall_all": rounded(sum(r.found for r in self.reports) / plates, 6) if plates else None,
                "sets": sets}


def score_modes(config: AppConfig, grid: int, sets: Sequence[tuple[str, Sequence[WideView]]], *,
                progress: bool = True, tiles: int = 1) -> list[ModeResult]:
    """Both modes (and with ``tiles`` > 1 the whole frame in tiles) on the same wide views of every set."""
    from anpr_edge.pipeline import PlateReader, best_first
    from anpr_edge.read_eval import evaluate_read

    reader = PlateReader.from_config(config, photos=False)
    results = []
    for mode in MODES + (("tiles",) if tiles > 1 else ()):
        result = ModeResult(grid, mode, tiles if mode == "tiles" else 1)
        for name, views in sets:
            rois = {view.scene.path: view.roi for view in views}
            current: list[Roi] = []

            def read(image: np.ndarray, mode: str = mode, result: ModeResult = result,
                     current: list[Roi] = current) -> list[PlateRead]:
                roi = current[-1]
                height, width = image.shape[:2]
                window = roi_window(roi, image.shape) if mode == "window" else (0, 0, width, height)
                began = time.perf_counter()
                (found,) = detect_in_windows(reader.detector, [image], [window], [tiles if mode == "tiles" else 1])
                result.detector_ms.append((time.perf_counter() - began) * 1000.0)
                if len(found):  # the daemon's camera filter: only plates centred in the ROI count
                    found = found[inside_roi(found.xyxy, roi, image.shape)]
                return best_first(reader.read_detections(image, found))

            result.reports.append(evaluate_read(
                f"{name}, grid {grid}", [view.scene for view in views], read, progress=progress,
                min_confidence=config.models.ocr.min_confidence,
                on_scene=lambda scene, rois=rois, current=current: current.append(rois[scene.path])))
        log.info("grid %d, %s: recall %s, detector %.1f ms per frame (median)", grid, mode,
                 result.as_dict()["recall_all"], median(result.detector_ms))
        results.append(result)
    return results


def format_table(results: Sequence[ModeResult]) -> str:
    rows = [r.as_dict() for r in results]
    names = [n.rsplit(", grid", 1)[0] for n in rows[0]["sets"]] if rows else []
    with_text = [k for k, n in enumerate(names) if any(list(r["sets"].values())[k]["text_images"] for r in rows)]
    head = ["grid", "detector looks at", "detector ms median", "recall (all)", *[f"recall {n}" for n in names],
            *[f"exact {names[k]}" for k in with_text]]
    lines = ["| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        sets = list(r["sets"].values())
        looks = {"frame": "whole frame, ROI filters", "window": "ROI window"}.get(
            r["mode"], f"whole frame + {r['tiles']}x{r['tiles']} tiles, ROI filters")
        cells = [str(r["grid"]), looks, f"{r['detector_ms_median']:.1f}", percent_cell(r["recall_all"]),
                 *[percent_cell(s["recall"]) for s in sets], *[percent_cell(sets[k]["exact_match"]) for k in with_text]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _grids(text: str) -> list[int]:
    try:
        grids = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected grid sizes such as 2,3: {text!r}") from None
    if not grids or any(g < 2 or g > 6 for g in grids):
        raise argparse.ArgumentTypeError(f"grid sizes must be 2 to 6: {text!r}")
    return grids


def cmd_bench_roi(args: argparse.Namespace) -> int:
    from anpr_edge.config import default_config, load_config
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.read_eval import shared_scene_sets
    from anpr_edge.service import model_versions

    config = eval_config(load_config(args.config) if args.config else default_config(), threads=args.threads,
                         input_size=None, backend=None)
    reader = PlateReader.from_config(config, photos=False)  # a missing model is a clear error first
    settings = {"grids": args.grids, "threads": config.inference.threads, "limit": args.limit,
                "backend": backend_name(reader.detector.backend), "detector_px": reader.detector.input_size,
                "detector_confidence": reader.detector.confidence, "models": model_versions(reader)}
    del reader
    scene_sets = [(name, spread(scenes, args.limit)) for name, scenes in shared_scene_sets()]
    results = []
    for grid in args.grids:
        sets = [(name, cached_wide_views(scenes, grid)) for name, scenes in scene_sets]
        results += score_modes(config, grid, sets, progress=not args.no_progress, tiles=args.tiles)
    date, machine = now_utc(), machine_info()
    if args.json != "-":
        m = machine
        sys.stdout.write(
            f"anpr-edge bench-roi ({date}): {settings['backend']}, {settings['threads']} thread(s) per model, detector "
            f"{settings['detector_px']} px, score >= {settings['detector_confidence']}; each photo at its own resolution "
            f"in one cell of a grid x grid mosaic of photos of its set, the ROI its cell.\n"
            f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('usable_cores')} usable), {m.get('os')}, "
            f"Python {m.get('python')}, ONNX Runtime {m.get('onnxruntime')}; load average {m.get('load_average')}.\n\n"
            + format_table(results) + "\n")
        sys.stdout.flush()
    if args.json:
        write_json({"command": "bench-roi", "date": date, "machine": machine, "settings": settings,
                    "results": [r.as_dict() for r in results]}, args.json)
    return 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``bench-roi`` to the main CLI's subparsers object."""
    parser = commands.add_parser(
        "bench-roi",
        help="recall and end-to-end exact match on wide views with and without the detector's ROI window",
        description="Wide views made from the shared scene sets' fixed splits (each photo at its own resolution in "
        "one cell of a GRIDxGRID mosaic of photos, the ROI its cell), read the two ways the daemon can: the "
        "detector on the whole frame (detect_in_roi: false) and on the ROI's window (the default). Markdown "
        "table on stdout.",
    )
    parser.add_argument("--grids", type=_grids, default=[2, 3], metavar="N,N", help="mosaic sizes (default 2,3)")
    parser.add_argument("--tiles", type=int, choices=(2, 3), default=1, metavar="N",
                        help="also the whole frame plus NxN overlapping tiles of it (cameras[].detect_tiles)")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="at most N photos per set, spread evenly")
    parser.add_argument("--threads", type=non_negative_int, default=1, metavar="N", help="threads per model (default 1)")
    parser.add_argument("--config", metavar="FILE", help="YAML config (models, detector size and threshold)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': JSON on "
                        "stdout instead of the table)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    parser.set_defaults(handler=cmd_bench_roi)
