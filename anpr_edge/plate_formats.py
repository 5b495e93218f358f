"""Plate formats per region, format-constrained decoding, and allow/deny lists.

A format is a name and one or more patterns. A pattern is a row of slots, each a set of characters:

- ``L`` a letter, ``D`` a digit, ``A`` either;
- ``[...]`` the listed characters, with ranges: ``[T]``, ``[EH]``, ``[A-HJ-NP-TV-Z]``;
- after a slot, ``{n}``, ``{m,n}`` or ``?`` repeat it; spaces and ``-`` are ignored (``LL-DDD-LL``).

``constrain`` uses the formats on the OCR's per-position probabilities, not on its text: under each pattern
every position takes its most probable character among those the slot allows. Look-alike characters
(``0``/``O``, ``8``/``B``...) are the usual OCR mistakes, so in a slot that rules one of a pair out, that
one's probability is counted for its look-alike: ``8`` read in a letter slot becomes ``B`` and keeps the
probability the OCR gave to ``8``. A format is chosen only when its text stays about as probable as the
unconstrained reading (``min_ratio``) and its text without that look-alike credit is not far less probable
(``min_unaided_ratio``); a plate that would need any other change, or many swaps, to fit keeps its reading
and gets no format, so a format is never forced on plates that match none.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from anpr_edge.values import ListMatch, PlateRead

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"
END = 0  # symbol 0 of the OCR output is the end token (see anpr_edge/ocr.py)

# Look-alikes the OCR confuses, as (digit, letter). 7/T matters for Tunisian plates, whose Arabic word is
# labelled T and sits where a digit would otherwise be.
CONFUSABLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("0", "O"), ("1", "I"), ("8", "B"), ("5", "S"), ("2", "Z"), ("6", "G"), ("7", "T"),
)
CONFUSABLES: Mapping[str, str] = {a: b for pair in CONFUSABLE_PAIRS for a, b in (pair, pair[::-1])}

# Default for constrain's min_unaided_ratio; chosen on the validation splits of the shared crop sets (US, BR
# and TN formats), where it stopped the incomplete US formats from rewriting plates of other layouts.
DEFAULT_MIN_UNAIDED_RATIO = 0.05

# Expanded patterns per format; far beyond any real plate layout, it stops a typo such as A{1,12}A{1,12}.
MAX_LAYOUTS = 512

# Letters some countries never use in serials (they look like digits or each other).
_FR = "[A-HJ-NP-TV-Z]"  # no I, O, U
_FR_FNI = "[A-HJ-NP-Z]"  # never I or O; U only on series before November 1984, still on the road
_IT = "[A-HJ-NPR-TV-Z]"  # no I, O, Q, U
_ES = "[BCDFGHJKLMNPRSTVWXYZ]"  # consonants only (current series)
_CN = "[A-HJ-NP-Z0-9]"  # no I, O
_RU = "[ABEKMHOPCTYX]"  # the Cyrillic letters that look Latin (А В Е К М Н О Р С Т У Х), the only ones issued
_UA = "[ABCEHIKMOPTX]"  # likewise (А В С Е Н І К М О Р Т Х)
_TR = "[A-PR-VYZ]"  # no Q, W, X (and no Turkish-only letters)

# Shipped formats. Not exhaustive: a plate that fits none is reported as read, without a format.
BUILTIN_FORMATS: Mapping[str, tuple[str, ...]] = {
    # Most EU serials: letter and digit groups, e.g. AB123CD, B1234XY, 12ABC34.
    "EU": ("L{1,3}D{1,4}L{1,3}", "D{1,4}L{1,3}D{1,3}", "L{1,3}D{2,5}"),
    # SIV (since 2009); FNI (1950-2009, department last: two digits, 2A/2B for Corsica, 97x overseas).
    "FR": (f"{_FR}{{2}}-DDD-{_FR}{{2}}", f"D{{1,4}}-{_FR_FNI}{{2,3}}-D{{2}}", f"D{{1,4}}-{_FR_FNI}{{2,3}}-[2][AB]",
           f"D{{1,3}}-{_FR_FNI}{{2,3}}-[9][7]D"),
    "DE": ("L{1,3}-L{1,2}-D{1,4}[EH]?",),  # district, letters, digits, optional E (electric) / H (historic)
    "ES": (f"DDDD-{_ES}{{3}}", "L{1,2}-DDDD-L{0,2}"),  # current national, old provincial
    "IT": (f"{_IT}{{2}}-DDD-{_IT}{{2}}",),
    "UK": ("LLDD-LLL", "LD{1,3}-LLL", "LLL-D{1,3}L"),  # current (2001), prefix, suffix
    # Dutch side codes 1 to 14, all six characters.
    "NL": ("LL-DD-DD", "DD-DD-LL", "DD-LL-DD", "LL-DD-LL", "LL-LL-DD", "DD-LL-LL", "DD-LLL-D",
           "D-LLL-DD", "LL-DDD-L", "L-DDD-LL", "LLL-DD-L", "L-DD-LLL", "D-LL-DDD", "DDD-LL-D"),
    "PL": ("LL-A{5}", "LLL-A{4}"),  # district code, then the serial
    # Common US serials (the shared NYC crops: ABC1234, T123456C, 12345AB...). Vanity plates match none.
    "US": ("LLLDDDD", "DLLLDDD", "LLLDDD", "DDDLLL", "DDDDDLL", "LDDDDDDL", "LDDLLL"),
    "BR": ("LLL-DDDD",),  # before Mercosur
    "BR-MERCOSUR": ("LLL-D-L-DD",),
    # Tunisia: <digits> تونس <digits>, the Arabic word labelled T; the N series is digits then N.
    "TN": ("D{2,3}[T]D{2,4}", "D{6}[N]"),
    # China, after the province character (the OCR skips it, as it skips an emblem): the issuing office's
    # letter, then five of 0-9 and A-Z without I and O (never issued); new-energy (green) plates have six,
    # D or F first (small vehicles) or last (large).
    "CN": (f"L{_CN}{{5}}", f"L[DF]{_CN}D{{4}}", "LD{5}[DF]"),
    "RU": (f"{_RU}DDD{_RU}{{2}}D{{2,3}}",),  # series letter, number, letters, region code
    "UA": (f"{_UA}{{2}}-DDDD-{_UA}{{2}}",),  # region, number, series (since 2004)
    # Province code 01-81, then one letter and 4-5 digits, two and 3-4, or three and 2-3.
    "TR": (f"DD-{_TR}-D{{4,5}}", f"DD-{_TR}{{2}}-D{{3,4}}", f"DD-{_TR}{{3}}-D{{2,3}}"),
    # State, district (1-2 digits), series (0-3 letters), number; and the Bharat (BH) series.
    "IN": ("LL-D{1,2}-L{0,3}-D{1,4}", "DD-[B][H]-DDDD-L{1,2}"),
    "AR": ("LL-DDD-LL", "LLL-DDD"),  # Argentina: Mercosur (since 2016), and before
    "GENERIC": ("A{2,10}",),  # anything plate-like: names the format, corrects nothing
}


# -------------------------------------------------------------------------------------------- patterns
Layout = tuple[frozenset[str], ...]

# One slot and its repeat, with the separators (spaces, dashes) around it.
_TOKEN = re.compile(r"[\s-]*(?:(L|D|A)|\[([^\]]*)\])(?:\{(\d+)(?:,(\d+))?\}|(\?))?[\s-]*")


def _char_set(body: str, pattern: str) -> frozenset[str]:
    chars: set[str] = set()
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if lo > hi:
                raise ValueError(f"pattern {pattern!r}: range {lo}-{hi} is backwards")
            chars.update(chr(c) for c in range(ord(lo), ord(hi) + 1))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    bad = sorted(c for c in chars if c not in LETTERS + DIGITS)
    if bad or not chars:
        raise ValueError(f"pattern {pattern!r}: [{body}] must list upper-case letters or digits")
    return frozenset(chars)


@lru_cache(maxsize=256)
def parse_pattern(pattern: str) -> tuple[Layout, ...]:
    """Every fixed-length layout a pattern describes. ``ValueError`` names what is wrong with it."""
    text = pattern.strip()
    if not text.replace("-", "").strip():
        raise ValueError("empty plate pattern")
    slots: list[tuple[frozenset[str], int, int]] = []
    pos = 0
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None or found.end() == pos:
            raise ValueError(
                f"pattern {pattern!r}: cannot read {text[pos:]!r} (slots are L, D, A or [chars], "
                "optionally followed by {n}, {m,n} or ?)"
            )
        kind, body, low, high, optional = found.groups()
        chars = {"L": frozenset(LETTERS), "D": frozenset(DIGITS), "A": frozenset(LETTERS + DIGITS)}.get(
            kind or ""
        ) or _char_set(body or "", pattern)
        if optional:
            n_min, n_max = 0, 1
        elif low is not None:
            n_min = int(low)
            n_max = int(high) if high is not None else n_min
        else:
            n_min = n_max = 1
        if n_max < n_min:
            raise ValueError(f"pattern {pattern!r}: repeat {{{low},{high}}} is backwards")
        slots.append((chars, n_min, n_max))
        pos = found.end()
    counts = [range(n_min, n_max + 1) for _, n_min, n_max in slots]
    n_layouts = int(np.prod([len(c) for c in counts]))
    if n_layouts > MAX_LAYOUTS:
        raise ValueError(f"pattern {pattern!r} expands to {n_layouts} layouts (at most {MAX_LAYOUTS})")
    layouts: dict[Layout, None] = {}  # ordered and without repeats
    for repeat in itertools.product(*counts):
        layout = tuple(chars for (chars, _, _), n in zip(slots, repeat) for _ in range(n))
        if layout:
            layouts[layout] = None
    if not layouts:
        raise ValueError(f"pattern {pattern!r} matches only the empty text")
    return tuple(layouts)


@dataclass(frozen=True)
class PlateFormat:
    """A named plate format: its patterns as written and every fixed-length layout they expand to."""

    name: str
    patterns: tuple[str, ...]
    layouts: tuple[Layout, ...]

    @classmethod
    def parse(cls, name: str, patterns: Iterable[str]) -> PlateFormat:
        patterns = tuple(patterns)
        if not patterns:
            raise ValueError(f"plate format {name!r} has no pattern")
        layouts = tuple(dict.fromkeys(layout for p in patterns for layout in parse_pattern(p)))
        return cls(name, patterns, layouts)

    def matches(self, text: str) -> bool:
        """Whether ``text`` fits one of the layouts as it is, without any correction."""
        return any(
            len(layout) == len(text) and all(c in slot for c, slot in zip(text, layout)) for layout in self.layouts
        )


def load_formats(names: Sequence[str], custom: Mapping[str, Sequence[str]] | None = None) -> tuple[PlateFormat, ...]:
    """The formats named, in that order (the order breaks ties); ``custom`` adds or replaces formats."""
    table: dict[str, Sequence[str]] = {**BUILTIN_FORMATS, **(custom or {})}
    unknown = [name for name in names if name not in table]
    if unknown:
        raise ValueError(f"unknown plate format(s) {', '.join(unknown)}; known: {', '.join(sorted(table))}")
    return tuple(PlateFormat.parse(name, table[name]) for name in dict.fromkeys(names))


def text_format(text: str, formats: Sequence[PlateFormat]) -> str | None:
    """The first format ``text`` fits as it is, or None."""
    return next((f.name for f in formats if f.matches(text)), None)


# ---------------------------------------------------------------------------------- constrained decoding
@dataclass(frozen=True)
class FormatChoice:
    """The text chosen under the formats, and what it was chosen over.

    ``char_probs`` has one entry per character of ``text``: its probability at that position, with a ruled
    out look-alike's probability added when a format was chosen. ``probability`` is that of the whole
    text, end token included; ``ratio`` is it over ``unconstrained_probability``.
    """

    text: str
    format: str | None
    char_probs: tuple[float, ...]
    probability: float
    unconstrained_text: str
    unconstrained_probability: float

    @property
    def corrected(self) -> bool:
        return self.text != self.unconstrained_text

    @property
    def ratio(self) -> float:
        return self.probability / max(self.unconstrained_probability, 1e-300)


def greedy_text(probs: np.ndarray, charset: str) -> tuple[str, tuple[float, ...], float]:
    """(text, per-character probabilities, probability of text incl. its end token): argmax until the end."""
    symbols = probs.argmax(axis=1)
    ends = np.flatnonzero(symbols == END)
    length = int(ends[0]) if len(ends) else len(symbols)
    chars = tuple(float(probs[i, symbols[i]]) for i in range(length))
    end_p = float(probs[length, END]) if length < len(probs) else 1.0
    return "".join(charset[s - 1] for s in symbols[:length]), chars, float(np.prod(chars)) * end_p


@dataclass(frozen=True)
class _Slot:
    members: np.ndarray  # symbol ids (charset index + 1) the slot allows
    partners: np.ndarray  # per member: symbol id of its ruled-out look-alike, or 0 (the end token: none)


def _slot(chars: frozenset[str], charset: str, confusables: Mapping[str, str]) -> _Slot:
    members = [c for c in charset if c in chars]
    partners = [confusables.get(c) for c in members]
    return _Slot(
        np.array([charset.index(c) + 1 for c in members], dtype=np.int64),
        np.array([charset.index(p) + 1 if p and p in charset and p not in chars else 0 for p in partners], dtype=np.int64),
    )


def constrain(
    probs: np.ndarray,
    charset: str,
    formats: Sequence[PlateFormat],
    *,
    min_ratio: float = 0.5,
    min_unaided_ratio: float = DEFAULT_MIN_UNAIDED_RATIO,
    trim_leading: bool = True,
    confusables: Mapping[str, str] = CONFUSABLES,
) -> FormatChoice:
    """The best text under the formats if it is probable enough, else the unconstrained reading.

    ``probs``: (max_len, 1 + len(charset)) per-position probabilities, symbol 0 the end token (one OCR read,
    or a track's vote). Each layout's text is its position-wise best allowed character, look-alike mass
    included, ended by the end token. Among layouts whose text is at least ``min_ratio`` times as probable
    as the unconstrained reading, the one whose text the OCR itself found most probable wins (so a plate
    that fits a format as read keeps it, rather than trading look-alikes for another format); ties go to
    the earlier format. A layout is also skipped when its text, without the look-alikes' share, is less than
    ``min_unaided_ratio`` times as probable as the reading: one confident look-alike swap is fixed, but a
    plate of another format (a 6-digit plate made ``DDDLLL`` by three swaps) is not forced into one.

    ``trim_leading``: when no layout fits a reading that starts with a letter, the layouts are tried once
    more on the reading without that letter, with the same thresholds against the rest of the reading. The
    EU band's country code or ring of stars is sometimes read as one more letter in front of the plate
    (``UCF058NS`` for ``CF058NS``); a reading that fits no format but does without it is the plate behind
    the band. A reading that fits any format as it is is never trimmed, nor one that starts with a digit.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(charset) + 1:
        raise ValueError(f"probabilities of shape {probs.shape} do not fit a charset of {len(charset)} plus end")
    text, chars, probability = greedy_text(probs, charset)
    fallback = FormatChoice(text, None, chars, probability, text, probability)
    if not text:
        return fallback
    slots: dict[frozenset[str], _Slot] = {}
    found = _best_layout(probs, charset, formats, probability, min_ratio, min_unaided_ratio, confusables, slots)
    if found is None and trim_leading and len(text) >= 3 and text[0] in LETTERS:
        # The rest of the reading: its probability without the first character's factor.
        rest = probability / max(chars[0], 1e-300)
        found = _best_layout(probs[1:], charset, formats, rest, min_ratio, min_unaided_ratio, confusables, slots)
    if found is None:
        return fallback
    picked, effective, p_effective, name = found
    return FormatChoice("".join(charset[s - 1] for s in picked), name, effective, p_effective, text, probability)


def _best_layout(
    probs: np.ndarray,
    charset: str,
    formats: Sequence[PlateFormat],
    probability: float,
    min_ratio: float,
    min_unaided_ratio: float,
    confusables: Mapping[str, str],
    slots: dict[frozenset[str], _Slot],
) -> tuple[list[int], tuple[float, ...], float, str] | None:
    """(symbols, their probabilities with look-alike mass, text probability, format) of the layout whose
    text is most probable without the look-alikes' share, among those within the thresholds of
    ``probability``; None when none is (see ``constrain``)."""
    max_len = len(probs)
    best: tuple[float, tuple[list[int], tuple[float, ...], float, str]] | None = None
    for plate_format in formats:
        for layout in plate_format.layouts:
            if len(layout) > max_len:
                continue
            picked, effective, plain = [], [], []
            for i, chars_allowed in enumerate(layout):
                slot = slots.get(chars_allowed) or slots.setdefault(chars_allowed, _slot(chars_allowed, charset, confusables))
                if len(slot.members) == 0:
                    break
                row = probs[i]
                mass = row[slot.members] + np.where(slot.partners > 0, row[slot.partners], 0.0)
                k = int(mass.argmax())
                picked.append(int(slot.members[k]))
                effective.append(float(mass[k]))
                plain.append(float(row[slot.members[k]]))
            else:
                end_p = float(probs[len(layout), END]) if len(layout) < max_len else 1.0
                p_effective = float(np.prod(effective)) * end_p
                p_plain = float(np.prod(plain)) * end_p
                if p_effective < min_ratio * probability or p_plain < min_unaided_ratio * probability:
                    continue
                if best is None or p_plain > best[0]:
                    best = (p_plain, (picked, tuple(effective), p_effective, plate_format.name))
    return None if best is None else best[1]


# ------------------------------------------------------------------------------------ allow/deny lists
def format_read(
    read: PlateRead,
    charset: str,
    formats: Sequence[PlateFormat],
    *,
    min_ratio: float = 0.5,
    min_unaided_ratio: float = DEFAULT_MIN_UNAIDED_RATIO,
    trim_leading: bool = True,
) -> PlateRead:
    """``read`` with its text chosen under ``formats`` (``constrain`` on its per-position probabilities).

    A read without probabilities, or one no format fits closely enough, comes back unchanged. The new
    text's characters keep the probabilities the format gave them (a ruled-out look-alike's share
    included), and its confidence is that text's probability.
    """
    if not formats or read.char_probs is None or not read.text:
        return read
    choice = constrain(read.char_probs, charset, formats, min_ratio=min_ratio, min_unaided_ratio=min_unaided_ratio,
                       trim_leading=trim_leading)
    if choice.format is None:
        return read
    chars = tuple(min(float(p), 1.0) for p in choice.char_probs)
    return replace(read, text=choice.text, confidence=min(choice.probability, 1.0), char_confidences=chars,
                   format=choice.format)


def normalize_plate(text: str) -> str:
    """A list entry as the OCR would report it: upper case letters and digits only (no spaces, dashes)."""
    return "".join(c for c in text.upper() if c in LETTERS or c in DIGITS)


@dataclass(frozen=True)
class PlateLists:
    """Allow and deny lists, matched with up to ``max_distance`` edits (Levenshtein).

    A text matches the entry nearest to it; on a tie between the lists, deny wins (the safe answer).
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    max_distance: int = 1

    def __post_init__(self) -> None:
        if self.max_distance < 0:
            raise ValueError(f"max_distance must be >= 0, got {self.max_distance}")
        for name in ("allow", "deny"):
            entries = tuple(dict.fromkeys(e for e in map(normalize_plate, getattr(self, name)) if e))
            object.__setattr__(self, name, entries)

    def match(self, text: str | None) -> ListMatch | None:
        if not text:
            return None
        found: list[tuple[int, int, Literal["allow", "deny"], str]] = []
        for rank, (name, entries) in enumerate((("deny", self.deny), ("allow", self.allow))):
            if entries:
                hit = process.extractOne(
                    text, entries, scorer=Levenshtein.distance, score_cutoff=self.max_distance
                )
                if hit is not None:
                    found.append((int(hit[1]), rank, name, hit[0]))  # type: ignore[arg-type]
        if not found:
            return None
        distance, _, name, entry = min(found)
        return ListMatch(name, entry, distance)
