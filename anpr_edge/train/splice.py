"""Real-glyph splicing: new plate texts made of the real training crops' own characters.

The OCR reads its training plates almost perfectly (98% on the train splits) and new plates of the same
sets much worse (87-90% on the validation splits), while the same plates recur in many crops. Part of that
gap is memorised text: the decoder, told the characters read so far, learns which sequences exist. A spliced
crop joins the left part of one real crop to the right part of another of the same set, cut in the gaps
between characters, so the glyphs, typeface, blur and lighting stay real while the text is new.

Characters are found the classic way (adaptive threshold, connected components of one height in a row):
a crop is used only when that finds exactly as many characters as its label has, left to right, which holds
for most clean one-line crops and fails safe (the crop is simply not spliced) on the rest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from anpr_edge.crop import fit_crop

Span = tuple[int, int]  # x0, x1 (exclusive) of one character in the crop

# Adaptive-threshold settings (block size, offset) tried in turn: one setting finds the characters of sharp,
# well-lit crops, the others those of blurred or low-contrast ones (the first alone segments 159 of the 837
# Brazilian training crops, all four 306).
THRESHOLDS = ((31, -8), (15, -4), (31, -12), (21, -6))


@dataclass(frozen=True)
class SegmentedCrop:
    """A fitted crop whose characters were found: one span per label character, and their common rows."""

    image: np.ndarray  # (H, W, 3) BGR, the crop size the model reads
    text: str
    spans: tuple[Span, ...]
    top: float  # median top and bottom of the characters
    bottom: float
    group: str  # the set it came from: only crops of one set are joined
    # Per gap (before character 1, 2, ...): no more than a separator's ink between the two characters, so a
    # cut there cuts nothing that belongs to a character (a Tunisian plate's Arabic word, for one, is
    # labelled as one letter but only one of its pieces is that letter's span).
    clean: tuple[bool, ...] = ()

    @cached_property
    def colour(self) -> np.ndarray:
        """Mean BGR of the character band: pairs of about one colour make plausible plates."""
        return self.image[int(self.top) : max(int(self.bottom), int(self.top) + 1)].reshape(-1, 3).mean(axis=0)


# A gap with more ink than this share of its area (between the characters' median top and bottom) holds
# something: a separator dot or dash stays below it.
CLEAN_GAP_INK = 0.15


def character_spans(crop: np.ndarray, count: int) -> tuple[tuple[Span, ...], float, float, tuple[bool, ...]] | None:
    """The x spans of the ``count`` characters of a one-line plate crop, their median top and bottom, and
    which gaps between them are clean (``CLEAN_GAP_INK``); None unless exactly ``count`` character-like
    components are found in one row, left to right, apart."""
    height = crop.shape[0]
    grey = cv2.createCLAHE(2.0, (4, 4)).apply(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
    for inverted, (block, offset) in ((i, t) for t in THRESHOLDS for i in (False, True)):
        source = 255 - grey if inverted else grey  # light text on dark, then dark text on light
        binary = cv2.adaptiveThreshold(source, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, offset)
        n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
        boxes = [
            tuple(int(v) for v in stats[i, :4]) for i in range(1, n)
            if 0.3 * height <= stats[i, 3] <= 0.9 * height  # character height: not specks, not the plate rim
            and stats[i, 2] <= 0.6 * stats[i, 3] + 4  # not wider than a character (joined glyphs, bars)
            and stats[i, 4] > 15
            and stats[i, 1] > 0 and stats[i, 1] + stats[i, 3] < height  # not cut by the crop's edge
        ]
        if len(boxes) < count:
            continue
        heights = np.array([b[3] for b in boxes], dtype=float)
        centres = np.array([b[1] + b[3] / 2 for b in boxes], dtype=float)
        h_med, y_med = float(np.median(heights)), float(np.median(centres))
        row = sorted((b for b, h, y in zip(boxes, heights, centres)
                      if abs(h - h_med) < 0.2 * h_med and abs(y - y_med) < 0.25 * h_med), key=lambda b: b[0])
        if len(row) != count:
            continue
        spans = tuple((x, x + w) for x, _, w, _ in row)
        if all(spans[i][1] <= spans[i + 1][0] for i in range(count - 1)):
            top = float(np.median([b[1] for b in row]))
            bottom = float(np.median([b[1] + b[3] for b in row]))
            band = binary[int(top) : max(int(bottom), int(top) + 1)] > 0
            clean = tuple(
                bool(band[:, spans[i - 1][1] : spans[i][0]].mean() <= CLEAN_GAP_INK) if spans[i][0] > spans[i - 1][1] else False
                for i in range(1, count)
            )
            return spans, top, bottom, clean
    return None


def segment_crops(crops: Sequence[tuple[np.ndarray, str, str]]) -> list[SegmentedCrop]:
    """The (fitted crop, text, group) items whose characters ``character_spans`` finds."""
    found = []
    for image, text, group in crops:
        result = character_spans(image, len(text))
        if result is not None:
            spans, top, bottom, clean = result
            found.append(SegmentedCrop(image, text, spans, top, bottom, group, clean))
    return found


def pool_of(images: Sequence[tuple[np.ndarray, str, str]], size: tuple[int, int], max_len: int) -> SplicePool:
    """A ``SplicePool`` of the (image, text, group) items: each plate image (a crop, or a scene's padded box
    region) fitted to the OCR's crop ``size`` the way the runtime fits a crop (splicing works on what the model
    reads), then segmented."""
    return SplicePool(segment_crops([(fit_crop(image, size), text, group) for image, text, group in images]), max_len)


def _gap(spans: Sequence[Span], index: int) -> float:
    """The x in the middle of the gap before character ``index``."""
    return (spans[index - 1][1] + spans[index][0]) / 2.0


def splice(left: SegmentedCrop, right: SegmentedCrop, cut_left: int, cut_right: int, feather: int = 3) -> tuple[np.ndarray, str]:
    """``left``'s characters before ``cut_left`` joined to ``right``'s from ``cut_right`` on: ``right`` is scaled
    and shifted so its characters have ``left``'s height and rows, the two meet in the gaps with a short
    cross-fade, and the result is resized back to the crop size (the text is ``left.text[:cut_left] +
    right.text[cut_right:]``)."""
    height, width = left.image.shape[:2]
    scale = (left.bottom - left.top) / max(right.bottom - right.top, 1.0)
    x_left, x_right = _gap(left.spans, cut_left), _gap(right.spans, cut_right) * scale
    # right's pixels mapped so its gap lands on left's gap and its character rows on left's
    shift_x, shift_y = x_left - x_right, left.top - right.top * scale
    extra = int(max(0.0, width * scale + shift_x - width))  # room for right's part that runs past the crop
    canvas_w = width + extra
    matrix = np.float32([[scale, 0, shift_x], [0, scale, shift_y]])
    moved = cv2.warpAffine(right.image, matrix, (canvas_w, height), borderMode=cv2.BORDER_REPLICATE)
    base = cv2.copyMakeBorder(left.image, 0, 0, 0, extra, cv2.BORDER_REPLICATE)
    weight = np.clip((np.arange(canvas_w, dtype=np.float32) - (x_left - feather)) / (2.0 * feather), 0.0, 1.0)
    joined = base * (1.0 - weight)[None, :, None] + moved * weight[None, :, None]
    end = max(round(min(canvas_w, right.image.shape[1] * scale + shift_x)), int(x_left) + 1)
    image = cv2.resize(joined[:, :end].astype(np.uint8), (width, height), interpolation=cv2.INTER_AREA)
    return image, left.text[:cut_left] + right.text[cut_right:]


class SplicePool:
    """Spliced crops on demand from the segmented real crops: two crops of one set and text length, with
    characters of about one height and colour, cut at the same character index, so the new text keeps the
    set's length and layout."""

    def __init__(self, crops: Sequence[SegmentedCrop], max_len: int, max_colour_distance: float = 60.0) -> None:
        self.max_len, self.max_colour_distance = max_len, max_colour_distance
        groups: dict[tuple[str, int], list[SegmentedCrop]] = defaultdict(list)
        for crop in crops:
            if len(crop.text) >= 2:
                groups[(crop.group, len(crop.text))].append(crop)
        self.groups = [members for members in groups.values() if len(members) >= 2]
        self.size = sum(len(members) for members in self.groups)
        self.weights = np.array([len(g) for g in self.groups], dtype=float) / max(self.size, 1)

    def __len__(self) -> int:
        return self.size

    def sample(self, rng: np.random.Generator, tries: int = 20) -> tuple[np.ndarray, str] | None:
        """One spliced crop and its text, or None when no pair in ``tries`` draws fits together."""
        if not self.groups:
            return None
        for _ in range(tries):
            members = self.groups[int(rng.choice(len(self.groups), p=self.weights))]
            i, j = rng.choice(len(members), size=2, replace=False)
            left, right = members[int(i)], members[int(j)]
            if left.text == right.text:
                continue
            # characters of about one size, so neither half is stretched much
            ratio = (left.bottom - left.top) / max(right.bottom - right.top, 1.0)
            if not 0.8 <= ratio <= 1.25:
                continue
            if float(np.abs(left.colour - right.colour).max()) > self.max_colour_distance:
                continue
            cuts = [k for k in range(1, len(left.text)) if left.clean[k - 1] and right.clean[k - 1]]
            if not cuts:
                continue
            cut = int(cuts[int(rng.integers(len(cuts)))])
            image, text = splice(left, right, cut, cut)
            if text != left.text and text != right.text and len(text) <= self.max_len:
                return image, text
        return None
