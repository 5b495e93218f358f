"""The built-in demo clip: a synthetic road scene with cars carrying known number plates.

The project may not ship real footage, yet ``anpr-edge run`` should do something visible out of the box
and the end-to-end tests need a video whose plates, texts and positions are known exactly. So the clip is
drawn here from OpenCV primitives only (Hershey fonts, polygons, a perspective warp): a camera above a
two-lane road, cars approaching one after another, each with a plate of a different style. Everything
derives from one seed, so the same seed writes a byte-identical mp4, and a JSON sidecar next to the clip
holds the ground truth (plate text, style, and the plate's pixel box in every frame where it is fully
visible).

``default_demo_clip()`` generates the clip once into a per-user cache and reuses it afterwards; the file
name carries ``DEMO_CLIP_VERSION`` so that changing the generator invalidates old caches.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from anpr_edge import paths

# Bump whenever the generator's output changes, so cached clips from older versions are not reused.
DEMO_CLIP_VERSION = 1

PLATE_STYLES: tuple[str, ...] = ("eu", "us", "uk_rear", "br_mercosur")

Box = tuple[int, int, int, int]
Color = tuple[int, int, int]

# (text, style) of the cars, in order of appearance. Fixed across seeds so that the expected reads are
# known without reading the sidecar; the seed only changes how the scene looks and moves.
DEMO_CARS: tuple[tuple[str, str], ...] = (
    ("AB123CD", "eu"),
    ("7ABC123", "us"),
    ("BD51SMR", "uk_rear"),
    ("BRA2E19", "br_mercosur"),
    ("GH456JK", "eu"),
)


@dataclass(frozen=True)
class DemoPlate:
    """Ground truth for one plate of the demo clip.

    ``enter_frame``/``exit_frame`` (inclusive) bound the frames in which any part of the car is on
    screen; ``boxes`` holds the plate's axis-aligned box (x1, y1, x2, y2, pixels, x2/y2 inclusive) only
    for frames where the whole plate is inside the image and not hidden by another car.
    """

    text: str
    style: str
    enter_frame: int
    exit_frame: int
    boxes: dict[int, Box]


@dataclass(frozen=True)
class DemoClip:
    """A generated demo clip and its ground truth."""

    path: Path
    fps: float
    width: int
    height: int
    frames: int
    plates: tuple[DemoPlate, ...]

    def plates_in_frame(self, frame: int) -> list[tuple[DemoPlate, Box]]:
        """The plates fully visible in ``frame``, each with its box there."""
        return [(plate, plate.boxes[frame]) for plate in self.plates if frame in plate.boxes]


# --------------------------------------------------------------------------------------------------
# Plates
# --------------------------------------------------------------------------------------------------

# Width / height of each style. EU and UK plates are 520 x 110 mm; US plates 12 x 6 in; Mercosur
# plates 400 x 130 mm.
_ASPECT: dict[str, float] = {"eu": 4.5, "uk_rear": 4.5, "us": 2.0, "br_mercosur": 3.1}

_WHITE: Color = (245, 245, 242)
_BLACK: Color = (20, 20, 20)
_EU_BLUE: Color = (150, 50, 0)
_EU_YELLOW: Color = (0, 204, 255)
_UK_YELLOW: Color = (20, 200, 250)
_US_TEXT_BLUE: Color = (105, 40, 20)
_US_STATE_RED: Color = (40, 30, 190)
_BR_BLUE: Color = (150, 70, 10)

# Plates are drawn this many times larger and then shrunk, which anti-aliases the Hershey strokes far
# better than LINE_AA alone at small sizes.
_SUPERSAMPLE = 4
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _glyph_mask(char: str, cap_height: int, max_width: int, thickness: int) -> np.ndarray:
    """A tight float mask (0..1) of one character, ``cap_height`` tall and at most ``max_width`` wide.

    Hershey glyphs vary in width and sit on a baseline with side bearings; cropping to the ink and
    rescaling gives every character the same height and lets wide letters (M, W) be squeezed into their
    cell instead of colliding with neighbours, like the condensed fonts of real plates.
    """
    (_, base_h), _ = cv2.getTextSize("H", _FONT, 1.0, 1)
    scale = max(cap_height - thickness, 1) / base_h
    (tw, th), baseline = cv2.getTextSize(char, _FONT, scale, thickness)
    pad = thickness * 2 + 4
    canvas = np.zeros((th + baseline + 2 * pad, tw + 2 * pad), np.uint8)
    cv2.putText(canvas, char, (pad, pad + th), _FONT, scale, 255, thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    if len(xs) == 0:  # a space
        return np.zeros((cap_height, max(1, cap_height // 3)), np.float32)
    ink = canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    width = min(max_width, max(1, round(ink.shape[1] * cap_height / ink.shape[0])))
    return cv2.resize(ink, (width, cap_height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _draw_chars(
    img: np.ndarray, text: str, box: tuple[int, int, int, int], color: Color, thickness: int
) -> None:
    """Draw ``text`` into ``box`` (x1, y1, x2, y2), one character per equal-width cell, centred."""
    x1, y1, x2, y2 = box
    cell_w = (x2 - x1) / max(len(text), 1)
    cap_h = y2 - y1
    colour = np.array(color, np.float32)
    for i, char in enumerate(text):
        mask = _glyph_mask(char, cap_h, int(cell_w * 0.86), thickness)
        gx = int(round(x1 + (i + 0.5) * cell_w - mask.shape[1] / 2))
        region = img[y1 : y1 + cap_h, gx : gx + mask.shape[1]]
        alpha = mask[: region.shape[0], : region.shape[1], None]
        region[:] = (region * (1.0 - alpha) + colour * alpha).astype(np.uint8)


def _put_small_text(
    img: np.ndarray,
    text: str,
    center: tuple[int, int],
    height: int,
    color: Color,
    font: int = cv2.FONT_HERSHEY_SIMPLEX,
    thickness: int | None = None,
    max_width: int | None = None,
) -> None:
    """Decorative text (country code, state name) centred at ``center`` with a cap height of ``height``."""
    thickness = thickness or max(1, height // 6)
    (_, base_h), _ = cv2.getTextSize("H", font, 1.0, 1)
    scale = max(height - thickness, 1) / base_h
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    if max_width is not None and tw > max_width:
        scale *= max_width / tw
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    org = (int(center[0] - tw / 2), int(center[1] + th / 2))
    cv2.putText(img, text, org, font, scale, color, thickness, cv2.LINE_AA)


def _jitter(color: Color, rng: np.random.Generator | None, amount: int = 8) -> Color:
    if rng is None:
        return color
    deltas = rng.integers(-amount, amount + 1, 3)
    return tuple(int(np.clip(c + d, 0, 255)) for c, d in zip(color, deltas))  # type: ignore[return-value]


def render_plate(
    text: str, style: str, height: int = 64, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Render a number plate reading ``text`` in ``style`` as a BGR uint8 image ``height`` pixels tall.

    Styles: ``"eu"`` (white, black text, blue band with stars and a country letter), ``"us"`` (light,
    dark-blue text under a red state name), ``"uk_rear"`` (yellow, black text) and ``"br_mercosur"``
    (white, black text under a blue "BRASIL" band). Without ``rng`` the plate is clean; with one, its
    colours get a slight tint and a little grime, the same for the same generator state.
    """
    if style not in _ASPECT:
        raise ValueError(f"unknown plate style {style!r}; expected one of {', '.join(PLATE_STYLES)}")
    if height < 8:
        raise ValueError(f"plate height must be at least 8 pixels, got {height}")
    ss = _SUPERSAMPLE
    h = height * ss
    w = int(round(height * _ASPECT[style])) * ss
    margin = max(ss, round(h * 0.05))  # border inset, as on a real plate's embossed rim
    border = max(ss, round(h * 0.035))
    stroke = max(ss, round(h / 9))
    n = max(len(text), 1)

    if style == "uk_rear":
        background, ink = _jitter(_UK_YELLOW, rng), _BLACK
    elif style == "us":
        background, ink = _jitter((238, 240, 240), rng), _jitter(_US_TEXT_BLUE, rng, 6)
    else:
        background, ink = _jitter(_WHITE, rng, 6), _BLACK
    img = np.empty((h, w, 3), np.uint8)
    img[:] = background

    left, right = margin + border, w - margin - border
    if style == "eu":
        band_w = round(h * 0.42)
        img[:, :band_w] = _EU_BLUE
        # The EU circle of twelve stars, as dots: small, but it makes the band read as an EU plate.
        cx, cy, r = band_w / 2 + margin / 2, h * 0.36, band_w * 0.26
        for k in range(12):
            a = 2 * math.pi * k / 12
            cv2.circle(
                img,
                (int(cx + r * math.cos(a)), int(cy + r * math.sin(a))),
                max(1, round(band_w * 0.045)),
                _EU_YELLOW,
                -1,
                cv2.LINE_AA,
            )
        country = "D" if rng is None else str(rng.choice(["D", "F", "NL", "B", "I", "L"]))
        _put_small_text(
            img, country, (int(cx), int(h * 0.72)), round(h * 0.2), _WHITE, max_width=int(band_w * 0.8)
        )
        left = band_w + round(h * 0.12)
        right = w - margin - border - round(h * 0.1)
        text_box = (left, round(h * 0.2), right, round(h * 0.8))
    elif style == "uk_rear":
        text_box = (left + round(h * 0.15), round(h * 0.2), right - round(h * 0.15), round(h * 0.8))
    elif style == "us":
        _put_small_text(
            img,
            "California",
            (w // 2, round(h * 0.19)),
            round(h * 0.15),
            _jitter(_US_STATE_RED, rng, 6),
            font=cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
            thickness=max(1, round(h * 0.025)),
        )
        _put_small_text(img, "DMV.CA.GOV", (w // 2, round(h * 0.87)), round(h * 0.06), ink)
        text_box = (left + round(h * 0.08), round(h * 0.32), right - round(h * 0.08), round(h * 0.76))
    else:  # br_mercosur
        band_h = round(h * 0.24)
        img[:band_h] = _BR_BLUE
        _put_small_text(img, "BRASIL", (w // 2, band_h // 2 + margin // 2), round(band_h * 0.42), _WHITE)
        # Flag of Brazil at the right end of the band: green field, yellow rhombus, blue disc.
        fw, fh = round(band_h * 0.9), round(band_h * 0.6)
        fx, fy = w - margin - border - fw - round(h * 0.06), (band_h - fh) // 2 + margin // 2
        cv2.rectangle(img, (fx, fy), (fx + fw, fy + fh), (60, 150, 0), -1)
        rhombus = np.array(
            [
                [fx + fw // 2, fy + 2],
                [fx + fw - 3, fy + fh // 2],
                [fx + fw // 2, fy + fh - 2],
                [fx + 3, fy + fh // 2],
            ]
        )
        cv2.fillConvexPoly(img, rhombus, (0, 220, 255), cv2.LINE_AA)
        cv2.circle(img, (fx + fw // 2, fy + fh // 2), max(1, fh // 4), (120, 40, 0), -1, cv2.LINE_AA)
        text_box = (left + round(h * 0.12), round(h * 0.38), right - round(h * 0.12), round(h * 0.86))

    # Characters should fill their cells but not touch, whatever the length of the text.
    cell_w = (text_box[2] - text_box[0]) / n
    cap_h = text_box[3] - text_box[1]
    if cell_w < cap_h * 0.45:  # long texts: shrink the height rather than letting glyphs get spindly
        shrink = cap_h - int(cell_w / 0.45)
        text_box = (text_box[0], text_box[1] + shrink // 2, text_box[2], text_box[3] - (shrink - shrink // 2))
    _draw_chars(img, text, text_box, ink, stroke)

    cv2.rectangle(img, (margin, margin), (w - 1 - margin, h - 1 - margin), _BLACK, border, cv2.LINE_AA)
    if rng is not None:
        # A couple of faint smudges: enough that no two renders are pixel-identical to a template.
        grime = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(2, 5))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(h // 4, h)), int(rng.integers(h // 8, h // 2)))
            angle, darkness = float(rng.uniform(0, 180)), float(rng.uniform(0.04, 0.1))
            cv2.ellipse(grime, centre, axes, angle, 0, 360, darkness, -1)
        grime = cv2.GaussianBlur(grime, (0, 0), h / 8)
        img = (img.astype(np.float32) * (1.0 - grime[..., None]) + 60.0 * grime[..., None]).astype(np.uint8)
    return cv2.resize(img, (w // ss, h // ss), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------------------------------
# Scene
# --------------------------------------------------------------------------------------------------
#
# Geometry: a camera above the road looks down it, so a point on the road at image row y is drawn at a
# scale proportional to its distance below the horizon. All lengths below are "reference pixels": pixels
# at scale 1 in a 540-row frame, where scale 1 is the row at which a car's plate first comes fully
# into view (plates are then ~80 px wide, and ~160 px when about to leave at the bottom).

_REF_H = 540.0
_HORIZON = -380.0  # row of the horizon (above the image: the camera points steeply down)
_SCALE_SPAN = 440.0  # rows between the horizon and the scale-1 row
_PLATE_W = 80.0  # plate width at scale 1
_CAR_W = 2.5 * _PLATE_W  # a stylised car: big plates relative to the body keep them readable
_CAR_H = 0.8  # car height as a fraction of its width (front view, hood and roof foreshortened)
_LANE_X = 140.0  # lane centres at +-_LANE_X from the road's centre line
_ROAD_EDGE = 300.0  # solid edge lines
_KERB = 330.0  # kerb stones start here
_TRAVEL = 0.3  # fraction of the clip each car takes to cross the frame
_STARTS = (0.0, 0.16, 0.34, 0.5, 0.66)  # fraction of the clip at which each car enters

_CAR_COLOURS: tuple[Color, ...] = (
    (40, 40, 170),  # red
    (185, 185, 180),  # silver
    (110, 60, 20),  # dark blue
    (225, 228, 230),  # white
    (45, 45, 48),  # black
    (60, 110, 40),  # green
    (30, 120, 200),  # orange
)


@dataclass
class _Geometry:
    width: int
    height: int

    @property
    def s(self) -> float:
        return self.height / _REF_H

    def scale_at(self, y: float) -> float:
        return (y - _HORIZON * self.s) / (_SCALE_SPAN * self.s)

    def row_at(self, scale: float) -> float:
        return _HORIZON * self.s + scale * _SCALE_SPAN * self.s

    def x_at(self, lateral: float, y: float) -> float:
        return self.width / 2 + lateral * self.s * self.scale_at(y)


def _ground_band(geo: _Geometry, lat_a: float, lat_b: float) -> np.ndarray:
    """The image polygon of the strip of road between two lateral positions, top to bottom of frame."""
    h = geo.height
    return np.array(
        [
            [geo.x_at(lat_a, 0), 0],
            [geo.x_at(lat_b, 0), 0],
            [geo.x_at(lat_b, h), h],
            [geo.x_at(lat_a, h), h],
        ],
        np.float32,
    )


def _fill(img: np.ndarray, poly: np.ndarray, color: Color | float) -> None:
    # Sub-pixel vertices (shift=4) keep slowly moving shapes from jumping a whole pixel at a time.
    pts = np.round(np.asarray(poly, np.float64) * 16).astype(np.int32)
    cv2.fillPoly(img, [pts], color, cv2.LINE_AA, shift=4)


def _render_background(geo: _Geometry, rng: np.random.Generator) -> np.ndarray:
    """The static part of the scene: asphalt, markings, kerb, pavement, verge, lighting."""
    w, h = geo.width, geo.height
    # Shapes go on a uint8 canvas because OpenCV anti-aliases only 8-bit images; the nearly vertical
    # markings would otherwise show staircase steps.
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (88, 90, 93)

    # Verge (left) and pavement (right) beyond the kerbs.
    _fill(img, _ground_band(geo, -4000, -_KERB - 22), (55, 100, 70))
    _fill(img, _ground_band(geo, _KERB + 22, 4000), (150, 152, 150))
    _fill(img, _ground_band(geo, -_KERB - 22, -_KERB), (175, 178, 178))
    _fill(img, _ground_band(geo, _KERB, _KERB + 22), (175, 178, 178))
    _fill(img, _ground_band(geo, -_KERB - 1, -_KERB + 2), (60, 60, 62))  # kerb shadow lines
    _fill(img, _ground_band(geo, _KERB - 2, _KERB + 1), (60, 60, 62))

    # Darker oil-stained strips down the middle of each lane, where cars drip.
    for lane in (-_LANE_X, _LANE_X):
        _fill(img, _ground_band(geo, lane - 45, lane + 45), (80, 82, 85))

    # Markings: solid edge lines, dashed centre line; pavement slab joints. Dashes repeat at equal
    # distances on the ground, i.e. equal steps of 1/scale, which is what makes them shrink upwards.
    for lat in (-_ROAD_EDGE, _ROAD_EDGE):
        _fill(img, _ground_band(geo, lat - 5, lat + 5), (215, 218, 220))
    top_depth, bottom_depth = 1.0 / geo.scale_at(0), 1.0 / geo.scale_at(h)
    phase = float(rng.uniform(0, 0.22))
    depth = top_depth + phase
    while depth > bottom_depth - 0.22:
        near = depth - 0.09
        ya, yb = geo.row_at(1.0 / depth), geo.row_at(1.0 / max(near, 1e-3))
        poly = [[geo.x_at(-6, ya), ya], [geo.x_at(6, ya), ya], [geo.x_at(6, yb), yb], [geo.x_at(-6, yb), yb]]
        _fill(img, np.array(poly), (215, 218, 220))
        depth -= 0.22
    depth = top_depth
    while depth > bottom_depth:
        y = geo.row_at(1.0 / depth)
        cv2.line(img, (int(geo.x_at(_KERB + 22, y)), int(y)), (w, int(y)), (120, 122, 120), 1, cv2.LINE_AA)
        depth -= 0.07

    # Texture: large soft patches plus fine grain, so the road is not a flat colour a detector could
    # trivially separate from plates.
    coarse = rng.normal(0, 1, (h // 40 + 2, w // 40 + 2)).astype(np.float32)
    patches = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0, 1, (h, w)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), 0.7)
    shaded = img.astype(np.float32) + (patches * 6 + grain * 7)[..., None]

    # Gentle lighting gradient: brighter towards the top right (the sun side), darker bottom left.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 0.88 + 0.12 * (xx / w) + 0.1 * (1 - yy / h)
    shaded *= light[..., None]
    return np.clip(shaded, 0, 255).astype(np.uint8)


@dataclass
class _Car:
    text: str
    style: str
    plate: np.ndarray  # rendered large, shrunk per frame
    colour: Color
    lane: float
    drift: float
    start_frame: float
    travel_frames: float
    tilt: float  # plate rotation, degrees
    depth_start: float
    depth_end: float
    enter_frame: int = -1
    exit_frame: int = -1


def _car_polys(cx: float, yb: float, cw: float) -> dict[str, list[np.ndarray]]:
    """Front-view car parts as image polygons; (cx, yb) is the middle of the ground contact."""

    def rect(x1: float, y1: float, x2: float, y2: float) -> np.ndarray:
        # Car-local units: x in car widths from the centre, y in car widths up from the ground.
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) * [cw, -cw] + [cx, yb]

    def trap(y1: float, half1: float, y2: float, half2: float) -> np.ndarray:
        return np.array([[-half1, y1], [half1, y1], [half2, y2], [-half2, y2]]) * [cw, -cw] + [cx, yb]

    def rounded(x1: float, y1: float, x2: float, y2: float, r: float) -> np.ndarray:
        pts = []
        corners = ((x2 - r, y1 + r, -90), (x2 - r, y2 - r, 0), (x1 + r, y2 - r, 90), (x1 + r, y1 + r, 180))
        for ccx, ccy, a0 in corners:
            for k in range(5):
                a = math.radians(a0 + 22.5 * k)
                pts.append([cx + (ccx + r * math.cos(a)) * cw, yb - (ccy - r * math.sin(a)) * cw])
        return np.array(pts)

    return {
        "tyres": [rect(-0.47, 0.0, -0.35, 0.14), rect(0.35, 0.0, 0.47, 0.14)],
        "body": [
            rounded(-0.5, 0.05, 0.5, 0.37, 0.06),  # front face
            trap(0.36, 0.5, 0.5, 0.44),  # hood
            trap(0.67, 0.34, 0.8, 0.31),  # roof
        ],
        "pillars": [trap(0.49, 0.445, 0.69, 0.345)],
        "windshield": [trap(0.51, 0.41, 0.67, 0.325)],
        "bumper": [rect(-0.48, 0.05, 0.48, 0.1)],
        "grille": [rect(-0.19, 0.25, 0.19, 0.32)],
        "lights": [rect(-0.46, 0.25, -0.28, 0.32), rect(0.28, 0.25, 0.46, 0.32)],
        "mirrors": [rect(-0.52, 0.48, -0.42, 0.54), rect(0.42, 0.48, 0.52, 0.54)],
    }


def _shade(color: Color, factor: float) -> Color:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)  # type: ignore[return-value]


def _draw_car(frame: np.ndarray, car: _Car, cx: float, yb: float, cw: float) -> None:
    h, w = frame.shape[:2]
    # Soft shadow under the car first, so the car covers its inner part.
    sx1, sx2 = int(cx - 0.62 * cw), int(cx + 0.62 * cw)
    sy1, sy2 = int(yb - 0.12 * cw), int(yb + 0.1 * cw)
    x1, x2, y1, y2 = max(sx1, 0), min(sx2, w), max(sy1, 0), min(sy2, h)
    if x2 > x1 and y2 > y1:
        mask = np.zeros((sy2 - sy1, sx2 - sx1), np.float32)
        axes = (int(0.56 * cw), int(0.06 * cw) + 1)
        cv2.ellipse(mask, ((sx2 - sx1) // 2, int(0.12 * cw)), axes, 0, 0, 360, 0.55, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(cw * 0.025, 1.0))[y1 - sy1 : y2 - sy1, x1 - sx1 : x2 - sx1]
        roi = frame[y1:y2, x1:x2]
        roi[:] = (roi * (1.0 - mask[..., None])).astype(np.uint8)

    polys = _car_polys(cx, yb, cw)
    body = car.colour
    for poly in polys["tyres"]:
        _fill(frame, poly, (25, 25, 25))
    lower, hood, roof = polys["body"]
    _fill(frame, lower, body)
    _fill(frame, hood, _shade(body, 1.12))  # the hood faces the sky and catches more light
    _fill(frame, roof, _shade(body, 1.15))
    for poly in polys["mirrors"]:
        _fill(frame, poly, _shade(body, 0.8))
    _fill(frame, polys["pillars"][0], _shade(body, 0.7))
    _fill(frame, polys["windshield"][0], (70, 55, 45))
    # Sky reflection across the windshield.
    ws = polys["windshield"][0]
    top_l, top_r, bot_l = ws[3], ws[2], ws[0]
    low = bot_l + (top_l - bot_l) * 0.2
    glare = np.array(
        [low + [cw * 0.12, 0], top_l + [cw * 0.2, 0], top_l + [cw * 0.3, 0], low + [cw * 0.26, 0]]
    )
    if top_r[0] > glare[:, 0].max():
        _fill(frame, glare, (120, 105, 95))
    _fill(frame, polys["bumper"][0], _shade(body, 0.55))
    _fill(frame, polys["grille"][0], (35, 35, 35))
    for poly in polys["lights"]:
        _fill(frame, poly, (225, 235, 240))


def _plate_quad(car: _Car, cx: float, yb: float, cw: float, geo: _Geometry) -> np.ndarray:
    """Corners (tl, tr, br, bl) of the plate on the car, with a mild perspective."""
    ph_ratio = 1.0 / _ASPECT[car.style]
    pw = 0.4 * cw
    ph = pw * ph_ratio * 0.95  # seen slightly from above, so a little foreshortened
    centre_y = 0.17 + (0.4 * ph_ratio - 0.4 / 4.5) / 2  # tall plates grow upwards from the same bottom
    pcx, pcy = cx, yb - centre_y * cw
    # Keystone from the downward-looking camera (bottom narrower), and yaw from the car's lateral
    # offset (the far side shorter): a few percent each, as on a real roadside camera.
    off = (cx - geo.width / 2) / (geo.width / 2)
    top_half, bottom_half = pw / 2, pw / 2 * 0.965
    left_half, right_half = ph / 2 * (1 + 0.04 * off), ph / 2 * (1 - 0.04 * off)
    quad = np.array(
        [
            [-top_half, -left_half],
            [top_half, -right_half],
            [bottom_half, right_half],
            [-bottom_half, left_half],
        ]
    )
    a = math.radians(car.tilt)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return quad @ rot.T + [pcx, pcy]


def _paste_plate(frame: np.ndarray, plate: np.ndarray, quad: np.ndarray) -> None:
    h, w = frame.shape[:2]
    x1, y1 = np.floor(quad.min(axis=0)).astype(int) - 1
    x2, y2 = np.ceil(quad.max(axis=0)).astype(int) + 2
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 <= x1 or y2 <= y1:
        return
    # Shrink with INTER_AREA to about the final size first: warpPerspective would alias a large plate.
    tw = max(int(np.linalg.norm(quad[1] - quad[0])), 2)
    th = max(int(np.linalg.norm(quad[3] - quad[0])), 2)
    small = cv2.resize(plate, (tw, th), interpolation=cv2.INTER_AREA)
    src = np.array([[0, 0], [tw, 0], [tw, th], [0, th]], np.float32)
    dst = (quad - [x1, y1]).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    size = (x2 - x1, y2 - y1)
    warped = cv2.warpPerspective(small, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpPerspective(np.ones((th, tw), np.float32), m, size, flags=cv2.INTER_LINEAR)
    roi = frame[y1:y2, x1:x2]
    roi[:] = (roi * (1.0 - alpha[..., None]) + warped * alpha[..., None]).astype(np.uint8)


def _plan_cars(geo: _Geometry, frames: int, rng: np.random.Generator) -> list[_Car]:
    # A car enters when its ground contact crosses the top row and leaves when its roof crosses the
    # bottom one; it moves at constant speed on the ground, so it speeds up on screen as it nears.
    depth_start = 1.0 / geo.scale_at(-2.0)
    h, s = geo.height, geo.s
    scale_exit = (h - _HORIZON * s) / (_SCALE_SPAN * s - _CAR_H * _CAR_W * s)
    depth_end = 1.0 / (scale_exit * 1.01)
    colours = list(rng.permutation(len(_CAR_COLOURS)))
    first_lane = float(rng.choice([-1.0, 1.0]))
    cars = []
    for i, (text, style) in enumerate(DEMO_CARS):
        start = (_STARTS[i] + float(rng.uniform(-0.015, 0.015))) * frames
        cars.append(
            _Car(
                text=text,
                style=style,
                plate=render_plate(text, style, height=96 if style != "us" else 160, rng=rng),
                colour=_CAR_COLOURS[colours[i % len(colours)]],
                # Alternate lanes so that cars overlapping in time do not hide each other.
                lane=first_lane * (1 if i % 2 == 0 else -1) * _LANE_X + float(rng.uniform(-12, 12)),
                drift=float(rng.uniform(-25, 25)),
                start_frame=max(start, 0.0),
                travel_frames=_TRAVEL * frames * float(rng.uniform(0.95, 1.05)),
                tilt=float(rng.uniform(-2.0, 2.0)),
                depth_start=depth_start,
                depth_end=depth_end,
            )
        )
    return cars


def _car_state(car: _Car, frame_idx: int, geo: _Geometry) -> tuple[float, float, float, float] | None:
    """(cx, yb, car width, on-screen speed in rows/frame) of ``car`` at a frame, or None if not travelling."""
    t = (frame_idx - car.start_frame) / car.travel_frames
    if t < 0 or t > 1:
        return None
    depth = car.depth_start + (car.depth_end - car.depth_start) * t
    scale = 1.0 / depth
    yb = geo.row_at(scale)
    ddepth = (car.depth_end - car.depth_start) / car.travel_frames
    speed = -_SCALE_SPAN * geo.s * ddepth / depth**2
    lateral = car.lane + car.drift * t
    return geo.x_at(lateral, yb), yb, _CAR_W * geo.s * scale, speed


def generate_demo_clip(
    path: Path,
    *,
    seed: int = 7,
    fps: float = 25.0,
    width: int = 960,
    height: int = 540,
    seconds: float = 12.0,
) -> DemoClip:
    """Write the demo clip to ``path`` (mp4) and its ground truth to ``path.with_suffix(".json")``.

    The same arguments always write the same bytes.
    """
    path = Path(path)
    frames = max(1, int(round(seconds * fps)))
    rng = np.random.default_rng(seed)
    geo = _Geometry(width, height)
    background = _render_background(geo, rng)
    cars = _plan_cars(geo, frames, rng)
    # A handful of noise frames, cycled: drawing fresh noise for every frame would dominate the run
    # time, and a period of a few frames is invisible. Split in two saturating halves for cv2.add/subtract.
    noise = [np.round(rng.normal(0, 3.0, (height, width, 3))).astype(np.int16) for _ in range(4)]
    noise_pairs = [(np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)) for n in noise]
    boxes: list[dict[int, Box]] = [{} for _ in cars]

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot open a video writer for {path} (mp4v)")
    try:
        for f in range(frames):
            frame = background.copy()
            states = [(i, st) for i, car in enumerate(cars) if (st := _car_state(car, f, geo)) is not None]
            states.sort(key=lambda item: item[1][2])  # far (small) cars first, near ones drawn over them
            drawn: list[tuple[int, tuple[float, float, float, float]]] = []
            for i, (cx, yb, cw, speed) in states:
                car = cars[i]
                bbox = (cx - 0.53 * cw, yb - _CAR_H * cw, cx + 0.53 * cw, yb + 0.1 * cw)
                if bbox[2] < 0 or bbox[0] >= width or bbox[3] < 0 or bbox[1] >= height:
                    continue
                if car.enter_frame < 0:
                    car.enter_frame = f
                car.exit_frame = f
                _draw_car(frame, car, cx, yb, cw)
                quad = _plate_quad(car, cx, yb, cw, geo)
                _paste_plate(frame, car.plate, quad)
                # Motion blur over the car: a third of its travel in a frame, as with a short shutter.
                blur = int(min(max(round(speed * 0.3), 1), 5))
                bx1, by1 = max(int(bbox[0]), 0), max(int(bbox[1]), 0)
                bx2, by2 = min(int(bbox[2]) + 1, width), min(int(bbox[3]) + 1, height)
                if blur > 1 and bx2 > bx1 and by2 > by1:
                    roi = frame[by1:by2, bx1:bx2]
                    roi[:] = cv2.blur(roi, (1, blur))
                x1, y1 = (int(math.floor(v)) for v in quad.min(axis=0))
                x2, y2 = (int(math.ceil(v)) for v in quad.max(axis=0))
                if x1 >= 0 and y1 >= 0 and x2 <= width - 1 and y2 <= height - 1:
                    boxes[i][f] = (x1, y1, x2, y2)
                drawn.append((i, bbox))
            # A plate hidden behind a nearer car is not visible, whatever its geometry says.
            for k, (i, _) in enumerate(drawn):
                if f not in boxes[i]:
                    continue
                px1, py1, px2, py2 = boxes[i][f]
                for _, (ox1, oy1, ox2, oy2) in drawn[k + 1 :]:
                    if px1 < ox2 and ox1 < px2 and py1 < oy2 and oy1 < py2:
                        del boxes[i][f]
                        break
            plus, minus = noise_pairs[f % len(noise_pairs)]
            frame = cv2.subtract(cv2.add(frame, plus), minus)
            writer.write(frame)
    finally:
        writer.release()

    clip = DemoClip(
        path=path,
        fps=float(fps),
        width=width,
        height=height,
        frames=frames,
        plates=tuple(
            DemoPlate(
                text=car.text,
                style=car.style,
                enter_frame=car.enter_frame,
                exit_frame=car.exit_frame,
                boxes=boxes[i],
            )
            for i, car in enumerate(cars)
            if car.enter_frame >= 0
        ),
    )
    _write_sidecar(clip, seed=seed)
    return clip


# --------------------------------------------------------------------------------------------------
# Ground truth sidecar and cache
# --------------------------------------------------------------------------------------------------


def _sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def _write_sidecar(clip: DemoClip, *, seed: int, target: Path | None = None) -> None:
    doc: dict[str, Any] = {
        "version": DEMO_CLIP_VERSION,
        "seed": seed,
        "fps": clip.fps,
        "width": clip.width,
        "height": clip.height,
        "frames": clip.frames,
        "plates": [
            {
                "text": p.text,
                "style": p.style,
                "enter_frame": p.enter_frame,
                "exit_frame": p.exit_frame,
                "boxes": {str(f): list(b) for f, b in sorted(p.boxes.items())},
            }
            for p in clip.plates
        ],
    }
    (target or _sidecar_path(clip.path)).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def load_demo_clip(path: Path) -> DemoClip:
    """Read the ground truth written next to a demo clip by ``generate_demo_clip``."""
    path = Path(path)
    doc = json.loads(_sidecar_path(path).read_text(encoding="utf-8"))
    return DemoClip(
        path=path,
        fps=float(doc["fps"]),
        width=int(doc["width"]),
        height=int(doc["height"]),
        frames=int(doc["frames"]),
        plates=tuple(
            DemoPlate(
                text=str(p["text"]),
                style=str(p["style"]),
                enter_frame=int(p["enter_frame"]),
                exit_frame=int(p["exit_frame"]),
                boxes={int(f): tuple(int(v) for v in b) for f, b in p["boxes"].items()},  # type: ignore[misc]
            )
            for p in doc["plates"]
        ),
    )


def default_demo_clip(cache_dir: Path | None = None) -> DemoClip:
    """The default demo clip, generated into the cache on first use and reused afterwards."""
    directory = Path(cache_dir) if cache_dir is not None else paths.cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"demo-v{DEMO_CLIP_VERSION}.mp4"
    if final.is_file() and _sidecar_path(final).is_file():
        try:
            return load_demo_clip(final)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable sidecar: regenerate both files below

    # Generate under a unique temporary name in the same directory, then rename: a concurrent run or
    # an interrupted one never exposes a half-written clip, and both runs write identical files.
    fd, tmp_name = tempfile.mkstemp(prefix=f".demo-v{DEMO_CLIP_VERSION}-", suffix=".mp4", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        clip = generate_demo_clip(tmp)
        # Sidecar first: the clip only appears once its ground truth is in place.
        os.replace(_sidecar_path(tmp), _sidecar_path(final))
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        _sidecar_path(tmp).unlink(missing_ok=True)
    return replace(clip, path=final)
