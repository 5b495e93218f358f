"""The synthetic demo clip: a valid video, deterministic, and ground truth that points at real plates."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from anpr_edge import paths
from anpr_edge.demo_clip import (
    DEMO_CLIP_VERSION,
    PLATE_STYLES,
    DemoClip,
    default_demo_clip,
    generate_demo_clip,
    load_demo_clip,
    render_plate,
)

# The number of frames decoded, and those kept by index.
Decoded = tuple[int, dict[int, np.ndarray]]


def _read_frames(path: Path, keep: set[int] | None = None) -> Decoded:
    """Decode the whole clip: the number of frames, and the frames whose index is in ``keep`` (all if None).

    Keeping only some matters: the full default clip decoded is almost half a gigabyte.
    """
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    frames: dict[int, np.ndarray] = {}
    count = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if keep is None or count in keep:
            frames[count] = frame
        count += 1
    cap.release()
    return count, frames


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("anpr-cache")


@pytest.fixture(scope="module")
def default_clip(cache_dir: Path) -> DemoClip:
    # The full-size default clip, generated once for the whole module (a few seconds).
    return default_demo_clip(cache_dir)


def _checked_frames(plate_frames: list[int]) -> list[int]:
    return [plate_frames[len(plate_frames) // 4], plate_frames[len(plate_frames) // 2], plate_frames[-1]]


@pytest.fixture(scope="module")
def default_frames(default_clip: DemoClip) -> Decoded:
    keep = {0}
    for plate in default_clip.plates:
        keep.update(_checked_frames(sorted(plate.boxes)))
    return _read_frames(default_clip.path, keep)


def _small_clip(path: Path, seed: int) -> DemoClip:
    return generate_demo_clip(path, seed=seed, width=320, height=180, seconds=2.0)


# --- render_plate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", PLATE_STYLES)
def test_render_plate_shape_and_determinism(style: str) -> None:
    plate = render_plate("AB123CD", style, height=64)
    assert plate.dtype == np.uint8 and plate.ndim == 3 and plate.shape[0] == 64 and plate.shape[2] == 3
    aspect = plate.shape[1] / plate.shape[0]
    expected = {"eu": 4.5, "uk_rear": 4.5, "us": 2.0}.get(style)
    if expected is not None:
        assert aspect == pytest.approx(expected, rel=0.05)

    a = render_plate("AB123CD", style, rng=np.random.default_rng(1))
    b = render_plate("AB123CD", style, rng=np.random.default_rng(1))
    assert np.array_equal(a, b)
    assert not np.array_equal(render_plate("XY987ZW", style), plate)

    # Light plate with dark, thick characters: plenty of both, and high contrast between them.
    gray = cv2.cvtColor(plate, cv2.COLOR_BGR2GRAY)
    assert (gray > 150).mean() > 0.4
    assert (gray < 90).mean() > 0.1


def test_render_plate_rejects_unknown_style() -> None:
    with pytest.raises(ValueError, match="style"):
        render_plate("AB123CD", "martian")


# --- the clip ----------------------------------------------------------------------------------------


def test_clip_is_a_valid_video(default_clip: DemoClip, default_frames: Decoded) -> None:
    clip = default_clip
    assert (clip.fps, clip.width, clip.height, clip.frames) == (25.0, 960, 540, 300)
    cap = cv2.VideoCapture(str(default_clip.path))
    assert cap.isOpened()
    assert abs(cap.get(cv2.CAP_PROP_FRAME_COUNT) - default_clip.frames) <= 1
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(default_clip.fps, abs=0.01)
    assert int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == default_clip.width
    assert int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == default_clip.height
    cap.release()
    count, frames = default_frames
    assert abs(count - default_clip.frames) <= 1
    assert frames[0].shape == (default_clip.height, default_clip.width, 3)


def test_plates_and_boxes(default_clip: DemoClip) -> None:
    assert 4 <= len(default_clip.plates) <= 6
    assert len({p.text for p in default_clip.plates}) == len(default_clip.plates)
    assert {p.style for p in default_clip.plates} == set(PLATE_STYLES)
    for plate in default_clip.plates:
        assert plate.boxes, f"{plate.text} is never fully visible"
        assert 0 <= plate.enter_frame <= min(plate.boxes) <= max(plate.boxes) <= plate.exit_frame
        assert plate.exit_frame < default_clip.frames
        # Visible long enough for a tracker to vote on several reads.
        assert len(plate.boxes) >= 30
        for frame, (x1, y1, x2, y2) in plate.boxes.items():
            assert 0 <= frame < default_clip.frames
            assert 0 <= x1 < x2 <= default_clip.width - 1 and 0 <= y1 < y2 <= default_clip.height - 1
        # The car approaches: its plate grows from roughly 80 to roughly 160 pixels wide.
        widths = [plate.boxes[f][2] - plate.boxes[f][0] for f in sorted(plate.boxes)]
        assert 60 <= widths[0] <= 100 and 140 <= widths[-1] <= 200
        assert widths[-1] > widths[0]


def test_some_plates_overlap_in_time(default_clip: DemoClip) -> None:
    together = [f for f in range(default_clip.frames) if len(default_clip.plates_in_frame(f)) >= 2]
    assert together, "no frame shows two plates at once"


def _stroke_crossings(gray: np.ndarray) -> int:
    """How many dark/light transitions a typical row through the middle of the crop crosses."""
    _, binary = cv2.threshold(gray.astype(np.uint8), 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    band = binary[int(binary.shape[0] * 0.35) : int(binary.shape[0] * 0.75)].astype(np.int8)
    return int(np.median(np.abs(np.diff(band, axis=1)).sum(axis=1)))


def test_boxes_point_at_plates(default_clip: DemoClip, default_frames: Decoded) -> None:
    # Frame 0 is empty road (the first car is still above the image), so the same box there shows what
    # the road looks like at that spot: a plate must be much brighter and far more textured.
    _, frames = default_frames
    road = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)
    for plate in default_clip.plates:
        for f in _checked_frames(sorted(plate.boxes)):
            x1, y1, x2, y2 = plate.boxes[f]
            gray = cv2.cvtColor(frames[f], cv2.COLOR_BGR2GRAY)
            crop = gray[y1 : y2 + 1, x1 : x2 + 1].astype(np.float32)
            ref = road[y1 : y2 + 1, x1 : x2 + 1].astype(np.float32)
            assert crop.mean() > ref.mean() + 40, (plate.text, f)
            # Light plate background and dark characters both present.
            assert (crop > 150).mean() > 0.3, (plate.text, f)
            assert (crop < 90).mean() > 0.08, (plate.text, f)
            edges = np.abs(cv2.Sobel(crop, cv2.CV_32F, 1, 0)).mean()
            road_edges = np.abs(cv2.Sobel(ref, cv2.CV_32F, 1, 0)).mean()
            assert edges > 4 * road_edges, (plate.text, f)
            # A row through the characters crosses each one's strokes: at least two transitions per
            # character. Car parts next to the plate (lights, grille, bumper) give a handful at most.
            assert _stroke_crossings(crop) >= 2 * len(plate.text) - 2, (plate.text, f)


def test_same_seed_same_bytes_other_seed_other_content(tmp_path: Path) -> None:
    a = _small_clip(tmp_path / "a.mp4", seed=3)
    b = _small_clip(tmp_path / "b.mp4", seed=3)
    c = _small_clip(tmp_path / "c.mp4", seed=4)
    assert _sha256(a.path) == _sha256(b.path)
    assert a.plates == b.plates
    assert _sha256(a.path) != _sha256(c.path)
    middle = a.frames // 2
    fa, fc = _read_frames(a.path, {middle})[1][middle], _read_frames(c.path, {middle})[1][middle]
    assert np.abs(fa.astype(np.int16) - fc.astype(np.int16)).mean() > 2.0


def test_load_round_trips(default_clip: DemoClip, tmp_path: Path) -> None:
    assert load_demo_clip(default_clip.path) == default_clip
    small = _small_clip(tmp_path / "small.mp4", seed=5)
    assert load_demo_clip(small.path) == small


def test_default_clip_is_generated_once(default_clip: DemoClip, cache_dir: Path) -> None:
    assert default_clip.path == cache_dir / f"demo-v{DEMO_CLIP_VERSION}.mp4"
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        [default_clip.path.name, default_clip.path.with_suffix(".json").name]
    ), "temporary files left behind"
    before = default_clip.path.stat().st_mtime_ns
    again = default_demo_clip(cache_dir)
    assert again == default_clip
    assert default_clip.path.stat().st_mtime_ns == before


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANPR_EDGE_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("ANPR_EDGE_CACHE_DIR")
    assert paths.cache_dir() == tmp_path / "xdg" / "anpr-edge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert paths.cache_dir() == Path.home() / ".cache" / "anpr-edge"
