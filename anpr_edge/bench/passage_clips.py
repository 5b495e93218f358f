"""The labelled passage video set: real plate photos driving towards a camera, with ground truth.

Each clip is an empty road (``sprites.road_background``) on which cars appear at the top of the frame and
approach the camera: the plate grows about four times (zoom) and moves down and sideways (shift) over 1-3 s
of visibility, with the motion blur of its on-screen speed during a 1/250 s shutter (``sprites.SHUTTER_S``),
then leaves through the bottom edge. Clips are
written as H.264 (the system ``ffmpeg`` through a pipe, CRF 23-30: real compression artefacts) or, without
ffmpeg, as MPEG-4 part 2 with ``cv2.VideoWriter``.

**Cars are real photos** (``plate_sources``): the full scenes of ``fr-plate-scenes`` (the held-out test set,
never trained on; a window of the photo around the plate is the car) and the *validation* splits
(``datasets.split_of(text) == "val"``) of ``us-nyc-plate-crops``, ``br-plate-crops`` and ``tn-plate-crops``,
each crop pasted into a drawn car rear. No plate the OCR was trained on appears. Crops narrower than
``ClipOptions.min_source_plate_px`` are left out (they would be enlarged into mush).

**Traffic.** Two lanes, one car per lane at a time. Passages follow each other with three kinds of gap
(another car already on the road in the other lane: overlapping in time; a short gap; a gap with the road
empty), every clip having at least one overlap and one empty gap. Every third clip (index 0, 3, ...) is a
*barrier* clip: its first car stops in the right lane for ``idle_s`` seconds (a car waiting at a barrier),
then leaves; its first two cars *return* later (same photo, same car), more than ``return_gap_s`` after
they left, with ordinary traffic in between. Within a clip no two different passages have texts within one
edit of each other, so the event deduplication can only merge what really is the same car.

**Ground truth** (``ClipTruth``, a JSON file next to each clip): per passage the text, source set and
image, kind (``drive`` / ``idle`` / ``return``), the frames the car is on screen, the frames the plate is
fully visible and its box in each of them (``boxes``: exclusive right/bottom edges, frame pixels), and the
frames it is partly out of the frame with the box of its visible part (``partial``). A plate behind a
nearer car has no box that frame.

**Determinism and cache.** Clip ``i`` of seed ``s`` is drawn from ``default_rng([s, i])`` and the set's
fixed permutations, so it does not depend on how many clips are asked for. ``passage_clip_set`` writes clips
once into ``paths.cache_dir() / "passage-clips-v<VERSION>-s<seed>-<options>-<sources>"`` (never into the
repository) and reuses them; a clip is complete when its JSON exists (written last).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from rapidfuzz.distance import Levenshtein
from tqdm import tqdm

from anpr_edge import paths
from anpr_edge.bench.sprites import RoadGeometry, Sprite, car_rear_sprite, place, road_background, scene_sprite
from anpr_edge.errors import ConfigError
from anpr_edge.train.datasets import SHARED_SETS, datasets_root, image_size, load_shared, read_image, split_of

log = logging.getLogger("anpr_edge.bench")

# Bump whenever the clips written for the same seed and options would change.
VERSION = 2
SCENE_SET = "fr-plate-scenes"
CLIP_SETS = (SCENE_SET, "us-nyc-plate-crops", "br-plate-crops", "tn-plate-crops")
# A plate is "fully visible" only at full opacity, inside the frame and clear of nearer cars.
Kind = Literal["drive", "idle", "return"]
Box = tuple[float, float, float, float]
# Positions a clip may draw from in each set's permutation: clip i starts at i * this, so clips use
# different photos until a set is exhausted.
_DRAWS_PER_CLIP = 32


@dataclass(frozen=True)
class PlateSource:
    """A real labelled plate photo: a crop (``box`` None) or a full scene with the plate's box."""

    text: str
    source: str
    path: Path
    box: Box | None = None


@dataclass(frozen=True)
class ClipOptions:
    """How clips are drawn. The defaults are the benchmark's; tests use small, short clips."""

    width: int = 960
    height: int = 540
    fps: float = 25.0
    passages: tuple[int, int] = (5, 7)  # passages in a plain traffic clip (inclusive range)
    drive_s: tuple[float, float] = (1.0, 3.0)  # time from the plate's appearance to its exit
    idle_s: tuple[float, float] = (4.0, 8.0)  # how long the car at the barrier stands still
    # Longer than the default events.dedup_window_s (30 s): a car that comes back after this is a new passage.
    return_gap_s: float = 35.0
    crf: tuple[int, int] = (23, 30)  # H.264 quality range (higher: more compression)
    min_source_plate_px: int = 60
    codec: Literal["auto", "h264", "mp4v"] = "auto"

    def key(self) -> str:
        """A short digest of the options that change the pixels or the truth (the cache folder name)."""
        data = {k: v for k, v in asdict(self).items() if k != "codec"}
        return hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]


# ------------------------------------------------------------------------------------------ sources
def plate_sources(root: Path | None = None, *, min_plate_px: int = 60) -> dict[str, list[PlateSource]]:
    """The usable real photos per set (see the module docstring); sets missing from ``root`` are skipped."""
    root = root or datasets_root()
    pools: dict[str, list[PlateSource]] = {}
    for name in CLIP_SETS:
        shared = SHARED_SETS[name]
        if not shared.labels_path(root).is_file():
            log.warning("passage clips: %s not found under %s; not used", name, root)
            continue
        items = []
        for item in load_shared(name, root=root).items:
            # The pool is the published labels' validation split, so clip sets stay the same across label
            # corrections (comparable with earlier runs); the truth is the corrected text.
            if shared.role == "train" and split_of(item.published_text or item.text) != "val":
                continue  # a plate the OCR trained on
            width = (item.box[2] - item.box[0]) if item.box is not None else image_size(item.path)[0]
            if width >= min_plate_px:
                items.append(PlateSource(item.text, name, item.path, item.box))
        if items:
            pools[name] = items
    if not pools:
        raise ConfigError(f"passage clips: no usable plate photos under {root} (need {', '.join(CLIP_SETS)})")
    return pools


def sources_digest(pools: Mapping[str, Sequence[PlateSource]], root: Path | None = None) -> str:
    """A digest of the photos the clips draw from: other data gives other clips (and cache folders)."""
    digest = hashlib.sha1()
    for name in sorted(pools):
        for s in pools[name]:
            digest.update(f"{name}|{s.text}|{_relative(s.path, root)}|{s.box}\n".encode())
    return digest.hexdigest()


def _relative(path: Path, root: Path | None) -> str:
    try:
        return str(path.relative_to(root)) if root is not None else path.name
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------- motion
@dataclass(frozen=True)
class Segment:
    """A stretch of a car's motion: perspective depth (1 / scale) from ``depth0`` to ``depth1`` over
    ``frames`` frames; ``ease`` out decelerates to a stop, in accelerates from one; ``fade`` makes the car
    vanish over the segment (it has left under the camera)."""

    frames: int
    depth0: float
    depth1: float
    ease: Literal["linear", "out", "in"] = "linear"
    fade: bool = False


@dataclass(frozen=True)
class CarPlan:
    """One passage of one car: what it is, where it drives and when."""

    id: str
    kind: Kind
    source: PlateSource
    sprite_seed: int  # a returning car has its first passage's seed: the same car
    lane: int  # 0 left, 1 right (the barrier lane)
    lateral: float  # pixels at scale 1 from the road's centre line
    drift: float  # lateral change over the whole motion
    car_scale: float  # car width in pixels at scale 1 (its plate is as wide as the photo makes it)
    start_frame: int
    segments: tuple[Segment, ...]
    returns: str | None = None  # id of this car's earlier passage

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments)

    @property
    def end_frame(self) -> int:
        """The first frame without this car."""
        return self.start_frame + self.frames

    @property
    def stop(self) -> tuple[int, int] | None:
        """First and last frame of standing still, for a car that stops."""
        f = self.start_frame
        for seg in self.segments:
            if seg.depth0 == seg.depth1 and not seg.fade:
                return f, f + seg.frames - 1
            f += seg.frames
        return None

    def state(self, frame: int) -> tuple[float, float, float] | None:
        """(scale, lateral, opacity) at ``frame``, or None when the car is not on the road."""
        f = frame - self.start_frame
        if f < 0 or f >= self.frames:
            return None
        for seg in self.segments:
            if f < seg.frames:
                u = f / seg.frames
                eased = {"linear": u, "out": 1 - (1 - u) ** 2, "in": u * u}[seg.ease]
                depth = seg.depth0 + (seg.depth1 - seg.depth0) * eased
                opacity = 1.0 - u if seg.fade else 1.0
                progress = (frame - self.start_frame) / self.frames
                return 1.0 / depth, self.lateral + self.drift * progress, opacity
            f -= seg.frames
        return None  # pragma: no cover - f < self.frames


# Plates are between these fractions of their car's width (sprites.py: drawn cars and scene windows).
_PLATE_SHARE = (0.2, 0.4)


def _entry_scale(geo: RoadGeometry, car_scale: float, top: float) -> float:
    """Scale at which a typical plate (a 4:1 plate of 0.3 car widths) has its top edge ``top`` px down."""
    return (top - geo.horizon) / (geo.span - 0.3 * car_scale / 8.0)


def _exit_scale(geo: RoadGeometry, car_scale: float) -> float:
    """Scale at which even a wide, tall plate (1.6:1) is wholly below the frame."""
    return (geo.height + 2.0 - geo.horizon) / (geo.span - _PLATE_SHARE[1] * car_scale / (2 * 1.6))


def _segments(kind: Kind, rng: np.random.Generator, geo: RoadGeometry, car_scale: float,
              options: ClipOptions) -> tuple[Segment, ...]:
    fps = options.fps
    s0 = _entry_scale(geo, car_scale, float(rng.uniform(0.02, 0.08)) * geo.height)
    s_exit = _exit_scale(geo, car_scale)
    fade = Segment(max(2, round(0.12 * fps)), 1 / s_exit, 1 / (1.3 * s_exit), "linear", fade=True)
    if kind != "idle":
        frames = max(3, round(float(rng.uniform(*options.drive_s)) * fps))
        return Segment(frames, 1 / s0, 1 / s_exit), fade
    s_stop = float(rng.uniform(0.95, 1.1))
    return (
        Segment(max(3, round(float(rng.uniform(1.2, 2.0)) * fps)), 1 / s0, 1 / s_stop, "out"),
        Segment(max(1, round(float(rng.uniform(*options.idle_s)) * fps)), 1 / s_stop, 1 / s_stop),
        Segment(max(3, round(float(rng.uniform(1.2, 2.0)) * fps)), 1 / s_stop, 1 / s_exit, "in"),
        fade,
    )


# --------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class ClipPlan:
    seed: int
    index: int
    options: ClipOptions
    frames: int
    crf: int
    cars: tuple[CarPlan, ...]
    look_seed: int  # background, lighting and noise


class _Draw:
    """Draws photos for one clip: round-robin over the sets, each set in its fixed permuted order, no
    text within one edit of a text already in the clip."""

    def __init__(self, seed: int, index: int, pools: Mapping[str, Sequence[PlateSource]]) -> None:
        self.names = [n for n in CLIP_SETS if n in pools]
        self.pools = pools
        self.order = {n: np.random.default_rng([seed, 1000 + k]).permutation(len(pools[n]))
                      for k, n in enumerate(CLIP_SETS) if n in pools}
        self.position = {n: index * _DRAWS_PER_CLIP for n in self.names}
        self.turn = index % len(self.names)
        self.texts: list[str] = []

    def __call__(self) -> PlateSource:
        for _ in range(len(self.names)):
            name = self.names[self.turn % len(self.names)]
            self.turn += 1
            pool, order = self.pools[name], self.order[name]
            for _ in range(len(pool)):
                candidate = pool[int(order[self.position[name] % len(pool)])]
                self.position[name] += 1
                if all(Levenshtein.distance(candidate.text, t, score_cutoff=1) > 1 for t in self.texts):
                    self.texts.append(candidate.text)
                    return candidate
        raise ConfigError("passage clips: not enough distinct plate texts to fill a clip")


def plan_clip(seed: int, index: int, pools: Mapping[str, Sequence[PlateSource]],
              options: ClipOptions = ClipOptions()) -> ClipPlan:
    """The cars of clip ``index`` (see the module docstring). Pure: reads no image."""
    rng = np.random.default_rng([seed, index])
    geo = RoadGeometry(options.width, options.height)
    fps = options.fps
    draw = _Draw(seed, index, pools)
    cars: list[CarPlan] = []
    lane_free = [0, 0]  # first frame each lane is free again
    barrier = index % 3 == 0

    def add(kind: Kind, mode: str, lane: int | None = None, again: CarPlan | None = None,
            not_before: int = 0) -> CarPlan:
        last = cars[-1] if cars else None
        if last is None:
            start = round(float(rng.uniform(0.4, 1.0)) * fps)
        elif mode == "overlap":  # the other lane, while the last car is still on the road
            start = last.start_frame + round(float(rng.uniform(0.25, 0.6)) * last.frames)
            lane = 1 - last.lane if lane is None else lane
        elif mode == "follow":
            start = last.end_frame + round(float(rng.uniform(0.1, 0.5)) * fps)
        else:  # "empty": the whole road clears first
            start = max(c.end_frame for c in cars) + round(float(rng.uniform(1.5, 3.0)) * fps)
        if lane is None:
            lane = int(np.argmin(lane_free)) if lane_free[0] != lane_free[1] else int(rng.integers(2))
        start = max(start, lane_free[lane] + round(0.3 * fps), not_before)
        # Cars narrower than the lane spacing: two cars side by side never overlap, whatever their depth.
        car_scale = float(rng.uniform(0.58, 0.66)) * options.height
        side = -1.0 if lane == 0 else 1.0
        car = CarPlan(
            id=f"c{index:03d}p{len(cars):02d}",
            kind=kind,
            source=again.source if again else draw(),
            sprite_seed=again.sprite_seed if again else int(rng.integers(2**31)),
            lane=lane,
            lateral=side * geo.lane_offset * float(rng.uniform(0.9, 1.1)),
            drift=side * geo.lane_offset * float(rng.uniform(-0.08, 0.08)),
            car_scale=car_scale,
            start_frame=start,
            segments=_segments(kind, rng, geo, car_scale, options),
            returns=again.id if again else None,
        )
        cars.append(car)
        lane_free[lane] = car.end_frame
        return car

    def filler_mode() -> str:
        return str(rng.choice(["overlap", "follow", "empty"], p=[0.35, 0.35, 0.3]))

    if barrier:
        first = add("idle", "first", lane=1)
        second = add("drive", "overlap", lane=0)
        add("drive", "empty")
        gap = round(options.return_gap_s * fps)
        due = max(first.end_frame, second.end_frame) + gap
        while max(c.end_frame for c in cars) < due - round(1.5 * fps):
            add("drive", filler_mode())
        add("return", "follow", again=first, not_before=first.end_frame + gap)
        add("return", filler_mode(), again=second, not_before=second.end_frame + gap)
    else:
        count = int(rng.integers(options.passages[0], options.passages[1] + 1))
        forced = list(rng.permutation(["overlap", "empty"]))
        add("drive", "first")
        for k in range(1, count):
            add("drive", forced[k - 1] if k <= len(forced) else filler_mode())
    frames = max(c.end_frame for c in cars) + round(float(rng.uniform(0.5, 1.0)) * fps)
    crf = int(rng.integers(options.crf[0], options.crf[1] + 1))
    return ClipPlan(seed, index, options, frames, crf, tuple(cars), int(rng.integers(2**31)))


# ------------------------------------------------------------------------------------------- truth
@dataclass(frozen=True)
class PassageTruth:
    """One passage's ground truth. ``boxes``: frame -> plate box where the plate is fully visible."""

    id: str
    text: str
    source: str
    image: str
    kind: Kind
    lane: int
    start_frame: int  # first frame with the car on screen
    end_frame: int  # last frame with the car on screen
    boxes: Mapping[int, Box]
    returns: str | None = None
    stop: tuple[int, int] | None = None
    partial: Mapping[int, Box] = field(default_factory=dict)  # frame -> visible part, plate partly outside

    def box_at(self, frame: int) -> Box | None:
        """The plate's visible box at ``frame``, whole or partial (None: not visible)."""
        return self.boxes.get(frame) or self.partial.get(frame)

    @property
    def first_frame(self) -> int:
        """First frame with the plate fully visible (-1: never)."""
        return min(self.boxes) if self.boxes else -1

    @property
    def last_frame(self) -> int:
        return max(self.boxes) if self.boxes else -1


@dataclass(frozen=True)
class ClipTruth:
    path: Path
    seed: int
    index: int
    fps: float
    width: int
    height: int
    frames: int
    codec: str
    crf: int
    passages: tuple[PassageTruth, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem


def truth_to_json(truth: ClipTruth) -> dict[str, Any]:
    return {
        "version": VERSION, "seed": truth.seed, "index": truth.index, "fps": truth.fps, "width": truth.width,
        "height": truth.height, "frames": truth.frames, "codec": truth.codec, "crf": truth.crf, **truth.meta,
        "passages": [
            {"id": p.id, "text": p.text, "source": p.source, "image": p.image, "kind": p.kind, "lane": p.lane,
             "returns": p.returns, "stop": list(p.stop) if p.stop else None, "start_frame": p.start_frame,
             "end_frame": p.end_frame, "first_frame": p.first_frame, "last_frame": p.last_frame,
             "boxes": {str(f): [round(v, 1) for v in b] for f, b in sorted(p.boxes.items())},
             "partial": {str(f): [round(v, 1) for v in b] for f, b in sorted(p.partial.items())}}
            for p in truth.passages
        ],
    }


def load_clip_truth(json_path: Path) -> ClipTruth:
    """The ground truth written next to a clip (``clip-NNN.json`` for ``clip-NNN.mp4``)."""
    doc = json.loads(Path(json_path).read_text(encoding="utf-8"))
    if doc.get("version") != VERSION:
        raise ValueError(f"{json_path}: version {doc.get('version')}, expected {VERSION}")
    known = {"version", "seed", "index", "fps", "width", "height", "frames", "codec", "crf", "passages"}
    return ClipTruth(
        path=Path(json_path).with_suffix(".mp4"),
        seed=int(doc["seed"]), index=int(doc["index"]), fps=float(doc["fps"]), width=int(doc["width"]),
        height=int(doc["height"]), frames=int(doc["frames"]), codec=str(doc["codec"]), crf=int(doc["crf"]),
        passages=tuple(
            PassageTruth(
                id=p["id"], text=p["text"], source=p["source"], image=p["image"], kind=p["kind"], lane=int(p["lane"]),
                start_frame=int(p["start_frame"]), end_frame=int(p["end_frame"]),
                boxes={int(f): tuple(float(v) for v in b) for f, b in p["boxes"].items()},  # type: ignore[misc]
                returns=p["returns"], stop=tuple(p["stop"]) if p["stop"] else None,  # type: ignore[arg-type]
                partial={int(f): tuple(float(v) for v in b) for f, b in p["partial"].items()},  # type: ignore[misc]
            )
            for p in doc["passages"]
        ),
        meta={k: v for k, v in doc.items() if k not in known},
    )


# -------------------------------------------------------------------------------------------- render
def _sprite(source: PlateSource, seed: int) -> Sprite:
    rng = np.random.default_rng(seed)
    image = read_image(source.path)
    return scene_sprite(image, source.box, rng) if source.box is not None else car_rear_sprite(image, rng)


def render_frames(plan: ClipPlan, root: Path | None = None) -> tuple[Iterator[np.ndarray], list[PassageTruth]]:
    """The clip's frames (a generator) and its passages' truth, filled in as the frames are drawn (complete
    once the generator is exhausted)."""
    options = plan.options
    geo = RoadGeometry(options.width, options.height)
    look = np.random.default_rng(plan.look_seed)
    background = road_background(geo, look)
    gain, offset = float(look.uniform(0.8, 1.08)), float(look.uniform(-8, 8))
    noise = [np.round(look.normal(0, 2.5, (geo.height, geo.width, 3))).astype(np.int16) for _ in range(4)]
    noise_pairs = [(np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)) for n in noise]
    sprites = {car.id: _sprite(car.source, car.sprite_seed) for car in plan.cars if car.returns is None}
    for car in plan.cars:
        if car.returns is not None:
            sprites[car.id] = sprites[car.returns]
    boxes: dict[str, dict[int, Box]] = {car.id: {} for car in plan.cars}
    partial: dict[str, dict[int, Box]] = {car.id: {} for car in plan.cars}
    seen: dict[str, list[int]] = {car.id: [] for car in plan.cars}
    truth: list[PassageTruth] = []

    def position(car: CarPlan, frame: int) -> tuple[float, float, float, float] | None:
        state = car.state(frame)
        if state is None:
            return None
        scale, lateral, opacity = state
        sprite = sprites[car.id]
        plate_width = car.car_scale * scale * sprite.plate_width / sprite.image.shape[1]
        return geo.x(lateral, scale), geo.row(scale), plate_width, opacity

    def frames() -> Iterator[np.ndarray]:
        for f in range(plan.frames):
            frame = background.copy()
            drawn: list[tuple[CarPlan, Box, Box, float]] = []
            active = [(car, pos) for car in plan.cars if (pos := position(car, f)) is not None]
            # Far cars first (higher up the frame: smaller scale), so nearer ones are drawn over them.
            for car, (cx, cy, width, opacity) in sorted(active, key=lambda item: item[1][1]):
                before = position(car, f - 1)
                motion = (cx - before[0], cy - before[1]) if before is not None else (0.0, 0.0)
                plate, bounds = place(frame, sprites[car.id], (cx, cy), width, motion=motion, fps=options.fps,
                                      opacity=opacity)
                if bounds[2] > 0 and bounds[0] < geo.width and bounds[3] > 0 and bounds[1] < geo.height:
                    seen[car.id].append(f)
                drawn.append((car, plate, bounds, opacity))
            for k, (car, plate, _, opacity) in enumerate(drawn):
                inside = plate[0] >= 0 and plate[1] >= 0 and plate[2] <= geo.width and plate[3] <= geo.height
                hidden = any(_overlap(plate, other) for _, _, other, _ in drawn[k + 1 :])
                if opacity < 1.0 or hidden:
                    continue
                clipped = (max(plate[0], 0.0), max(plate[1], 0.0), min(plate[2], geo.width), min(plate[3], geo.height))
                if inside:
                    boxes[car.id][f] = tuple(round(v, 1) for v in plate)  # type: ignore[assignment]
                elif clipped[2] > clipped[0] + 1 and clipped[3] > clipped[1] + 1:
                    partial[car.id][f] = tuple(round(v, 1) for v in clipped)  # type: ignore[assignment]
            lit = cv2.convertScaleAbs(frame, alpha=gain, beta=offset)
            plus, minus = noise_pairs[f % len(noise_pairs)]
            yield cv2.subtract(cv2.add(lit, plus), minus)
        for car in plan.cars:
            truth.append(PassageTruth(
                id=car.id, text=car.source.text, source=car.source.source, image=_relative(car.source.path, root),
                kind=car.kind, lane=car.lane, start_frame=min(seen[car.id], default=-1),
                end_frame=max(seen[car.id], default=-1), boxes=boxes[car.id], returns=car.returns, stop=car.stop,
                partial=partial[car.id],
            ))

    return frames(), truth


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# -------------------------------------------------------------------------------------------- writing
def _ffmpeg_h264() -> str | None:
    """The ffmpeg binary when it exists and has libx264."""
    binary = shutil.which("ffmpeg")
    if binary is None:
        return None
    try:
        listing = subprocess.run([binary, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return binary if "libx264" in listing.stdout else None


def open_writer(path: Path, width: int, height: int, fps: float, *, crf: int,
                codec: str = "auto") -> tuple[Callable[[np.ndarray], None], Callable[[], None], str]:
    """(write frame, close, codec used): H.264 through ffmpeg where possible, else mp4v through OpenCV."""
    binary = _ffmpeg_h264() if codec in ("auto", "h264") else None
    if binary is None and codec == "h264":
        raise ConfigError("passage clips: H.264 needs the ffmpeg binary with libx264 (apt-get install ffmpeg)")
    if binary is not None:
        command = [
            binary, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
            "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-", "-an", "-c:v", "libx264", "-preset", "veryfast",
            "-crf", str(crf), "-pix_fmt", "yuv420p", "-g", str(max(int(round(2 * fps)), 1)),
            # One thread and bit-exact muxing: the same frames give the same file.
            "-threads", "1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-f", "mp4", str(path),
        ]
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert process.stdin is not None

        def write(frame: np.ndarray) -> None:
            try:
                process.stdin.write(np.ascontiguousarray(frame).tobytes())  # type: ignore[union-attr]
            except BrokenPipeError:
                close()

        def close() -> None:
            if process.returncode is not None:  # closed already (after a broken pipe)
                return
            try:
                process.stdin.close()  # type: ignore[union-attr]
            except BrokenPipeError:
                pass
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            if process.wait() != 0:
                raise RuntimeError(f"ffmpeg failed writing {path}: {error.strip()[-500:]}")

        return write, close, "h264"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open a video writer for {path} (mp4v)")
    return writer.write, writer.release, "mp4v"


def write_clip(plan: ClipPlan, path: Path, root: Path | None = None) -> ClipTruth:
    """Render ``plan`` to ``path`` (mp4) and its truth to ``path.with_suffix(".json")``; JSON written last."""
    path = Path(path)
    options = plan.options
    frames, passages = render_frames(plan, root)
    write, close, codec = open_writer(path, options.width, options.height, options.fps, crf=plan.crf,
                                      codec=options.codec)
    try:
        for frame in frames:
            write(frame)
    finally:
        close()
    truth = ClipTruth(path=path, seed=plan.seed, index=plan.index, fps=options.fps, width=options.width,
                      height=options.height, frames=plan.frames, codec=codec, crf=plan.crf, passages=tuple(passages),
                      meta=json.loads(json.dumps({"options": asdict(options)})))  # as the JSON file reads back
    path.with_suffix(".json").write_text(json.dumps(truth_to_json(truth)) + "\n", encoding="utf-8")
    return truth


def clip_set_dir(seed: int, options: ClipOptions, digest: str, cache: Path | None = None) -> Path:
    return (cache or paths.cache_dir()) / f"passage-clips-v{VERSION}-s{seed}-{options.key()}-{digest[:8]}"


def passage_clip_set(
    count: int,
    *,
    seed: int = 1,
    options: ClipOptions = ClipOptions(),
    cache: Path | None = None,
    root: Path | None = None,
    progress: bool = True,
) -> list[ClipTruth]:
    """Clips 0..count-1 of ``seed``: read from the cache, or rendered into it first."""
    root = root or datasets_root()
    pools = plate_sources(root, min_plate_px=options.min_source_plate_px)
    folder = clip_set_dir(seed, options, sources_digest(pools, root), cache)
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for index in tqdm(range(count), desc="passage clips", unit="clip", file=sys.stderr, disable=not progress,
                      dynamic_ncols=True):
        final = folder / f"clip-{index:03d}.mp4"
        if final.is_file() and final.with_suffix(".json").is_file():
            try:
                clips.append(load_clip_truth(final.with_suffix(".json")))
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pass  # unreadable or stale truth: render again
        # A unique temporary name in the same folder, then renames (clip first, truth last): a concurrent or
        # interrupted run never leaves a truth file without its complete clip.
        fd, tmp_name = tempfile.mkstemp(prefix=f".clip-{index:03d}-", suffix=".mp4", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            truth = write_clip(plan_clip(seed, index, pools, options), tmp, root)
            os.replace(tmp, final)
            os.replace(tmp.with_suffix(".json"), final.with_suffix(".json"))
        finally:
            tmp.unlink(missing_ok=True)
            tmp.with_suffix(".json").unlink(missing_ok=True)
        clips.append(replace(truth, path=final))
    return clips

