"""Voting over all the reads of one track: one text, its confidence, alternatives, and when it is settled.

Every read contributes its per-position probability distributions (``PlateRead.char_probs``), weighted by
how much it is worth: the read's own confidence times crop quality (plate width in pixels, sharpness).

- **Length** is voted first, from each read's end-token probabilities (the probability that its text has
  each length), so one read that dropped a character does not shift every position of the others.
- **Characters** are then pooled position by position (weighted mean, a linear opinion pool) over the
  reads of the voted length: they are the ones whose positions line up. A linear pool is robust to one
  confident misread, and its argmax is what most of the weight says.
- **Confidence.** The OCR was trained with label smoothing 0.1, so even a perfect read has at most about
  0.9 per character and a raw text confidence near 0.5. Each distribution is first mapped back through
  that smoothing (``unsmooth``), the exact inverse for a model calibrated on its smoothed targets. The
  vote's ``score`` is then the probability of the voted text under the pooled distributions (length
  vote times each position's share), and ``confidence`` maps it through a monotone ``Calibration``
  (``fit_calibration`` fits one on labelled data). Votes come out under-confident, by an amount that
  depends on the model, so each OCR model carries its own map (``DEFAULT_CALIBRATION`` has the history).
- **Settled** (``is_settled``): at least N reads whose own text is the voted text, carrying a given share
  of the weight. The caller can stop running the OCR on a settled track.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from anpr_edge.plate_formats import FormatChoice, greedy_text
from anpr_edge.values import PlateRead

END = 0  # symbol 0 is the end token (anpr_edge/ocr.py)
# Label smoothing the bundled OCR was trained with (engines/ocr.md, anpr_edge/train/ocr_train.py).
LABEL_SMOOTHING = 0.1
# Plate width in frame pixels from which a read counts fully: the plate's width inside the 192-px OCR crop
# (192 / (1 + 2 x 0.15 padding)). Narrower plates are upscaled, with fewer real pixels per character, and
# their reads count proportionally less; wider ones are downscaled and gain nothing.
REFERENCE_WIDTH_PX = 148.0
# Variance of the Laplacian at which a crop's sharpness weight is 1/2 (sharp crops measure several hundred;
# motion blur and out-of-focus plates a few tens).
SHARPNESS_HALF = 100.0
MIN_WEIGHT = 1e-6


# ---------------------------------------------------------------------------------------------- quality
def crop_sharpness(image: np.ndarray) -> float:
    """Sharpness of a crop: the variance of its Laplacian (grey levels squared; higher is sharper)."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def size_factor(width_px: float | None) -> float:
    """The plate-size factor of a read's weight: its width over ``REFERENCE_WIDTH_PX``, at most 1 (1 when unknown)."""
    return 1.0 if width_px is None else min(1.0, max(float(width_px), 0.0) / REFERENCE_WIDTH_PX)


def read_weight(confidence: float, *, width_px: float | None = None, sharpness: float | None = None) -> float:
    """How much a read counts in the vote: its confidence times crop quality (each factor in 0..1).

    Quality that is not known (no box, no crop image) counts as full; within one track every read has the
    same information, so it does not favour any.
    """
    size = size_factor(width_px)
    sharp = 1.0 if sharpness is None else max(sharpness, 0.0) / (max(sharpness, 0.0) + SHARPNESS_HALF)
    return max(float(confidence), 1e-3) * size * sharp + MIN_WEIGHT


# ----------------------------------------------------------------------------------------- distributions
def unsmooth(probs: np.ndarray, label_smoothing: float = LABEL_SMOOTHING) -> np.ndarray:
    """Invert label smoothing per row: p = (q - eps/K) / (1 - eps), clipped at 0 and renormalised."""
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[-1]
    raw = np.clip((probs - label_smoothing / k) / (1.0 - label_smoothing), 0.0, None)
    total = raw.sum(axis=-1, keepdims=True)
    # A row that was uniform clips to all zeros: keep it as it was.
    return np.where(total > 0, raw / np.maximum(total, 1e-300), probs)


def read_distribution(read: PlateRead, charset: str, max_len: int = 12) -> np.ndarray:
    """A read's (max_len, 1 + len(charset)) distribution: its ``char_probs``, or one made from its text.

    A read without ``char_probs`` (another OCR, a test) gives each of its characters its character
    confidence (the read's geometric mean when it has none) and spreads the rest evenly.
    """
    n_symbols = len(charset) + 1
    if read.char_probs is not None:
        probs = np.asarray(read.char_probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != n_symbols:
            raise ValueError(f"char_probs of shape {probs.shape} do not fit a charset of {len(charset)} plus end")
        return probs
    text = "".join(c for c in read.text if c in charset)
    rows = max(max_len, len(text) + 1)
    mean = float(read.confidence) ** (1.0 / (len(text) + 1)) if read.confidence > 0 else 1.0 / n_symbols
    confs = list(read.char_confidences) if len(read.char_confidences) == len(text) else [mean] * len(text)
    probs = np.zeros((rows, n_symbols))
    for i, symbol in enumerate([charset.index(c) + 1 for c in text] + [END]):
        p = min(max(confs[i] if i < len(text) else mean, 1.0 / n_symbols), 1.0)
        probs[i] = (1.0 - p) / (n_symbols - 1)
        probs[i, symbol] = p
    probs[len(text) + 1 :, END] = 1.0
    return probs


def _fit_rows(probs: np.ndarray, rows: int) -> np.ndarray:
    """Pad with end-token rows (the text has ended) to ``rows`` positions."""
    if len(probs) >= rows:
        return probs
    pad = np.zeros((rows - len(probs), probs.shape[1]))
    pad[:, END] = 1.0
    return np.concatenate([probs, pad])


def length_distribution(probs: np.ndarray) -> np.ndarray:
    """P(text has length L) for L = 0..max_len: no end token before L, then one at L (or none at all)."""
    end = probs[:, END]
    go_on = np.concatenate([[1.0], np.cumprod(1.0 - end)])
    return go_on * np.concatenate([end, [1.0]])


def greedy_length(probs: np.ndarray) -> int:
    ends = np.flatnonzero(probs.argmax(axis=1) == END)
    return int(ends[0]) if len(ends) else len(probs)


def top_texts(cond: np.ndarray, charset: str, n: int) -> list[tuple[str, float]]:
    """The ``n`` most probable fixed-length texts under independent per-position distributions ``cond``
    (L, len(charset)), best first. Exact: every prefix has the same best completion, so keeping the ``n``
    best prefixes per position loses none of the ``n`` best texts."""
    beams: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
    logs = np.log(np.maximum(cond, 1e-300))
    for row in logs:
        top = np.argsort(-row, kind="stable")[:n]
        beams = sorted(((score + row[c], seq + (int(c),)) for score, seq in beams for c in top), key=lambda b: -b[0])[:n]
    return [("".join(charset[c] for c in seq), float(np.exp(score))) for score, seq in beams]


# ------------------------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class Calibration:
    """A monotone map from a vote's score to a confidence: linear between ``points`` (score, confidence),
    constant beyond them."""

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        points = tuple((float(x), float(y)) for x, y in self.points)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if len(points) < 2 or any(b <= a for a, b in zip(xs, xs[1:])) or any(b < a for a, b in zip(ys, ys[1:])):
            raise ValueError("calibration needs >= 2 points with increasing scores and non-decreasing confidences")
        if not all(0.0 <= v <= 1.0 for v in xs + ys):
            raise ValueError("calibration scores and confidences must be in 0..1")
        object.__setattr__(self, "points", points)

    def __call__(self, score: float) -> float:
        xs, ys = zip(*self.points)
        return float(np.interp(score, xs, ys))


def fit_calibration(scores: Sequence[float], correct: Sequence[bool], *, max_points: int = 12,
                    prior: float = 1.0) -> Calibration:
    """Isotonic regression (pool adjacent violators) of correctness on score, as at most ``max_points``
    points: fit it on reads or votes whose true text is known, then ``confidence`` means P(text is right).

    Each pooled block's rate is shrunk by ``prior`` pseudo-counts of a right and a wrong answer ((right +
    prior) / (n + 2 prior)), so a block of 40 right votes maps to 0.98, not to a certainty no finite sample
    shows, and a block of wrong ones above 0."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    x = np.asarray(scores, dtype=np.float64)[order]
    y = np.asarray(correct, dtype=np.float64)[order]
    if len(x) < 2:
        raise ValueError("fit_calibration needs at least two samples")
    blocks: list[list[float]] = []  # [sum of y, count, sum of x]
    for xi, yi in zip(x, y):
        blocks.append([yi, 1.0, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0] + last[0], blocks[-1][1] + last[1], blocks[-1][2] + last[2]]
    # The last merge above keeps blocks strictly increasing in value; thin them to max_points knots.
    knots = [(b[2] / b[1], (b[0] + prior) / (b[1] + 2 * prior)) for b in blocks]
    if len(knots) > max_points:
        keep = np.unique(np.linspace(0, len(knots) - 1, max_points).round().astype(int))
        knots = [knots[i] for i in keep]
    points = [(0.0, min(k[1] for k in knots))] + [k for k in knots if 0.0 < k[0] < 1.0] + [(1.0, max(k[1] for k in knots))]
    merged: list[tuple[float, float]] = []
    for px, py in points:
        if merged and px <= merged[-1][0]:
            continue
        merged.append((px, max(py, merged[-1][1]) if merged else py))
    return Calibration(tuple(merged))


def calibrated_read(read: PlateRead, calibration: Calibration | None) -> PlateRead:
    """``read`` with its confidence mapped by ``calibration`` (a model's ``read_calibration``): the chance its
    text is right, as ``read`` and ``ocr`` report it. Unchanged without a calibration. Per-character
    confidences and probabilities stay the OCR's own."""
    return read if calibration is None else replace(read, confidence=calibration(read.confidence))


IDENTITY = Calibration(((0.0, 0.0), (1.0, 1.0)))
# History: for the first bundled OCR (2026-11-22) the un-smoothed score of single reads was calibrated as it
# is (expected calibration error 0.028 on the 890 validation crops, 0.069 on the French scenes). Votes over
# a track's many reads are not: pooling spreads each position's probability while the voted text is right
# more often than any one read, so on the passage clips (2026-12-07, the 780-minute OCR) events scored a
# mean 0.66 against 79% right (error 0.12). Each model is therefore shipped with its own map in its
# metadata (``ocr.VOTE_CALIBRATION_KEY``, fitted by ``anpr-edge fit-calibration``), which the passage
# builder uses unless ``voting.calibration`` is configured; a model without one gets the score as it is.
DEFAULT_CALIBRATION = IDENTITY


# ------------------------------------------------------------------------------------------------ votes
@dataclass(frozen=True, eq=False)
class Vote:
    """The result of voting over a track's reads.

    ``text`` is the voted text ("" when the voted length is 0: nothing legible). ``score`` is its
    probability under the pooled, un-smoothed distributions (the length vote times each character's
    share); ``confidence`` is the calibrated score, ``char_confidences`` each character's share.
    ``candidates`` are the best texts with calibrated confidences, ``text`` first. ``reads`` counts the
    reads whose characters were pooled (those of the voted length), ``total_reads`` all of them;
    ``agreeing_reads`` are the reads whose own text is ``text`` and ``agreement`` their share of the
    weight. ``probs`` (max_len, 1 + charset) are the pooled distributions given the voted length (no end
    token before it, certain end at it): what plate formats constrain.
    """

    text: str
    confidence: float
    score: float
    char_confidences: tuple[float, ...]
    candidates: tuple[tuple[str, float], ...]
    length_confidence: float
    reads: int
    total_reads: int
    agreeing_reads: int
    agreement: float
    probs: np.ndarray = field(repr=False)
    format: str | None = None
    # The agreeing reads' summed weight (read_weight: 1 is a certain read of a sharp plate at full width).
    agreeing_weight: float = 0.0


def is_settled(vote: Vote | None, *, min_reads: int, min_agreement: float, min_weight: float = 0.0) -> bool:
    """Enough consistent reads to stop reading: ``min_reads`` agree with the text, with that share of weight,
    and together weigh at least ``min_weight`` (a few reads of a small, distant plate are not enough then:
    the plate grows as the car comes closer, and later reads are worth more)."""
    return (vote is not None and bool(vote.text) and vote.agreeing_reads >= min_reads
            and vote.agreement >= min_agreement and vote.agreeing_weight >= min_weight)


@dataclass
class _Group:
    """Running sums of the reads of one greedy length."""

    probs: np.ndarray
    weight: float = 0.0
    count: int = 0


class VoteAccumulator:
    """Collects the reads of one track and votes on demand. Memory stays constant however many reads:
    only weighted sums per read length are kept."""

    def __init__(self, charset: str, *, label_smoothing: float = LABEL_SMOOTHING) -> None:
        self.charset = charset
        self.label_smoothing = label_smoothing
        self._rows = 0
        self._length = np.zeros(1)
        self._groups: dict[int, _Group] = {}
        self._texts: dict[str, list[float]] = {}  # text -> [weight, count]
        self._weight = 0.0
        self.count = 0

    def add(self, read: PlateRead, weight: float) -> None:
        """Add one read with its weight (``read_weight``)."""
        probs = unsmooth(read_distribution(read, self.charset, max(self._rows, 12)), self.label_smoothing)
        if len(probs) > self._rows:
            self._grow(len(probs))
        probs = _fit_rows(probs, self._rows)
        weight = max(float(weight), MIN_WEIGHT)
        self._length += weight * length_distribution(probs)
        length = greedy_length(probs)
        group = self._groups.setdefault(length, _Group(np.zeros_like(probs)))
        group.probs += weight * probs
        group.weight += weight
        group.count += 1
        text = "".join(self.charset[s - 1] for s in probs.argmax(axis=1)[:length])
        entry = self._texts.setdefault(text, [0.0, 0])
        entry[0] += weight
        entry[1] += 1
        self._weight += weight
        self.count += 1

    def merge(self, other: VoteAccumulator) -> None:
        """Add all of ``other``'s reads (the same charset), as if they had been added here."""
        if other.charset != self.charset:
            raise ValueError("cannot merge votes over different charsets")
        rows = max(self._rows, other._rows)
        if rows > self._rows:
            self._grow(rows)
        if rows > other._rows:
            other = copy.deepcopy(other)
            other._grow(rows)
        self._length = self._length + other._length
        for length, group in other._groups.items():
            mine = self._groups.setdefault(length, _Group(np.zeros_like(group.probs)))
            mine.probs = mine.probs + group.probs
            mine.weight += group.weight
            mine.count += group.count
        for text, (weight, count) in other._texts.items():
            entry = self._texts.setdefault(text, [0.0, 0])
            entry[0] += weight
            entry[1] += count
        self._weight += other._weight
        self.count += other.count

    def _grow(self, rows: int) -> None:
        # Longer rows (another model): the texts already counted ended where they ended.
        self._length = np.concatenate([self._length, np.zeros(rows - self._rows)])
        for group in self._groups.values():
            pad = _fit_rows(np.zeros((self._rows, len(self.charset) + 1)), rows)[self._rows :] * group.weight
            group.probs = np.concatenate([group.probs, pad])
        self._rows = rows

    def vote(self, *, candidates: int = 5, calibration: Calibration = DEFAULT_CALIBRATION) -> Vote | None:
        """The vote over every read so far; None before the first read."""
        if not self.count:
            return None
        length_p = self._length / self._weight
        length = max(self._groups, key=lambda n: (length_p[n], -n))
        group = self._groups[length]
        pooled = group.probs / group.weight
        scored: list[tuple[str, float]] = []
        text, chars, probs = "", (), np.zeros_like(pooled)
        probs[:, END] = 1.0
        for n, other in self._groups.items():
            if n == 0:
                continue
            cond = _conditional(other.probs / other.weight, n)
            best = top_texts(cond, self.charset, candidates if n == length else 1)
            scored += [(t, float(length_p[n]) * p) for t, p in best]
            if n == length:
                text = best[0][0]
                chars = tuple(float(cond[i, self.charset.index(c)]) for i, c in enumerate(text))
                probs[:n] = 0.0
                probs[:n, 1:] = cond
        score = float(length_p[length]) * float(np.prod(chars)) if text else 0.0
        scored.sort(key=lambda s: -s[1])
        alternatives = tuple(dict.fromkeys(t for t, _ in scored if t != text))
        by_text = dict(scored)
        ranked = ((text,) if text else ()) + alternatives
        agree_weight, agree_count = self._texts.get(text, [0.0, 0]) if text else (0.0, 0)
        return Vote(
            text=text,
            confidence=calibration(score) if text else 0.0,
            score=score,
            char_confidences=chars,
            candidates=tuple((t, calibration(by_text[t] if t != text else score)) for t in ranked[:candidates]),
            length_confidence=float(length_p[length]),
            reads=group.count,
            total_reads=self.count,
            agreeing_reads=int(agree_count),
            agreement=float(agree_weight) / self._weight,
            probs=probs,
            agreeing_weight=float(agree_weight),
        )


def smooth(probs: np.ndarray, label_smoothing: float = LABEL_SMOOTHING) -> np.ndarray:
    """Label smoothing applied to distributions (the inverse of ``unsmooth``): the OCR's own output scale."""
    probs = np.asarray(probs, dtype=np.float64)
    return (1.0 - label_smoothing) * probs + label_smoothing / probs.shape[-1]


def combine_views(reads: Sequence[PlateRead], charset: str, *,
                  label_smoothing: float = LABEL_SMOOTHING) -> PlateRead:
    """One read of a plate from the reads of several views of it (``crop.plate_cuts`` of one photo or frame).

    The views are voted as a track's frames are (``VoteAccumulator``, each read weighted by its confidence):
    the length by vote, the characters pooled position by position. The result is a read like the OCR's own:
    its ``char_probs`` are the vote's distributions on the OCR's (label-smoothed) scale, so its confidence
    compares with a single read's, plate formats constrain it and a track votes it like any read. Box, crop
    and frame are the first view's (the box cut). One view is returned as it is.
    """
    if not reads:
        raise ValueError("no reads to combine")
    if len(reads) == 1:
        return reads[0]
    votes = VoteAccumulator(charset, label_smoothing=label_smoothing)
    for read in reads:
        votes.add(read, read_weight(read.confidence))
    vote = votes.vote()
    assert vote is not None  # at least one read was added
    probs = smooth(vote.probs, label_smoothing)
    text, chars, probability = greedy_text(probs, charset)
    return replace(reads[0], text=text, confidence=probability if text else 0.0, char_confidences=chars,
                   char_probs=probs.astype(np.float32), format=None)


def combine_view_groups(reads: Sequence[PlateRead], counts: Sequence[int], charset: str) -> list[PlateRead]:
    """``combine_views`` over each consecutive group of ``counts[i]`` reads (the views of one plate each)."""
    if sum(counts) != len(reads) or any(n < 1 for n in counts):
        raise ValueError(f"{len(reads)} reads do not split into groups of {list(counts)}")
    out, start = [], 0
    for n in counts:
        out.append(combine_views(reads[start : start + n], charset))
        start += n
    return out


def _conditional(pooled: np.ndarray, length: int) -> np.ndarray:
    """Per-position character distributions (length, charset) given that the text has ``length`` characters."""
    chars = pooled[:length, 1:]
    total = chars.sum(axis=1, keepdims=True)
    return np.where(total > 0, chars / np.maximum(total, 1e-300), 1.0 / chars.shape[1])


def apply_format(vote: Vote, choice: FormatChoice, calibration: Calibration = DEFAULT_CALIBRATION) -> Vote:
    """The vote with the text chosen under the plate formats (``plate_formats.constrain`` on ``vote.probs``).

    The chosen text's characters keep the probabilities the format gave them (a ruled-out look-alike's
    share included) and the text leads the candidates.
    """
    if choice.format is None or not vote.text:
        return vote
    chars = tuple(min(float(p), 1.0) for p in choice.char_probs)
    score = vote.length_confidence * float(np.prod(chars))
    confidence = calibration(score)
    others = tuple(c for c in vote.candidates if c[0] != choice.text)
    return replace(
        vote,
        text=choice.text,
        score=score,
        confidence=confidence,
        char_confidences=chars,
        candidates=((choice.text, confidence),) + others[: max(len(vote.candidates) - 1, 0)],
        format=choice.format,
    )
