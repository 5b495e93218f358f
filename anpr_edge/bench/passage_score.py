"""Event-level scoring of a run over a labelled clip: one event per passage, with the right text?

Pure functions over what a run observed (``ObservedEvent``, ``ObservedTrack``) and the clip's ground truth
(``passage_clips.PassageTruth``):

- **Events to passages** (``match_events``): an event belongs to the passage whose plate box, in the frames
  the event spans (its start to its end frame; whole or partly out of the frame), overlaps the event's box
  most (``overlap``: IoU of at least ``MATCH_IOU``; or at least ``MATCH_INSIDE`` of the event's box inside
  the plate box, since a crop-set plate's box is the whole crop, a margin around the plate included, while
  a detector boxes the plate; or the plate box inside an event box at most ``MAX_LOOSE_AREA`` times larger,
  a loose box around the right plate, which makes the event about that passage whatever its text). The
  event's box is the box of its best read, a frame inside that span, so this is a match in time and space:
  two cars on the road at once, or the same car coming back later, are told apart. An event that matches no
  passage is a **false event**.
- **Per passage**: detected (at least one event), exactly one event, **correct text** (exactly one event
  and its text is the true text: the issue's target), duplicates (events beyond the first). Event
  precision: the share of events that are a passage's first event (neither a duplicate nor false).
- **Single best frame** (the baseline voting must beat): the text of the most confident single OCR read of
  the passage's track(s), from the same reads the vote had. A track belongs to the passage its detections
  overlap (``MATCH_IOU``) in the most frames.

- **Event confidence** (``confidence_summary``): is an event's ``confidence`` the chance that its text is
  right, as the config documents? Every event with a text counts (a duplicate on its own text, a false
  event as wrong; an unread passage's null-text event claims nothing and is left out): the expected
  calibration error over equal-width bins, and per threshold how many events a subscriber that drops those
  below it would keep and how many of the kept are right.

Passages whose plate is never fully visible for ``MIN_VISIBLE_FRAMES`` frames are not scored (no event is
expected, and one that matches them is neither credited nor false).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from anpr_edge.bench.passage_clips import Box, PassageTruth

MATCH_IOU = 0.3
MATCH_INSIDE = 0.7
MAX_LOOSE_AREA = 9.0
MIN_VISIBLE_FRAMES = 5
LATENCY_TARGET_MS = 500.0


@dataclass(frozen=True)
class ObservedEvent:
    """One event of a run, in the clip's frame numbers.

    ``emitted_frame`` is the frame whose processing returned it (the clip's frame count for events flushed
    at its end). ``early``: emitted while its track was still seen, i.e. on the frame whose read settled the
    vote; ``latency_ms`` is then the wall time from that frame's arrival to the event being routed.
    """

    text: str | None
    start_frame: int
    end_frame: int
    box: Box | None
    emitted_frame: int
    early: bool = False
    latency_ms: float | None = None
    confidence: float = 0.0
    reads: int = 0
    score: float | None = None  # the vote's score before calibration (confidence = the map of it)


@dataclass(frozen=True)
class TrackRead:
    frame: int
    text: str
    confidence: float


@dataclass(frozen=True)
class ObservedTrack:
    """A track of a run: its detected box per frame and the OCR reads made of it."""

    id: int
    boxes: Mapping[int, Box]
    reads: tuple[TrackRead, ...] = ()


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def overlap(box: Sequence[float], truth: Sequence[float]) -> float:
    """How well a detected ``box`` matches a true plate box, 0..1: their IoU; or the share of ``box``
    inside ``truth`` when at least ``MATCH_INSIDE`` (a plate boxed inside its crop's margin); or the share
    of ``truth`` inside ``box`` when at least ``MATCH_INSIDE`` and ``box`` is at most ``MAX_LOOSE_AREA``
    times larger (a loose box around the plate)."""
    ix = max(0.0, min(box[2], truth[2]) - max(box[0], truth[0]))
    iy = max(0.0, min(box[3], truth[3]) - max(box[1], truth[1]))
    area = (box[2] - box[0]) * (box[3] - box[1])
    true_area = (truth[2] - truth[0]) * (truth[3] - truth[1])
    inside = ix * iy / area if area > 0 else 0.0
    around = ix * iy / true_area if true_area > 0 and area <= MAX_LOOSE_AREA * true_area else 0.0
    return max(iou(box, truth), *(v for v in (inside, around) if v >= MATCH_INSIDE), 0.0)


def scored(passage: PassageTruth) -> bool:
    return len(passage.boxes) >= MIN_VISIBLE_FRAMES


def match_events(passages: Sequence[PassageTruth], events: Sequence[ObservedEvent],
                 threshold: float = MATCH_IOU) -> list[int | None]:
    """For each event, the index of its passage in ``passages`` (None: a false event)."""
    matches: list[int | None] = []
    for event in events:
        best, best_score = None, threshold
        for k, passage in enumerate(passages):
            if event.box is None:
                continue
            frames = range(max(event.start_frame, 0), event.end_frame + 1)
            score = max((overlap(event.box, b) for f in frames if (b := passage.box_at(f)) is not None), default=0.0)
            if score >= best_score:
                best, best_score = k, score
        matches.append(best)
    return matches


def assign_tracks(passages: Sequence[PassageTruth], tracks: Sequence[ObservedTrack],
                  threshold: float = MATCH_IOU) -> dict[int, list[ObservedTrack]]:
    """Passage index -> the tracks that follow it (each track to the passage it overlaps in most frames)."""
    assigned: dict[int, list[ObservedTrack]] = defaultdict(list)
    for track in tracks:
        counts = [
            sum(1 for f, box in track.boxes.items() if (b := p.box_at(f)) is not None and overlap(box, b) >= threshold)
            for p in passages
        ]
        if counts and max(counts) > 0:
            assigned[int(np.argmax(counts))].append(track)
    return assigned


def single_best_text(tracks: Iterable[ObservedTrack]) -> str | None:
    """The text of the most confident single read over ``tracks`` (None: no read)."""
    reads = [r for t in tracks for r in t.reads]
    if not reads:
        return None
    return max(reads, key=lambda r: (r.confidence, -r.frame)).text


@dataclass(frozen=True)
class PassageOutcome:
    clip: str
    id: str
    text: str
    source: str
    kind: str
    events: tuple[ObservedEvent, ...]  # matched to this passage, in emission order
    single_best: str | None
    first_frame: int
    stop: tuple[int, int] | None = None
    fps: float = 25.0
    reads: tuple[TrackRead, ...] = ()  # the OCR reads of its tracks, by frame: what the vote had

    @property
    def detected(self) -> bool:
        return bool(self.events)

    @property
    def exactly_one(self) -> bool:
        return len(self.events) == 1

    @property
    def correct(self) -> bool:
        return self.exactly_one and self.events[0].text == self.text

    @property
    def duplicates(self) -> int:
        return max(len(self.events) - 1, 0)

    @property
    def single_correct(self) -> bool:
        return self.single_best == self.text

    @property
    def seconds_to_event(self) -> float | None:
        """Video time from the plate's first full view to its first event."""
        return (self.events[0].emitted_frame - self.first_frame) / self.fps if self.events else None

    @property
    def answered_while_stopped(self) -> bool | None:
        """For a car that stops: was its event out before it moved on? (None for the others.)"""
        if self.stop is None:
            return None
        return bool(self.events) and self.events[0].emitted_frame <= self.stop[1]

    def as_dict(self) -> dict[str, object]:
        return {
            "clip": self.clip, "id": self.id, "text": self.text, "source": self.source, "kind": self.kind,
            "events": [event_dict(e) for e in self.events], "correct": self.correct, "single_best": self.single_best,
            "seconds_to_event": None if self.seconds_to_event is None else round(self.seconds_to_event, 2),
            "reads": [[r.frame, r.text, round(r.confidence, 3)] for r in self.reads],
        }


def event_dict(event: ObservedEvent) -> dict[str, object]:
    return {"text": event.text, "confidence": round(event.confidence, 4),
            "score": None if event.score is None else round(event.score, 4), "reads": event.reads,
            "start_frame": event.start_frame, "end_frame": event.end_frame,
            "emitted_frame": event.emitted_frame, "early": event.early,
            "box": None if event.box is None else [round(v, 1) for v in event.box]}


@dataclass(frozen=True)
class ClipScore:
    clip: str
    outcomes: tuple[PassageOutcome, ...]
    false_events: tuple[ObservedEvent, ...]


def score_clip(clip: str, passages: Sequence[PassageTruth], events: Sequence[ObservedEvent],
               tracks: Sequence[ObservedTrack] = (), *, fps: float = 25.0) -> ClipScore:
    """Score one clip's events (and, for the single-best-frame baseline, its tracks) against its truth."""
    matches = match_events(passages, events)
    by_passage: dict[int, list[ObservedEvent]] = defaultdict(list)
    false = []
    for event, k in zip(events, matches):
        if k is None:
            false.append(event)
        else:
            by_passage[k].append(event)
    per_track = assign_tracks(passages, tracks)
    outcomes = tuple(
        PassageOutcome(
            clip=clip, id=p.id, text=p.text, source=p.source, kind=p.kind,
            events=tuple(sorted(by_passage.get(k, []), key=lambda e: e.emitted_frame)),
            single_best=single_best_text(per_track.get(k, [])), first_frame=p.first_frame, stop=p.stop, fps=fps,
            reads=tuple(sorted((r for t in per_track.get(k, []) for r in t.reads), key=lambda r: r.frame)),
        )
        for k, p in enumerate(passages)
        if scored(p)
    )
    return ClipScore(clip, outcomes, tuple(false))


# ------------------------------------------------------------------------------------------ summary
@dataclass(frozen=True)
class ScoreRow:
    """One row of the table: a group of passages (``false_events`` only for the row of all of them)."""

    name: str
    passages: int
    detected: int
    exactly_one: int
    correct: int
    single_correct: int
    duplicates: int
    false_events: int | None = None

    @property
    def events(self) -> int:
        """Events of this group: one per detected passage, the duplicates, and (row of all) the false ones."""
        return self.detected + self.duplicates + (self.false_events or 0)

    @property
    def precision(self) -> float:
        """Share of the events that are a passage's first event (not a duplicate, not false)."""
        return self.detected / self.events if self.events else float("nan")

    def rate(self, count: int) -> float:
        return count / self.passages if self.passages else float("nan")

    def as_dict(self) -> dict[str, object]:
        def r(value: float) -> float | None:
            return None if value != value else round(value, 6)  # 6 places: tables round again to 0.1%

        return {
            "group": self.name, "passages": self.passages, "detected": self.detected,
            "exactly_one": self.exactly_one, "correct": self.correct, "single_best_correct": self.single_correct,
            "duplicates": self.duplicates, "false_events": self.false_events,
            "recall": r(self.rate(self.detected)), "exactly_one_rate": r(self.rate(self.exactly_one)),
            "correct_rate": r(self.rate(self.correct)), "single_best_rate": r(self.rate(self.single_correct)),
            "events": self.events, "precision": r(self.precision),
        }


def _row(name: str, outcomes: Sequence[PassageOutcome], false_events: int | None = None) -> ScoreRow:
    return ScoreRow(
        name=name,
        passages=len(outcomes),
        detected=sum(o.detected for o in outcomes),
        exactly_one=sum(o.exactly_one for o in outcomes),
        correct=sum(o.correct for o in outcomes),
        single_correct=sum(o.single_correct for o in outcomes),
        duplicates=sum(o.duplicates for o in outcomes),
        false_events=false_events,
    )


def summarize(scores: Sequence[ClipScore]) -> list[ScoreRow]:
    """All passages, then per source set, then per kind (drive / idle / return)."""
    outcomes = [o for s in scores for o in s.outcomes]
    rows = [_row("all", outcomes, sum(len(s.false_events) for s in scores))]

    def groups(key: Callable[[PassageOutcome], str], prefix: str) -> list[ScoreRow]:
        grouped: dict[str, list[PassageOutcome]] = defaultdict(list)
        for o in outcomes:
            grouped[key(o)].append(o)
        return [_row(f"{prefix}{name}", grouped[name]) for name in sorted(grouped)]

    return rows + groups(lambda o: o.source, "") + groups(lambda o: o.kind, "kind: ")


@dataclass(frozen=True)
class LatencySummary:
    """Early events: wall time from the frame whose read settled the vote to the event being routed."""

    early_events: int
    median_ms: float
    max_ms: float
    within_target: int  # at most LATENCY_TARGET_MS
    seconds_to_event_median: float  # video time from the plate's first full view to its event
    stopped: int  # passages of cars that stop
    answered_while_stopped: int

    def as_dict(self) -> dict[str, object]:
        def r(value: float) -> float | None:
            return None if value != value else round(value, 2)

        return {"early_events": self.early_events, "latency_ms_median": r(self.median_ms),
                "latency_ms_max": r(self.max_ms), "latency_within_target": self.within_target,
                "latency_target_ms": LATENCY_TARGET_MS, "seconds_to_event_median": r(self.seconds_to_event_median),
                "stopped_passages": self.stopped, "answered_while_stopped": self.answered_while_stopped}


def latency_summary(scores: Sequence[ClipScore], events: Iterable[ObservedEvent]) -> LatencySummary:
    latencies = [e.latency_ms for e in events if e.early and e.latency_ms is not None]
    outcomes = [o for s in scores for o in s.outcomes]
    to_event = [o.seconds_to_event for o in outcomes if o.seconds_to_event is not None]
    stopped = [o for o in outcomes if o.stop is not None]
    return LatencySummary(
        early_events=len(latencies),
        median_ms=statistics.median(latencies) if latencies else float("nan"),
        max_ms=max(latencies) if latencies else float("nan"),
        within_target=sum(v <= LATENCY_TARGET_MS for v in latencies),
        seconds_to_event_median=statistics.median(to_event) if to_event else float("nan"),
        stopped=len(stopped),
        answered_while_stopped=sum(bool(o.answered_while_stopped) for o in stopped),
    )


CONFIDENCE_BINS = 5
CONFIDENCE_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


@dataclass(frozen=True)
class ConfidenceBin:
    """Events whose confidence is in [low, high) (the last bin includes 1)."""

    low: float
    high: float
    events: int
    correct: int
    confidence_sum: float

    def as_dict(self) -> dict[str, object]:
        return {"low": self.low, "high": self.high, "events": self.events, "correct": self.correct,
                "confidence_sum": round(self.confidence_sum, 4)}


@dataclass(frozen=True)
class ConfidenceThreshold:
    """What a subscriber keeps when it drops events below ``threshold``."""

    threshold: float
    kept: int
    kept_correct: int

    def as_dict(self) -> dict[str, object]:
        return {"threshold": self.threshold, "kept": self.kept, "kept_correct": self.kept_correct}


@dataclass(frozen=True)
class ConfidenceSummary:
    """How well events' confidence predicts a right text (sums: several runs' summaries add up by bin)."""

    events: int
    correct: int
    bins: tuple[ConfidenceBin, ...]
    thresholds: tuple[ConfidenceThreshold, ...]

    @property
    def mean_confidence(self) -> float:
        return sum(b.confidence_sum for b in self.bins) / self.events if self.events else float("nan")

    @property
    def calibration_error(self) -> float:
        """Expected calibration error: the event-weighted mean |accuracy - mean confidence| over the bins."""
        if not self.events:
            return float("nan")
        return sum(abs(b.correct - b.confidence_sum) for b in self.bins) / self.events

    def as_dict(self) -> dict[str, object]:
        def r(value: float) -> float | None:
            return None if value != value else round(value, 4)

        return {"events": self.events, "correct": self.correct, "mean_confidence": r(self.mean_confidence),
                "calibration_error": r(self.calibration_error), "bins": [b.as_dict() for b in self.bins],
                "thresholds": [t.as_dict() for t in self.thresholds]}


def summarize_confidence(confidence: Sequence[float] | np.ndarray, right: Sequence[bool] | np.ndarray, *,
                         bins: int = CONFIDENCE_BINS,
                         thresholds: Sequence[float] = CONFIDENCE_THRESHOLDS) -> ConfidenceSummary:
    """Reliability of ``confidence`` as the chance of ``right``: equal-width bins and keep-above thresholds."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64).reshape(-1), 0.0, 1.0)
    ok = np.asarray(right, dtype=bool).reshape(-1)
    index = np.minimum((conf * bins).astype(int), bins - 1)
    return ConfidenceSummary(
        events=len(conf),
        correct=int(ok.sum()),
        bins=tuple(
            ConfidenceBin(k / bins, (k + 1) / bins, int((index == k).sum()), int(ok[index == k].sum()),
                          float(conf[index == k].sum()))
            for k in range(bins)
        ),
        thresholds=tuple(ConfidenceThreshold(t, int((conf >= t).sum()), int(ok[conf >= t].sum())) for t in thresholds),
    )


def confidence_summary(scores: Sequence[ClipScore], *, bins: int = CONFIDENCE_BINS,
                       thresholds: Sequence[float] = CONFIDENCE_THRESHOLDS) -> ConfidenceSummary:
    """Each event with a text, right or wrong, against its confidence (see the module's docstring)."""
    judged = [(e.confidence, e.text == o.text) for s in scores for o in s.outcomes for e in o.events if e.text]
    judged += [(e.confidence, False) for s in scores for e in s.false_events if e.text]
    return summarize_confidence([c for c, _ in judged], [ok for _, ok in judged], bins=bins, thresholds=thresholds)


def format_confidence(summary: ConfidenceSummary) -> str:
    """Markdown: the reliability bins and the thresholds a subscriber might filter on."""
    if not summary.events:
        return "Event confidence: no event with a text."
    lines = [f"Event confidence ({summary.events} events with a text, {summary.correct} right): mean confidence "
             f"{summary.mean_confidence:.3f} against {summary.correct / summary.events:.3f} right; expected "
             f"calibration error {summary.calibration_error:.3f} ({len(summary.bins)} bins).\n",
             "| confidence | events | right | mean confidence |", "|---|---:|---:|---:|"]
    for b in summary.bins:
        mean = f"{b.confidence_sum / b.events:.3f}" if b.events else "-"
        lines.append(f"| {b.low:.1f}-{b.high:.1f} | {b.events} | {_pct(b.correct, b.events)} | {mean} |")
    lines += ["", "| keep events with confidence >= | events kept | right among the kept | wrong events dropped |",
              "|---|---:|---:|---:|"]
    wrong = summary.events - summary.correct
    for t in summary.thresholds:
        dropped_wrong = wrong - (t.kept - t.kept_correct)
        lines.append(f"| {t.threshold:g} | {_pct(t.kept, summary.events)} | {_pct(t.kept_correct, t.kept)} | "
                     f"{_pct(dropped_wrong, wrong)} |")
    return "\n".join(lines)


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}% ({count}/{total})" if total else "-"


def format_rows(rows: Sequence[ScoreRow]) -> str:
    """The Markdown table of passages (what docs/BENCHMARKS.md shows)."""
    head = ["passages", "n", "exactly one event", "detected (>= 1 event)", "correct text (voting)",
            "single best frame", "duplicates", "false events", "event precision"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in rows:
        cells = [row.name, str(row.passages), _pct(row.exactly_one, row.passages), _pct(row.detected, row.passages),
                 _pct(row.correct, row.passages), _pct(row.single_correct, row.passages), str(row.duplicates),
                 "-" if row.false_events is None else str(row.false_events), _pct(row.detected, row.events)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
