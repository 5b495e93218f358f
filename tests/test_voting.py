"""Voting over a track's reads: pooling, length vote, weights, confidence, settling, formats."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from fake_reads import CHARSET, char_probs, make_read

from anpr_edge.plate_formats import constrain, load_formats
from anpr_edge.values import PlateRead
from anpr_edge.voting import (
    IDENTITY,
    Calibration,
    VoteAccumulator,
    apply_format,
    crop_sharpness,
    fit_calibration,
    is_settled,
    read_weight,
    top_texts,
    unsmooth,
)

pytestmark = pytest.mark.timeout(30)


def vote_of(reads: list[PlateRead], weights: list[float] | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    acc = VoteAccumulator(CHARSET)
    for read, weight in zip(reads, weights or [1.0] * len(reads)):
        acc.add(read, weight)
    return acc.vote(**kwargs)  # type: ignore[arg-type]


def test_unsmoothing_undoes_label_smoothing() -> None:
    smoothed = char_probs("AB123CD")  # 0.9 + 0.1/37 per read character: how the trained OCR answers
    raw = unsmooth(smoothed)
    assert raw[:8].max(axis=1) == pytest.approx(1.0, abs=0.02)
    assert np.allclose(raw.sum(axis=1), 1.0)
    read = make_read("AB123CD")
    assert read.confidence < 0.5  # the OCR's own confidence for a clean, correct read
    vote = vote_of([read])
    assert vote.text == "AB123CD" and vote.score > 0.9 and vote.length_confidence > 0.95


def test_majority_wins_position_by_position() -> None:
    reads = [make_read("AB123CD")] * 3 + [make_read("AB128CD"), make_read("A8123CD")]
    vote = vote_of(reads)
    assert vote.text == "AB123CD"
    assert (vote.reads, vote.total_reads, vote.agreeing_reads) == (5, 5, 3)
    assert vote.agreement == pytest.approx(0.6)
    assert vote.char_confidences[2] == pytest.approx(1.0, abs=0.01)
    assert vote.char_confidences[1] == pytest.approx(0.8, abs=0.01) and vote.char_confidences[4] == pytest.approx(0.8, abs=0.01)
    texts = [t for t, _ in vote.candidates]
    assert texts[0] == "AB123CD" and {"AB128CD", "A8123CD"} <= set(texts)
    confidences = [c for _, c in vote.candidates]
    assert confidences == sorted(confidences, reverse=True) and vote.confidence == confidences[0]


def test_pooling_fixes_errors_no_single_read_is_free_of() -> None:
    # Every read has one wrong character, each at a different place: no read is right, the vote is.
    truth = "BRA2E19"
    reads = []
    for i, wrong in enumerate("XYZW"):
        text = truth[:i] + wrong + truth[i + 1 :]
        reads.append(make_read(text))
    assert all(r.text != truth for r in reads)
    assert vote_of(reads).text == truth


def test_weights_decide_between_disagreeing_reads() -> None:
    big_sharp = read_weight(0.5, width_px=160, sharpness=800)
    small = read_weight(0.5, width_px=40, sharpness=800)
    blurred = read_weight(0.5, width_px=160, sharpness=15)
    unsure = read_weight(0.1, width_px=160, sharpness=800)
    assert big_sharp > small and big_sharp > blurred and big_sharp > unsure
    reads = [make_read("AB123CD"), make_read("AB128CD"), make_read("AB128CD")]
    assert vote_of(reads, [big_sharp, small, small]).text == "AB123CD"
    assert vote_of(reads, [1.0, 1.0, 1.0]).text == "AB128CD"


def test_crop_sharpness_is_higher_for_sharp_crops() -> None:
    rng = np.random.default_rng(0)
    crop = np.zeros((64, 192, 3), np.uint8)
    for x in range(10, 180, 24):  # dark characters on a light plate
        crop[16:48, x : x + 14] = 255
    crop = crop + rng.integers(0, 10, crop.shape, dtype=np.uint8)
    blurred = cv2.GaussianBlur(crop, (0, 0), 3)
    assert crop_sharpness(crop) > 5 * crop_sharpness(blurred)
    assert crop_sharpness(crop[..., 0]) > 0  # grey images too


def test_length_vote_keeps_positions_aligned() -> None:
    # One read dropped the "1": pooled with the others by position it would shift every later character.
    reads = [make_read("AB123CD")] * 3 + [make_read("AB23CD")]
    vote = vote_of(reads)
    assert vote.text == "AB123CD" and vote.reads == 3 and vote.total_reads == 4
    assert vote.length_confidence == pytest.approx(0.75, abs=0.02)
    assert "AB23CD" in [t for t, _ in vote.candidates]
    assert vote.probs[7, 0] == 1.0 and vote.probs[:7, 0].max() == 0.0  # given the voted length


def test_reads_without_probabilities_vote_too() -> None:
    reads = [PlateRead("AB123CD", 0.6, (0.95,) * 7), PlateRead("AB123CD", 0.5, ()), PlateRead("AB128CD", 0.4, (0.9,) * 7)]
    vote = vote_of(reads)
    assert vote.text == "AB123CD" and vote.agreeing_reads == 2


def test_illegible_reads_vote_for_nothing() -> None:
    vote = vote_of([make_read("")] * 3 + [make_read("AB1")])
    assert vote.text == "" and vote.confidence == 0.0 and vote.candidates[0][0] == "AB1"
    assert VoteAccumulator(CHARSET).vote() is None


def test_settled_needs_enough_agreeing_reads() -> None:
    acc = VoteAccumulator(CHARSET)
    states = []
    for text in ["AB123CD", "AB128CD", "AB123CD", "AB123CD", "AB123CD"]:
        acc.add(make_read(text), 1.0)
        states.append(is_settled(acc.vote(), min_reads=3, min_agreement=0.7))
    # Three agreeing reads out of four is 0.75 >= 0.7: settled at the fourth read, not before.
    assert states == [False, False, False, True, True]
    assert not is_settled(None, min_reads=1, min_agreement=0.0)
    assert not is_settled(vote_of([make_read("")] * 5), min_reads=1, min_agreement=0.0)


def test_settling_can_wait_for_enough_read_weight() -> None:
    # Reads of a small, distant plate weigh little: three that agree do not settle a vote that needs the
    # weight of two full reads; the larger reads that follow do.
    acc = VoteAccumulator(CHARSET)
    small = read_weight(0.6, width_px=37.0)  # a quarter of the reference width
    for _ in range(3):
        acc.add(make_read("AB123CD"), small)
    vote = acc.vote()
    assert vote is not None and vote.agreeing_weight == pytest.approx(3 * small)
    assert is_settled(vote, min_reads=3, min_agreement=0.7)
    assert not is_settled(vote, min_reads=3, min_agreement=0.7, min_weight=2.0)
    for _ in range(3):
        acc.add(make_read("AB123CD"), read_weight(0.6, width_px=200.0))
    assert is_settled(acc.vote(), min_reads=3, min_agreement=0.7, min_weight=2.0)


def test_top_texts_are_exactly_the_n_best() -> None:
    rng = np.random.default_rng(3)
    charset = "ABC"
    cond = rng.dirichlet(np.ones(3), size=4)
    brute = sorted(
        (("".join(charset[c] for c in seq), float(np.prod([cond[i, c] for i, c in enumerate(seq)])))
         for seq in itertools.product(range(3), repeat=4)),
        key=lambda t: -t[1],
    )[:5]
    found = top_texts(cond, charset, 5)
    assert [t for t, _ in found] == [t for t, _ in brute]
    assert [p for _, p in found] == pytest.approx([p for _, p in brute])


def test_calibration_is_monotone_and_fitted_by_isotonic_regression() -> None:
    assert IDENTITY(0.3) == 0.3
    curve = Calibration(((0.0, 0.0), (0.5, 0.2), (1.0, 0.9)))
    assert curve(0.25) == pytest.approx(0.1) and curve(0.75) == pytest.approx(0.55) and curve(2.0) == 0.9
    with pytest.raises(ValueError):
        Calibration(((0.0, 0.5), (1.0, 0.2)))
    with pytest.raises(ValueError):
        Calibration(((0.5, 0.5),))
    rng = np.random.default_rng(1)
    scores = rng.uniform(0, 1, 4000)
    correct = rng.uniform(0, 1, 4000) < scores**2  # the score overstates: P(right) = score^2
    fitted = fit_calibration(scores, correct)
    ys = [y for _, y in fitted.points]
    assert ys == sorted(ys) and len(fitted.points) <= 14
    for s in (0.3, 0.6, 0.9):
        assert fitted(s) == pytest.approx(s**2, abs=0.08)
    # A small sample never maps to certainty either way: 40 right votes are 41/42, 10 wrong ones 1/12.
    small = fit_calibration([0.1] * 10 + [0.9] * 40, [False] * 10 + [True] * 40)
    assert small(0.95) == pytest.approx(41 / 42) and small(0.05) == pytest.approx(1 / 12)


def test_vote_confidences_go_through_the_calibration() -> None:
    halve = Calibration(((0.0, 0.0), (1.0, 0.5)))
    plain, halved = vote_of([make_read("AB123CD")] * 2), vote_of([make_read("AB123CD")] * 2, calibration=halve)
    assert halved.confidence == pytest.approx(plain.confidence / 2) and halved.score == plain.score


def test_format_fixes_a_look_alike_in_the_vote() -> None:
    # Every read saw an 8 where the Mercosur plate has a B: voting alone cannot fix it, the format does.
    reads = [make_read("A8C1D23", alternatives={1: ("B", 0.1)})] * 4
    vote = vote_of(reads)
    assert vote.text == "A8C1D23"
    choice = constrain(vote.probs, CHARSET, load_formats(["BR-MERCOSUR"]))
    fixed = apply_format(vote, choice)
    assert (fixed.text, fixed.format) == ("ABC1D23", "BR-MERCOSUR")
    assert fixed.candidates[0] == ("ABC1D23", fixed.confidence) and "A8C1D23" in [t for t, _ in fixed.candidates]
    assert len(fixed.char_confidences) == 7 and fixed.confidence >= vote.confidence * 0.99
    none = constrain(vote.probs, CHARSET, load_formats(["BR"]))
    assert apply_format(vote, none) is vote


def test_merging_accumulators_equals_adding_every_read_to_one() -> None:
    from anpr_edge.voting import VoteAccumulator

    first = [(make_read("AB123CD"), 0.5), (make_read("AB12CD"), 0.2)]
    second = [(make_read("AB123CD"), 1.0), (make_read("A8123CD"), 0.7), (make_read("AB123CDE"), 0.1)]
    together, a, b = VoteAccumulator(CHARSET), VoteAccumulator(CHARSET), VoteAccumulator(CHARSET)
    for read, weight in first + second:
        together.add(read, weight)
    for read, weight in first:
        a.add(read, weight)
    for read, weight in second:
        b.add(read, weight)
    a.merge(b)
    expected, merged = together.vote(candidates=3), a.vote(candidates=3)
    assert merged.text == expected.text and merged.reads == expected.reads and merged.total_reads == 5
    assert merged.confidence == pytest.approx(expected.confidence)
    assert [c[0] for c in merged.candidates] == [c[0] for c in expected.candidates]
    assert [c[1] for c in merged.candidates] == pytest.approx([c[1] for c in expected.candidates])
    empty = VoteAccumulator(CHARSET)
    empty.merge(b)
    assert empty.vote(candidates=3).text == b.vote(candidates=3).text
