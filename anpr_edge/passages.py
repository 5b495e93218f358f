"""One event per vehicle passage: tracks + reads of one camera -> ``PlateEvent``s.

Feed ``PassageBuilder.update`` every processed frame with its detections and the OCR reads of them (a
read belongs to the detection whose box it carries, ``PlateRead.box``); it returns the events that are
due, and ``flush`` returns the rest at the end of the stream. It does no I/O of its own and keeps no clock:
every time comes from ``Frame.timestamp``, so a clip gives the same events however fast it is processed.
The one exception is ``events.crop: file``, which writes the crop through the ``write_file`` callable it was
given.

A passage is a confirmed track. Its event is due when the track ends (unseen for ``tracking.max_age``
frames or gone out of the frame) or, with ``events.early``, as soon as its vote is settled; either way a
passage yields at most one event. Reads of a plate cut by the frame's border (``PlateRead.at_frame_edge``: a
car entering or leaving the view) read part of its text: they never settle a vote, and the vote counts them
only while the passage has no read of the whole plate. Before it is sent the voted text goes through the plate formats and the
allow/deny lists, and through the per-camera deduplication: a text seen again within
``events.dedup_window_s`` of the last sighting of the same text (a car idling at a barrier whose track was
lost and found again) is the same car and is not reported; after the window it is a new passage. A plate
too hard to read gives another text each time it is found again, so a car standing still whose track was
lost is also recognised by place: a track that appears, within the window, where such a standing plate
vanished, is the same car unless both read confidently and differently (``_reappeared``).

``reads_needed`` tells the caller which detections still need the OCR: none of a settled track when
``voting.stop_reading_when_settled`` (adaptive compute).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from rapidfuzz.distance import Levenshtein

from anpr_edge.config import (
    AppConfig,
    CountingLineConfig,
    EventsConfig,
    FormatsConfig,
    TrackingConfig,
    VotingConfig,
)
from anpr_edge.ocr import DEFAULT_CHARSET
from anpr_edge.outbox import default_outbox_path
from anpr_edge.plate_formats import PlateFormat, PlateLists, constrain, load_formats
from anpr_edge.tracking import PlateTracker, Track, iou_matrix, motion_angle
from anpr_edge.values import Detections, Frame, ListMatch, PlateEvent, PlateRead
from anpr_edge.voting import (
    DEFAULT_CALIBRATION,
    REFERENCE_WIDTH_PX,
    Calibration,
    Vote,
    VoteAccumulator,
    apply_format,
    crop_sharpness,
    is_settled,
    read_weight,
)

Box = tuple[float, float, float, float]

REASON_NOT_READ = "not read: the OCR gave no read of this plate"
REASON_ILLEGIBLE = "no legible read"
# A read belongs to the detection its box overlaps most, at least this much (the boxes are the same box,
# give or take float32 rounding).
READ_BOX_IOU = 0.5


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (folders created) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, path)


def text_hash(text: str, salt: bytes) -> str:
    """The privacy-mode stand-in for a plate text: HMAC-SHA256 keyed by the site's salt, hex."""
    return "hmac-sha256:" + hmac.new(salt, text.encode("utf-8"), hashlib.sha256).hexdigest()


def direction_of(
    track: Track, line: CountingLineConfig, frame_size: tuple[int, int], min_shift: float = 0.25
) -> Literal["in", "out"] | None:
    """in/out from a counting line: the side the plate crossed to or, before it crosses, the side it heads to.

    Sides are seen looking from ``line.start`` to ``line.end`` in image coordinates (y down). A plate that
    moved less than ``min_shift`` of its width across the line gets None.
    """
    width, height = frame_size
    sx, sy = line.start[0] * width, line.start[1] * height
    dx, dy = line.end[0] * width - sx, line.end[1] * height - sy
    norm = max(float(np.hypot(dx, dy)), 1e-9)

    def side(point: tuple[float, float]) -> float:  # signed distance, > 0 on the right-hand side
        return (dx * (point[1] - sy) - dy * (point[0] - sx)) / norm

    inside = 1.0 if line.in_side == "right" else -1.0
    first, last = side(track.first_center), side(track.center)
    if first * last < 0:  # crossed
        return "in" if last * inside > 0 else "out"
    if abs(last - first) < min_shift * max(track.box[2] - track.box[0], 1.0):
        return None
    return "in" if (last - first) * inside > 0 else "out"


@dataclass
class _Best:
    """The best view of a passage so far: the crop (and frame) its event will carry."""

    score: float
    box: Box
    crop: np.ndarray
    snapshot: np.ndarray | None
    at_frame_edge: bool = False  # the plate was cut by the frame's border in this view

    def beaten_by(self, at_frame_edge: bool, score: float) -> bool:
        """Would a view with these be better? A whole plate beats a cut one, then the higher score wins."""
        return (at_frame_edge, -score) < (self.at_frame_edge, -self.score)


@dataclass
class _Passage:
    track: Track
    votes: VoteAccumulator  # reads of the whole plate
    # Reads of the plate while cut by the frame's border (PlateRead.at_frame_edge: entering or leaving the
    # view): a partial text, so they vote only for a passage with no read of the whole plate.
    edge_votes: VoteAccumulator
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    vote: Vote | None = None
    stale: bool = False  # reads added since ``vote`` was computed
    done: bool = False  # its event was emitted, or it was found to be a duplicate / not worth one
    text: str | None = None  # the text it was reported (or suppressed) with, for deduplication
    confidence: float | None = None  # the published confidence of that text
    best_read: _Best | None = None
    best_seen: _Best | None = None
    # Short tracks that ended just before this one started, near where it started: probably the same
    # plate (detected on and off while small). Merged into this passage when it finishes if the texts agree.
    fragments: list[_Passage] = field(default_factory=list)
    merged: bool = False  # the agreeing fragments' reads were added to this passage's votes

    @property
    def first_seen(self) -> float:
        return min([self.track.first_seen] + [f.first_seen for f in self.fragments])


# Fragment texts within this edit distance of the passage's text are the same plate misread while small.
FRAGMENT_MAX_DISTANCE = 2
# A fragment may be picked up by a track starting within this many plate widths of where it was last seen.
FRAGMENT_MAX_SHIFT = 3.0
# How long an ended passage is remembered as one a short track may be the tail of (see ``_tail_of``).
TAIL_MEMORY_S = 60.0
# A track whose first box overlaps a lost standing plate's last box this much appeared where it vanished.
REAPPEARED_IOU = 0.5
# A plate moved less than this many plate widths in its last second in view: it was standing still.
STANDING_SHIFT = 0.25
# Below this published confidence (the chance the text is right) a text is no evidence of another car.
SURE_CONFIDENCE = 0.5


def _widths_apart(a: tuple[float, float], a_box: Box, b: tuple[float, float], b_box: Box) -> float:
    """Distance between two plate centres in plate widths (the wider of the two boxes)."""
    width = max(a_box[2] - a_box[0], b_box[2] - b_box[0], 1.0)
    return float(np.hypot(b[0] - a[0], b[1] - a[1])) / width


def _may_be_same_plate(text: str | None, other: str | None, *, weak: bool) -> bool:
    """Two reads of one place and moment may be the same plate: one side is too weak to tell (``weak``) or
    has no text, or the texts are at most FRAGMENT_MAX_DISTANCE edits apart."""
    return weak or not text or not other or Levenshtein.distance(text, other) <= FRAGMENT_MAX_DISTANCE



def formatted_vote(vote: Vote | None, charset: str, formats: Sequence[PlateFormat], config: FormatsConfig,
                   calibration: Calibration = DEFAULT_CALIBRATION) -> Vote | None:
    """The vote with its text chosen under the plate ``formats`` (``config``'s thresholds), as an event
    reports it; unchanged without formats or text."""
    if vote is None or not vote.text or not formats:
        return vote
    choice = constrain(vote.probs, charset, formats, min_ratio=config.min_ratio,
                       min_unaided_ratio=config.min_unaided_ratio, trim_leading=config.trim_leading)
    return apply_format(vote, choice, calibration)

class PassageBuilder:
    """Turns one camera's frames, detections and reads into one ``PlateEvent`` per passage."""

    def __init__(
        self,
        camera_id: str,
        *,
        charset: str = DEFAULT_CHARSET,
        tracking: TrackingConfig | None = None,
        voting: VotingConfig | None = None,
        events: EventsConfig | None = None,
        formats: FormatsConfig | None = None,
        counting_line: CountingLineConfig | None = None,
        device_id: str = "",
        versions: Mapping[str, str] | None = None,
        crop_padding: float = 0.15,
        write_file: Callable[[Path, bytes], None] = write_file_atomic,
        model_calibration: Calibration | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.charset = charset
        self.voting = voting or VotingConfig()
        self.events = events or EventsConfig()
        self.formats = formats or FormatsConfig()
        self.counting_line = counting_line
        self.device_id = device_id
        self.versions = dict(versions or {})
        self.crop_padding = crop_padding
        self.write_file = write_file
        self.tracking = tracking or TrackingConfig()
        self.tracker = PlateTracker(self.tracking)
        # The config's map wins; else the OCR model's own (measured for it); else the score as it is.
        self.calibration = (
            Calibration(tuple(self.voting.calibration)) if self.voting.calibration
            else model_calibration or DEFAULT_CALIBRATION
        )
        self._formats = load_formats(self.formats.regions, self.formats.custom)
        self._lists = PlateLists(tuple(self.formats.allow), tuple(self.formats.deny), self.formats.max_distance)
        self._salt = self.events.effective_salt() if self.events.hash_text else b""
        self._crop_dir = self.events.crop_dir or default_outbox_path().parent / "crops"
        self._passages: dict[int, _Passage] = {}
        self._held: list[_Passage] = []  # ended short tracks that a following track may absorb
        self._ended: list[_Passage] = []  # passages ended within the last moments: a short track after one may be its tail
        self._recent: dict[str, float] = {}  # text -> last sighting of a passage with it (deduplication)
        self._frame_size: tuple[int, int] | None = None

    @classmethod
    def from_config(
        cls,
        config: AppConfig,
        camera_id: str,
        *,
        charset: str = DEFAULT_CHARSET,
        versions: Mapping[str, str] | None = None,
        write_file: Callable[[Path, bytes], None] = write_file_atomic,
        model_calibration: Calibration | None = None,
    ) -> PassageBuilder:
        camera = next((c for c in config.cameras if c.id == camera_id), None)
        if camera is None:
            raise ValueError(f"no camera {camera_id!r} in the config")
        return cls(
            camera_id,
            charset=charset,
            tracking=config.tracking,
            voting=config.voting,
            events=config.events,
            formats=config.formats,
            counting_line=camera.counting_line,
            device_id=config.device_id,
            versions=versions,
            crop_padding=config.crop.padding,
            write_file=write_file,
            model_calibration=model_calibration,
        )

    # ------------------------------------------------------------------------------------------- queries
    @property
    def tracks(self) -> list[Track]:
        """The live tracks after the last update."""
        return self.tracker.tracks

    def votes(self) -> dict[int, Vote | None]:
        """The current vote of each live track, by track id."""
        return {track_id: self._current_vote(p) for track_id, p in self._passages.items()}

    def reads_needed(self, detections: Detections, frame_index: int) -> np.ndarray:
        """Per detection of this frame: does it still need the OCR? (Call before ``update``.)

        False only for a detection that joins a track whose vote is settled, when
        ``voting.stop_reading_when_settled``.
        """
        needed = np.ones(len(detections), dtype=bool)
        if not self.voting.stop_reading_when_settled:
            return needed
        for det, track_id in self.tracker.match(detections, frame_index).items():
            passage = self._passages.get(track_id)
            if passage is not None and self._settled(passage):
                needed[det] = False
        return needed

    # ------------------------------------------------------------------------------------------- updates
    def update(self, frame: Frame, detections: Detections, reads: Sequence[PlateRead] = ()) -> list[PlateEvent]:
        """Track this frame's detections, add the reads to their tracks; the events now due."""
        self._frame_size = (frame.width, frame.height)
        tracks = self.tracker.update(detections, frame.index, frame.timestamp, frame_size=self._frame_size)
        by_detection: dict[int, _Passage] = {}
        for track in tracks:
            passage = self._passages.get(track.id)
            if passage is None:
                passage = self._passages[track.id] = _Passage(track, VoteAccumulator(self.charset),
                                                              VoteAccumulator(self.charset))
                self._adopt_fragment(passage)
            passage.track = track
            if track.detection is not None:
                by_detection[track.detection] = passage
                self._see(passage, frame, detections, track.detection)
        for read in reads:
            det = _detection_of(read, detections)
            if det is not None and det in by_detection:
                self._add_read(by_detection[det], frame, read)

        due: list[PlateEvent] = []
        for track in tracks:
            passage = self._passages[track.id]
            if passage.done:
                self._remember(passage.text, track.last_seen)
            elif track.confirmed and self.events.early and (self._settled(passage) or self._waited(passage)):
                due += self._finish(passage, final=False)
        for track in self.tracker.ended:
            due += self._end(track)
        due += self._release_fragments(frame.timestamp)
        self._forget(frame.timestamp)
        return due

    def flush(self) -> list[PlateEvent]:
        """End every passage (end of stream) and return their events."""
        due: list[PlateEvent] = []
        for track in self.tracker.flush():
            due += self._end(track, holding=False)
        return due + self._release_fragments(None)

    # -------------------------------------------------------------------------------------- fragments
    def _is_fragment(self, passage: _Passage) -> bool:
        """A passage that may be the first part of a later track's: a short track (a small plate detected on
        and off), or a longer one whose vote never settled and that was lost in view (a distant plate read
        weakly, then missed for more than ``tracking.max_age`` frames while it came closer); the latter
        joins only a track that reads about the same text (``_merge_fragments``)."""
        track = passage.track
        lost_in_view = track.missed > self.tracking.max_age  # ended unseen, not by leaving the frame
        return (
            self.tracking.fragment_hold_s > 0
            and not passage.fragments
            and (track.hits < self.tracking.fragment_max_hits or (lost_in_view and not self._settled(passage)))
        )

    def _adopt_fragment(self, passage: _Passage) -> None:
        """A new track takes the nearest short track that was lost shortly before it started, near where it
        starts: one already ended (held) or one the tracker still keeps as lost but failed to match (its
        velocity, estimated from a few frames, predicted the plate elsewhere)."""
        if self.tracking.fragment_hold_s <= 0:
            return
        track = passage.track
        # Lost tracks the tracker still keeps: short ones only (a long one is more likely another plate
        # hidden for a moment; once it has ended unsettled it is held and may be taken then).
        lost = [
            p for p in self._passages.values()
            if p is not passage and not p.done and not p.fragments and p.track.confirmed
            and p.track.detection is None and p.track.hits < self.tracking.fragment_max_hits
        ]
        best, best_shift = None, FRAGMENT_MAX_SHIFT
        for fragment in self._held + lost:
            gap = track.first_seen - fragment.track.last_seen
            if not 0 < gap <= self.tracking.fragment_hold_s:
                continue
            shift = _widths_apart(fragment.track.center, fragment.track.box, track.center, track.box)
            if shift <= best_shift:
                best, best_shift = fragment, shift
        if best is None:
            return
        if best in self._held:
            self._held.remove(best)
        else:
            best.done = True  # its track lives on in the tracker, but it is this passage's now: no event of its own
        passage.fragments.append(best)

    def _release_fragments(self, now: float | None) -> list[PlateEvent]:
        """Held fragments nobody took within the hold time are passages of their own, unless they are the
        tail of the passage that ended just before them (``_tail_of``)."""
        due: list[PlateEvent] = []
        for fragment in list(self._held):
            if now is None or now - fragment.track.last_seen > self.tracking.fragment_hold_s:
                self._held.remove(fragment)
                if self._tail_of(fragment) is not None:
                    fragment.done = True
                    continue
                due += self._finish(fragment, final=True)
                self._ended.append(fragment)
        if now is not None:
            # A tail starts within fragment_hold_s of its passage's end and is released fragment_hold_s after
            # its own, a few detections later: a minute covers that at any frame rate. A car found again where
            # it stood is looked for over the dedup window.
            keep = max(TAIL_MEMORY_S, 2 * self.tracking.fragment_hold_s, self.events.dedup_window_s)
            self._ended = [p for p in self._ended if now - p.track.last_seen <= keep]
        return due

    def _tail_of(self, fragment: _Passage) -> _Passage | None:
        """The passage this short track is the tail of, if any: it started shortly after that passage's
        track ended, near where it was last seen, and reads about the same text or too weakly to tell. A
        plate leaving the frame is cut by the border and detected again for a frame or two as a new track
        (the old one ended as its predicted box left the frame, or it changed too much to match): another
        event for it would be a false passage (seen in the passage benchmark). The passage's event has gone
        already; the tail's reads come too late to change it."""
        track = fragment.track
        own = self._current_vote(fragment)
        weak = track.hits < self.tracking.fragment_max_hits and not self._settled(fragment)
        best, best_shift = None, FRAGMENT_MAX_SHIFT
        for ended in self._ended:
            gap = track.first_seen - ended.track.last_seen
            if not 0 < gap <= self.tracking.fragment_hold_s:
                continue
            shift = _widths_apart(ended.track.center, ended.track.box, track.first_center, track.first_box)
            if shift <= best_shift and _may_be_same_plate(own.text if own else None, ended.text, weak=weak):
                best, best_shift = ended, shift
        return best

    def _merge_fragments(self, passage: _Passage) -> list[PlateEvent]:
        """Fold the passage's fragments into it when their text agrees (or they have none); a fragment
        that reads as another plate is reported on its own. Returns those separate events."""
        separate: list[PlateEvent] = []
        if not passage.fragments or passage.merged:
            return separate
        passage.merged = True
        own = self._current_vote(passage)
        for fragment in passage.fragments:
            theirs = self._current_vote(fragment)
            # A few reads of a small, distant plate are weak evidence: only a settled fragment that reads as
            # another plate is kept apart. A long unsettled one (many reads, none sure) must read about the same
            # text: it may as well be another car that drove off unread just before this one came.
            short = fragment.track.hits < self.tracking.fragment_max_hits
            if _may_be_same_plate(theirs.text if theirs else None, own.text if own else None,
                                  weak=short and not self._settled(fragment)):
                passage.votes.merge(fragment.votes)
                passage.edge_votes.merge(fragment.edge_votes)
                passage.stale = True
                theirs = fragment.best_read
                if theirs is not None and (passage.best_read is None
                                           or passage.best_read.beaten_by(theirs.at_frame_edge, theirs.score)):
                    passage.best_read = fragment.best_read
                if passage.best_seen is None:
                    passage.best_seen = fragment.best_seen
            else:
                fragment.done = False
                separate += self._finish(fragment, final=True)
                passage.fragments = [f for f in passage.fragments if f is not fragment]
        return separate

    # ----------------------------------------------------------------------------------------- internals
    def _end(self, track: Track, *, holding: bool = True) -> list[PlateEvent]:
        passage = self._passages.pop(track.id, None)
        if passage is None:
            return []
        passage.track = track
        if passage.done:
            self._remember(passage.text, track.last_seen)
            self._ended.append(passage)
            return []
        if not track.confirmed:  # a detector blip, not a passage; a fragment it took is free again
            self._held.extend(passage.fragments)
            return []
        if holding and self._is_fragment(passage):
            self._held.append(passage)
            return []
        self._ended.append(passage)
        return self._finish(passage, final=True)

    def _current_vote(self, passage: _Passage) -> Vote | None:
        """The vote of the passage's whole-plate reads; of its reads at the frame's edge when it has none."""
        votes = passage.votes if passage.votes.count else passage.edge_votes
        if passage.stale or (passage.vote is None and votes.count):
            passage.vote = votes.vote(candidates=self.voting.candidates, calibration=self.calibration)
            passage.stale = False
        return passage.vote

    def _settled(self, passage: _Passage) -> bool:
        """Enough agreeing reads of the whole plate to report it now. Reads at the frame's edge never settle
        a passage: a car entering the view would be reported by the part of its plate in view."""
        if not passage.votes.count:
            return False
        return is_settled(
            self._current_vote(passage),
            min_reads=self.voting.settle_reads,
            min_agreement=self.voting.settle_agreement,
            min_weight=self.voting.settle_weight,
        )

    def _waited(self, passage: _Passage) -> bool:
        """In view for ``events.max_wait_s`` with enough reads to vote: answer now rather than never settle."""
        limit = self.events.max_wait_s
        track = passage.track
        return (
            limit is not None
            and track.last_seen - passage.first_seen >= limit
            and passage.votes.count + passage.edge_votes.count >= self.voting.settle_reads
        )

    def _see(self, passage: _Passage, frame: Frame, detections: Detections, det: int) -> None:
        """Keep the best detection as the fallback view for a passage with no read."""
        if passage.best_read is not None:  # a read's view wins anyway: spare the copies
            return
        box = _box(detections.xyxy[det])
        score = float(detections.confidence[det]) * min(1.0, (box[2] - box[0]) / REFERENCE_WIDTH_PX)
        if passage.best_seen is None or score > passage.best_seen.score:
            passage.best_seen = self._view(frame, box, score)

    def _add_read(self, passage: _Passage, frame: Frame, read: PlateRead) -> None:
        box = read.box or passage.track.box
        sharpness = crop_sharpness(read.crop_image) if read.crop_image is not None else None
        weight = read_weight(read.confidence, width_px=box[2] - box[0], sharpness=sharpness)
        (passage.edge_votes if read.at_frame_edge else passage.votes).add(read, weight)
        passage.stale = True
        best = passage.best_read
        if best is None or best.beaten_by(read.at_frame_edge, weight):
            passage.best_read = self._view(frame, _box(box), weight, at_frame_edge=read.at_frame_edge)

    def _view(self, frame: Frame, box: Box, score: float, *, at_frame_edge: bool = False) -> _Best:
        x1, y1, x2, y2 = box
        pad_x, pad_y = (x2 - x1) * self.crop_padding, (y2 - y1) * self.crop_padding
        left, top = max(int(np.floor(x1 - pad_x)), 0), max(int(np.floor(y1 - pad_y)), 0)
        right = min(int(np.ceil(x2 + pad_x)), frame.width)
        bottom = min(int(np.ceil(y2 + pad_y)), frame.height)
        # Copies: a source may reuse its frame buffer for the next frame.
        crop = frame.image[top:bottom, left:right].copy() if right > left and bottom > top else np.zeros((1, 1, 3), np.uint8)
        snapshot = frame.image.copy() if self.events.snapshot else None
        return _Best(score, box, crop, snapshot, at_frame_edge)

    def _finish(self, passage: _Passage, *, final: bool) -> list[PlateEvent]:
        """The passage's event (or nothing: a duplicate, or unread when those are not wanted).

        Before the track ends (``final`` False) only a text good enough to report ends the passage; one
        below ``events.min_confidence`` waits for more reads.
        """
        separate = self._merge_fragments(passage)
        if separate:
            return separate + self._finish(passage, final=final)
        track = passage.track
        if passage.fragments:  # the passage began with its first fragment
            first = min(passage.fragments, key=lambda f: f.track.first_seen).track
            track = dataclasses.replace(track, first_seen=first.first_seen, first_frame=first.first_frame,
                                        first_box=first.first_box, hits=track.hits + sum(f.track.hits for f in passage.fragments))
        vote = formatted_vote(self._current_vote(passage), self.charset, self._formats, self.formats, self.calibration)
        reason = None
        if vote is None:
            reason = REASON_NOT_READ
        elif not vote.text:
            reason = REASON_ILLEGIBLE
        elif vote.confidence < self.events.min_confidence:
            reason = f"low confidence ({vote.confidence:.2f} < {self.events.min_confidence:.2f})"
        if reason is not None and not final:
            return []
        passage.done = True
        if reason is not None:
            if not self.events.emit_unread:
                return []
            return [self._event(passage, track, vote, None, reason)]
        assert vote is not None
        passage.text, passage.confidence = vote.text, vote.confidence
        duplicate = self._is_duplicate(vote.text, track.first_seen) or self._reappeared(track, vote)
        self._remember(vote.text, track.last_seen)
        if duplicate:
            return []
        return [self._event(passage, track, vote, vote.text, None)]

    def _event(self, passage: _Passage, track: Track, vote: Vote | None, text: str | None, reason: str | None) -> PlateEvent:
        events = self.events
        matched = self._lists.match(text)
        hashed = None
        candidates = tuple(vote.candidates) if vote is not None else ()
        if events.hash_text:
            candidates = ()  # alternatives would give the text away
            if text is not None:
                hashed, text = text_hash(text, self._salt), None
            if matched is not None:
                matched = ListMatch(matched.list, text_hash(matched.entry, self._salt), matched.distance)
        best = passage.best_read or passage.best_seen
        crop_jpeg = crop_path = None
        if best is not None and events.crop != "none":
            data = self._jpeg(best.crop)
            if events.crop == "base64":
                crop_jpeg = data
            else:
                day = time.strftime("%Y%m%d", time.gmtime(track.last_seen))
                path = Path(self._crop_dir) / self.camera_id / day / f"{passage.id}.jpg"
                self.write_file(path, data)
                crop_path = str(path)
        snapshot = self._jpeg(best.snapshot) if best is not None and best.snapshot is not None else None
        size = self._frame_size
        return PlateEvent(
            id=passage.id,
            device_id=self.device_id,
            camera_id=self.camera_id,
            start_time=track.first_seen,
            end_time=track.last_seen,
            text=text,
            confidence=vote.confidence if vote is not None and reason is None else 0.0,
            score=vote.score if vote is not None and reason is None else None,
            reason=reason,
            text_hash=hashed,
            char_confidences=vote.char_confidences if vote is not None and reason is None else (),
            candidates=candidates,
            reads=vote.reads if vote is not None else 0,
            box=best.box if best is not None else track.box,
            direction=direction_of(track, self.counting_line, size) if self.counting_line and size else None,
            angle=motion_angle(track),
            crop_jpeg=crop_jpeg,
            crop_path=crop_path,
            snapshot_jpeg=snapshot,
            plate_format=vote.format if vote is not None and reason is None else None,
            matched=matched,
            versions=self.versions,
        )

    def _jpeg(self, image: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.events.jpeg_quality])
        if not ok:  # cv2 fails only on an empty or odd image, which _view never makes
            raise ValueError("JPEG encoding failed")
        return data.tobytes()

    # ----------------------------------------------------------------------------------- deduplication
    def _is_duplicate(self, text: str, first_seen: float) -> bool:
        window, max_distance = self.events.dedup_window_s, self.events.dedup_max_distance
        return any(
            first_seen - last_seen <= window
            and Levenshtein.distance(text, seen, score_cutoff=max_distance) <= max_distance
            for seen, last_seen in self._recent.items()
        )

    def _reappeared(self, track: Track, vote: Vote) -> bool:
        """The track is a car found again where it stood: within ``events.dedup_window_s`` after a reported
        passage's plate was lost in view while standing still, it first appeared where that plate was last
        seen, and the two texts may be the same plate (one is more likely wrong than right, or they are at
        most two edits apart). An idling car whose plate the detector misses for seconds and the OCR misreads
        differently each time would otherwise be reported again; a car that drives up to the spot was
        followed from further away, so its track starts elsewhere."""
        for ended in self._ended:
            old = ended.track
            gap = track.first_seen - old.last_seen
            if (ended.text is None or not 0 < gap <= self.events.dedup_window_s
                    or old.missed <= self.tracking.max_age or not _standing(old)):
                continue
            overlap = float(iou_matrix(np.asarray(old.box)[None, :], np.asarray(track.first_box)[None, :])[0, 0])
            weak = min(vote.confidence, ended.confidence if ended.confidence is not None else 0.0) < SURE_CONFIDENCE
            if overlap >= REAPPEARED_IOU and _may_be_same_plate(vote.text, ended.text, weak=weak):
                return True
        return False

    def _remember(self, text: str | None, last_seen: float) -> None:
        if text:
            self._recent[text] = max(self._recent.get(text, last_seen), last_seen)

    def _forget(self, now: float) -> None:
        # A passage still open may settle later and is compared from its first sighting: keep what it may
        # yet be a duplicate of.
        horizon = min([now] + [p.first_seen for p in self._passages.values() if not p.done]
                      + [p.track.first_seen for p in self._held])
        window = self.events.dedup_window_s
        self._recent = {t: seen for t, seen in self._recent.items() if horizon - seen <= window}


def _standing(track: Track) -> bool:
    """The plate hardly moved in its last second in view (an idling car), by its recent detections."""
    recent = [p for p in track.history if track.last_seen - p.timestamp <= 1.0]
    if len(recent) < 2:
        return False
    centres = np.array([((p.box[0] + p.box[2]) / 2.0, (p.box[1] + p.box[3]) / 2.0) for p in recent])
    width = max(track.box[2] - track.box[0], 1.0)
    return float(np.linalg.norm(centres - centres[-1], axis=1).max()) / width <= STANDING_SHIFT


def _box(values: Sequence[float] | np.ndarray) -> Box:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


def _detection_of(read: PlateRead, detections: Detections) -> int | None:
    """The index of the detection a read was made from: the one its box overlaps most."""
    if not len(detections):
        return None
    if read.box is None:
        return 0 if len(detections) == 1 else None
    overlap = iou_matrix(np.asarray(read.box, dtype=np.float64)[None, :], detections.xyxy)[0]
    best = int(overlap.argmax())
    return best if overlap[best] >= READ_BOX_IOU else None
