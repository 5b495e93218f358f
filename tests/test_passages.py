"""Passages -> events on synthetic frames, detections and reads: one event per passage, early emission,
unread passages, deduplication (idling and returning cars), formats, lists, privacy, direction, crops."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_reads import FPS, T0, detections, frame, make_read, moving_box

from anpr_edge.config import (
    CountingLineConfig,
    EventsConfig,
    FormatsConfig,
    TrackingConfig,
    VotingConfig,
    parse_config,
)
from anpr_edge.errors import ConfigError
from anpr_edge.events import event_to_payload, validate_payload
from anpr_edge.passages import PassageBuilder, text_hash
from anpr_edge.values import ListMatch, PlateEvent
from anpr_edge.voting import read_weight

pytestmark = pytest.mark.timeout(60)

Step = Sequence[tuple[Sequence[float], str | None]]  # per frame: (box, text read there or None)


def builder(**sections: object) -> PassageBuilder:
    defaults: dict[str, object] = {
        "tracking": TrackingConfig(max_age=5),
        "events": EventsConfig(early=False),
    }
    defaults.update(sections)
    return PassageBuilder("gate", device_id="box-1", versions={"anpr_edge": "test"}, **defaults)  # type: ignore[arg-type]


def drive(b: PassageBuilder, steps: Sequence[Step], first: int = 0, flush: bool = True) -> list[tuple[int, PlateEvent]]:
    """Feed the frames; (frame index at which it came out, event) for every event, flush marked -1."""
    out: list[tuple[int, PlateEvent]] = []
    for n, step in enumerate(steps):
        index = first + n
        dets = detections(*[box for box, _ in step]) if step else detections()
        reads = [make_read(text, box) for box, text in step if text is not None]
        for event in b.update(frame(index), dets, reads):
            out.append((index, event))
    if flush:
        out += [(-1, e) for e in b.flush()]
    for _, event in out:
        validate_payload(event_to_payload(replace_seq(event)))
    return out


def replace_seq(event: PlateEvent) -> PlateEvent:
    # The outbox numbers events; the schema wants seq >= 1 on the wire.
    return replace(event, seq=1)


def passage(text: str | None, frames: int, start: Sequence[float] = (200, 100), velocity: Sequence[float] = (0, 15)) -> list[Step]:
    return [[(moving_box(start, velocity, i), text)] for i in range(frames)]


def empty(frames: int) -> list[Step]:
    return [[] for _ in range(frames)]


def drive_reads(b: PassageBuilder, frames: Sequence[Sequence[tuple[Sequence[float], str, bool]]],
                flush: bool = True) -> list[tuple[int, PlateEvent]]:
    """Like ``drive``, each read marked cut by the frame's border or not: (box, text, at_frame_edge)."""
    out: list[tuple[int, PlateEvent]] = []
    for index, step in enumerate(frames):
        dets = detections(*[box for box, _, _ in step]) if step else detections()
        reads = [replace(make_read(text, box), at_frame_edge=edge) for box, text, edge in step]
        out += [(index, event) for event in b.update(frame(index), dets, reads)]
    if flush:
        out += [(-1, e) for e in b.flush()]
    return out


# ------------------------------------------------------------------------------------------ one passage
def test_one_event_per_passage_when_the_track_ends() -> None:
    b = builder()
    out = drive(b, passage("AB123CD", 12) + empty(10))
    assert len(out) == 1
    index, event = out[0]
    assert index == 12 + 5  # unseen for more than max_age (5) frames after the last one (11)
    assert event.text == "AB123CD" and event.reason is None and event.reads == 12
    assert event.start_time == pytest.approx(T0) and event.end_time == pytest.approx(T0 + 11 / FPS)
    assert event.camera_id == "gate" and event.device_id == "box-1" and event.versions == {"anpr_edge": "test"}
    assert 0.9 < event.confidence <= 1.0 and len(event.char_confidences) == 7
    assert event.candidates[0] == ("AB123CD", event.confidence)
    assert event.angle == pytest.approx(90.0)  # driving down the image
    assert event.direction is None  # no counting line
    crop = cv2.imdecode(np.frombuffer(event.crop_jpeg or b"", np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None and crop.shape[1] >= 100  # the plate's frame region, padded
    assert event.snapshot_jpeg is None and event.crop_path is None
    assert b.tracks == [] and b.flush() == []


def test_the_event_carries_the_best_view() -> None:
    b = builder()
    steps = passage("AB123CD", 8)
    # The plate is large in frame 3 only: that read weighs most and its box is the event's box.
    steps[3] = [((150, 140, 350, 190), "AB123CD")]
    out = drive(b, steps)
    assert out[0][1].box == (150.0, 140.0, 350.0, 190.0)


def test_crossing_plates_keep_their_texts() -> None:
    b = builder(tracking=TrackingConfig(max_age=5, max_distance=0.5))
    steps: list[Step] = []
    for i in range(21):
        a, c = moving_box((0, 200), (30, 0), i), moving_box((600, 204), (-30, 0), i)
        steps.append([(a, "AB123CD")] if i in (10, 11) else [(a, "AB123CD"), (c, "XY987ZZ")])
    out = drive(b, steps)
    by_text = {e.text: e for _, e in out}
    assert set(by_text) == {"AB123CD", "XY987ZZ"} and len(out) == 2
    assert by_text["AB123CD"].reads == 21 and by_text["XY987ZZ"].reads == 19
    assert by_text["AB123CD"].angle == pytest.approx(0.0) and by_text["XY987ZZ"].angle == pytest.approx(180.0)


def test_two_plates_at_once_and_a_blip() -> None:
    b = builder()
    steps = [[(moving_box((50, 50), (5, 10), i), "AB123CD"), (moving_box((400, 60), (-5, 10), i), "GH456JK")] for i in range(10)]
    steps[4] = steps[4] + [((300, 400, 360, 415), "ZZ999")]  # one-frame detection: never a passage
    out = drive(b, steps + empty(8))
    assert sorted(e.text for _, e in out) == ["AB123CD", "GH456JK"]
    assert len({e.id for _, e in out}) == 2


def test_an_occlusion_gap_is_one_passage() -> None:
    b = builder()
    steps = passage("AB123CD", 20)
    for i in range(8, 12):  # hidden for four frames (max_age 5)
        steps[i] = []
    out = drive(b, steps + empty(8))
    assert [e.text for _, e in out] == ["AB123CD"] and out[0][1].reads == 16


def entry_fragment(text: str | None, frames: int = 3) -> list[Step]:
    """A small plate detected for a few frames as it enters, then lost (the detector misses it)."""
    return [[(moving_box((200, 40), (0, 15), i, size=(50.0, 12.0)), text)] for i in range(frames)]


def test_a_fragment_at_entry_joins_the_passage_that_follows() -> None:
    """Detected on and off while small: the short first track is held and the next track, starting near
    where it ended, absorbs it: one event, all reads, starting at the fragment."""
    b = builder()
    out = drive(b, entry_fragment("AB1Z3CD") + empty(8) + passage("AB123CD", 12, start=(190, 160)) + empty(8))
    assert [e.text for _, e in out] == ["AB123CD"]
    event = out[0][1]
    assert event.reads == 3 + 12 and event.start_time == pytest.approx(T0)


def test_a_fragment_that_reads_as_another_plate_stays_its_own_passage() -> None:
    # settle_weight 0: the fragment's three reads settle it, so it is evidence of another plate. With the
    # default weight these reads of a 50 px plate are too weak to settle and it is merged (next test).
    b = builder(voting=VotingConfig(settle_weight=0.0))
    out = drive(b, entry_fragment("XY98765") + empty(8) + passage("AB123CD", 12, start=(190, 160)) + empty(8))
    assert sorted(e.text for _, e in out) == ["AB123CD", "XY98765"]


def test_a_weakly_read_fragment_is_merged_whatever_it_reads() -> None:
    """Three reads of a 50 px plate weigh under the default settle_weight (1): too weak to keep apart as
    another plate, so the track that picks the fragment up takes its reads and reports one passage."""
    out = drive(builder(), entry_fragment("XY98765") + empty(8) + passage("AB123CD", 12, start=(190, 160)) + empty(8))
    assert [e.text for _, e in out] == ["AB123CD"] and out[0][1].reads == 3 + 12


def distant_track(texts: Sequence[str], frames: int = 10) -> list[Step]:
    """A distant plate (40 px wide) tracked for longer than fragment_max_hits frames, read as ``texts`` in
    turn: too weakly to settle the vote (default settle_weight), then lost for longer than max_age."""
    return [[(moving_box((200, 40), (0, 5), i, size=(40.0, 10.0)), texts[i % len(texts)])] for i in range(frames)]


def test_a_long_weakly_read_track_joins_the_next_when_it_reads_about_the_same() -> None:
    """Seen in the passage benchmark: a distant Brazilian plate read ARV3278 for 17 frames, lost for 16
    while it came closer, then read right (ARY3276) by a new track: one passage, not two events."""
    b = builder()
    out = drive(b, distant_track(["ARV3278", "ARV3276"]) + empty(8) + passage("ARY3276", 12, start=(190, 160)) + empty(8))
    assert [e.text for _, e in out] == ["ARY3276"]
    assert out[0][1].reads == 10 + 12 and out[0][1].start_time == pytest.approx(T0)


def test_a_long_weakly_read_track_of_another_plate_stays_its_own_passage() -> None:
    """Many weak reads of one text are a car that drove off unread just before the next came, not a
    fragment of it: reported on its own (after the hold) with what it read."""
    out = drive(builder(), distant_track(["XY98765", "XY98766"]) + empty(8) + passage("AB123CD", 12, start=(190, 160)) + empty(8))
    assert sorted(e.text for _, e in out) == ["AB123CD", "XY98765"]


def test_the_default_settle_weight_waits_for_the_plate_to_come_closer() -> None:
    """A plate approaching from 40 px wide: its first agreeing reads are too small to settle the vote under
    the default settle_weight; the early event leaves once the agreeing reads weigh 1 (count them here with
    the same read_weight), while settle_weight 0 emits after settle_reads reads."""
    widths = [40.0 + 10.0 * i for i in range(20)]
    steps: list[Step] = [[((200.0, 100.0 + 5 * i, 200.0 + w, 100.0 + 5 * i + w / 4), "AB123CD")]
                         for i, w in enumerate(widths)]
    confidence = make_read("AB123CD").confidence
    weights = np.cumsum([read_weight(confidence, width_px=w) for w in widths])
    expected = next(i for i, total in enumerate(weights) if i >= 2 and total >= 1.0)
    assert expected > 2  # the scenario is one where the weight matters
    out = drive(builder(events=EventsConfig(early=True)), steps + empty(8))
    assert [i for i, _ in out] == [expected]
    out = drive(builder(events=EventsConfig(early=True), voting=VotingConfig(settle_weight=0.0)), steps + empty(8))
    assert [i for i, _ in out] == [2]


def test_a_fragment_nobody_takes_is_reported_after_the_hold() -> None:
    b = builder(tracking=TrackingConfig(max_age=5, fragment_hold_s=1.0))
    out = drive(b, entry_fragment("AB123CD") + empty(25), flush=False)
    (index, event), = out
    assert event.text == "AB123CD" and event.reads == 3
    assert index >= 2 + 10  # held for fragment_hold_s (10 frames at 10 fps) after it was last seen
    assert drive(builder(tracking=TrackingConfig(max_age=5, fragment_hold_s=0)), entry_fragment("AB123CD") + empty(8),
                 flush=False)[0][0] == 2 + 6  # without holding: due when the track ends


def leaving_passage(text: str, tail_text: str | None, tail_frames: int = 2) -> list[Step]:
    """A plate driving out through the bottom border (480 px frame): its track ends as the predicted box
    leaves the frame; two frames later the detector finds the plate again, cut by the border, as a new
    track with a misread (the passage benchmark's one false event, clip 0 of seed 1)."""
    steps = passage(text, 12, start=(200, 100), velocity=(0, 30))  # last box y 430-455
    tail = [[((205.0, 462.0 + 2 * i, 295.0, 480.0), tail_text)] for i in range(tail_frames)]
    return steps + empty(2) + tail + empty(20)


def test_the_tail_of_a_plate_leaving_the_frame_is_not_another_passage() -> None:
    out = drive(builder(), leaving_passage("AB123CD", "Y8069"), flush=False)
    assert [e.text for _, e in out] == ["AB123CD"]
    # Without fragments (fragment_hold_s 0) the tail is a passage of its own: the case this rule is for.
    plain = drive(builder(tracking=TrackingConfig(max_age=5, fragment_hold_s=0)), leaving_passage("AB123CD", "Y8069"),
                  flush=False)
    assert sorted(e.text for _, e in plain) == ["AB123CD", "Y8069"]


def test_a_short_track_elsewhere_or_settled_on_another_plate_is_still_reported() -> None:
    # A small plate entering at the top while the other leaves at the bottom: too far to be its tail.
    steps = leaving_passage("AB123CD", None)
    for i, box in enumerate(entry_fragment("XY98765")):
        steps[14 + i] = list(steps[14 + i]) + list(box)
    out = drive(builder(), steps, flush=False)
    assert sorted(e.text for _, e in out) == ["AB123CD", "XY98765"]
    # Settled on another text (settle_weight 0, three agreeing reads) where the plate left: another car.
    out = drive(builder(voting=VotingConfig(settle_weight=0.0)), leaving_passage("AB123CD", "XY98765", tail_frames=3),
                flush=False)
    assert sorted(e.text for _, e in out) == ["AB123CD", "XY98765"]


# ---------------------------------------------------------------------------------------- early events
def test_early_event_when_the_vote_settles_and_only_one() -> None:
    b = builder(events=EventsConfig(early=True),
                voting=VotingConfig(settle_reads=3, settle_agreement=0.7, settle_weight=0.0))
    steps = passage("AB123CD", 20)
    steps[1] = [(steps[1][0][0], "AB128CD")]  # a misread delays the settling by a frame
    out = drive(b, steps + empty(8))
    assert len(out) == 1
    index, event = out[0]
    assert index == 3  # reads 0, 2, 3 agree: 3 of 4, 0.75 >= 0.7
    assert event.text == "AB123CD" and event.end_time == pytest.approx(T0 + 3 / FPS) and event.reads == 4


def test_without_early_events_the_event_waits_for_the_track_end() -> None:
    b = builder(events=EventsConfig(early=False))
    out = drive(b, passage("AB123CD", 20) + empty(8))
    assert [i for i, _ in out] == [25]


def test_a_plate_whose_reads_never_agree_gets_its_event_after_max_wait() -> None:
    """A car stopped at a barrier whose reads alternate between two texts never settles; after
    events.max_wait_s in view it gets the current vote anyway, while it is still there."""
    b = builder(events=EventsConfig(early=True, max_wait_s=2.0),
                voting=VotingConfig(settle_reads=3, settle_agreement=0.9))
    steps = [[(moving_box((200, 100), (0, 0), i), "CO378MH" if i % 2 else "LC0378MH")] for i in range(60)]
    out = drive(b, steps + empty(8))
    assert len(out) == 1
    index, event = out[0]
    assert index == 20  # 2.0 s at 10 fps after the first sighting, long before the car leaves (frame 60)
    assert event.text in ("CO378MH", "LC0378MH") and event.reads >= 3
    never = builder(events=EventsConfig(early=True, max_wait_s=None),
                    voting=VotingConfig(settle_reads=3, settle_agreement=0.9))
    # Only when the track ends (frame 65, max_age 5 after the last sighting at 59), and as an unsettled
    # track lost in view it is held as a possible fragment until fragment_hold_s (10 frames) after 59.
    assert [i for i, _ in drive(never, steps + empty(15))] == [70]


def test_ocr_stops_on_settled_tracks() -> None:
    b = builder(events=EventsConfig(early=True),
                voting=VotingConfig(settle_reads=2, settle_agreement=0.5, settle_weight=0.0))
    other = (450, 300, 550, 325)
    for i in range(2):
        box = moving_box((200, 100), (0, 10), i)
        dets = detections(box)
        assert b.reads_needed(dets, i).tolist() == [True]
        b.update(frame(i), dets, [make_read("AB123CD", box)])
    box = moving_box((200, 100), (0, 10), 2)
    assert b.reads_needed(detections(box, other), 2).tolist() == [False, True]  # settled after two reads
    relaxed = builder(events=EventsConfig(early=True), voting=VotingConfig(settle_reads=2, stop_reading_when_settled=False))
    for i in range(3):
        box = moving_box((200, 100), (0, 10), i)
        relaxed.update(frame(i), detections(box), [make_read("AB123CD", box)])
    assert relaxed.reads_needed(detections(moving_box((200, 100), (0, 10), 3)), 3).tolist() == [True]


# --------------------------------------------------------------------------------------- unread passages
def test_unread_passage_yields_an_event_when_configured() -> None:
    out = drive(builder(events=EventsConfig(early=False, emit_unread=True)), passage(None, 10) + empty(8))
    assert len(out) == 1
    event = out[0][1]
    assert event.text is None and event.reason and "not read" in event.reason and event.confidence == 0.0
    assert event.crop_jpeg is not None  # the best detection's crop, for a person to look at
    assert drive(builder(events=EventsConfig(early=False)), passage(None, 10) + empty(8)) == []


def test_illegible_and_low_confidence_passages() -> None:
    out = drive(builder(events=EventsConfig(early=False, emit_unread=True)), passage("", 6) + empty(8))
    assert out[0][1].text is None and out[0][1].reason == "no legible read"
    b = builder(events=EventsConfig(early=True, emit_unread=True, min_confidence=0.99),
                voting=VotingConfig(settle_reads=2, settle_agreement=0.5))
    steps = [[(moving_box((200, 100), (0, 15), i), "AB123CD" if i % 2 else "AB128CD")] for i in range(10)]
    out = drive(b, steps + empty(8))
    assert len(out) == 1 and out[0][0] > 9  # not early: too unsure, it waited for the end of the track
    assert out[0][1].text is None and "low confidence" in (out[0][1].reason or "")
    assert {t for t, _ in out[0][1].candidates} >= {"AB123CD", "AB128CD"}


# ------------------------------------------------------------------------------------------- dedup
def test_a_car_idling_at_the_barrier_is_reported_once_then_leaves() -> None:
    # The window (5 s) is shorter than the wait (15 s): it runs from the last sighting, not the first.
    b = builder(events=EventsConfig(early=True, dedup_window_s=5), voting=VotingConfig(settle_reads=3))
    stop = (250, 300, 350, 325)
    steps: list[Step] = passage("AB123CD", 10, start=(250, 150), velocity=(0, 15))  # drives up to the barrier
    for _ in range(3):  # waits: people walk past and hide the plate for 2 s every 5 s
        steps += [[(stop, "AB123CD")] for _ in range(30)] + empty(20)
    steps += passage("AB123CD", 10, start=(250, 300), velocity=(0, 18)) + empty(10)  # then drives through
    out = drive(b, steps)
    assert len(out) == 1
    assert out[0][1].text == "AB123CD" and out[0][0] < 10


def test_a_returning_car_is_reported_again_after_the_window() -> None:
    b = builder(events=EventsConfig(early=True, dedup_window_s=30))
    first = passage("AB123CD", 10)
    later = passage("AB123CD", 10)
    gap = empty(int(40 * FPS))  # 40 s later: beyond the 30 s window
    out = drive(b, first + gap + later + empty(8))
    assert [e.text for _, e in out] == ["AB123CD", "AB123CD"] and out[0][1].id != out[1][1].id
    b = builder(events=EventsConfig(early=True, dedup_window_s=60))
    assert len(drive(b, first + gap + later + empty(8))) == 1  # within a 60 s window: the same visit


def test_dedup_tolerates_one_misread_character_but_not_another_car() -> None:
    b = builder(events=EventsConfig(early=False, dedup_window_s=30, dedup_max_distance=1))
    out = drive(b, passage("AB123CD", 8) + empty(20) + passage("AB128CD", 8) + empty(20) + passage("XY987ZZ", 8) + empty(8))
    assert [e.text for _, e in out] == ["AB123CD", "XY987ZZ"]
    b = builder(events=EventsConfig(early=False, dedup_window_s=30, dedup_max_distance=0))
    out = drive(b, passage("AB123CD", 8) + empty(20) + passage("AB128CD", 8) + empty(8))
    assert [e.text for _, e in out] == ["AB123CD", "AB128CD"]


def test_a_late_settling_track_is_still_compared_with_what_it_follows() -> None:
    # The car is found again 2 s after its first track ended but only settles 40 s later (window 30 s,
    # measured from the first sighting): still a duplicate.
    b = builder(events=EventsConfig(early=True, dedup_window_s=30), voting=VotingConfig(settle_reads=3, settle_agreement=0.9))
    stop = (250, 300, 350, 325)
    steps: list[Step] = [[(stop, "AB123CD")] for _ in range(10)] + empty(20)
    steps += [[(stop, "AB123CD" if i % 2 else "AB128CD")] for i in range(400)]
    steps += [[(stop, "AB123CD")] for _ in range(200)]
    out = drive(b, steps)
    assert len(out) == 1


def _garbage(rng: np.random.Generator) -> str:
    """A different misreading of a plate too hard to read, each frame."""
    return "".join(rng.choice(list("0123456789ABCDEFGHJKLMNPRSTUVWXYZ"), size=7))


def test_a_standing_car_found_again_where_it_was_lost_is_not_reported_twice() -> None:
    # The passage benchmark's idling black French plate: read differently every frame (no text repeats, so
    # the text dedup cannot tell), missed by the detector for 4 s while the car stands, then found again in
    # the same place. One car, one event.
    rng = np.random.default_rng(0)
    stop = (250, 300, 350, 325)
    approach = [[(moving_box((250, 150), (0, 15), i), _garbage(rng))] for i in range(10)]
    standing = [[(stop, _garbage(rng))] for _ in range(40)]
    hidden = empty(int(4 * FPS))
    leaving = [[(moving_box((250, 300), (0, 18), i), _garbage(rng))] for i in range(10)] + empty(10)
    b = builder(events=EventsConfig(early=True, dedup_window_s=30))
    out = drive(b, approach + standing + hidden + [[(stop, _garbage(rng))] for _ in range(40)] + leaving)
    assert len(out) == 1, [(e.text, e.confidence) for _, e in out]
    assert out[0][1].confidence < 0.5  # the texts carried no evidence of another car

    # Found again there but read surely as another plate, after a surely read one: two cars.
    b = builder(events=EventsConfig(early=True, dedup_window_s=30))
    sure_first = [[(moving_box((250, 150), (0, 15), i), "AB123CD")] for i in range(10)]
    sure_first += [[(stop, "AB123CD")] for _ in range(40)]
    out = drive(b, sure_first + hidden + [[(stop, "XY987ZZ")] for _ in range(40)] + leaving)
    assert [e.text for _, e in out] == ["AB123CD", "XY987ZZ"]

    # A car that drives up to the spot is followed from further away: a new passage, however it reads.
    b = builder(events=EventsConfig(early=True, dedup_window_s=30))
    other = [[(moving_box((250, 150), (0, 15), i), _garbage(rng))] for i in range(10)]
    out = drive(b, approach + standing + hidden + other + [[(stop, _garbage(rng))] for _ in range(40)] + leaving)
    assert len(out) == 2

    # A plate lost while it moved was not standing: where it vanished says nothing of the next track.
    b = builder(events=EventsConfig(early=True, dedup_window_s=30))
    moving = [[(moving_box((250, 150), (0, 3), i), _garbage(rng))] for i in range(50)]
    again = [[(moving_box((250, 297), (0, 3), i), _garbage(rng))] for i in range(40)]
    out = drive(b, moving + hidden + again + empty(10))
    assert len(out) == 2


# ------------------------------------------------------------------------------------ formats and lists
def test_format_correction_and_list_match_in_the_event() -> None:
    # The fake OCR gives the B no probability at all where it reads the 8; only the look-alike rule can fix
    # it, which the unaided ratio allows when set to 0.
    formats = FormatsConfig(regions=["BR-MERCOSUR", "BR"], allow=["ABC-1D23"], max_distance=1, min_unaided_ratio=0.0)
    steps = [[(moving_box((200, 100), (0, 15), i), "A8C1D23")] for i in range(8)]
    out = drive(builder(formats=formats), steps + empty(8))
    event = out[0][1]
    assert (event.text, event.plate_format) == ("ABC1D23", "BR-MERCOSUR")
    assert event.matched == ListMatch("allow", "ABC1D23", 0)
    # With the default, a swap the OCR gave no chance at all is not made; the allow list still matches at 1 edit.
    out = drive(builder(formats=formats.model_copy(update={"min_unaided_ratio": 0.05})), steps + empty(8))
    assert (out[0][1].text, out[0][1].plate_format) == ("A8C1D23", None)
    assert out[0][1].matched == ListMatch("allow", "ABC1D23", 1)
    out = drive(builder(formats=FormatsConfig(regions=["BR-MERCOSUR"], deny=["XYZ9999"])), passage("HELLO42", 8) + empty(8))
    assert (out[0][1].text, out[0][1].plate_format, out[0][1].matched) == ("HELLO42", None, None)


def test_a_band_read_in_most_frames_is_trimmed_from_the_voted_text() -> None:
    # Most frames read the EU band as a U in front; the vote keeps the 8 characters, the FR format drops it.
    steps = [[(moving_box((200, 100), (0, 15), i), "UCF058NS" if i < 6 else "CF058NS")] for i in range(8)]
    out = drive(builder(formats=FormatsConfig(regions=["FR"])), steps + empty(8))
    assert len(out) == 1 and (out[0][1].text, out[0][1].plate_format) == ("CF058NS", "FR")
    out = drive(builder(formats=FormatsConfig(regions=["FR"], trim_leading=False)), steps + empty(8))
    assert (out[0][1].text, out[0][1].plate_format) == ("UCF058NS", None)


# --------------------------------------------------------------------------------- privacy and images
def test_hashed_text_for_privacy() -> None:
    events = EventsConfig(early=False, hash_text=True, hash_salt="s3cret", crop="none")
    b = builder(events=events, formats=FormatsConfig(deny=["AB123CD"]))
    event = drive(b, passage("AB123CD", 8) + empty(8))[0][1]
    expected = "hmac-sha256:" + hmac.new(b"s3cret", b"AB123CD", hashlib.sha256).hexdigest()
    assert event.text is None and event.text_hash == expected == text_hash("AB123CD", b"s3cret")
    assert event.candidates == () and event.crop_jpeg is None and event.crop_path is None
    assert event.matched == ListMatch("deny", expected, 0)
    assert text_hash("AB123CD", b"other") != expected


def test_hash_text_needs_a_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANPR_EDGE_HASH_SALT", raising=False)
    with pytest.raises(ValueError, match="hash_salt"):
        EventsConfig(hash_text=True)
    monkeypatch.setenv("ANPR_EDGE_HASH_SALT", "from-env")
    assert EventsConfig(hash_text=True, hash_salt="in-file").effective_salt() == b"from-env"


def test_crop_file_and_snapshot(tmp_path: Path) -> None:
    written: dict[Path, bytes] = {}
    b = builder(events=EventsConfig(early=False, crop="file", crop_dir=tmp_path, snapshot=True))
    b.write_file = lambda path, data: written.__setitem__(path, data)
    event = drive(b, passage("AB123CD", 8) + empty(8))[0][1]
    assert event.crop_jpeg is None and event.crop_path is not None
    path = Path(event.crop_path)
    assert path.parent.parent.parent == tmp_path and path.name == f"{event.id}.jpg" and path.parent.name == "20251121"
    assert cv2.imdecode(np.frombuffer(written[path], np.uint8), cv2.IMREAD_COLOR) is not None
    snapshot = cv2.imdecode(np.frombuffer(event.snapshot_jpeg or b"", np.uint8), cv2.IMREAD_COLOR)
    assert snapshot.shape == (480, 640, 3)
    payload = event_to_payload(replace_seq(event))
    assert base64.b64decode(payload["snapshot_jpeg"]) == event.snapshot_jpeg


def test_crop_file_default_writer_writes(tmp_path: Path) -> None:
    b = builder(events=EventsConfig(early=False, crop="file", crop_dir=tmp_path))
    event = drive(b, passage("AB123CD", 8) + empty(8))[0][1]
    assert Path(event.crop_path or "").is_file() and not list(tmp_path.rglob("*.part"))


# ------------------------------------------------------------------------------------------- direction
@pytest.mark.parametrize(
    ("velocity", "in_side", "expected"),
    [((0, 20), "right", "in"), ((0, -20), "right", "out"), ((0, 20), "left", "out"), ((20, 0), "right", None)],
)
def test_direction_from_the_counting_line(velocity: tuple[float, float], in_side: str, expected: str | None) -> None:
    # Horizontal line across the middle, drawn left to right: its right-hand side is the lower half.
    line = CountingLineConfig(start=(0.0, 0.5), end=(1.0, 0.5), in_side=in_side)  # type: ignore[arg-type]
    b = builder(counting_line=line)
    start = (100, 140) if velocity[1] >= 0 else (100, 320)
    event = drive(b, passage("AB123CD", 8, start=start, velocity=velocity) + empty(8))[0][1]
    assert event.direction == expected


def test_direction_before_crossing_is_where_the_plate_heads() -> None:
    line = CountingLineConfig(start=(0.0, 0.9), end=(1.0, 0.9), in_side="right")
    b = builder(counting_line=line, events=EventsConfig(early=True))
    out = drive(b, passage("AB123CD", 6, start=(100, 50), velocity=(0, 20)), flush=False)  # settles short of it
    assert out[0][1].direction == "in"


# ------------------------------------------------------------------------------------------------ config
def test_config_sections_load_and_build_a_builder(tmp_path: Path) -> None:
    config = parse_config(
        {
            "cameras": [{"id": "gate", "source": "demo", "counting_line": {"start": [0, 0.6], "end": [1, 0.6], "in_side": "left"}}],
            "tracking": {"max_age": 4, "min_hits": 3},
            "voting": {"settle_reads": 4, "calibration": [[0, 0], [0.5, 0.3], [1, 0.95]]},
            "events": {"early": False, "dedup_window_s": 10, "crop": "none"},
            "formats": {"regions": ["FR", "XX"], "custom": {"XX": ["LLL-DDD"]}, "allow": ["AB123CD"]},
        },
        base_dir=tmp_path,
    )
    b = PassageBuilder.from_config(config, "gate", versions={"ocr": "x"})
    assert b.tracker.config.max_age == 4 and b.counting_line is not None and b.counting_line.in_side == "left"
    assert [f.name for f in b._formats] == ["FR", "XX"] and b.calibration(1.0) == 0.95
    with pytest.raises(ValueError, match="no camera"):
        PassageBuilder.from_config(config, "nope")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"formats": {"regions": ["ATLANTIS"]}}, "formats: unknown plate format"),
        ({"voting": {"calibration": [[0, 0.5], [1, 0.2]]}}, "voting.calibration"),
        ({"cameras": [{"id": "a", "source": "demo", "counting_line": {"start": [0.5, 0.5], "end": [0.5, 0.5]}}]}, "two different points"),
        ({"cameras": [{"id": "a", "source": "demo", "counting_line": {"start": [0, 1.5], "end": [1, 0]}}]}, "counting_line.start"),
        ({"events": {"crop": "png"}}, "events.crop"),
        ({"tracking": {"max_agee": 3}}, "did you mean 'max_age'"),
    ],
)
def test_config_mistakes_are_named(data: dict, message: str) -> None:
    data = {"cameras": [{"id": "a", "source": "demo"}], **data}
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


# ------------------------------------------------------------------------------------- the frame's edge
def test_a_plate_entering_the_view_is_reported_by_its_whole_reads_not_its_cut_ones() -> None:
    """A car drives in from the left: for six frames its plate is cut by the border and reads (sure of
    itself) as its last four characters; then it is whole. Six agreeing cut reads would settle an early
    event on the partial text; they must not, and the whole plate's reads decide."""
    b = builder(events=EventsConfig(early=True), voting=VotingConfig(settle_weight=0.0))
    entering = [[((0.0, 200.0, 40.0 + 10 * i, 225.0), "23CD", True)] for i in range(6)]
    whole = [[((60.0 + 10 * i, 200.0, 160.0 + 10 * i, 225.0), "AB123CD", False)] for i in range(4)]
    out = drive_reads(b, entering + whole + [[] for _ in range(8)])
    assert [e.text for _, e in out] == ["AB123CD"]
    assert out[0][0] >= len(entering)  # not before the plate was whole in view
    assert out[0][1].box[0] >= 60.0  # its crop is a whole view, though the cut reads weighed more


def test_a_whole_view_of_the_plate_is_the_events_crop_even_when_a_cut_one_read_better() -> None:
    b = builder()
    # The plate comes closer (grows) while it drifts right and out of the 640 px frame: its last views are
    # wider (a larger read weight) but flush with the border.
    steps = [[((440.0 + 20 * i, 200.0 - 2 * i, 540.0 + 30 * i, 225.0 + 2 * i), "AB123CD", False)] for i in range(3)]
    steps += [[((500.0 + 20 * i, 194.0 - 2 * i, 640.0, 231.0 + 2 * i), "AB123CD", True)] for i in range(3)]
    (_, event), = drive_reads(b, steps + [[] for _ in range(8)])
    assert event.text == "AB123CD" and event.reads == 3  # the whole reads voted, the cut ones (one track) not
    assert event.box[2] < 640.0  # the old rule took the cut view: it weighed more


def test_the_cut_reads_outnumbering_the_whole_ones_do_not_outvote_them() -> None:
    b = builder()
    entering = [[((0.0, 200.0, 40.0 + 10 * i, 225.0), "123CD", True)] for i in range(8)]
    whole = [[((60.0 + 10 * i, 200.0, 160.0 + 10 * i, 225.0), "AB123CD", False)] for i in range(2)]
    out = drive_reads(b, entering + whole + [[] for _ in range(8)])
    assert [e.text for _, e in out] == ["AB123CD"]


def test_a_plate_only_ever_seen_cut_by_the_border_still_gets_its_event() -> None:
    """Nothing is lost: a car that never comes whole into view is reported by what could be read."""
    b = builder(events=EventsConfig(early=True), voting=VotingConfig(settle_weight=0.0))
    parked = [[((0.0, 200.0, 70.0, 225.0), "123CD", True)] for _ in range(10)]
    out = drive_reads(b, parked + [[] for _ in range(8)])
    assert [e.text for _, e in out] == ["123CD"]
    assert out[0][0] not in range(len(parked))  # when the track ended, not settled early on a cut plate
