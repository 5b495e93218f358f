"""Cars made from real plate photos, and the empty road they drive on, for the passage clips.

A ``Sprite`` is a car seen from behind: a BGR image, its opacity and where the plate is in it. It is built
at the source photo's own resolution (the plate keeps its real pixels) and only ever shrunk or mildly
enlarged when placed in a frame.

- ``scene_sprite``: a window of a real full-scene photo around its labelled plate (the real car rear
  around the real plate), with feathered edges so it blends into the road;
- ``car_rear_sprite``: a real plate crop (the crop sets have no car around the plate) pasted into a
  drawn car rear: body, rear window, tail lights, bumper, tyres, in a random colour;
- ``road_background``: an empty road seen from a pole-mounted camera, lanes converging upwards;
- ``place``: a sprite scaled, motion-blurred and composited into a frame; returns the plate's box there.

Everything is drawn from the ``rng`` given, so the same generator state gives the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[float, float, float, float]

# Plates wider than this (pixels) in a source photo are shrunk first: frames never show plates much wider,
# and smaller sprites keep the per-frame resize cheap.
MAX_SPRITE_PLATE_PX = 260
# Shutter time: 1/250 s, the slowest usually recommended for reading plates of moving cars (plate cameras
# often use 1/1000 s; generic CCTV left on automatic exposure is slower and smears more). Motion blur is the
# on-screen motion during this time.
SHUTTER_S = 1 / 250
MAX_BLUR_PX = 15

_CAR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (40, 40, 170), (185, 185, 180), (110, 60, 20), (225, 228, 230), (45, 45, 48), (60, 110, 40),
    (30, 120, 200), (90, 90, 95), (20, 30, 90), (150, 140, 120),
)


@dataclass(frozen=True, eq=False)
class Sprite:
    """A car rear: ``image`` (H x W x 3 BGR uint8), ``alpha`` (H x W float32, 0..1) and the plate's box in
    sprite pixels (x1, y1, x2, y2, exclusive right/bottom edges)."""

    image: np.ndarray
    alpha: np.ndarray
    plate: Box

    @property
    def plate_width(self) -> float:
        return self.plate[2] - self.plate[0]

    @property
    def plate_center(self) -> tuple[float, float]:
        return (self.plate[0] + self.plate[2]) / 2.0, (self.plate[1] + self.plate[3]) / 2.0


def _shrink(image: np.ndarray, box: Box, max_plate_px: float) -> tuple[np.ndarray, Box]:
    width = box[2] - box[0]
    if width <= max_plate_px:
        return image, box
    f = max_plate_px / width
    h, w = image.shape[:2]
    size = (max(int(round(w * f)), 1), max(int(round(h * f)), 1))
    fx, fy = size[0] / w, size[1] / h
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)


def scene_sprite(image: np.ndarray, box: Box, rng: np.random.Generator) -> Sprite:
    """A window of a full-scene photo around its plate box: about 3 plate widths wide and 2 high, more of
    it above the plate (where the car is), with soft edges. The plate itself stays fully opaque."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    pw = x2 - x1
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    half = pw * float(rng.uniform(1.35, 1.6))
    up, down = pw * float(rng.uniform(1.1, 1.4)), pw * float(rng.uniform(0.55, 0.75))
    left, right = int(max(math.floor(cx - half), 0)), int(min(math.ceil(cx + half), w))
    top, bottom = int(max(math.floor(cy - up), 0)), int(min(math.ceil(cy + down), h))
    window = image[top:bottom, left:right]
    plate = (x1 - left, y1 - top, x2 - left, y2 - top)
    window, plate = _shrink(window, plate, MAX_SPRITE_PLATE_PX)
    wh, ww = window.shape[:2]
    # Feather only the outer margin, never onto the plate: the fade width is bounded by the plate's
    # distance to the window edge.
    margin = min(plate[0], plate[1], ww - plate[2], wh - plate[3])
    fade = max(min(0.12 * min(ww, wh), 0.8 * margin), 1.0)
    alpha = _feathered_rect(ww, wh, fade)
    return Sprite(np.ascontiguousarray(window), alpha, plate)


def _feathered_rect(width: int, height: int, fade: float) -> np.ndarray:
    """1 inside, falling smoothly to 0 over ``fade`` pixels at each edge."""
    xs = np.minimum(np.arange(width) + 0.5, width - np.arange(width) - 0.5) / fade
    ys = np.minimum(np.arange(height) + 0.5, height - np.arange(height) - 0.5) / fade
    ramp = lambda v: np.clip(v, 0.0, 1.0) ** 2 * (3 - 2 * np.clip(v, 0.0, 1.0))  # noqa: E731 - smoothstep
    return (ramp(ys)[:, None] * ramp(xs)[None, :]).astype(np.float32)


def car_rear_sprite(crop: np.ndarray, rng: np.random.Generator) -> Sprite:
    """A drawn car rear carrying the real plate crop ``crop`` (BGR) at its own resolution."""
    crop, _ = _shrink(crop, (0.0, 0.0, float(crop.shape[1]), float(crop.shape[0])), MAX_SPRITE_PLATE_PX)
    ch, cw = crop.shape[:2]
    # Tall crops (US plates, crops with a margin) sit on the same cars as long ones: size the car from the
    # width of a long plate of the crop's height, within reason, so a square crop does not get a narrow car.
    nominal = float(np.clip(max(cw, ch * 2.6), cw, 1.6 * cw))
    car_w = int(round(nominal * rng.uniform(2.6, 3.0)))
    car_h = int(round(car_w * rng.uniform(0.62, 0.72)))
    px = int(round(car_w / 2 - cw / 2 + rng.uniform(-0.02, 0.02) * car_w))
    py = int(round(car_h * 0.68 - ch / 2))
    if py + ch > 0.88 * car_h:  # a tall crop: make the car taller rather than push the plate off the bumper
        car_h = int(math.ceil((py + ch) / 0.88))
    car_w, car_h = max(car_w, cw + 8), max(car_h, ch + 8)

    colour = np.array(_CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))], np.float32)
    colour = np.clip(colour + rng.uniform(-12, 12, 3), 0, 255)
    img = np.zeros((car_h, car_w, 3), np.float32)
    mask = np.zeros((car_h, car_w), np.uint8)
    w, h = car_w, car_h

    def poly(points: list[tuple[float, float]]) -> np.ndarray:
        return np.round(np.array(points) * [w, h] * 16).astype(np.int32)

    def fill(points: list[tuple[float, float]], value: np.ndarray | tuple[float, ...]) -> None:
        cv2.fillPoly(img, [poly(points)], tuple(float(v) for v in value), cv2.LINE_AA, shift=4)

    body = [(0.0, 0.3), (1.0, 0.3), (1.0, 0.93), (0.0, 0.93)]
    cabin = [(0.17, 0.0), (0.83, 0.0), (0.95, 0.32), (0.05, 0.32)]
    tyres = [[(0.04, 0.86), (0.2, 0.86), (0.2, 1.0), (0.04, 1.0)], [(0.8, 0.86), (0.96, 0.86), (0.96, 1.0), (0.8, 1.0)]]
    for shape in (body, cabin, *tyres):
        cv2.fillPoly(mask, [poly(shape)], 255, cv2.LINE_AA, shift=4)
    for tyre in tyres:
        fill(tyre, (22, 22, 24))
    fill(body, colour)
    fill(cabin, colour * 1.08)
    fill([(0.22, 0.04), (0.78, 0.04), (0.88, 0.29), (0.12, 0.29)], (55, 50, 48))  # rear window
    fill([(0.22, 0.04), (0.4, 0.04), (0.3, 0.29), (0.12, 0.29)], (85, 80, 78))  # sky glare on it
    lights = rng.uniform(0.16, 0.22)
    fill([(0.02, 0.36), (lights, 0.36), (lights, 0.5), (0.02, 0.5)], (30, 30, 175))
    fill([(1 - lights, 0.36), (0.98, 0.36), (0.98, 0.5), (1 - lights, 0.5)], (30, 30, 175))
    fill([(0.0, 0.82), (1.0, 0.82), (1.0, 0.93), (0.0, 0.93)], colour * 0.55)  # bumper
    # The plate recess, a little darker than the paint around the plate.
    rx1, ry1 = (px - 0.06 * cw) / w, (py - 0.1 * ch) / h
    rx2, ry2 = (px + 1.06 * cw) / w, (py + 1.1 * ch) / h
    fill([(rx1, ry1), (rx2, ry1), (rx2, ry2), (rx1, ry2)], colour * 0.7)

    # Light from above, and some texture so the paint is not a flat colour.
    shade = np.linspace(1.1, 0.85, h, dtype=np.float32)[:, None, None]
    coarse = rng.normal(0, 1, (h // 24 + 2, w // 24 + 2)).astype(np.float32)
    texture = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)[..., None] * 5.0
    img = img * shade + texture
    img[py : py + ch, px : px + cw] = crop
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 0.8)
    alpha[py : py + ch, px : px + cw] = 1.0
    image = np.clip(img, 0, 255).astype(np.uint8)
    return Sprite(image, alpha, (float(px), float(py), float(px + cw), float(py + ch)))


# ------------------------------------------------------------------------------------------------ road
@dataclass(frozen=True)
class RoadGeometry:
    """A camera on a pole looking down a two-lane road towards the horizon above the frame.

    A point at perspective ``scale`` s (1 at mid-frame, growing as a car nears) is drawn at row
    ``horizon + span * s`` and at ``width / 2 + lateral * s``; ``lateral`` and all lengths are in pixels at
    scale 1. The constants are fractions of the frame height so that any frame size gives the same scene.
    """

    width: int
    height: int

    @property
    def horizon(self) -> float:
        return -0.28 * self.height

    @property
    def span(self) -> float:
        return 0.83 * self.height

    @property
    def lane_offset(self) -> float:
        return 0.4 * self.height

    def row(self, scale: float) -> float:
        return self.horizon + self.span * scale

    def scale_at(self, row: float) -> float:
        return (row - self.horizon) / self.span

    def x(self, lateral: float, scale: float) -> float:
        return self.width / 2.0 + lateral * scale


def road_background(geo: RoadGeometry, rng: np.random.Generator) -> np.ndarray:
    """The empty road: asphalt, lane markings, verges, texture and a lighting gradient (BGR uint8)."""
    w, h = geo.width, geo.height
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (86, 88, 91)

    def band(lat_a: float, lat_b: float, colour: tuple[int, int, int]) -> None:
        s0, s1 = geo.scale_at(0.0), geo.scale_at(float(h))
        pts = np.array([[geo.x(lat_a, s0), 0], [geo.x(lat_b, s0), 0], [geo.x(lat_b, s1), h], [geo.x(lat_a, s1), h]])
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)

    edge = 2.2 * geo.lane_offset
    band(-10 * edge, -edge - 0.05 * h, (60, 105, 75))  # verge
    band(edge + 0.05 * h, 10 * edge, (150, 152, 150))  # pavement
    band(-edge - 0.05 * h, -edge, (170, 172, 172))
    band(edge, edge + 0.05 * h, (170, 172, 172))
    for lat in (-edge * 0.92, edge * 0.92):
        band(lat - 0.012 * h, lat + 0.012 * h, (210, 212, 214))
    # Dashed centre line: dashes at equal steps of depth (1 / scale), so they shrink towards the horizon.
    depth = 1.0 / geo.scale_at(0.0) + float(rng.uniform(0, 0.3))
    while depth > 1.0 / geo.scale_at(float(h)) - 0.3:
        ya, yb = geo.row(1.0 / depth), geo.row(1.0 / max(depth - 0.12, 1e-3))
        half = 0.012 * h
        pts = np.array([[geo.x(-half, 1 / depth), ya], [geo.x(half, 1 / depth), ya],
                        [geo.x(half, 1 / max(depth - 0.12, 1e-3)), yb], [geo.x(-half, 1 / max(depth - 0.12, 1e-3)), yb]])
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], (205, 207, 209), cv2.LINE_AA, shift=4)
        depth -= 0.3
    coarse = rng.normal(0, 1, (h // 30 + 2, w // 30 + 2)).astype(np.float32)
    patches = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.7)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 0.9 + 0.1 * (xx / w) + 0.08 * (1 - yy / h)
    shaded = (img.astype(np.float32) + (patches * 6 + grain * 6)[..., None]) * light[..., None]
    return np.clip(shaded, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ placing
def motion_kernel(dx: float, dy: float) -> np.ndarray | None:
    """A line kernel for a motion of (dx, dy) pixels during the exposure; None when under 1.5 px."""
    length = min(math.hypot(dx, dy), MAX_BLUR_PX)
    if length < 1.5:
        return None
    size = int(math.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    ux, uy = dx / math.hypot(dx, dy), dy / math.hypot(dx, dy)
    half = (length - 1) / 2.0
    p0 = (int(round((c - ux * half) * 16)), int(round((c - uy * half) * 16)))
    p1 = (int(round((c + ux * half) * 16)), int(round((c + uy * half) * 16)))
    cv2.line(kernel, p0, p1, 1.0, 1, cv2.LINE_AA, shift=4)
    total = float(kernel.sum())
    return kernel / total if total > 0 else None


def place(
    frame: np.ndarray,
    sprite: Sprite,
    plate_center: tuple[float, float],
    plate_width: float,
    *,
    motion: tuple[float, float] = (0.0, 0.0),
    fps: float = 25.0,
    opacity: float = 1.0,
) -> tuple[Box, Box]:
    """Composite ``sprite`` into ``frame`` (in place) so its plate is ``plate_width`` px wide, centred at
    ``plate_center``; blur it along ``motion`` (pixels per frame, at ``fps``) for a ``SHUTTER_S`` exposure.
    Returns (plate box, sprite box) in frame pixels, unclipped (they may reach outside the frame)."""
    fh, fw = frame.shape[:2]
    f = plate_width / sprite.plate_width
    sh, sw = sprite.image.shape[:2]
    size = (max(int(round(sw * f)), 1), max(int(round(sh * f)), 1))
    fx, fy = size[0] / sw, size[1] / sh  # the scale actually applied, per axis
    pcx, pcy = sprite.plate_center
    ox = int(round(plate_center[0] - pcx * fx))
    oy = int(round(plate_center[1] - pcy * fy))
    plate = (ox + sprite.plate[0] * fx, oy + sprite.plate[1] * fy, ox + sprite.plate[2] * fx, oy + sprite.plate[3] * fy)
    bounds = (float(ox), float(oy), float(ox + size[0]), float(oy + size[1]))
    x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + size[0], fw), min(oy + size[1], fh)
    if x2 <= x1 or y2 <= y1 or opacity <= 0:
        return plate, bounds
    interpolation = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    image = cv2.resize(sprite.image, size, interpolation=interpolation)
    alpha = cv2.resize(sprite.alpha, size, interpolation=interpolation)
    exposure = SHUTTER_S * fps  # the share of a frame interval the shutter is open
    kernel = motion_kernel(motion[0] * exposure, motion[1] * exposure)
    if kernel is not None:
        # Blur colour pre-multiplied by opacity, so the car's edge smears into the road, not into black.
        premultiplied = cv2.filter2D(image.astype(np.float32) * alpha[..., None], -1, kernel, borderType=cv2.BORDER_CONSTANT)
        alpha = cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        image_f = premultiplied / np.maximum(alpha, 1e-6)[..., None]
    else:
        image_f = image.astype(np.float32)
    a = (alpha * opacity)[y1 - oy : y2 - oy, x1 - ox : x2 - ox, None]
    src = image_f[y1 - oy : y2 - oy, x1 - ox : x2 - ox]
    roi = frame[y1:y2, x1:x2]
    roi[:] = np.clip(roi * (1.0 - a) + src * a, 0, 255).astype(np.uint8)
    return plate, bounds
