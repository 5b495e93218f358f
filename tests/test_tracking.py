"""The plate tracker on synthetic detections: several plates, crossing plates, occlusion, track ends."""

from __future__ import annotations

import numpy as np
import pytest
from fake_reads import FPS, T0, detections, moving_box

from anpr_edge.config import TrackingConfig
from anpr_edge.tracking import PlateTracker, Track, iou_matrix, motion_angle
from anpr_edge.values import Detections

pytestmark = pytest.mark.timeout(30)


def run(tracker: PlateTracker, frames: list[Detections], first: int = 0) -> list[list[Track]]:
    return [tracker.update(dets, first + i, T0 + (first + i) / FPS) for i, dets in enumerate(frames)]


def ids_by_detection(tracks: list[Track]) -> dict[int, int]:
    return {t.detection: t.id for t in tracks if t.detection is not None}


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [100, 100, 110, 110]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10]])
    assert iou_matrix(a, b) == pytest.approx(np.array([[50 / 150, 1.0], [0.0, 0.0]]))


def test_two_plates_at_once_keep_their_ids() -> None:
    tracker = PlateTracker(TrackingConfig(min_hits=3))
    frames = [
        detections(moving_box((50, 100), (12, 4), i), moving_box((400, 300), (-10, 2), i)) for i in range(15)
    ]
    history = run(tracker, frames)
    assert [t.confirmed for t in history[1]] == [False, False]  # min_hits 3: not yet after 2 detections
    assert [t.confirmed for t in history[2]] == [True, True]
    first = ids_by_detection(history[0])
    for tracks in history:
        assert ids_by_detection(tracks) == first
    last = {t.id: t for t in history[-1]}
    assert len(last) == 2 and all(t.hits == 15 for t in last.values())
    assert last[first[0]].first_frame == 0 and last[first[0]].last_seen == pytest.approx(T0 + 1.4)
    assert last[first[0]].velocity[0] == pytest.approx(12.0) and last[first[1]].velocity[0] == pytest.approx(-10.0)


def test_crossing_plates_do_not_swap_ids() -> None:
    # Two plates on the same row drive through each other; at the crossing the detector's NMS keeps only
    # one box for two frames. Matching on the last box alone would swap them there; the motion model
    # predicts each one past the other.
    tracker = PlateTracker()
    frames = []
    for i in range(21):
        a = moving_box((0, 200), (30, 0), i)
        b = moving_box((600, 204), (-30, 0), i)
        frames.append(detections(a) if i in (10, 11) else detections(a, b))
    history = run(tracker, frames)
    for tracks in history:
        for t in tracks:
            xs = [p.box[0] for p in t.history]
            steps = np.diff(xs)
            assert np.all(steps > 0) or np.all(steps < 0), f"track {t.id} changed direction: {xs}"
    assert {t.id for tracks in history for t in tracks} == {1, 2}
    final = {t.id: t for t in history[-1]}
    assert final[1].box[0] == pytest.approx(600) and final[2].box[0] == pytest.approx(0)


def test_occlusion_gap_keeps_the_id() -> None:
    tracker = PlateTracker(TrackingConfig(max_age=6))
    boxes = [moving_box((100, 50), (8, 10), i) for i in range(30)]
    hidden = set(range(10, 16))  # six frames behind a truck: within max_age
    history = run(tracker, [Detections.empty() if i in hidden else detections(boxes[i]) for i in range(30)])
    assert {t.id for tracks in history for t in tracks} == {1}
    coasting = history[12][0]
    assert coasting.detection is None and coasting.missed == 3
    # While unseen, the prediction follows the plate's motion.
    assert coasting.predicted_box == pytest.approx(boxes[12], abs=1e-6)
    assert history[16][0].detection == 0 and history[16][0].missed == 0


def test_a_longer_gap_ends_the_track_and_starts_a_new_one() -> None:
    tracker = PlateTracker(TrackingConfig(max_age=3))
    box = (300, 200, 400, 225)
    run(tracker, [detections(box)] * 5)
    for n in range(3):
        tracker.update(Detections.empty(), 5 + n, T0)
        assert tracker.ended == ()
    tracker.update(Detections.empty(), 8, T0)  # the fourth frame unseen: more than max_age
    assert [t.id for t in tracker.ended] == [1] and tracker.tracks == []
    assert tracker.ended[0].last_frame == 4 and tracker.ended[0].hits == 5
    tracks = tracker.update(detections(box), 9, T0)
    assert [t.id for t in tracks] == [2]


def test_a_plate_leaving_the_frame_ends_at_once() -> None:
    tracker = PlateTracker(TrackingConfig(max_age=30))
    for i in range(8):  # moving down 40 px per frame towards the bottom edge of a 480-px frame
        tracker.update(detections(moving_box((300, 150), (0, 40), i)), i, T0, frame_size=(640, 480))
    tracker.update(Detections.empty(), 8, T0, frame_size=(640, 480))  # predicted at y 470..495: mostly out
    assert [t.id for t in tracker.ended] == [1]


def test_weak_detections_continue_a_track_but_never_start_one() -> None:
    tracker = PlateTracker(TrackingConfig(high_confidence=0.5))
    tracks = run(tracker, [detections((100, 100, 200, 125), confidence=0.3)] * 3)
    assert all(t == [] for t in tracks)
    tracker = PlateTracker(TrackingConfig(high_confidence=0.5))
    run(tracker, [detections(moving_box((100, 100), (5, 0), i)) for i in range(3)])
    tracks = tracker.update(detections(moving_box((100, 100), (5, 0), 3), confidence=0.3), 3, T0)
    assert [(t.id, t.detection, t.hits) for t in tracks] == [(1, 0, 4)]


def test_a_box_nested_with_a_followed_plate_starts_no_track() -> None:
    # The detector boxes an idling car's plate, and in some frames also the plate together with a drain grate
    # beside it (their IoU is low, so NMS keeps both). That wider box is the same plate: no second track (the
    # passage benchmark's duplicate event). Whichever of the two the track follows, the other is nested in it.
    plate, plate_and_grate = (660, 350, 780, 450), (655, 345, 920, 460)
    tracker = PlateTracker()
    run(tracker, [detections(plate)] * 3)
    for i, frame in enumerate([detections(plate, plate_and_grate, confidence=[0.7, 0.55]),
                               detections(plate_and_grate), detections(plate_and_grate, plate)]):
        tracks = tracker.update(frame, 3 + i, T0 + (3 + i) / FPS)
        assert [t.id for t in tracks] == [1], i
    # Boxes that overlap without one lying inside the other are two plates (two cars side by side).
    tracker = PlateTracker()
    run(tracker, [detections((100, 100, 200, 125))] * 2)
    tracks = tracker.update(detections((100, 100, 200, 125), (150, 100, 250, 125)), 2, T0 + 2 / FPS)
    assert sorted(t.id for t in tracks) == [1, 2]


def test_a_fast_small_plate_is_followed_before_its_speed_is_known() -> None:
    # 60 x 15 px plate moving 40 px down per frame: consecutive boxes do not overlap at all.
    tracker = PlateTracker()
    history = run(tracker, [detections(moving_box((300, 20), (0, 40), i, size=(60, 15))) for i in range(6)])
    assert {t.id for tracks in history for t in tracks} == {1}
    assert history[-1][0].hits == 6


def test_a_plate_of_very_different_size_is_another_plate() -> None:
    tracker = PlateTracker()
    run(tracker, [detections((300, 200, 400, 225))] * 3)
    wider = detections((290, 190, 520, 250))  # 2.3 x wider at the same place: never joins track 1
    tracks = tracker.update(wider, 3, T0)
    # In the first frame it lies around the plate just followed: taken for that plate boxed with its
    # surroundings, it starts no track. Still there in the next frame, it is another plate.
    assert [(t.id, t.detection) for t in tracks] == [(1, None)]
    tracks = tracker.update(wider, 4, T0 + 1 / FPS)
    assert sorted((t.id, t.detection) for t in tracks) == [(1, None), (2, 0)]


def test_single_frame_blips_never_confirm() -> None:
    tracker = PlateTracker(TrackingConfig(min_hits=2, max_age=2))
    frames = [detections((50 + 150 * i, 300, 130 + 150 * i, 320)) if i % 2 == 0 else Detections.empty() for i in range(8)]
    ended = []
    for i, dets in enumerate(frames):
        tracker.update(dets, i, T0)
        ended += tracker.ended
    ended += tracker.flush()
    assert len(ended) == 4 and not any(t.confirmed for t in ended)


def test_match_predicts_update() -> None:
    tracker = PlateTracker()
    run(tracker, [detections(moving_box((50, 100), (10, 0), i), moving_box((400, 300), (-10, 0), i)) for i in range(4)])
    nxt = detections(moving_box((400, 300), (-10, 0), 4), moving_box((50, 100), (10, 0), 4), (10, 400, 90, 420))
    predicted = tracker.match(nxt, 4)
    tracks = tracker.update(nxt, 4, T0)
    assert predicted == {0: 2, 1: 1}
    assert {d: i for d, i in ids_by_detection(tracks).items() if i in (1, 2)} == predicted


def test_motion_angle() -> None:
    tracker = PlateTracker()
    run(tracker, [detections(moving_box((300, 50), (0, 20), i)) for i in range(5)])
    assert motion_angle(tracker.tracks[0]) == pytest.approx(90.0)  # straight down the image
    tracker = PlateTracker()
    run(tracker, [detections((300, 50, 400, 75))] * 5)
    assert motion_angle(tracker.tracks[0]) is None  # standing still
