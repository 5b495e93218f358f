"""Synthetic number plates for training the OCR (and, later, for pasting plates into detector scenes).

The OCR is judged on real plates from places and cameras that are not in our data, so this generator
aims at variety and realism rather than beauty, and it is the only source of European plates.

Design, in the order a sample is made:

* **Text.** Each ``Layout`` has patterns in a tiny language (``@`` letter, ``#`` digit, ``%`` either,
  ``{m,n}`` repeats, literal ``A``-``Z``/``0``-``9``; `` ``, ``-``, ``.``, ``·`` are separators, ``*`` is
  an emblem slot and ``|`` a line break). Separators and emblems are drawn but never part of the label,
  so a label only uses ``CHARSET``. The same patterns give the label check (``layout_regex``) and tell
  ``render_plate`` where separators go for any label it is handed.
* **Glyphs.** Fonts come from Debian packages only (``FONT_PACKAGES``; nothing is ever downloaded). Each
  glyph is rasterised once with Pillow at a large reference size and cached as a mask; a plate resizes
  those masks to its own cap height and character width. That is what makes rendering cheap, and it
  lets one font play many plate typefaces: the width of the characters is a property of the layout
  (FE-Schrift is narrower than a UK plate, Brazil's old font is tall and thin), not of the font file.
* **Plate.** Background colour, bands (EU blue band with stars and country code, French department band,
  Mercosur band, US state header and slogan, Brazilian city strip...), then the text (optionally
  embossed), then overlays (border, screws, bolt slots, stickers). Decorations whose name ends in
  ``?p`` appear with probability ``p``.
* **Scene.** The plate is tilted in 3-D (yaw, pitch, roll), optionally put in a dealer frame, and warped
  onto a procedural car-rear background a bit larger than the plate (body colour and gradient, bumper,
  grille and chrome strips, a recess, text-like clutter nearby but never on the plate).
* **Camera.** Shadows, glare, low light, an IR night look, blur/motion/defocus, low resolution, sensor
  noise, colour casts, gamma, JPEG. Every strength is capped by the characters' final height in pixels
  so a human can still read almost every sample: small plates get mild blur and decent JPEG quality.

``synth_sample`` returns the canvas, the plate's quad and its bounding box; the training code cuts crops
with ``anpr_edge.crop.crop_plate`` exactly as the runtime does after the detector. Every random choice
comes from the caller's ``numpy.random.Generator``; the caches (glyphs, noise textures) are built from
fixed seeds, so a given generator state always gives the same sample.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from anpr_edge.crop import crop_plate, crop_region

CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = CHARSET[:10]
LETTERS = CHARSET[10:]

# Every Debian package whose fonts this module uses; CI installs them with apt-get.
FONT_PACKAGES = (
    "fonts-dejavu-core",
    "fonts-dejavu-extra",
    "fonts-urw-base35",
    "fonts-roboto-unhinted",
    "fonts-noto-mono",
    "fonts-roadgeek",
    "fonts-opendin",
    "fonts-bebas-neue",
    "fonts-droid-fallback",
)
FONT_ROOT = Path("/usr/share/fonts")

# Label fonts, by file stem. Narrow bold sans faces are the closest free relatives of DIN 1451 /
# FE-Schrift, Charles Wright and the US "penitentiary" fonts; wide and mono faces add variety (and are
# condensed per layout anyway).
NARROW_FONTS = ("NimbusSansNarrow-Bold", "RobotoCondensed-Bold", "DejaVuSansCondensed-Bold", "RobotoCondensed-Medium")
WIDE_FONTS = ("NimbusSans-Bold", "DejaVuSans-Bold", "Roboto-Bold", "URWGothic-Demi")
MONO_FONTS = ("DejaVuSansMono-Bold", "NotoSansMono-Bold")
# Sign and plate lettering rather than text faces: the real plate typefaces' shapes (a flat-topped 3,
# an open 6 and 9, a 2 with a straight diagonal, a narrow 1 and 8) are what the text faces above lack,
# and the leave-one-region-out table showed the OCR misreads an unseen region's typeface (NY 2 as 7/Z,
# Brazilian 8 as B, 6 as G). FHWA Highway Gothic series B/C/D (fonts-roadgeek; the lettering of many
# US plates), DIN 1451 Mittelschrift (fonts-opendin; old Brazilian, German and many European plates)
# and Bebas Neue (a condensed grotesque close to many plate dies).
SIGN_FONTS = ("RG2014B", "RG2014C", "RG2014D", "OSP-DIN", "BebasNeue-Bold")
# Regular-weight narrow faces for plates lettered with thin strokes: the Chinese plate typeface's strokes are a
# ninth of its character height (10 of 90 mm), and the OCR that saw only the bold faces above read real
# Chinese crops at 14% (synthetic ones at 70%), doubling thin characters and reading the province as a letter.
THIN_FONTS = ("NimbusSansNarrow-Regular", "RobotoCondensed-Regular", "DejaVuSansCondensed", "RG2014B")
LABEL_FONTS = NARROW_FONTS + WIDE_FONTS + MONO_FONTS + SIGN_FONTS + THIN_FONTS
# Small print only (state names, slogans, dealer frames), never the label.
DECOR_FONTS = ("NimbusRoman-Bold", "Z003-MediumItalic", "NimbusSans-Regular", "DejaVuSerif-Bold", "Roboto-Medium")
# Chinese characters for the province that leads Chinese plates (fonts-droid-fallback); an emblem, never the label.
HANZI_FONT = "DroidSansFallbackFull"
_FONT_SUFFIXES = (".ttf", ".otf")  # preferred over the Type 1 copies (.pfb) of the same URW faces

RGB = tuple[int, int, int]
WHITE: RGB = (244, 244, 240)
BLACK: RGB = (22, 22, 24)
EU_BLUE: RGB = (0, 51, 153)
STAR_YELLOW: RGB = (255, 204, 0)
NAVY: RGB = (24, 36, 88)

# OCR crop geometry (see anpr_edge.crop): the canvas always holds the region such a crop takes around
# the box, so training crops show real context, not replicated border pixels.
_OCR_CROP_SIZE = (192, 64)
_OCR_CROP_PADDING = 0.2

_REF_FONT_SIZE = 128  # glyphs are rasterised once at this size and resized per plate
# Stands for the French plate Q in a label line: the O with a short tick across the bottom right of the bowl.
# The text faces above all draw Q with a long tail below the baseline, and the OCR trained on them read
# real French Qs as O (BQ360YQ as BO360YO). A private-use code point, so no real text can contain it.
SHORT_TAIL_Q = "\ue051"
# The French plate typeface's M and W: straight vertical sides, the middle V reaching only about half-way (down
# from the top in M, up from the bottom in W). The faces above all draw slanted sides, and the OCR read real
# French Ws as M, N or H (BK678YW as BK678YM, BS398KW as BS398KH) and Ms as N.
STRAIGHT_M = "\ue052"
STRAIGHT_W = "\ue053"
FRENCH_LETTERS = {"Q": SHORT_TAIL_Q, "M": STRAIGHT_M, "W": STRAIGHT_W}  # label letter -> glyph drawn
_FRENCH_TRANSLATION = str.maketrans(FRENCH_LETTERS)
_FRENCH_GLYPHS = frozenset(FRENCH_LETTERS.values())
# Tunisian plates carry an Arabic word between or after the numbers, which the labels (and the OCR) write as a
# Latin letter: "تونس" (Tunis) as T on ordinary plates, "ن ت" as N on the six-digit ones. A private-use code
# point stands for each word in a label line, as for the French letters. The words are drawn from Unicode's
# Arabic presentation forms in visual (left-to-right) order with Pillow's basic layout, so no text shaping
# library is needed and every machine draws the same pixels.
TUNIS_WORD = "\ue054"
NT_WORD = "\ue055"
TUNISIAN_WORDS = {"T": TUNIS_WORD, "N": NT_WORD}  # label letter -> word drawn
_ARABIC_WORDS = {
    TUNIS_WORD: "\ufeb2\ufee7\ufeee\ufe97",  # seen left to right: final seen, initial noon, final waw, initial teh
    NT_WORD: "\ufe95 \ufee5",  # seen left to right: isolated teh, a space, isolated noon
}
ARABIC_FONT = "DejaVuSans-Bold"  # fonts-dejavu-core; it draws the Arabic presentation forms
_ARABIC_HEIGHT = 0.72  # the word's ink height / the label font's cap height (the digits stand taller)


# --------------------------------------------------------------------------------------------- fonts


@functools.lru_cache(maxsize=1)
def _font_index() -> dict[str, Path]:
    """Known font stems -> file, found by name anywhere under /usr/share/fonts."""
    wanted = set(LABEL_FONTS + DECOR_FONTS + (HANZI_FONT,))
    found: dict[str, Path] = {}
    if FONT_ROOT.is_dir():
        for path in sorted(FONT_ROOT.rglob("*")):
            if path.stem in wanted and path.suffix.lower() in _FONT_SUFFIXES and path.stem not in found:
                found[path.stem] = path
    return found


def available_fonts() -> list[Path]:
    """The plate fonts installed here (label and small-print faces), sorted by name.

    Raises RuntimeError naming the apt-get command when no label font is installed.
    """
    index = _font_index()
    if not any(stem in index for stem in LABEL_FONTS):
        raise RuntimeError(
            f"no plate fonts found under {FONT_ROOT}; install them with: "
            f"apt-get install -y {' '.join(FONT_PACKAGES)}"
        )
    return [index[stem] for stem in sorted(index)]


@functools.cache
def _usable(stems: tuple[str, ...]) -> tuple[str, ...]:
    """The given stems that are installed; any label font if none of them is."""
    index = _font_index()
    available_fonts()  # raises with the install hint when nothing is there
    chosen = tuple(s for s in stems if s in index)
    return chosen or tuple(s for s in LABEL_FONTS if s in index)


@functools.cache
def _font(stem: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_font_index()[stem]), size)


@dataclass(frozen=True)
class _Glyph:
    mask: np.ndarray  # uint8 coverage of the ink box (plus 1 px margin) at the reference size
    left: float  # ink box left edge relative to the pen position
    top: float  # ink box top relative to the baseline (negative: above it)
    advance: float


@functools.cache
def _glyph(stem: str, char: str, bold: int) -> _Glyph:
    if char == SHORT_TAIL_Q:
        return _short_tail_q(stem, bold)
    if char in _ARABIC_WORDS:
        return _arabic_word(stem, char, bold)
    if char in (STRAIGHT_M, STRAIGHT_W):
        return _straight_sided(stem, bold, vertex_down=char == STRAIGHT_M)
    font = _font(stem, _REF_FONT_SIZE)
    mask, left, top = _rasterise(font, char, bold)
    mask.setflags(write=False)
    return _Glyph(mask, left, top, font.getlength(char) + bold)


def _rasterise(font: ImageFont.FreeTypeFont, text: str, bold: int) -> tuple[np.ndarray, float, float]:
    """``text``'s ink box (plus 1 px margin) as uint8 coverage, and its left and top relative to the pen
    position on the baseline."""
    left, top, right, bottom = font.getbbox(text, anchor="ls", stroke_width=bold)
    canvas = Image.new("L", (max(right - left, 1) + 2, max(bottom - top, 1) + 2), 0)
    ImageDraw.Draw(canvas).text(
        (1 - left, 1 - top), text, font=font, fill=255, anchor="ls", stroke_width=bold, stroke_fill=255
    )
    return np.asarray(canvas, dtype=np.uint8), left - 1.0, top - 1.0


def _arabic_word(stem: str, char: str, bold: int) -> _Glyph:
    """An Arabic word of a Tunisian plate (``TUNISIAN_WORDS``) as one glyph of the label font ``stem``: its ink
    ``_ARABIC_HEIGHT`` of the font's cap height, centred on the digits' mid-height, with a small gap each side."""
    if ARABIC_FONT not in _font_index():
        raise RuntimeError(f"the Tunisian plate layout needs {ARABIC_FONT}: apt-get install -y fonts-dejavu-core")
    font = ImageFont.truetype(str(_font_index()[ARABIC_FONT]), _REF_FONT_SIZE, layout_engine=ImageFont.Layout.BASIC)
    word, _, _ = _rasterise(font, _ARABIC_WORDS[char], bold)
    cap = _cap_height(stem, bold)
    height = _ARABIC_HEIGHT * cap
    width = word.shape[1] * height / word.shape[0]
    mask = cv2.resize(word, (max(_px(width), 1), max(_px(height), 1)), interpolation=cv2.INTER_AREA)
    mask.setflags(write=False)
    gap = 0.12 * cap
    return _Glyph(mask, gap, -(cap + height) / 2.0, width + 2.0 * gap)


def _short_tail_q(stem: str, bold: int) -> _Glyph:
    """The font's O with a short diagonal tick from inside the bowl to just past its bottom-right edge.

    Drawn from the O (not cut from the Q) because in most faces the Q's tail lies wholly below the bowl:
    cut at the baseline it would be an O labelled Q.
    """
    o = _glyph(stem, "O", bold)
    h, w = o.mask.shape
    right_to_left = o.mask[h // 2, ::-1] > 127
    edge = int(np.argmax(right_to_left))  # the bowl's right edge, from the right
    stroke = max(int(np.argmin(right_to_left[edge:])), 1) if right_to_left.any() else 1  # its ink width there
    drop = max(round(0.06 * h), 1)  # how far the tick ends below the bowl
    mask = np.zeros((h + drop, w), np.uint8)
    mask[:h] = o.mask
    start = (0.55 * w, 0.62 * h)
    end = (0.93 * w, h - 1 + drop * 0.6)
    cv2.line(mask, (_px(start[0]), _px(start[1])), (_px(end[0]), _px(end[1])), 255,
             max(round(stroke * 0.8), 1), cv2.LINE_AA)
    mask.setflags(write=False)
    return _Glyph(mask, o.left, o.top, o.advance)


def _straight_sided(stem: str, bold: int, vertex_down: bool) -> _Glyph:
    """An M (``vertex_down``) or W drawn on the font's H: its two stems at full height, and a V between
    them from the top (M) or bottom (W) corners to a vertex about half-way, its strokes 0.7 of a stem."""
    h_glyph = _glyph(stem, "H", bold)
    h, w = h_glyph.mask.shape
    top_row = h_glyph.mask[max(round(0.1 * h), 1)] > 127  # above the crossbar: the two stems only
    ink = np.flatnonzero(top_row)
    if len(ink) < 2:
        return h_glyph
    gaps = np.flatnonzero(np.diff(ink) > 1)
    left_end = int(ink[gaps[0]]) if len(gaps) else int(ink[len(ink) // 3])
    right_start = int(ink[gaps[-1] + 1]) if len(gaps) else int(ink[2 * len(ink) // 3])
    stem_px = max(left_end - int(ink[0]) + 1, 1)
    mask = np.zeros((h, w), np.uint8)
    mask[1:h - 1, int(ink[0]):left_end + 1] = 255
    mask[1:h - 1, right_start:int(ink[-1]) + 1] = 255
    thickness = max(round(stem_px * 0.7), 1)
    ends_y = 1 + thickness / 2.0 if vertex_down else h - 2 - thickness / 2.0
    vertex = ((ink[0] + ink[-1]) / 2.0, (0.55 if vertex_down else 0.42) * (h - 2) + 1)
    for x in (left_end - thickness / 2.0, right_start + thickness / 2.0):  # from the stems' inner edges
        cv2.line(mask, (_px(x), _px(ends_y)), (_px(vertex[0]), _px(vertex[1])), 255, thickness, cv2.LINE_AA)
    mask.setflags(write=False)
    return _Glyph(mask, h_glyph.left, h_glyph.top, h_glyph.advance)


@functools.cache
def _cap_height(stem: str, bold: int) -> float:
    return float(-_font(stem, _REF_FONT_SIZE).getbbox("H", anchor="ls", stroke_width=bold)[1])


@functools.cache
def _mean_advance(stem: str, bold: int) -> float:
    """Mean advance of the label characters per cap height: how wide the font is by nature."""
    return float(np.mean([_glyph(stem, c, bold).advance for c in CHARSET])) / _cap_height(stem, bold)


# ------------------------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Layout:
    """How one kind of plate looks and what text it carries. Colours are RGB."""

    name: str
    region: str  # "EU", "UK", "US", "BR", "CN" or "OTHER"
    aspect: float  # plate width / height
    patterns: tuple[str, ...]  # see the module docstring; repeat a pattern to weight it
    lines: int = 1
    colours: tuple[tuple[RGB, RGB], ...] = ((WHITE, BLACK),)  # (background, text) choices
    decorations: tuple[str, ...] = ()  # applied in order; "name?p" with probability p
    fonts: tuple[str, ...] = NARROW_FONTS
    letters: str = LETTERS  # what "@" draws from (many countries skip I, O, Q, vowels...)
    codes: tuple[str, ...] = ()  # EU country code, US state name, Brazilian city... one per plate
    captions: tuple[str, ...] = ()  # slogans and small print, one per plate
    accents: tuple[RGB, ...] = (EU_BLUE,)  # colour of bands and headers, one per plate
    header_font: str = "NimbusSans-Bold"
    header_band: bool = False  # header text in the background colour on an accent band
    emblem: str = ""  # what fills a "*" slot: "state", "seals", "shield_at", "shield_ch", "orange", "hanzi"
    char_height: float = 0.78  # cap height / height of the text area (per line)
    bold: tuple[int, ...] = (0, 0, 0, 2, 3)  # stroke thickening (px at the glyph reference size), one drawn per plate
    char_width: tuple[float, float] = (0.56, 0.68)  # mean character advance / cap height
    tracking: tuple[float, float] = (0.03, 0.10)  # extra gap between characters / cap height
    aspect_jitter: float = 0.03  # relative
    max_chars: int = 0  # 0: no limit beyond the patterns
    # Share of plates whose Q, M and W are the French plate typeface's (FRENCH_LETTERS), not the font's.
    french_letters: float = 0.0
    # Label letters drawn as something else on every plate of the layout, e.g. TUNISIAN_WORDS.
    drawn_as: tuple[tuple[str, str], ...] = ()
    weight: float = 1.0  # default share in synth_sample


# Letter sets of countries that leave some letters out (so the OCR sees realistic letter statistics).
_NO_IOQ = "ABCDEFGHJKLMNPRSTUVWXYZ"
_NO_IOU = "ABCDEFGHJKLMNPQRSTVWXYZ"
_NO_IOQU = "ABCDEFGHJKLMNPRSTVWXYZ"
_NO_IO = "ABCDEFGHJKLMNPQRSTUVWXYZ"
# One-character province names that lead Chinese plates (drawn by the "hanzi" emblem).
_CN_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# What follows the dot on a blue Chinese plate: mostly digits, at most two letters (real plates: 6MX97, 05279,
# 0K782), and now and then any mix; a pattern repeated is a pattern weighted.
_CN_PATTERNS = (("*@·#####",) * 3 + ("*@·@####", "*@·#@###", "*@·##@##", "*@·###@#", "*@·####@") * 2
                + ("*@·@@###", "*@·#@@##", "*@·##@@#", "*@·###@@", "*@·%%%%%"))
_ES_LETTERS = "BCDFGHJKLMNPRSTVWXYZ"
_NL_LETTERS = "BDFGHJKLNPRSTVXZ"
_GR_LETTERS = "ABEHIKMNOPTXYZ"  # Greek capitals that look Latin

_EU_LINE = ("eu_band", "border?0.75", "screws?0.35")
_EU_FONTS = ("NimbusSansNarrow-Bold", "RobotoCondensed-Bold", "DejaVuSansCondensed-Bold", "NimbusSans-Bold", "Roboto-Bold",
             "OSP-DIN", "BebasNeue-Bold", "RG2014C")
_EU_WIDTH = (0.54, 0.66)


def _eu(name: str, code: str, patterns: tuple[str, ...], weight: float, **kw: object) -> Layout:
    """A single-line EU plate (520 x 110 mm) with the blue band."""
    options: dict[str, object] = {
        "region": "EU", "aspect": 520 / 110, "decorations": _EU_LINE, "fonts": _EU_FONTS, "codes": (code,),
        "char_width": _EU_WIDTH, "weight": weight,
    }
    options.update(kw)
    return Layout(name=name, patterns=patterns, **options)  # type: ignore[arg-type]


_US_STATES = (
    "OHIO", "VIRGINIA", "MARYLAND", "GEORGIA", "ARIZONA", "MICHIGAN", "COLORADO", "OREGON", "NEVADA", "UTAH",
    "INDIANA", "KENTUCKY", "IOWA", "CONNECTICUT", "MASSACHUSETTS", "NORTH CAROLINA", "DELAWARE", "ALABAMA",
    "TENNESSEE", "WASHINGTON", "MINNESOTA", "ILLINOIS", "Massachusetts", "Virginia", "Connecticut", "Ohio",
    "SOUTH CAROLINA", "WISCONSIN", "MISSOURI", "LOUISIANA", "OKLAHOMA", "MAINE", "VERMONT", "DIPLOMAT",
)
_US_SLOGANS = (
    "BIRTHPLACE OF AVIATION", "Land of Lincoln", "First in Flight", "Great Lakes Splendor",
    "Constitution State", "The Volunteer State", "Grand Canyon State", "Live Free or Die",
    "Spirit of America", "Peach State", "10,000 Lakes", "America's Dairyland", "Show-Me State",
    "Sportsman's Paradise", "The First State", "VACATIONLAND", "Green Mountain State", "Virginia is for Lovers",
    "Evergreen State", "Treasure State", "Sweet Home Alabama", "",
)
_US_DECOR = ("state_header", "slogan?0.85", "bolts", "stickers?0.35", "rim?0.6", "emboss?0.5")
_US_WIDTH = (0.5, 0.62)
_US_FONTS = ("NimbusSansNarrow-Bold", "RobotoCondensed-Bold", "DejaVuSansCondensed-Bold", "RobotoCondensed-Medium",
             "RG2014B", "RG2014C", "RG2014D", "OSP-DIN")
_BR_FONTS = NARROW_FONTS + ("OSP-DIN", "RG2014B", "BebasNeue-Bold")  # the old Brazilian die is DIN-like
_UK_FONTS = ("NimbusSans-Bold", "Roboto-Bold", "DejaVuSansCondensed-Bold", "RobotoCondensed-Bold", "RG2014D")


def _us(name: str, patterns: tuple[str, ...], weight: float, **kw: object) -> Layout:
    """A US plate (12 x 6 in) with the state name on top and a slogan at the bottom."""
    options: dict[str, object] = {
        "region": "US", "aspect": 2.0, "decorations": _US_DECOR, "fonts": _US_FONTS, "letters": _NO_IOQ, "char_height": 0.86,
        "char_width": _US_WIDTH, "tracking": (0.02, 0.08), "weight": weight, "captions": _US_SLOGANS,
    }
    options.update(kw)
    return Layout(name=name, patterns=patterns, **options)  # type: ignore[arg-type]


_NL_SIDECODES = ("@@-###-@", "#-@@@-##", "@-###-@@", "@@@-##-@", "##-@@@-#", "#-@@-###", "@@-##-@@", "##-@@-@@")
_IE_COUNTIES = ("BAILE ATHA CLIATH", "CORCAIGH", "GAILLIMH", "LUIMNEACH", "CILL DARA", "MAIGH EO", "DUN NA NGALL")
_BR_CITIES = (
    "SP - SAO PAULO", "PR - CURITIBA", "RJ - RIO DE JANEIRO", "MG - BELO HORIZONTE", "PR - PARANAGUA",
    "SC - JOINVILLE", "RS - PORTO ALEGRE", "PR - LONDRINA", "BA - SALVADOR", "GO - GOIANIA", "PR - MARINGA",
    "SP - CAMPINAS", "DF - BRASILIA", "PE - RECIFE", "PR - PONTA GROSSA",
)

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        # ---------------------------------------------------------------- continental Europe (EU band)
        _eu("eu_de", "D", ("@{1,3}*@{1,2} #{1,4}",), 6.0, emblem="seals", max_chars=8,
            decorations=("eu_band", "border?0.85", "screws?0.3", "emboss?0.6")),
        _eu("eu_fr_siv", "F", ("@@-###-@@",), 5.0, letters=_NO_IOU, french_letters=0.7,
            decorations=("eu_band", "fr_right", "border?0.4", "screws?0.35")),
        # Old French numbers (FNI, department last): still on a good share of French cars, white at the
        # front and yellow (or white) at the rear, in narrow dies.
        _eu("eu_fr_fni", "F", ("#### @@ ##", "### @@@ ##", "## @@@ ##", "#### @@@ ##", "### @@ ##"), 3.0,
            letters=_NO_IOU, colours=((WHITE, BLACK), ((250, 200, 20), BLACK)), french_letters=0.5,
            char_width=(0.46, 0.62), decorations=("eu_band?0.5", "border?0.5", "screws?0.4", "emboss?0.3")),
        _eu("eu_it", "I", ("@@ ### @@",), 4.0, letters=_NO_IOQU,
            decorations=("eu_band", "it_right", "border?0.5", "screws?0.3")),
        _eu("eu_es", "E", ("#### @@@",), 4.0, letters=_ES_LETTERS,
            decorations=("eu_band", "border?0.8", "screws?0.35")),
        _eu("eu_nl", "NL", _NL_SIDECODES, 3.0, letters=_NL_LETTERS, colours=(((250, 194, 0), BLACK),)),
        _eu("eu_pl", "PL", ("@@ #####", "@@ ####@", "@@ ###@@", "@@@ ####", "@@@ ###@", "@@@ ##@@", "@@@ @###"), 3.0,
            letters=_NO_IOQ),
        _eu("eu_be", "B", ("#-@@@-###",), 2.0, colours=((WHITE, (150, 12, 36)),), accents=(EU_BLUE,),
            decorations=("eu_band", "border_red", "screws?0.3")),
        _eu("eu_at", "A", ("@{1,2}*### @@", "@{1,2}*#### @", "@{1,2}*##### @", "@{1,2}*##@@@"), 1.5,
            emblem="shield_at", decorations=("at_stripes", "eu_band", "screws?0.3")),
        _eu("eu_se", "S", ("@@@ ##%",), 1.5, letters="ABCDEFGHJKLMNOPRSTUWXYZ"),
        _eu("eu_cz", "CZ", ("#@# ####", "#@@ ####"), 1.5, letters=_NO_IOQ),
        _eu("eu_pt", "P", ("@@-##-@@", "##-@@-##", "##-##-@@"), 1.5,
            decorations=("eu_band", "pt_right", "border?0.5", "screws?0.3")),
        _eu("eu_gr", "GR", ("@@@-####",), 1.0, letters=_GR_LETTERS),
        _eu("eu_dk", "DK", ("@@ ## ###",), 1.0, decorations=("eu_band", "border_red", "screws?0.3")),
        _eu("eu_fi", "FIN", ("@@@-###",), 1.0),
        _eu("eu_hu", "H", ("@@@-###", "@@ @@-###"), 1.0),
        _eu("eu_ro", "RO", ("@ ## @@@", "@@ ## @@@", "@ ### @@@"), 1.0),
        _eu("eu_ie", "IRL", ("##-@{1,2}-#{1,5}", "###-@{1,2}-#{1,5}"), 1.0, captions=_IE_COUNTIES, max_chars=10,
            decorations=("eu_band", "caption_top", "border?0.6", "screws?0.3")),
        _eu("eu_lu", "L", ("@@ ####", "#####"), 0.5, colours=(((250, 200, 10), BLACK),)),
        _eu("eu_other", "LT", ("@@@ ###", "@@ ###@@", "@@-###-@@", "@@ ####", "### @@@", "@@ ### @@", "@@ #### @@"),
            2.0, codes=("LT", "LV", "EST", "SK", "SLO", "HR", "BG", "M", "CY", "UA", "N", "SRB"), letters=_NO_IOQ),
        # Switzerland: no EU band, canton shield between canton code and number.
        Layout("eu_ch", "EU", 500 / 110, ("@@*#{3,6}",), colours=((WHITE, BLACK),), emblem="shield_ch",
               decorations=("border?0.6", "screws?0.4"), fonts=_EU_FONTS, char_width=_EU_WIDTH, weight=1.0),
        # Old French black plates (pre-1993 cars): silver characters, riveted, no band.
        Layout("fr_fni_black", "EU", 520 / 110, ("#### @@ ##", "### @@@ ##", "## @@ ##"), letters=_NO_IOU,
               colours=((BLACK, (205, 205, 200)), ((30, 30, 34), (230, 230, 225))),
               decorations=("border?0.7", "screws?0.6", "emboss?0.7"), fonts=_EU_FONTS, char_width=(0.46, 0.62),
               french_letters=0.5, weight=1.0),
        # ------------------------------------------------------------------------- United Kingdom
        Layout("uk_front", "UK", 520 / 111, ("@@## @@@",) * 8 + ("@### @@@", "@@@ ###@", "@@@ ####"),
               colours=((WHITE, BLACK),), letters=_NO_IOQ, accents=(EU_BLUE, (0, 120, 60)),
               codes=("UK", "GB", "UK", "CYM", "ENG", "SCO"),
               decorations=("uk_band?0.35", "dealer_line?0.55", "border?0.2", "screws?0.35"),
               fonts=_UK_FONTS,
               char_width=(0.56, 0.66), tracking=(0.06, 0.14), char_height=0.8, weight=4.0),
        Layout("uk_rear", "UK", 520 / 111, ("@@## @@@",) * 8 + ("@### @@@", "@@@ ###@", "@@@ ####"),
               colours=(((250, 206, 10), BLACK), ((246, 196, 0), BLACK)), letters=_NO_IOQ,
               accents=(EU_BLUE, (0, 120, 60)), codes=("UK", "GB", "UK", "CYM", "ENG", "SCO"),
               decorations=("uk_band?0.35", "dealer_line?0.55", "border?0.2", "screws?0.35"),
               fonts=_UK_FONTS,
               char_width=(0.56, 0.66), tracking=(0.06, 0.14), char_height=0.8, weight=4.0),
        # ------------------------------------------------------------------------------ United States
        _us("us_ny_gold", ("@@@*####",) * 4 + ("#####*@@",), 3.0, colours=(((236, 170, 34), NAVY),),
            codes=("NEW YORK",), captions=("EMPIRE STATE", "COMMERCIAL", "EMPIRE STATE"), accents=(NAVY,),
            header_font="NimbusRoman-Bold", header_band=True, emblem="state"),
        _us("us_ny_excelsior", ("@@@*####",), 3.0, colours=((WHITE, (16, 24, 60)),), codes=("NEW YORK",),
            captions=("EXCELSIOR",), accents=(NAVY,), header_font="NimbusRoman-Bold", emblem="state",
            decorations=("state_header", "skyline", "slogan", "bolts", "rim?0.5", "emboss?0.4")),
        _us("us_nyc_tlc", ("T######C",) * 9 + ("Y######C",), 2.5, colours=(((238, 176, 30), (20, 20, 30)),),
            codes=("NEW YORK",), captions=("T&LC", "T&LC", "TAXI"), accents=(NAVY,), header_font="NimbusRoman-Bold",
            header_band=True, decorations=("state_header", "slogan", "bolts", "rim?0.6", "emboss?0.6")),
        _us("us_nj", ("@##*@@@",) * 3 + ("@@@*##@",), 2.0, colours=(((236, 222, 160), BLACK),),
            codes=("New Jersey",), captions=("Garden State",), accents=(BLACK,), header_font="Z003-MediumItalic",
            emblem="state"),
        _us("us_pa", ("@@@*####",), 1.5, colours=((WHITE, (18, 40, 110)),), codes=("PENNSYLVANIA",),
            captions=("visitPA.com",), accents=((18, 40, 110),), header_band=True, emblem="state"),
        _us("us_ca", ("#@@@###",), 1.5, colours=((WHITE, (22, 34, 110)),), codes=("California",),
            captions=("DMV.CA.GOV", ""), accents=((190, 20, 30),), header_font="Z003-MediumItalic"),
        _us("us_tx", ("@@@-####", "@@@ ####"), 1.5, colours=((WHITE, BLACK),), codes=("TEXAS",),
            captions=("THE LONE STAR STATE",), accents=(BLACK,)),
        _us("us_fl", ("@@@*@##", "###*@@@", "@##*@@@"), 1.0, colours=((WHITE, (0, 96, 56)),), codes=("FLORIDA",),
            captions=("SUNSHINE STATE", "MYFLORIDA.COM"), accents=((0, 96, 56), (230, 110, 10)), emblem="orange"),
        _us("us_generic", ("@@@ ###", "### @@@", "@@@####", "#@@@###", "@@ #####", "#@@@@#", "@@@ #@@", "@@@-####",
                           "@@@ ####", "#@@ ###", "@@# ###", "@@@@##"), 5.0,
            colours=((WHITE, NAVY), (WHITE, (140, 20, 30)), (WHITE, BLACK), ((214, 232, 246), NAVY),
                     ((248, 236, 190), BLACK), (WHITE, (0, 90, 50)), ((20, 30, 70), WHITE), (BLACK, (240, 200, 60))),
            codes=_US_STATES, accents=(NAVY, (160, 20, 30), BLACK, (0, 90, 50), (30, 90, 170)),
            header_font="NimbusSans-Bold"),
        # ------------------------------------------------------------------------------------ Tunisia
        # White on black, 520 x 110 mm: a series number (up to 3 digits), the word "تونس" (labelled T) and a
        # number (up to 4 digits); some plates have six digits and "ن ت" (labelled N). Taught by the real
        # Tunisian crops alone, the OCR had never seen an N plate (the real set's five are all in its
        # validation split) and read none.
        Layout("tn", "OTHER", 520 / 110, ("### T ####",) * 5 + ("## T ####",) * 3 + ("### T ###", "## T ###", "# T ####")
               + ("###### N",) * 3, colours=((BLACK, WHITE), ((22, 22, 26), (236, 236, 232))), fonts=_EU_FONTS,
               decorations=("border?0.6", "screws?0.3", "emboss?0.3"), drawn_as=tuple(TUNISIAN_WORDS.items()),
               char_width=(0.5, 0.64), tracking=(0.06, 0.16), weight=1.5),
        # ------------------------------------------------------------------------------------- Brazil
        Layout("br_old", "BR", 400 / 130, ("@@@·####",) * 3 + ("@@@-####",),
               colours=(((178, 180, 182), BLACK),) * 3 + (((160, 28, 30), WHITE),) * 2 + ((BLACK, WHITE), (WHITE, (150, 20, 20))),
               codes=_BR_CITIES, decorations=("city_strip", "screws_top", "rim?0.6", "emboss?0.7"), fonts=_BR_FONTS,
               char_height=0.84, char_width=(0.42, 0.52), tracking=(0.04, 0.1), weight=4.5),
        Layout("br_mercosur", "BR", 400 / 130, ("@@@#@##",), char_height=0.8,
               colours=((WHITE, BLACK),) * 5 + ((WHITE, (180, 20, 30)),) * 2 + ((WHITE, (0, 60, 150)), (WHITE, (0, 110, 60))),
               accents=((0, 56, 168),), decorations=("mercosur_band", "border_thin?0.5", "screws?0.3"), fonts=_BR_FONTS,
               char_width=(0.56, 0.66), weight=4.5),
        # ------------------------------------------------------------------------------------- China
        # A province character (not in the label: the OCR skips it as it skips an emblem), the issuing office's
        # letter, a dot, then five characters (no I or O), white on blue (cars) or black on yellow (large
        # vehicles), framed in the text colour; new-energy plates are green with six after the dot. No real
        # Chinese crop is trained on: cn-plate-crops tests a region known only from this layout. The lettering
        # follows GA 36: 90 mm high characters 45 mm wide, 12 mm apart, strokes 10 mm, on a 140 mm plate
        # (thin, well spaced, two thirds of the plate's height), and the five mostly digits, at most two letters.
        Layout("cn_blue", "CN", 440 / 140, _CN_PATTERNS, letters=_NO_IO, emblem="hanzi",
               colours=(((12, 62, 170), WHITE),) * 4 + (((246, 196, 20), BLACK),),
               decorations=("border?0.85", "screws?0.4", "emboss?0.2"), fonts=THIN_FONTS + ("RG2014C", "OSP-DIN"),
               bold=(0, 0, 0, 0, 2), char_height=0.72, char_width=(0.48, 0.58), tracking=(0.1, 0.16), weight=2.5),
        Layout("cn_green", "CN", 480 / 140, ("*@·D%####", "*@·F%####", "*@·#####D", "*@·#####F"), letters=_NO_IO,
               emblem="hanzi", colours=(((150, 222, 170), BLACK), ((200, 236, 200), BLACK)),
               decorations=("border?0.6", "screws?0.4"), fonts=THIN_FONTS + ("RG2014C", "OSP-DIN"),
               bold=(0, 0, 0, 0, 2), char_height=0.72, char_width=(0.46, 0.56), tracking=(0.08, 0.14), weight=0.7),
        # ---------------------------------------------------------------------------- anything else
        Layout("other_generic", "OTHER", 3.8, ("%{4,9}", "%{2,3} %{2,5}", "%{2,3}-%{2,5}", "@{1,3}·#{3,5}",
                                                "@@ ####", "#### @@", "%{2,4} %{2,4}", "#{2,3}-@{1,3}-#{2,3}"),
               colours=((WHITE, BLACK), ((250, 205, 20), BLACK), (BLACK, WHITE), ((20, 60, 150), WHITE),
                        ((10, 100, 50), WHITE), ((170, 20, 20), WHITE), (WHITE, (170, 20, 20)), (WHITE, (20, 50, 150)),
                        (WHITE, (10, 100, 50)), ((240, 130, 20), BLACK), ((190, 190, 190), BLACK), (BLACK, (250, 210, 40))),
               accents=(EU_BLUE, (170, 20, 20), (10, 100, 50), BLACK), captions=("",),
               decorations=("caption_top?0.2", "border?0.5", "screws?0.3", "emboss?0.3", "rim?0.2"),
               fonts=LABEL_FONTS, letters=_NO_IOQ, char_width=(0.48, 0.78), aspect_jitter=0.28, weight=6.0),
        # --------------------------------------------------------------------- two lines (top, then bottom)
        Layout("moto_2line", "OTHER", 1.6, ("@@ ###|@@ ##", "@@|####", "@@@|###", "## @@|###", "@ ###|@@", "@@|### @@",
                                            "@@ ##|@@@ #"),
               lines=2, colours=((WHITE, BLACK), ((250, 205, 20), BLACK), (BLACK, WHITE), ((10, 100, 50), WHITE),
                                 (WHITE, (20, 50, 150))),
               decorations=("eu_band?0.3", "border?0.6", "screws?0.4", "emboss?0.3"), codes=("I", "F", "D", "E", "PL"),
               fonts=LABEL_FONTS, letters=_NO_IOQ, char_height=0.8, char_width=(0.52, 0.7), aspect_jitter=0.1, weight=3.5),
        Layout("eu_square", "EU", 340 / 200, ("@{1,3}|@{1,2} #{1,4}", "@@|### @@", "####|@@@", "@@ ##|@@@", "@@-###|@@"),
               lines=2, decorations=("eu_band", "border?0.7", "screws?0.3"), codes=("D", "I", "E", "PL", "F", "NL", "CZ"),
               fonts=_EU_FONTS, char_height=0.8, char_width=_EU_WIDTH, aspect_jitter=0.1, max_chars=8, weight=2.0),
        Layout("us_stacked", "US", 7 / 4, ("@@@|###", "##|@@##", "###|@@@", "@|####", "@@|###"), lines=2,
               colours=((WHITE, NAVY), (WHITE, BLACK), ((236, 170, 34), NAVY), (WHITE, (140, 20, 30))),
               codes=_US_STATES, captions=("MOTORCYCLE", "CYCLE", "", "TRAILER"), accents=(NAVY, (160, 20, 30), BLACK),
               decorations=("state_header", "slogan?0.4", "bolts_top", "stickers?0.3", "rim?0.5", "emboss?0.4"),
               fonts=_US_FONTS, letters=_NO_IOQ, char_height=0.9, char_width=_US_WIDTH, aspect_jitter=0.05,
               weight=2.0),
    )
}


# ---------------------------------------------------------------------------------- text patterns

_CLASSES = "@#%"
_SEPARATORS = " -.·*|"


@functools.cache
def _tokens(pattern: str) -> tuple[tuple[str, int, int], ...]:
    """(symbol, min, max) for each element of a pattern."""
    tokens: list[tuple[str, int, int]] = []
    i = 0
    while i < len(pattern):
        symbol = pattern[i]
        if symbol not in _CLASSES and symbol not in CHARSET and symbol not in _SEPARATORS:
            raise ValueError(f"pattern {pattern!r}: unknown symbol {symbol!r}")
        low = high = 1
        if i + 1 < len(pattern) and pattern[i + 1] == "{":
            end = pattern.index("}", i)
            bounds = pattern[i + 2 : end].split(",")
            low, high = int(bounds[0]), int(bounds[-1])
            i = end
        tokens.append((symbol, low, high))
        i += 1
    return tuple(tokens)


def _alphabet(symbol: str, letters: str) -> str:
    return {"@": letters, "#": DIGITS, "%": letters + DIGITS}.get(symbol, symbol)


@functools.cache
def _pattern_regex(pattern: str, letters: str) -> re.Pattern[str]:
    """A regex over the label (separators dropped) with one group per label element."""
    parts = []
    for symbol, low, high in _tokens(pattern):
        if symbol in _CLASSES or symbol in CHARSET:
            parts.append(f"([{re.escape(_alphabet(symbol, letters))}]{{{low},{high}}})")
    return re.compile("".join(parts))


def layout_regex(layout: Layout | str) -> re.Pattern[str]:
    """Matches exactly the labels ``layout`` can carry (use ``fullmatch``)."""
    layout = _layout(layout)
    body = "|".join(f"(?:{_pattern_regex(p, layout.letters).pattern})" for p in dict.fromkeys(layout.patterns))
    return re.compile(body)


def _generate(pattern: str, letters: str, rng: np.random.Generator) -> tuple[str, str]:
    """(label, shown): the label and the same text with separators, emblem slots and line breaks."""
    label, shown = [], []
    for symbol, low, high in _tokens(pattern):
        count = low if low == high else int(rng.integers(low, high + 1))
        if symbol in _CLASSES:
            alphabet = _alphabet(symbol, letters)
            text = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), count))
            label.append(text)
            shown.append(text)
        elif symbol in CHARSET:
            label.append(symbol * count)
            shown.append(symbol * count)
        else:
            shown.append(symbol * count)
    return "".join(label), "".join(shown)


def _random_shown(layout: Layout, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A random label and its lines as drawn (with separators)."""
    for _ in range(50):
        pattern = layout.patterns[int(rng.integers(len(layout.patterns)))]
        label, shown = _generate(pattern, layout.letters, rng)
        if not layout.max_chars or len(label) <= layout.max_chars:
            break
    return label, [line.strip(" ") for line in shown.split("|")]


def random_text(layout: Layout | str, rng: np.random.Generator) -> str:
    """A plausible label (characters of ``CHARSET`` only) for ``layout``."""
    return _random_shown(_layout(layout), rng)[0]


def _shown_lines(text: str, layout: Layout, split: int | None) -> list[str]:
    """The lines to draw for ``text``: separators from the first pattern that matches it."""
    if split is not None and layout.lines == 2:
        return [text[:split], text[split:]]
    for pattern in layout.patterns:
        match = _pattern_regex(pattern, layout.letters).fullmatch(text)
        if match:
            return _insert_separators(pattern, match.groups())
    if layout.lines == 1:
        return [text]
    cut = _sensible_split(text)
    return [text[:cut], text[cut:]]


def _insert_separators(pattern: str, groups: Sequence[str]) -> list[str]:
    shown, parts = [], iter(groups)
    for symbol, low, _ in _tokens(pattern):
        shown.append(next(parts) if symbol in _CLASSES or symbol in CHARSET else symbol * low)
    return [line.strip(" ") for line in "".join(shown).split("|")]


def _sensible_split(text: str) -> int:
    """Split point for a two-line plate: a letter/digit boundary near the middle, else the middle."""
    middle = (len(text) + 1) // 2
    boundaries = [i for i in range(1, len(text)) if text[i - 1].isdigit() != text[i].isdigit()]
    if boundaries:
        best = min(boundaries, key=lambda i: abs(i - middle))
        if abs(best - middle) <= max(1, len(text) // 4):
            return best
    return middle


def _layout(layout: Layout | str) -> Layout:
    return LAYOUTS[layout] if isinstance(layout, str) else layout


# --------------------------------------------------------------------------------- drawing helpers


def _bgr(rgb: Sequence[int]) -> tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def _jitter(colour: Sequence[int], rng: np.random.Generator, amount: float) -> tuple[int, int, int]:
    """A colour nudged a little: real plates fade, sheeting differs, white balance is never exact."""
    shift = rng.normal(0.0, amount) + rng.normal(0.0, amount / 2.0, 3)
    return tuple(int(v) for v in np.clip(np.asarray(colour, np.float64) + shift, 0, 255))  # type: ignore[return-value]


_SHIFT = 4  # OpenCV sub-pixel drawing: coordinates in 1/16 px


def _px(value: float) -> int:
    """Nearest whole pixel, as a Python int whatever the NumPy version (round() of a NumPy 1.x float is not)."""
    return math.floor(value + 0.5)


def _fixed(*values: float) -> list[int]:
    return [_px(v * (1 << _SHIFT)) for v in values]


def _circle(img: np.ndarray, cx: float, cy: float, r: float, colour: Sequence[float], thickness: int = -1) -> None:
    x, y, rr = _fixed(cx, cy, max(r, 0.5))
    cv2.circle(img, (x, y), rr, tuple(float(c) for c in colour), thickness, cv2.LINE_AA, _SHIFT)


def _poly(img: np.ndarray, points: np.ndarray, colour: Sequence[float]) -> None:
    pts = np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(img, [pts], tuple(float(c) for c in colour), cv2.LINE_AA, _SHIFT)


def _rect(img: np.ndarray, x1: float, y1: float, x2: float, y2: float, colour: Sequence[float]) -> None:
    cv2.rectangle(img, (_px(x1), _px(y1)), (_px(x2) - 1, _px(y2) - 1),
                  tuple(float(c) for c in colour), -1)


def _blend(img: np.ndarray, mask: np.ndarray, colour: Sequence[float], x: int, y: int, opacity: float = 1.0) -> None:
    """Paint ``colour`` through coverage ``mask`` placed with its top-left at (x, y), clipped to ``img``."""
    h, w = img.shape[:2]
    mh, mw = mask.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + mw, w), min(y + mh, h)
    if x1 >= x2 or y1 >= y2:
        return
    a = mask[y1 - y : y2 - y, x1 - x : x2 - x].astype(np.float32)[..., None] * (opacity / 255.0)
    region = img[y1:y2, x1:x2].astype(np.float32)
    region += (np.asarray(colour, np.float32) - region) * a
    img[y1:y2, x1:x2] = np.clip(region, 0, 255) if img.dtype == np.uint8 else region


@dataclass
class _TextRun:
    mask: np.ndarray  # uint8 coverage, height ~1.5 cap, baseline at ``baseline``
    baseline: int
    boxes: list[tuple[float, float, float, float]]  # ink box of each label character, in mask coords
    slots: list[tuple[float, float, float, float]]  # "*" emblem slots, in mask coords
    fit: float  # horizontal squeeze applied to fit the width (1: none)


def _text_run(
    text: str,
    stem: str,
    cap: float,
    max_width: float,
    *,
    squeeze: float = 1.0,
    tracking: float = 0.05,
    space: float = 0.45,
    bold: int = 0,
    mono: bool = False,
    align: float = 0.5,
) -> _TextRun:
    """Rasterise one line: glyphs from the cache, scaled to ``cap`` and squeezed into ``max_width``."""
    scale = cap / _cap_height(stem, bold)
    cell = _mean_advance(stem, bold) * cap * squeeze
    items: list[tuple[str, float, float, str]] = []  # kind, x, width, character (unscaled x units)
    x = 0.0
    for char in text:
        if char == " ":
            x += space * cap
            continue
        if char in "-·.*":
            width = {"-": 0.34, "·": 0.2, ".": 0.16, "*": 0.62}[char] * cap
            items.append((char, x + 0.06 * cap, width, char))
            x += width + 0.12 * cap + tracking * cap
            continue
        glyph = _glyph(stem, char, bold)
        ink = glyph.mask.shape[1] * scale * squeeze
        if mono and (char in CHARSET or char in _FRENCH_GLYPHS):
            advance = max(cell, ink)
            items.append(("g", x + (advance - ink) / 2.0, ink, char))
        else:
            advance = glyph.advance * scale * squeeze
            items.append(("g", x + glyph.left * scale * squeeze, ink, char))
        x += advance + tracking * cap
    total = max(x - tracking * cap, 1.0)
    fit = min(1.0, max_width / total)
    offset = (max_width - total * fit) * align
    baseline = _px(cap * 1.2)
    mask = np.zeros((math.ceil(cap * 1.5) + 1, max(math.ceil(max_width), 1)), np.uint8)
    boxes, slots = [], []
    for kind, x0, width, payload in items:
        left, w = offset + x0 * fit, width * fit
        if kind == "g":
            glyph = _glyph(stem, payload, bold)  # type: ignore[arg-type]
            gh, gw = max(_px(glyph.mask.shape[0] * scale), 1), max(_px(w), 1)
            pixels = _sized_glyph(stem, payload, bold, gw, gh)  # type: ignore[arg-type]
            top = baseline + _px(glyph.top * scale)
            _max_into(mask, pixels, _px(left), top)
            boxes.append((left, baseline - cap, left + w, float(baseline)))
        elif kind == "-":
            thick = max(cap * 0.13, 1.0)
            _rect(mask, left, baseline - cap * 0.5 - thick / 2, left + w, baseline - cap * 0.5 + thick / 2, (255,))
        elif kind in "·.":
            y = baseline - cap * 0.5 if kind == "·" else baseline - cap * 0.07
            _circle(mask, left + w / 2, y, cap * 0.075, (255,))
        else:
            slots.append((left, baseline - cap, left + w, float(baseline)))
    return _TextRun(mask, baseline, boxes, slots, fit)


@functools.lru_cache(maxsize=30000)
def _sized_glyph(stem: str, char: str, bold: int, width: int, height: int) -> np.ndarray:
    """A glyph mask resized to whole pixels; plates reuse a few sizes, so this saves most resizes."""
    pixels = cv2.resize(_glyph(stem, char, bold).mask, (width, height), interpolation=cv2.INTER_AREA)
    pixels.setflags(write=False)
    return pixels


def _max_into(dst: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    h, w = dst.shape[:2]
    sh, sw = src.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + sw, w), min(y + sh, h)
    if x1 < x2 and y1 < y2:
        np.maximum(dst[y1:y2, x1:x2], src[y1 - y : y2 - y, x1 - x : x2 - x], out=dst[y1:y2, x1:x2])


def _small_text(
    img: np.ndarray,
    text: str,
    box: Sequence[float],
    colour: Sequence[int],
    stem: str = "NimbusSans-Bold",
    *,
    cap_fraction: float = 0.72,
    align: float = 0.5,
    squeeze: float = 1.0,
) -> None:
    """Small print (state names, slogans, country codes) fitted into ``box`` = (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box
    if not text or x2 - x1 < 2 or y2 - y1 < 2:
        return
    stem = _usable((stem,) + DECOR_FONTS[:1])[0]
    cap = (y2 - y1) * cap_fraction
    run = _text_run(text, stem, cap, x2 - x1, squeeze=squeeze, tracking=0.03, space=0.3, align=align)
    # Centre the cap height (not the descenders) in the box.
    top = y1 + ((y2 - y1) - cap) / 2.0 - (run.baseline - cap)
    _blend(img, run.mask, _bgr(colour), _px(x1), _px(top))


# --------------------------------------------------------------------------------- plate rendering


@dataclass
class _Ctx:
    """Mutable state while one plate is painted."""

    img: np.ndarray  # BGR uint8
    layout: Layout
    rng: np.random.Generator
    bg: tuple[int, int, int]  # RGB
    fg: tuple[int, int, int]
    accent: tuple[int, int, int]
    area: list[float]  # x1, y1, x2, y2 still free for the label
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # label characters
    slots: list[tuple[float, float, float, float]] = field(default_factory=list)  # "*" emblem slots

    @property
    def h(self) -> int:
        return int(self.img.shape[0])

    @property
    def w(self) -> int:
        return int(self.img.shape[1])

    def code(self) -> str:
        codes = self.layout.codes
        return codes[int(self.rng.integers(len(codes)))] if codes else ""

    def caption(self) -> str:
        captions = self.layout.captions
        return captions[int(self.rng.integers(len(captions)))] if captions else ""


def _band_width(c: _Ctx) -> float:
    return min(0.4 * c.h, 0.13 * c.w) * c.rng.uniform(0.9, 1.05)


def _d_eu_band(c: _Ctx) -> None:
    """EU identifier: blue band, ring of 12 yellow stars, white country code."""
    h = c.h
    width = _band_width(c)
    inset = c.rng.integers(0, 2) * max(1.0, 0.02 * h)
    _rect(c.img, inset, inset, inset + width, h - inset, _bgr(_jitter(EU_BLUE, c.rng, 10)))
    unit = min(h - 2 * inset, 2.5 * width)
    cx, cy, ring = inset + width / 2.0, inset + 0.3 * unit, 0.27 * width
    star = _bgr(STAR_YELLOW)
    for k in range(12):
        angle = 2.0 * math.pi * k / 12.0
        _circle(c.img, cx + ring * math.cos(angle), cy + ring * math.sin(angle), max(0.055 * width, 0.5), star)
    bottom = h - inset - 0.07 * unit
    _small_text(c.img, c.code(), (inset + 0.08 * width, bottom - 0.3 * unit, inset + 0.92 * width, bottom), WHITE,
                "NimbusSans-Bold", cap_fraction=0.8)
    c.area[0] = max(c.area[0], inset + width + 0.04 * h)


def _d_right_band(c: _Ctx, colour: RGB, top: str, bottom: str, text_colour: RGB) -> None:
    width = _band_width(c) * c.rng.uniform(0.9, 1.05)
    x1 = c.w - width
    _rect(c.img, x1, 0, c.w, c.h, _bgr(_jitter(colour, c.rng, 10)))
    _small_text(c.img, top, (x1 + 0.1 * width, 0.08 * c.h, c.w - 0.1 * width, 0.42 * c.h), text_colour)
    _small_text(c.img, bottom, (x1 + 0.1 * width, 0.55 * c.h, c.w - 0.1 * width, 0.92 * c.h), text_colour)
    c.area[2] = min(c.area[2], x1 - 0.04 * c.h)


def _d_fr_right(c: _Ctx) -> None:
    """French identifier: department number under a regional logo (a coloured blob here)."""
    department = f"{int(c.rng.integers(1, 96)):02d}"
    _d_right_band(c, EU_BLUE, "", department, WHITE)
    width = _band_width(c)
    logo = _bgr(_jitter([(230, 40, 40), (250, 200, 20), (40, 160, 220), (240, 240, 240), (40, 150, 60)][int(c.rng.integers(5))], c.rng, 20))
    x2 = c.area[2] + 0.04 * c.h
    _circle(c.img, x2 + width * 0.55, 0.28 * c.h, 0.18 * c.h, logo)


def _d_it_right(c: _Ctx) -> None:
    year = f"{int(c.rng.integers(0, 100)):02d}" if c.rng.random() < 0.6 else ""
    _d_right_band(c, EU_BLUE, year, "", WHITE)


def _d_pt_right(c: _Ctx) -> None:
    _d_right_band(c, (250, 204, 20), f"{int(c.rng.integers(0, 100)):02d}", f"{int(c.rng.integers(1, 13)):02d}", BLACK)


def _d_uk_band(c: _Ctx) -> None:
    """UK/GB side band: a small flag over the identifier."""
    width = _band_width(c)
    _rect(c.img, 0, 0, width, c.h, _bgr(c.accent))
    fx1, fy1, fx2, fy2 = 0.15 * width, 0.1 * c.h, 0.85 * width, 0.1 * c.h + 0.45 * width
    _rect(c.img, fx1, fy1, fx2, fy2, _bgr((20, 40, 120)))
    _rect(c.img, fx1, (fy1 + fy2) / 2 - 0.08 * width, fx2, (fy1 + fy2) / 2 + 0.08 * width, _bgr((200, 20, 30)))
    _rect(c.img, (fx1 + fx2) / 2 - 0.08 * width, fy1, (fx1 + fx2) / 2 + 0.08 * width, fy2, _bgr((200, 20, 30)))
    _small_text(c.img, c.code(), (0.05 * width, 0.58 * c.h, 0.95 * width, 0.9 * c.h), WHITE, cap_fraction=0.8)
    c.area[0] = max(c.area[0], width + 0.04 * c.h)


def _d_state_header(c: _Ctx) -> None:
    """US state name across the top, on the plate or on an accent band."""
    # Stacked (two-line) plates keep a slimmer header so the characters stay large.
    height = c.h * c.rng.uniform(0.2, 0.25) * (0.72 if c.layout.lines == 2 else 1.0)
    text_colour = c.accent
    if c.layout.header_band:
        _rect(c.img, 0, 0, c.w, height, _bgr(c.accent))
        text_colour = c.bg
    margin = 0.27 * c.w  # between the bolt holes, as on real plates
    _small_text(c.img, c.code(), (margin, 0.03 * c.h, c.w - margin, height), text_colour, c.layout.header_font,
                cap_fraction=0.8)
    c.area[1] = max(c.area[1], height + 0.02 * c.h)


def _d_slogan(c: _Ctx) -> None:
    height = c.h * c.rng.uniform(0.13, 0.17) * (0.75 if c.layout.lines == 2 else 1.0)
    colour = c.accent if c.rng.random() < 0.6 else c.fg
    _small_text(c.img, c.caption(), (0.26 * c.w, c.h - height - 0.04 * c.h, 0.74 * c.w, c.h - 0.04 * c.h), colour,
                "NimbusSans-Bold", cap_fraction=0.7)
    c.area[3] = min(c.area[3], c.h - height - 0.05 * c.h)


def _d_skyline(c: _Ctx) -> None:
    """NY Excelsior: a pale city skyline along the bottom, behind the slogan."""
    colour = _bgr(_jitter((150, 170, 200), c.rng, 10))
    base, x = c.h * 0.97, 0.04 * c.w
    while x < 0.96 * c.w:
        width = c.w * c.rng.uniform(0.015, 0.05)
        _rect(c.img, x, base - c.h * c.rng.uniform(0.06, 0.22), min(x + width, 0.96 * c.w), base, colour)
        x += width + c.w * c.rng.uniform(0.0, 0.01)


def _d_city_strip(c: _Ctx) -> None:
    """Brazil (old grey plates): state and city in small print above the number."""
    height = c.h * c.rng.uniform(0.17, 0.21)
    _small_text(c.img, c.code(), (0.2 * c.w, 0.05 * c.h, 0.8 * c.w, height + 0.02 * c.h), c.fg,
                "NimbusSansNarrow-Bold", cap_fraction=0.65)
    c.area[1] = max(c.area[1], height + 0.04 * c.h)


def _d_mercosur_band(c: _Ctx) -> None:
    """Mercosur: blue top band with BRASIL, flag and logo; BR and a QR code on the left."""
    band = c.h * c.rng.uniform(0.2, 0.24)
    _rect(c.img, 0, 0, c.w, band, _bgr(_jitter(c.accent, c.rng, 8)))
    _small_text(c.img, "BRASIL", (0.3 * c.w, 0.0, 0.7 * c.w, band), WHITE, "NimbusSans-Bold", cap_fraction=0.62)
    fw, fh = band * 1.1, band * 0.7
    fx, fy = c.w - 0.04 * c.w - fw, (band - fh) / 2
    _rect(c.img, fx, fy, fx + fw, fy + fh, _bgr((0, 150, 60)))
    _poly(c.img, np.array([[fx + fw / 2, fy + 0.1 * fh], [fx + 0.9 * fw, fy + fh / 2], [fx + fw / 2, fy + 0.9 * fh],
                           [fx + 0.1 * fw, fy + fh / 2]]), _bgr((250, 210, 0)))
    _circle(c.img, fx + fw / 2, fy + fh / 2, 0.22 * fh, _bgr((20, 40, 140)))
    for k in range(4):
        _circle(c.img, 0.05 * c.w + k * 0.3 * band, band / 2 + (k % 2) * 0.12 * band, 0.06 * band, WHITE)
    # BR and QR code sit in the left margin, under the band.
    _small_text(c.img, "BR", (0.01 * c.w, band + 0.04 * c.h, 0.075 * c.w, band + 0.2 * c.h), BLACK, cap_fraction=0.8)
    side = 0.14 * c.h
    qr = c.rng.integers(0, 2, (5, 5)).astype(np.uint8) * 255
    qr = cv2.resize(qr, (max(int(side), 1), max(int(side), 1)), interpolation=cv2.INTER_NEAREST)
    _blend(c.img, qr, _bgr(BLACK), int(0.012 * c.w), int(band + 0.28 * c.h), 0.8)
    c.area[1] = max(c.area[1], band + 0.03 * c.h)
    c.area[0] = max(c.area[0], 0.075 * c.w)


def _d_at_stripes(c: _Ctx) -> None:
    """Austria: red stripes along the top and bottom edge."""
    height = 0.1 * c.h
    red = _bgr(_jitter((200, 16, 40), c.rng, 10))
    _rect(c.img, 0, 0, c.w, height, red)
    _rect(c.img, 0, c.h - height, c.w, c.h, red)
    c.area[1] = max(c.area[1], height + 0.02 * c.h)
    c.area[3] = min(c.area[3], c.h - height - 0.02 * c.h)


def _d_caption_top(c: _Ctx) -> None:
    """Small print above the number (Irish county names, other countries' regions)."""
    text = c.caption()
    if not text:
        text = "".join(LETTERS[i] for i in c.rng.integers(0, 26, int(c.rng.integers(4, 10))))
    height = 0.18 * c.h
    _small_text(c.img, text, (c.area[0], 0.03 * c.h, c.area[2], height), c.fg, "NimbusSans-Bold", cap_fraction=0.7)
    c.area[1] = max(c.area[1], height + 0.02 * c.h)


_DEALERS = (
    "AUTO CENTRE", "MOTORS LTD", "CAR SALES", "GARAGE", "ARNOLD CLARK", "EVANS HALSHAW", "STOCKPORT",
    "www.dealer.co.uk", "BRISTOL STREET", "MOTORPOINT", "AUTOHAUS", "01234 567890",
)


def _d_dealer_line(c: _Ctx) -> None:
    """UK plates carry the supplier's name in tiny print along the bottom edge."""
    height = 0.085 * c.h
    text = _DEALERS[int(c.rng.integers(len(_DEALERS)))]
    grey = (90, 90, 90) if c.rng.random() < 0.5 else c.fg
    _small_text(c.img, text, (0.3 * c.w, c.h - height - 0.03 * c.h, 0.7 * c.w, c.h - 0.03 * c.h), grey,
                "NimbusSans-Regular", cap_fraction=0.85)
    c.area[3] = min(c.area[3], c.h - height - 0.04 * c.h)


def _draw_border(c: _Ctx, colour: RGB, thickness: float, inset: float) -> None:
    t = max(_px(thickness), 1)
    i = _px(inset)
    cv2.rectangle(c.img, (i, i), (c.w - 1 - i, c.h - 1 - i), _bgr(colour), t, cv2.LINE_AA)


def _d_border(c: _Ctx) -> None:
    _draw_border(c, c.fg, 0.02 * c.h, c.rng.uniform(0.01, 0.04) * c.h)


def _d_border_thin(c: _Ctx) -> None:
    _draw_border(c, (60, 60, 60), 0.012 * c.h, 0.015 * c.h)


def _d_border_red(c: _Ctx) -> None:
    _draw_border(c, c.fg if c.layout.name == "eu_be" else (200, 16, 40), 0.025 * c.h, 0.03 * c.h)


def _d_rim(c: _Ctx) -> None:
    """Pressed-in rim of embossed metal plates: a light and a dark line."""
    inset = max(0.04 * c.h, 1.5)
    light = tuple(min(v + 40, 255) for v in c.bg)
    dark = tuple(max(v - 60, 0) for v in c.bg)
    _draw_border(c, dark, max(0.015 * c.h, 1), inset)  # type: ignore[arg-type]
    _draw_border(c, light, max(0.01 * c.h, 1), inset - 1)  # type: ignore[arg-type]


def _screw(img: np.ndarray, x: float, y: float, r: float, rng: np.random.Generator) -> None:
    if rng.random() < 0.7:  # metal head with a slot and a highlight
        metal = _bgr(_jitter((150, 150, 150), rng, 25))
        _circle(img, x, y, r, metal)
        _circle(img, x - 0.3 * r, y - 0.3 * r, 0.35 * r, tuple(min(v + 60, 255) for v in metal))
        angle = rng.uniform(0, math.pi)
        dx, dy = math.cos(angle) * r * 0.8, math.sin(angle) * r * 0.8
        cv2.line(img, tuple(_fixed(x - dx, y - dy)), tuple(_fixed(x + dx, y + dy)), (40, 40, 40),
                 max(int(r * 0.25), 1), cv2.LINE_AA, _SHIFT)
    else:  # plastic cap
        _circle(img, x, y, r, _bgr(_jitter([(240, 240, 240), (30, 30, 30), (240, 200, 20)][int(rng.integers(3))], rng, 10)))


def _free_slots(c: _Ctx, radius: float) -> list[float]:
    """x positions where a screw fits between or beside the characters."""
    xs = sorted(c.boxes)
    candidates = []
    if xs:
        if xs[0][0] - c.area[0] >= 2 * radius:
            candidates.append((c.area[0] + xs[0][0]) / 2)
        for left, right in itertools.pairwise(xs):
            if right[0] - left[2] >= 2 * radius + 2 and right[1] >= left[1] - 1 and abs(right[1] - left[1]) < 2:
                candidates.append((left[2] + right[0]) / 2)
        if c.area[2] - xs[-1][2] >= 2 * radius:
            candidates.append((c.area[2] + xs[-1][2]) / 2)
    return candidates


def _d_screws(c: _Ctx) -> None:
    """Two screws on the plate, in gaps of the text (as plates are often mounted), at mid height."""
    radius = 0.055 * c.h
    slots = _free_slots(c, radius)
    if len(slots) < 2 or not c.boxes:
        return
    y = (min(b[1] for b in c.boxes) + max(b[3] for b in c.boxes)) / 2
    if c.layout.lines == 2:
        y = c.h * 0.5
    pick = [slots[0], slots[-1]] if c.rng.random() < 0.5 or len(slots) < 4 else [slots[1], slots[-2]]
    for x in pick:
        _screw(c.img, x, y, radius, c.rng)


def _d_screws_top(c: _Ctx) -> None:
    radius = 0.05 * c.h
    for x in (0.1 * c.w, 0.9 * c.w):
        _screw(c.img, x, 0.12 * c.h, radius, c.rng)


def _slot(img: np.ndarray, x: float, y: float, w: float, h: float, rng: np.random.Generator) -> None:
    cv2.ellipse(img, (tuple(float(v) for v in (x, y)), (w, h), 0.0), (25, 25, 25), -1, cv2.LINE_AA)
    if rng.random() < 0.6:
        _screw(img, x + rng.uniform(-0.3, 0.3) * w, y, h * 0.7, rng)


def _d_bolts(c: _Ctx) -> None:
    """US bolt slots: two at the top and two at the bottom, 7 inches apart."""
    for x in (0.21 * c.w, 0.79 * c.w):
        for y in (0.08 * c.h, 0.92 * c.h):
            if y < 0.5 * c.h or c.rng.random() < 0.5:
                _slot(c.img, x, y, 0.07 * c.w, 0.05 * c.h, c.rng)


def _d_bolts_top(c: _Ctx) -> None:
    for x in (0.16 * c.w, 0.84 * c.w):
        _slot(c.img, x, 0.08 * c.h, 0.09 * c.w, 0.05 * c.h, c.rng)


def _d_stickers(c: _Ctx) -> None:
    """Registration stickers in a top corner (coloured, with a year or month in small print)."""
    w, h = 0.12 * c.w, 0.16 * c.h
    x = 0.04 * c.w if c.rng.random() < 0.5 else 0.96 * c.w - w
    colour = _jitter([(240, 90, 20), (30, 160, 60), (240, 220, 30), (30, 90, 200), (220, 30, 100)][int(c.rng.integers(5))], c.rng, 10)
    _rect(c.img, x, 0.03 * c.h, x + w, 0.03 * c.h + h, _bgr(colour))
    label = str(int(c.rng.integers(20, 30))) if c.rng.random() < 0.6 else ["JAN", "MAR", "JUL", "OCT"][int(c.rng.integers(4))]
    _small_text(c.img, label, (x, 0.03 * c.h, x + w, 0.03 * c.h + h), BLACK, cap_fraction=0.6)


_PRE: dict[str, Callable[[_Ctx], None]] = {
    "at_stripes": _d_at_stripes,
    "eu_band": _d_eu_band,
    "fr_right": _d_fr_right,
    "it_right": _d_it_right,
    "pt_right": _d_pt_right,
    "uk_band": _d_uk_band,
    "state_header": _d_state_header,
    "skyline": _d_skyline,
    "slogan": _d_slogan,
    "city_strip": _d_city_strip,
    "mercosur_band": _d_mercosur_band,
    "caption_top": _d_caption_top,
    "dealer_line": _d_dealer_line,
}
_POST: dict[str, Callable[[_Ctx], None]] = {
    "border": _d_border,
    "border_thin": _d_border_thin,
    "border_red": _d_border_red,
    "rim": _d_rim,
    "screws": _d_screws,
    "screws_top": _d_screws_top,
    "bolts": _d_bolts,
    "bolts_top": _d_bolts_top,
    "stickers": _d_stickers,
}
_FLAGS = {"emboss"}


def _active_decorations(layout: Layout, rng: np.random.Generator) -> list[str]:
    active = []
    for item in layout.decorations:
        name, _, chance = item.partition("?")
        if not chance or rng.random() < float(chance):
            active.append(name)
    return active


def _emblem(c: _Ctx, kind: str, box: tuple[float, float, float, float], fg: Sequence[int]) -> None:
    """Fill a "*" slot between character groups."""
    x1, y1, x2, y2 = box
    cx, cy, cap = (x1 + x2) / 2, (y1 + y2) / 2, y2 - y1
    rng = c.rng
    if kind == "seals":  # German registration seals: inspection sticker over the state seal
        r = min((x2 - x1) * 0.42, cap * 0.21)
        hu = _jitter([(240, 120, 20), (40, 110, 200), (250, 210, 30), (140, 90, 50), (230, 120, 170), (60, 170, 70)][int(rng.integers(6))], rng, 10)
        _circle(c.img, cx, cy - 0.25 * cap, r, _bgr(hu))
        _circle(c.img, cx, cy - 0.25 * cap, r * 0.35, _bgr((40, 40, 40)))
        _circle(c.img, cx, cy + 0.25 * cap, r, _bgr((205, 205, 200)))
        _circle(c.img, cx, cy + 0.25 * cap, r * 0.45, _bgr(_jitter((150, 40, 40), rng, 40)))
    elif kind == "state":  # a state silhouette (NY, NJ, PA, ...): an irregular blob in the text colour
        n = int(rng.integers(6, 10))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.55, 1.0, n) * cap * 0.2
        points = np.stack([cx + radii * np.cos(angles) * 1.2, cy + radii * np.sin(angles)], axis=1)
        _poly(c.img, points, _bgr(fg))
    elif kind == "orange":
        _circle(c.img, cx, cy, cap * 0.2, _bgr((240, 130, 20)))
        _circle(c.img, cx + cap * 0.08, cy - cap * 0.2, cap * 0.07, _bgr((30, 130, 50)))
    elif kind == "hanzi":  # the province of a Chinese plate: a character the OCR must skip, as it skips emblems
        if HANZI_FONT not in _font_index():
            raise RuntimeError(f"the Chinese plate layouts need {HANZI_FONT}: apt-get install -y fonts-droid-fallback")
        char = _CN_PROVINCES[int(rng.integers(len(_CN_PROVINCES)))]
        pixels = _sized_glyph(HANZI_FONT, char, 0, max(_px(x2 - x1), 1), max(_px(cap), 1))
        _blend(c.img, pixels, _bgr(fg), _px(x1), _px(y1))
    elif kind in ("shield_at", "shield_ch"):
        w, h = min((x2 - x1) * 0.7, cap * 0.38), cap * 0.45
        points = np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 6],
                           [cx, cy + h / 2], [cx - w / 2, cy + h / 6]])
        _poly(c.img, points, _bgr((210, 20, 30)))
        white = _bgr(WHITE)
        if kind == "shield_ch":
            _rect(c.img, cx - w * 0.1, cy - h * 0.3, cx + w * 0.1, cy + h * 0.2, white)
            _rect(c.img, cx - w * 0.3, cy - h * 0.15, cx + w * 0.3, cy + h * 0.05, white)
        else:
            _rect(c.img, cx - w / 2, cy - h * 0.12, cx + w / 2, cy + h * 0.08, white)


@dataclass
class _Style:
    font: str
    bold: int
    squeeze: float
    tracking: float
    mono: bool
    emboss: bool
    french_letters: bool = False  # draw Q, M and W as FRENCH_LETTERS (see Layout.french_letters)


def _pick_style(layout: Layout, rng: np.random.Generator, emboss: bool) -> _Style:
    fonts = _usable(tuple(layout.fonts))
    font = fonts[int(rng.integers(len(fonts)))]
    bold = int(rng.choice(list(layout.bold)))
    width = rng.uniform(*layout.char_width)
    squeeze = width / _mean_advance(font, bold)
    mono = font in MONO_FONTS or rng.random() < 0.5  # most plate typefaces are (nearly) fixed-pitch
    tracking = rng.uniform(*layout.tracking)
    # Drawn only for layouts that ask, so the other layouts' random streams stay as they were.
    french_letters = layout.french_letters > 0 and rng.random() < layout.french_letters
    return _Style(font, bold, squeeze, tracking, mono, emboss, french_letters)


def _draw_label(c: _Ctx, lines: Sequence[str], style: _Style, reshape_share: float = 0.0) -> np.ndarray:
    """Draw the label lines into the free area; returns the label's coverage mask, its letters reshaped
    (``reshape_letters``) on a ``reshape_share`` of the plates."""
    x1, y1, x2, y2 = c.area
    rng = c.rng
    mask = np.zeros((c.h, c.w), np.uint8)
    n = len(lines)
    gap = (y2 - y1) * (0.06 if n > 1 else 0.0)
    line_h = ((y2 - y1) - gap * (n - 1)) / n
    width = x2 - x1
    smallest_cap = float("inf")
    for i, text in enumerate(lines):
        if style.french_letters:
            text = text.translate(_FRENCH_TRANSLATION)
        if c.layout.drawn_as:
            text = text.translate(str.maketrans(dict(c.layout.drawn_as)))
        cap = line_h * c.layout.char_height * rng.uniform(0.93, 1.03)
        run = _text_run(text, style.font, cap, width, squeeze=style.squeeze, tracking=style.tracking,
                        bold=style.bold, mono=style.mono, align=0.5)
        if run.fit < 0.72:  # long text: shrink the characters a little rather than squash them
            cap *= max(0.78, run.fit / 0.72)
            run = _text_run(text, style.font, cap, width, squeeze=style.squeeze, tracking=style.tracking,
                            bold=style.bold, mono=style.mono, align=0.5)
        cap_top = y1 + i * (line_h + gap) + (line_h - cap) / 2 + rng.uniform(-0.03, 0.03) * cap
        ox = _px(x1)
        oy = _px(cap_top - (run.baseline - cap))
        _max_into(mask, run.mask, ox, oy)
        c.boxes += [(bx1 + ox, by1 + oy, bx2 + ox, by2 + oy) for bx1, by1, bx2, by2 in run.boxes]
        for slot in run.slots:
            c.slots.append((slot[0] + ox, slot[1] + oy, slot[2] + ox, slot[3] + oy))
        smallest_cap = min(smallest_cap, cap)
    # Drawn only when asked, so the pools made without it stay as they were.
    if reshape_share > 0 and lines and rng.random() < reshape_share:
        mask = reshape_letters(mask, smallest_cap, rng)
    return mask


def reshape_letters(mask: np.ndarray, cap: float, rng: np.random.Generator) -> np.ndarray:
    """The label ``mask`` lettered by a die no font has: a smooth random warp (each character bends its own way)
    and a new stroke weight with rounder corners, at most a few hundredths of the cap height ``cap`` either way.

    Why: the leave-one-region-out runs read a region without its real crops at 21-27% against 72% with them,
    and the misreads are glyph shapes (the New York 2 with its short curved top read as 7 or Z, the narrow
    Brazilian 8, 6 and 9 read as B, G and S): a new region's plates are lettered by dies that none of the fonts
    draws, so the synthetic plates vary the fonts' shapes rather than add more fonts."""
    h, w = mask.shape[:2]
    # Warp: a displacement field drawn on a grid of cells 0.4-0.7 of a cap across, smoothly interpolated.
    cell = cap * rng.uniform(0.4, 0.7)
    grid = (max(int(h / cell) + 2, 2), max(int(w / cell) + 2, 2))
    amplitude = cap * rng.uniform(0.01, 0.03)
    dx, dy = (cv2.resize(rng.normal(0.0, 1.0, grid).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
              * np.float32(amplitude) for _ in range(2))
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(mask, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # Weight: blur, then cut the edge again at another level (below half: bolder; above: lighter), keeping an
    # antialiased edge. The blur is at most about a fifth of a thin stroke, so no stroke vanishes.
    sigma = cap * rng.uniform(0.012, 0.03)
    level = rng.uniform(0.32, 0.6)
    soft = cv2.GaussianBlur(warped.astype(np.float32) * np.float32(1.0 / 255.0), (0, 0), sigma)
    edge = max(2.5 * sigma, 1.0)  # the blurred edge rises about 0.4 / sigma a pixel: a ramp about a pixel wide
    return np.clip(((soft - np.float32(level)) * np.float32(edge) + 0.5) * 255.0, 0, 255).astype(np.uint8)


def _ink(img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], emboss: bool, h: int) -> None:
    """Paint the label; embossed plates get a shadow below-right and a highlight above-left."""
    a = mask.astype(np.float32) * (1.0 / 255.0)
    f = img.astype(np.float32)
    if emboss:
        d = max(_px(0.018 * h), 1)
        shadow = np.zeros_like(a)
        shadow[d:, d:] = a[:-d, :-d]
        light = np.zeros_like(a)
        light[:-d, :-d] = a[d:, d:]
        f *= (1.0 - 0.25 * shadow)[..., None]
        f += (255.0 - f) * (0.2 * light)[..., None]
    f += (np.asarray(colour, np.float32) - f) * a[..., None]
    np.clip(f, 0, 255, out=f)
    img[:] = f.astype(np.uint8)


def _rounded_alpha(h: int, w: int, radius: float) -> np.ndarray:
    alpha = np.full((h, w), 255, np.uint8)
    r = _px(radius)
    if r >= 1:
        corner = np.zeros((r, r), np.uint8)
        cv2.circle(corner, (r, r), r, 255, -1, cv2.LINE_AA)
        alpha[:r, :r] = corner
        alpha[:r, -r:] = corner[:, ::-1]
        alpha[-r:, :r] = corner[::-1, :]
        alpha[-r:, -r:] = corner[::-1, ::-1]
    return alpha


@dataclass
class _Plate:
    image: np.ndarray  # BGR uint8
    alpha: np.ndarray  # uint8, plate shape (rounded corners)
    text_mask: np.ndarray  # uint8 coverage of the label characters
    boxes: list[tuple[float, float, float, float]]  # label character boxes
    cap: float  # cap height of the label characters, px
    bg: tuple[int, int, int]  # BGR


def _render(
    lines: Sequence[str], layout: Layout, rng: np.random.Generator, height: int, reshape_share: float = 0.0
) -> _Plate:
    h = int(height)
    aspect = layout.aspect * (1.0 + rng.uniform(-layout.aspect_jitter, layout.aspect_jitter))
    w = max(_px(h * aspect), h)
    bg_rgb, fg_rgb = layout.colours[int(rng.integers(len(layout.colours)))]
    bg, fg = _jitter(bg_rgb, rng, 7), _jitter(fg_rgb, rng, 7)
    accent = _jitter(layout.accents[int(rng.integers(len(layout.accents)))], rng, 7) if layout.accents else fg
    img = _sheet(h, w, _bgr(bg), rng)
    margin = 0.05 * h
    c = _Ctx(img, layout, rng, bg, fg, accent, [margin + 0.01 * w, margin, w - margin - 0.01 * w, h - margin])
    active = _active_decorations(layout, rng)
    for name in active:
        if name in _PRE:
            _PRE[name](c)
    style = _pick_style(layout, rng, "emboss" in active)
    mask = _draw_label(c, lines, style, reshape_share)
    _ink(img, mask, _bgr(fg), style.emboss, h)
    for slot in c.slots:
        _emblem(c, layout.emblem, slot, fg)
    for name in active:
        if name in _POST:
            _POST[name](c)
    alpha = _rounded_alpha(h, w, h * rng.uniform(0.02, 0.1))
    cap = float(np.median([b[3] - b[1] for b in c.boxes])) if c.boxes else 0.5 * h
    return _Plate(img, alpha, mask, list(c.boxes), cap, _bgr(bg))


def _sheet(h: int, w: int, colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """The blank plate. Retro-reflective sheeting is never perfectly flat: a gentle brightness ramp."""
    gx = np.linspace(-1, 1, w, dtype=np.float32) * np.float32(rng.uniform(-0.05, 0.05))
    gy = np.linspace(-1, 1, h, dtype=np.float32) * np.float32(rng.uniform(-0.06, 0.04))
    ramp = (1.0 + gy[:, None] + gx[None, :])[..., None]
    return np.clip(ramp * np.asarray(colour, np.float32), 0, 255).astype(np.uint8)


def render_plate(
    text: str,
    layout: Layout | str,
    rng: np.random.Generator,
    *,
    split: int | None = None,
    height: int | None = None,
) -> np.ndarray:
    """A clean plate image (BGR uint8, ``height`` px high, 64-110 at random by default) carrying ``text``.

    ``text`` uses ``CHARSET`` only; separators come from the layout pattern it matches (none if it
    matches none). Two-line layouts split it at ``split`` if given, else where the pattern says, else
    at a letter/digit boundary near the middle; single-line layouts ignore ``split``.
    """
    layout = _layout(layout)
    if not text or any(ch not in CHARSET for ch in text):
        raise ValueError(f"label {text!r} must be non-empty and use only {CHARSET}")
    if split is not None and not 0 < split < len(text):
        raise ValueError(f"split {split} must cut {text!r} into two non-empty lines")
    lines = [line for line in _shown_lines(text, layout, split) if line.strip(" -·.*")]
    plate = _render(lines, layout, rng, int(height) if height else int(rng.integers(64, 111)))
    mount = np.full_like(plate.image, 30)  # what shows at the rounded corners
    a = plate.alpha.astype(np.float32)[..., None] / 255.0
    return (plate.image * a + mount * (1.0 - a)).astype(np.uint8)


# -------------------------------------------------------------------------------------------- scene


@dataclass(frozen=True, eq=False)
class SynthSample:
    """One synthetic scene: the plate's corners (TL, TR, BR, BL) and their bounding box, in pixels."""

    image: np.ndarray  # H x W x 3 uint8 BGR
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 of ``quad``
    quad: np.ndarray  # 4 x 2 float32
    text: str  # label, CHARSET only, top line first
    layout: str


@functools.lru_cache(maxsize=1)
def _textures() -> dict[str, np.ndarray]:
    """Fixed noise textures (fine and blotchy), sliced at random offsets instead of drawn per sample."""
    rng = np.random.default_rng(20240611)
    fine = rng.standard_normal((1024, 1024), dtype=np.float32)
    blotch = cv2.GaussianBlur(fine, (0, 0), 6)
    blotch /= blotch.std()
    cloud = cv2.GaussianBlur(fine, (0, 0), 24)
    cloud /= cloud.std()
    return {"fine": fine, "blotch": blotch, "cloud": cloud}


def _patch(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    bank = _textures()[kind]
    bh, bw = bank.shape
    if h > bh or w > bw:
        bank = np.tile(bank, (h // bh + 1, w // bw + 1))
        bh, bw = bank.shape
    y, x = int(rng.integers(0, bh - h + 1)), int(rng.integers(0, bw - w + 1))
    return bank[y : y + h, x : x + w]


_CAR_COLOURS: tuple[RGB, ...] = (
    (232, 232, 230), (232, 232, 230), (26, 26, 28), (26, 26, 28), (168, 170, 174), (168, 170, 174),
    (98, 100, 104), (28, 40, 78), (150, 22, 24), (40, 72, 140), (32, 70, 46), (200, 186, 150),
    (236, 186, 24), (92, 60, 40), (210, 92, 22),
)


def _background(h: int, w: int, keep_out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A car rear: body colour with lighting, bumper/grille/chrome strips, texture. Float32 BGR."""
    body = np.asarray(_bgr(_jitter(_CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))], rng, 10)), np.float32)
    # Lighting and paint texture as one 2-D shading field (cheaper than three colour passes).
    shade = _patch("cloud", h, w, rng) * np.float32(rng.uniform(0.01, 0.06))
    shade += _patch("fine", h, w, rng) * np.float32(rng.uniform(0.002, 0.012))
    shade += np.linspace(rng.uniform(0.85, 1.3), rng.uniform(0.45, 1.0), h, dtype=np.float32)[:, None]
    kx1, ky1, kx2, ky2 = keep_out
    if rng.random() < 0.6:  # the plate recess, a little darker than the body
        grow = rng.uniform(0.03, 0.15)
        dx, dy = (kx2 - kx1) * grow, (ky2 - ky1) * grow * 2
        x1, y1, x2, y2 = int(max(kx1 - dx, 0)), int(max(ky1 - dy, 0)), int(min(kx2 + dx, w)), int(min(ky2 + dy, h))
        shade[y1:y2, x1:x2] *= np.float32(rng.uniform(0.55, 0.9))
    img = shade[..., None] * body
    for _ in range(int(rng.integers(0, 4))):
        _strip(img, rng)
    if rng.random() < 0.35:
        _clutter(img, keep_out, rng)
    return img


def _strip(img: np.ndarray, rng: np.random.Generator) -> None:
    """A horizontal structure across the car: bumper edge, crease, chrome trim or grille."""
    h = img.shape[0]
    y = int(rng.integers(0, h))
    thick = int(rng.integers(2, max(h // 4, 3)))
    kind = rng.choice(["bumper", "chrome", "grille", "crease"])
    band = img[y : y + thick]
    if kind == "bumper":
        band[:] = np.asarray(_jitter((35, 35, 38), rng, 10), np.float32)
    elif kind == "chrome":
        band[:] = np.linspace(230, 120, band.shape[0], dtype=np.float32)[:, None, None]
    elif kind == "grille":
        period = int(rng.integers(3, 9))
        dark = np.asarray(_jitter((20, 20, 22), rng, 6), np.float32)
        band[:] = dark
        band[np.arange(band.shape[0]) % period < period // 2] += rng.uniform(30, 90)
    else:
        band *= rng.uniform(0.6, 1.4)


_CLUTTER_WORDS = (
    "AUTO", "MOTORS", "NISSAN", "TOYOTA", "SPORT", "4MATIC", "TDI", "HYBRID", "GTI", "DEALER", "SERVICE",
    "718-555-0142", "BAYSIDE VW", "AUTOHAUS", "GARAGE DUPONT", "I LOVE NY", "BABY ON BOARD", "TAXI", "4x4",
    "RENAULT", "FIAT", "PEUGEOT", "SKODA", "KIA", "www.cars.com", "SOLD BY", "CERTIFIED", "EV",
)


def _clutter(img: np.ndarray, keep_out: np.ndarray, rng: np.random.Generator) -> None:
    """Text that is not the plate (badges, stickers, dealer names) near it, never on it."""
    h, w = img.shape[:2]
    _, ky1, _, ky2 = keep_out
    plate_h = ky2 - ky1
    for _ in range(int(rng.integers(1, 3))):
        word = _CLUTTER_WORDS[int(rng.integers(len(_CLUTTER_WORDS)))]
        cap = plate_h * rng.uniform(0.12, 0.35)
        if cap < 4:
            continue
        above = rng.random() < 0.5
        y1 = ky1 - rng.uniform(0.3, 1.2) * cap - cap * 1.3 if above else ky2 + rng.uniform(0.3, 1.0) * cap
        width = min(cap * 0.7 * len(word), w * 0.9)
        x1 = rng.uniform(0, max(w - width, 1))
        y2 = y1 + cap * 1.3
        if y1 < 0 or y2 > h or (y2 > ky1 and y1 < ky2):
            continue
        colour = _jitter([(230, 230, 230), (20, 20, 20), (200, 200, 205), (200, 40, 40), (240, 200, 30)][int(rng.integers(5))], rng, 10)
        if rng.random() < 0.4:  # sticker: text on a patch
            _rect(img, x1 - 0.2 * cap, y1, x1 + width + 0.2 * cap, y2, _bgr(_jitter((245, 245, 240), rng, 20)))
            colour = (20, 20, 20)
        _small_text(img, word, (x1, y1, x1 + width, y2), colour, DECOR_FONTS[int(rng.integers(len(DECOR_FONTS)))],
                    cap_fraction=0.75)


ROLL_TAIL_SHARE = 0.15  # share of plates with a strong in-plane tilt
ROLL_TAIL_DEG = 25.0
# Share of plates seen steeply from the side (|yaw| in YAW_TAIL_DEG): parked cars photographed from the
# pavement, cameras at the side of a gate. Without it the 495-minute OCR read synthetic plates at 89% seen
# 0-15 degrees from the side and 36% at 45-60 (US plates 13%; `anpr-edge bench-angles`), and the real French
# test's side views as noise.
YAW_TAIL_SHARE = 0.1
YAW_TAIL_DEG = (30.0, 60.0)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def _pose(w: float, h: float, target_width: float, rng: np.random.Generator,
          yaw_deg: tuple[float, float] | None = None) -> np.ndarray:
    """Corners (TL, TR, BR, BL) of a w x h plate seen at a random angle, scaled to ``target_width``.

    Centred on the origin. Cameras mostly look down at plates (positive pitch: the top edge recedes)
    and from the side of the lane (yaw); focal length varies from wide-angle to tele. ``yaw_deg``: the
    side angle's range in degrees (either side) instead of the training mix.
    """
    if yaw_deg is not None:
        yaw = math.radians(float(rng.uniform(*yaw_deg) * rng.choice((-1.0, 1.0))))
    else:
        yaw = math.radians(float(np.clip(rng.normal(0, 14), -35, 35)))
        if rng.random() < YAW_TAIL_SHARE:
            yaw = math.radians(float(rng.uniform(*YAW_TAIL_DEG) * rng.choice((-1.0, 1.0))))
    # A plate seen from the side is narrowed by cos(yaw); one seen that steeply and still readable is near,
    # so the frontal width grows back (the narrowed characters keep their legible size).
    widen = 1.0 / max(math.cos(yaw), 0.5) if abs(yaw) > math.radians(YAW_TAIL_DEG[0]) else 1.0
    pitch = math.radians(float(np.clip(rng.normal(8, 10), -20, 32)))
    # Roll: mostly a few degrees, but handheld photos, parked cars on slopes and plates hung askew give a
    # long tail (the runtime crops an axis-aligned box around such a plate, so the OCR must read it tilted).
    if rng.random() < ROLL_TAIL_SHARE:
        roll = math.radians(float(rng.uniform(-ROLL_TAIL_DEG, ROLL_TAIL_DEG)))
    else:
        roll = math.radians(float(np.clip(rng.normal(0, 3.5), -10, 10)))
    corners = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]])
    world = corners @ _rotation(yaw, -pitch, roll).T
    focal = w * rng.uniform(1.2, 6.0)
    world[:, 2] += focal
    projected = focal * world[:, :2] / world[:, 2:3]
    return (projected * (target_width * widen / w)).astype(np.float64)


def _plate_damage(plate: _Plate, rng: np.random.Generator) -> None:
    """Grime, spots, worn paint and a small occluder, in plate coordinates (before the warp)."""
    img, h, w = plate.image, plate.image.shape[0], plate.image.shape[1]
    if rng.random() < 0.25:  # road grime: blotchy brown film
        grime = np.clip(_patch("blotch", h, w, rng) * 0.5 + rng.uniform(-0.6, 0.4), 0, 1)
        grime *= rng.uniform(0.2, 0.5)
        brown = np.asarray(_bgr(_jitter((90, 75, 55), rng, 15)), np.float32)
        f = img.astype(np.float32)
        f += (brown - f) * grime[..., None]
        img[:] = f.astype(np.uint8)
    if rng.random() < 0.2:  # mud spots, small enough to leave characters readable
        for _ in range(int(rng.integers(2, 9))):
            _circle(img, rng.uniform(0, w), rng.uniform(0, h), h * rng.uniform(0.01, 0.045),
                    _bgr(_jitter((80, 65, 45), rng, 20)))
    if rng.random() < 0.12:  # worn paint: characters fade towards the background in patches
        wear = np.clip(_patch("blotch", h, w, rng) * 0.4 + rng.uniform(-0.3, 0.1), 0, 0.55)
        a = (plate.text_mask.astype(np.float32) / 255.0) * wear
        f = img.astype(np.float32)
        f += (np.asarray(plate.bg, np.float32) - f) * a[..., None]
        img[:] = f.astype(np.uint8)
    if rng.random() < 0.12 and plate.boxes:
        _occlude(plate, rng)


def _occlude(plate: _Plate, rng: np.random.Generator) -> None:
    """Cover a thin strip of the characters (tow bar, frame lip, bumper edge) or a sliver of one.

    Never more than ~15% of any character.
    """
    img = plate.image
    colour = _bgr(_jitter([(30, 30, 30), (120, 120, 125), (200, 200, 200), (60, 50, 40)][int(rng.integers(4))], rng, 15))
    boxes = plate.boxes
    if rng.random() < 0.6:  # a lip over the bottom of the lowest line or the top of the highest
        at_bottom = rng.random() < 0.7
        edge = max(b[3] for b in boxes) if at_bottom else min(b[1] for b in boxes)
        line = [b for b in boxes if abs((b[3] if at_bottom else b[1]) - edge) < 0.3 * (b[3] - b[1])]
        x1, y1, x2, y2 = line[int(rng.integers(len(line)))]
        cover = (y2 - y1) * rng.uniform(0.05, 0.13)
        ya, yb = (y2 - cover, img.shape[0]) if at_bottom else (0, y1 + cover)
        _rect(img, rng.uniform(0, x1), ya, rng.uniform(x2, img.shape[1]), yb, colour)
    else:  # a vertical bar over the edge of one character, thinner than 15% of the narrowest one
        x1, _, x2, _ = boxes[int(rng.integers(len(boxes)))]
        bar = min(b[2] - b[0] for b in boxes) * rng.uniform(0.06, 0.15)
        xa = x1 - bar * 0.5 if rng.random() < 0.5 else x2 - bar * 0.5
        _rect(img, xa, 0, xa + bar, img.shape[0], colour)


_FRAME_WORDS = (
    "KINGSTON NISSAN.NET", "BAYSIDE VW", "718-834-7007", "JOHN KENNEDY DEALERSHIPS", "AUTOHAUS MULLER",
    "GARAGE DU CENTRE", "www.autoplus.fr", "ARNOLD CLARK", "CONCESIONARIO OFICIAL", "CARS & MORE", "Enjoy Your Ride",
    "STAMFORD, CT", "HONDA OF QUEENS", "TOYOTA", "CERTIFIED PRE-OWNED", "AUTO SALON",
)


def _frame(plate: _Plate, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """Put the plate in a dealer frame that may cover its top and bottom edges, never the label.

    Returns the BGRA assembly and where the plate's top-left corner sits in it.
    """
    h, w = plate.image.shape[:2]
    side, top, bottom = (_px(h * rng.uniform(a, b)) for a, b in ((0.03, 0.08), (0.04, 0.14), (0.05, 0.3)))
    colour = np.asarray(_bgr(_jitter([(18, 18, 20), (18, 18, 20), (190, 190, 196), (90, 90, 95), (200, 170, 90)][int(rng.integers(5))], rng, 8)), np.uint8)
    assembly = np.empty((h + top + bottom, w + 2 * side, 4), np.uint8)
    assembly[..., :3] = colour
    assembly[..., 3] = 255
    a = plate.alpha.astype(np.float32)[..., None] / 255.0
    region = assembly[top : top + h, side : side + w, :3]
    region[:] = (plate.image * a + region * (1 - a)).astype(np.uint8)
    text_top = min(b[1] for b in plate.boxes) if plate.boxes else h * 0.3
    text_bottom = max(b[3] for b in plate.boxes) if plate.boxes else h * 0.7
    # The opening may hide a state name or slogan (as on real NY plates) but not the characters.
    cover_top = int(max(text_top - 0.06 * h, 0) * rng.uniform(0, 0.8))
    cover_bottom = int(max(h - text_bottom - 0.06 * h, 0) * rng.uniform(0, 0.8))
    assembly[: top + cover_top, :, :3] = colour
    assembly[top + h - cover_bottom :, :, :3] = colour
    strip_h = bottom + cover_bottom
    if strip_h >= 5 and rng.random() < 0.8:
        word = _FRAME_WORDS[int(rng.integers(len(_FRAME_WORDS)))]
        ink = (235, 235, 235) if colour.mean() < 128 else (20, 20, 20)
        y0 = top + h - cover_bottom
        _small_text(assembly[..., :3], word, (side + 0.1 * w, y0, side + 0.9 * w, y0 + strip_h), ink,
                    DECOR_FONTS[int(rng.integers(len(DECOR_FONTS)))], cap_fraction=0.62)
    assembly[..., 3] = _rounded_alpha(assembly.shape[0], assembly.shape[1], h * 0.08)
    return assembly, (float(side), float(top))


def _plate_assembly(plate: _Plate, framed: bool, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    if framed:
        return _frame(plate, rng)
    return np.dstack([plate.image, plate.alpha]), (0.0, 0.0)


def _canvas_size(extent: float, need: float, rng: np.random.Generator) -> int:
    return math.ceil(max(extent * rng.uniform(1.6, 2.5), need + 4))


_MIN_CAP_PX = 9.0  # smallest character height, px, that the scene may show
_MIN_CHAR_WIDTH_PX = 5.5  # and smallest character width (frontal view)
_MAX_PLATE_WIDTH_PX = 300.0


def synth_sample(
    rng: np.random.Generator,
    layouts: Sequence[str] | None = None,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    *,
    yaw_deg: tuple[float, float] | None = None,
    reshape_share: float = 0.0,
) -> SynthSample:
    """A plate in a small scene, tilted, lit and degraded like a real camera frame.

    ``layouts`` restricts the layouts (default: all of ``LAYOUTS``); ``weights`` gives their shares
    (a sequence aligned with ``layouts`` or a name -> weight mapping; default: each ``Layout.weight``).
    ``yaw_deg`` (low, high): the plate is seen from that many degrees to either side, drawn uniformly,
    instead of the training mix of angles (``anpr-edge bench-angles``).
    ``reshape_share``: the share of plates whose letters are reshaped (``reshape_letters``; 0: none).
    """
    layout = _choose_layout(rng, layouts, weights)
    label, lines = _random_shown(layout, rng)
    plate, target_width = _scene_plate(layout, lines, rng, reshape_share)
    _plate_damage(plate, rng)
    framed = rng.random() < (0.5 if layout.region == "US" else 0.2)
    assembly, offset = _plate_assembly(plate, framed, rng)
    quad, homography, (cw, ch) = _place(plate, assembly, offset, target_width, rng, yaw_deg)
    assembly_quad = _warped_corners(assembly, homography)
    canvas = _background(ch, cw, np.array([*assembly_quad.min(0), *assembly_quad.max(0)]), rng)
    _composite(canvas, assembly, homography, target_width / plate.image.shape[1])
    image = _camera(canvas, quad, _legible_size(plate, quad), rng)
    quad32 = quad.astype(np.float32)
    box = (float(quad32[:, 0].min()), float(quad32[:, 1].min()), float(quad32[:, 0].max()), float(quad32[:, 1].max()))
    return SynthSample(image=image, box=box, quad=quad32, text=label, layout=layout.name)


def _scene_plate(
    layout: Layout, lines: Sequence[str], rng: np.random.Generator, reshape_share: float = 0.0
) -> tuple[_Plate, float]:
    """The plate, rendered a little larger than it will appear, and its frontal width in the scene.

    Widths are log-uniform from the smallest readable width up to 300 px. That minimum depends on
    the rendered plate (character size and count), so a guess picks the render size and the real
    minimum then places the same log-position.
    """
    position = rng.uniform(0.0, 1.0)
    guess = _log_between(_MIN_CAP_PX * layout.aspect * layout.lines / (0.75 * layout.char_height), position)
    render_h = int(np.clip(_px(guess / layout.aspect * rng.uniform(1.1, 1.6)), 24, 110))
    plate = _render(lines, layout, rng, render_h, reshape_share)
    return plate, _log_between(_min_readable_width(plate), position)


def _warped_corners(image: np.ndarray, homography: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    corners = np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float64)
    return cv2.perspectiveTransform(corners, homography)[0]


def _place(
    plate: _Plate,
    assembly: np.ndarray,
    offset: tuple[float, float],
    target_width: float,
    rng: np.random.Generator,
    yaw_deg: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Pose the plate and size the canvas around it.

    Returns the plate quad in canvas pixels, the assembly -> canvas homography and the canvas size
    (width, height): a bit larger than the plate, and always holding the OCR crop region around it.
    """
    ph, pw = plate.image.shape[:2]
    quad = _pose(pw, ph, target_width, rng, yaw_deg)
    source = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    homography = cv2.getPerspectiveTransform(source, quad.astype(np.float32)).astype(np.float64)
    homography = homography @ np.array([[1, 0, -offset[0]], [0, 1, -offset[1]], [0, 0, 1]], np.float64)
    assembly_quad = _warped_corners(assembly, homography)
    (qx1, qy1), (qx2, qy2) = quad.min(0), quad.max(0)
    rx1, ry1, rx2, ry2 = crop_region((qx1, qy1, qx2, qy2), _OCR_CROP_SIZE, _OCR_CROP_PADDING)
    ux1, uy1 = min(rx1, assembly_quad[:, 0].min()), min(ry1, assembly_quad[:, 1].min())
    ux2, uy2 = max(rx2, assembly_quad[:, 0].max()), max(ry2, assembly_quad[:, 1].max())
    cw = _canvas_size(qx2 - qx1, ux2 - ux1, rng)
    ch = _canvas_size(qy2 - qy1, uy2 - uy1, rng)
    shift = np.array([rng.uniform(-ux1 + 1, cw - ux2 - 1), rng.uniform(-uy1 + 1, ch - uy2 - 1)])
    homography = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1]], np.float64) @ homography
    return quad + shift, homography, (cw, ch)


def _log_between(low: float, position: float) -> float:
    low = min(max(low, 40.0), _MAX_PLATE_WIDTH_PX - 10.0)
    return math.exp(math.log(low) + position * (math.log(_MAX_PLATE_WIDTH_PX) - math.log(low)))


def _min_readable_width(plate: _Plate) -> float:
    """The frontal plate width at which its characters reach the minimum readable size."""
    width = plate.image.shape[1]
    char_width = float(np.median([b[2] - b[0] for b in plate.boxes])) if plate.boxes else plate.cap * 0.5
    return max(width * _MIN_CAP_PX / max(plate.cap, 1.0), width * _MIN_CHAR_WIDTH_PX / max(char_width, 1.0))


def _choose_layout(
    rng: np.random.Generator,
    layouts: Sequence[str] | None,
    weights: Sequence[float] | Mapping[str, float] | None,
) -> Layout:
    names = list(layouts) if layouts else list(LAYOUTS)
    if isinstance(weights, Mapping):
        w = np.array([float(weights.get(n, 0.0)) for n in names])
    elif weights is not None:
        w = np.asarray(weights, np.float64)
        if len(w) != len(names):
            raise ValueError(f"{len(w)} weights for {len(names)} layouts")
    else:
        w = np.array([LAYOUTS[n].weight for n in names])
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("layout weights must be non-negative and not all zero")
    return LAYOUTS[names[int(rng.choice(len(names), p=w / w.sum()))]]


def _legible_size(plate: _Plate, quad: np.ndarray) -> float:
    """The characters' size in the canvas, px: cap height, or less when a steep angle narrows them.

    Degradations scale with this, so a small or sideways plate gets gentler blur and JPEG.
    """
    h, w = plate.image.shape[:2]
    y_scale = (np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2.0 / h
    x_scale = (np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2.0 / w
    char_width = float(np.median([b[2] - b[0] for b in plate.boxes])) if plate.boxes else plate.cap * 0.5
    return float(min(plate.cap * y_scale, 1.8 * char_width * x_scale))


def _composite(canvas: np.ndarray, assembly: np.ndarray, homography: np.ndarray, scale: float) -> None:
    """Warp the BGRA assembly into the float canvas, touching only its bounding box."""
    if scale < 0.7:  # shrink with area averaging first; a perspective warp alone would alias
        factor = min(scale * 1.3, 1.0)
        size = (max(_px(assembly.shape[1] * factor), 2), max(_px(assembly.shape[0] * factor), 2))
        fx, fy = size[0] / assembly.shape[1], size[1] / assembly.shape[0]
        assembly = cv2.resize(assembly, size, interpolation=cv2.INTER_AREA)
        homography = homography @ np.diag([1 / fx, 1 / fy, 1.0])
    ah, aw = assembly.shape[:2]
    corners = cv2.perspectiveTransform(np.array([[[0, 0], [aw, 0], [aw, ah], [0, ah]]], np.float64), homography)[0]
    h, w = canvas.shape[:2]
    x1, y1 = max(math.floor(corners[:, 0].min()), 0), max(math.floor(corners[:, 1].min()), 0)
    x2, y2 = min(math.ceil(corners[:, 0].max()) + 1, w), min(math.ceil(corners[:, 1].max()) + 1, h)
    if x2 <= x1 or y2 <= y1:
        return
    to_roi = np.array([[1, 0, -x1], [0, 1, -y1], [0, 0, 1]], np.float64) @ homography
    warped = cv2.warpPerspective(assembly, to_roi, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    a = warped[..., 3:4].astype(np.float32) * (1.0 / 255.0)
    roi = canvas[y1:y2, x1:x2]
    roi += (warped[..., :3].astype(np.float32) - roi) * a


# ------------------------------------------------------------------------------------------- camera


def _plate_mask(shape: tuple[int, int], quad: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    _poly(mask, quad, (255,))
    return mask.astype(np.float32) * (1.0 / 255.0)


def _shadow(img: np.ndarray, quad: np.ndarray, rng: np.random.Generator) -> None:
    """A soft-edged shadow (car body, tree, pole) with its edge crossing the plate."""
    h, w = img.shape[:2]
    centre = quad.mean(0) + (quad.max(0) - quad.min(0)) * rng.uniform(-0.4, 0.4, 2)
    angle = rng.uniform(0, math.pi)
    nx, ny = math.cos(angle), math.sin(angle)
    plate_h = quad[:, 1].max() - quad[:, 1].min()
    soft = rng.uniform(1.0, max(plate_h * 0.4, 1.5))
    d = (np.arange(w, dtype=np.float32)[None, :] - centre[0]) * nx + (np.arange(h, dtype=np.float32)[:, None] - centre[1]) * ny
    dark = np.clip(d / soft + 0.5, 0, 1) * rng.uniform(0.3, 0.65)
    img *= (1.0 - dark)[..., None]


def _glare(img: np.ndarray, quad: np.ndarray, rng: np.random.Generator) -> None:
    """Sun or headlight glare: a soft bright spot partly over the plate."""
    h, w = img.shape[:2]
    cx, cy = quad.mean(0) + (quad.max(0) - quad.min(0)) * rng.uniform(-0.5, 0.5, 2)
    sx = (quad[:, 0].max() - quad[:, 0].min()) * rng.uniform(0.1, 0.4)
    sy = sx * rng.uniform(0.3, 1.0)
    gx = np.exp(-0.5 * ((np.arange(w, dtype=np.float32) - cx) / sx) ** 2)
    gy = np.exp(-0.5 * ((np.arange(h, dtype=np.float32) - cy) / sy) ** 2)
    strength = rng.uniform(0.2, 0.5)
    spot = (gy[:, None] * gx[None, :] * strength)[..., None]
    img += (255.0 - img) * spot


def _ir_look(img: np.ndarray, quad: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Night IR camera: monochrome, dark surroundings, retro-reflective plate glowing bright."""
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    mask = _plate_mask(gray.shape, quad)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.0)
    gain = rng.uniform(0.12, 0.45) + (rng.uniform(1.1, 1.6) - rng.uniform(0.12, 0.45)) * mask
    gray = gray * gain
    gray = (gray - 128.0) * rng.uniform(1.0, 1.5) + 128.0
    tint = np.array([1.0, 1.0, 1.0], np.float32) if rng.random() < 0.7 else np.array([0.8, 1.0, 0.75], np.float32)
    return gray[..., None] * tint


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    size = math.ceil(length) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size / 2.0 - 0.5
    dx, dy = math.cos(angle) * length / 2.0, math.sin(angle) * length / 2.0
    cv2.line(kernel, tuple(_fixed(c - dx, c - dy)), tuple(_fixed(c + dx, c + dy)), 1.0, 1, cv2.LINE_AA, _SHIFT)
    return kernel / max(kernel.sum(), 1e-6)


def _disk_kernel(radius: float) -> np.ndarray:
    size = math.ceil(radius) * 2 + 1
    kernel = np.zeros((size, size), np.float32)
    _circle(kernel, size / 2.0 - 0.5, size / 2.0 - 0.5, radius, (1.0,))
    return kernel / max(kernel.sum(), 1e-6)


def _camera(img: np.ndarray, quad: np.ndarray, legible: float, rng: np.random.Generator) -> np.ndarray:
    """Scene lighting, optics, sensor and encoder effects, each capped by the characters' size in px."""
    legible = max(legible, 4.0)
    if rng.random() < 0.25:
        _shadow(img, quad, rng)
    if rng.random() < 0.08:
        _glare(img, quad, rng)
    mode = rng.random()
    night = 0.1 <= mode < 0.26
    if mode < 0.1:
        img = _ir_look(img, quad, rng)
    elif night:  # low light; the plate lamp keeps the plate a little brighter than the car
        mask = _plate_mask(img.shape[:2], quad)[..., None]
        img *= rng.uniform(0.25, 0.55) + mask * rng.uniform(0.0, 0.3)
    else:
        img *= rng.uniform(0.75, 1.25)
    # All blur (optics plus low resolution) shares one budget, as a Gaussian sigma of at most ~8% of the
    # character height: past that a person could no longer read the plate either.
    budget = min(0.08 * legible, 3.5) * rng.uniform(0.35, 1.0)
    img, used = _optics(img, budget, rng)
    left = math.sqrt(max(budget * budget - used * used, 0.0))
    h, w = img.shape[:2]
    if rng.random() < 0.3 and left > 0.5:  # a low-resolution camera, upscaled by the pipeline
        factor = max(0.4 / left, 8.0 / legible, 0.3)
        if factor < 0.9:
            small = cv2.resize(img, (max(int(w * factor), 1), max(int(h * factor), 1)), interpolation=cv2.INTER_AREA)
            img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR if rng.random() < 0.85 else cv2.INTER_NEAREST)
    if rng.random() < 0.75:  # sensor noise, stronger in the dark
        sigma = np.float32(rng.uniform(1.0, 6.0) * (1.6 if night else 1.0) * min(1.0, legible / 14.0))
        img += _patch("fine", h, w, rng)[..., None] * sigma
        if rng.random() < 0.4:
            for channel in range(3):
                img[..., channel] += _patch("fine", h, w, rng) * (sigma * np.float32(0.5))
    out = _isp(np.clip(img, 0, 255).astype(np.uint8), night, rng)
    if rng.random() < 0.7:
        floor = 15 + int(max(0.0, 18.0 - legible) * 4)  # tiny characters cannot survive heavy JPEG
        quality = int(rng.integers(min(floor, 60), 96))
        ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            out = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return out


def _optics(img: np.ndarray, budget: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """At most one kind of blur, within ``budget``; returns the image and the sigma it used."""
    kind = rng.choice(["none", "gauss", "motion", "defocus"], p=[0.35, 0.3, 0.2, 0.15])
    if kind == "gauss" and budget > 0.3:
        sigma = rng.uniform(0.3, budget)
        return cv2.GaussianBlur(img, (0, 0), sigma), sigma
    if kind == "motion" and budget * 3.46 > 1.5:  # a box of length L has sigma L / sqrt(12)
        length = rng.uniform(1.5, budget * 3.46)
        angle = rng.normal(0, 0.35) if rng.random() < 0.7 else rng.uniform(0, math.pi)
        return cv2.filter2D(img, -1, _motion_kernel(length, angle)), length / 3.46
    if kind == "defocus" and budget * 2 > 0.8:  # a disk of radius r has sigma r / 2
        radius = rng.uniform(0.8, budget * 2)
        return cv2.filter2D(img, -1, _disk_kernel(radius)), radius / 2
    return img, 0.0


def _isp(img: np.ndarray, night: bool, rng: np.random.Generator) -> np.ndarray:
    """White balance, contrast and gamma of the camera's processing, as one lookup table on uint8."""
    lut = np.repeat(np.linspace(0.0, 1.0, 256, dtype=np.float32)[:, None], 3, axis=1)
    changed = False
    if rng.random() < 0.4:
        lut *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
        changed = True
    if rng.random() < 0.3:
        pivot = rng.uniform(0.35, 0.65)
        lut = (lut - pivot) * rng.uniform(0.75 if night else 0.6, 1.3) + pivot
        changed = True
    if rng.random() < (0.7 if night else 0.4):  # at night the camera lifts the shadows
        lut = np.clip(lut, 0.0, 1.0) ** rng.uniform(0.55, 1.0 if night else 1.6)
        changed = True
    if not changed:
        return img
    table = np.clip(lut * 255.0 + 0.5, 0, 255).astype(np.uint8).reshape(1, 256, 3)
    return cv2.LUT(img, table)


# ------------------------------------------------------------------------------------ contact sheets


def _label_tile(tile: np.ndarray, text: str, width: int) -> np.ndarray:
    strip = np.full((18, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([tile, strip])


def sample_sheet(rng: np.random.Generator, count: int = 48, columns: int = 6) -> np.ndarray:
    """OCR crops of ``count`` random samples (cut as the runtime cuts them), labelled, in a grid."""
    tiles = []
    for _ in range(count):
        sample = synth_sample(rng)
        crop = crop_plate(sample.image, sample.box, _OCR_CROP_SIZE, padding=0.1).image
        tiles.append(_label_tile(crop, f"{sample.text} {sample.layout}", _OCR_CROP_SIZE[0]))
    return _grid(tiles, columns)


def layout_sheet(rng: np.random.Generator, columns: int = 4, per_layout: int = 1) -> np.ndarray:
    """Clean renders of every layout, labelled, in a grid."""
    tiles = []
    width, height = 300, 120
    for name, layout in LAYOUTS.items():
        for _ in range(per_layout):
            text = random_text(layout, rng)
            plate = render_plate(text, layout, rng, height=90)
            scale = min(width / plate.shape[1], height / plate.shape[0])
            plate = cv2.resize(plate, (int(plate.shape[1] * scale), int(plate.shape[0] * scale)), interpolation=cv2.INTER_AREA)
            tile = np.full((height, width, 3), 128, np.uint8)
            tile[: plate.shape[0], : plate.shape[1]] = plate
            tiles.append(_label_tile(tile, f"{text} {name}", width))
    return _grid(tiles, columns)


def _grid(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    blank = np.zeros_like(tiles[0])
    tiles = tiles + [blank] * (-len(tiles) % columns)
    return np.vstack([np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)])


def main(argv: Sequence[str] | None = None) -> None:
    """Preview and benchmark: ``python -m anpr_edge.train.synth_plates --sheet /tmp/s.png --bench 500``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of random OCR crops here")
    parser.add_argument("--layouts", type=Path, help="write a sheet of clean renders of every layout here")
    parser.add_argument("--bench", type=int, default=0, help="time this many synth_sample calls")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    if args.sheet:
        cv2.imwrite(str(args.sheet), sample_sheet(rng))
    if args.layouts:
        cv2.imwrite(str(args.layouts), layout_sheet(rng))
    if args.bench:
        synth_sample(rng)  # warm the caches
        for _ in range(50):
            synth_sample(rng)
        start = time.perf_counter()
        for _ in range(args.bench):
            synth_sample(rng)
        elapsed = time.perf_counter() - start
        print(f"{1000.0 * elapsed / args.bench:.2f} ms/sample over {args.bench} samples")


if __name__ == "__main__":
    main()
