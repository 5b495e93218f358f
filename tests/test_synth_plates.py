"""The synthetic plate generator: layouts, labels, rendering, scenes and degradations."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anpr_edge.crop import crop_plate

pytest.importorskip("PIL", reason="the synthetic plate generator needs Pillow (training dependency)")
from anpr_edge.train import synth_plates as sp


def _runs(profile: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(start, end) of the stretches where ``profile`` exceeds ``threshold``."""
    runs, start = [], None
    for i, on in enumerate(profile > threshold):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(profile)))
    return runs


def test_available_fonts_finds_fonts() -> None:
    fonts = sp.available_fonts()
    assert fonts
    assert all(path.is_file() and path.suffix in (".ttf", ".otf") for path in fonts)


def test_missing_fonts_name_the_apt_get_command(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(sp, "FONT_ROOT", tmp_path)
    sp._font_index.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="apt-get install -y fonts-dejavu-core"):
            sp.available_fonts()
    finally:
        monkeypatch.undo()
        sp._font_index.cache_clear()


@pytest.mark.parametrize("name", sorted(sp.LAYOUTS))
def test_every_layout_renders_a_valid_label(name: str) -> None:
    layout = sp.LAYOUTS[name]
    rng = np.random.default_rng(11)
    pattern = sp.layout_regex(layout)
    for _ in range(20):
        text = sp.random_text(layout, rng)
        assert text and set(text) <= set(sp.CHARSET), text
        assert pattern.fullmatch(text), (name, text)
        if layout.max_chars:
            assert len(text) <= layout.max_chars
    image = sp.render_plate(text, layout, rng)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 64 <= image.shape[0] <= 110
    assert image.shape[1] / image.shape[0] == pytest.approx(layout.aspect, rel=layout.aspect_jitter + 0.02)
    assert image.std() > 20  # something was drawn


def test_labels_use_only_the_charset_and_separators_are_not_labels() -> None:
    rng = np.random.default_rng(3)
    assert sp.layout_regex("eu_fr_siv").fullmatch("AB123CD")
    assert not sp.layout_regex("eu_fr_siv").fullmatch("AB-123-CD")
    assert sp.layout_regex("us_nyc_tlc").fullmatch("T123456C")
    assert sp.layout_regex("br_mercosur").fullmatch("ABC1D23")
    assert sp.layout_regex("uk_rear").fullmatch("AB12CDE")
    for _ in range(200):
        sample_text = sp.random_text(sp.LAYOUTS["other_generic"], rng)
        assert 4 <= len(sample_text) <= 9 and set(sample_text) <= set(sp.CHARSET)


def test_render_plate_accepts_any_compatible_text() -> None:
    rng = np.random.default_rng(5)
    assert sp.render_plate("XYZ", "eu_de", rng).shape[0] >= 64  # matches no pattern: drawn as is
    assert sp.render_plate("AB123CD45", "moto_2line", rng, split=4, height=100).shape[0] == 100
    assert sp.render_plate("A", "moto_2line", rng).ndim == 3
    with pytest.raises(ValueError):
        sp.render_plate("AB-12", "eu_de", rng)
    with pytest.raises(ValueError):
        sp.render_plate("AB12", "moto_2line", rng, split=4)


def test_french_plates_draw_the_french_q_m_w_and_keep_the_letters_in_the_label() -> None:
    for stem in ("NimbusSans-Bold", "RobotoCondensed-Bold", "OSP-DIN"):
        o, q, font_q = sp._glyph(stem, "O", 0), sp._glyph(stem, sp.SHORT_TAIL_Q, 0), sp._glyph(stem, "Q", 0)
        h, w = o.mask.shape
        # The O's bowl is all there, the tick adds ink only at the bottom right, and it ends close under
        # the bowl where the face's own Q hangs its tail further down (or elsewhere).
        assert q.mask.shape[1] == w and np.array_equal(np.maximum(q.mask[:h], o.mask), q.mask[:h])
        added = (q.mask[:h].astype(int) - o.mask) > 127
        ys, xs = np.nonzero(added)
        assert len(ys) > 0.005 * h * w and ys.min() > 0.5 * h and xs.min() > 0.4 * w
        assert h < q.mask.shape[0] <= 1.1 * h and not np.array_equal(q.mask, font_q.mask)
        # M and W: straight full-height stems at the H's place, the V reaching half-way from the top (M)
        # or the bottom (W): the middle column is inked only in that half.
        glyph_h = sp._glyph(stem, "H", 0)
        for char, inked_half in ((sp.STRAIGHT_M, "top"), (sp.STRAIGHT_W, "bottom")):
            glyph = sp._glyph(stem, char, 0)
            gh, gw = glyph.mask.shape
            assert (gh, gw) == glyph_h.mask.shape and glyph.advance == glyph_h.advance
            h_ink = np.flatnonzero(glyph_h.mask[round(0.1 * gh)] > 127)  # the H's two stems
            stems = glyph.mask[:, [h_ink[0] + 1, h_ink[-1] - 1]] > 127
            assert stems[round(0.05 * gh):round(0.95 * gh)].all()
            middle = np.flatnonzero(glyph.mask[:, gw // 2] > 127)  # around the V's vertex only
            if inked_half == "top":
                assert 0.4 * gh < middle.max() < 0.75 * gh and middle.min() > 0.2 * gh
            else:
                assert 0.25 * gh < middle.min() < 0.6 * gh and middle.max() < 0.8 * gh
            assert not np.array_equal(glyph.mask, sp._glyph(stem, "M" if char == sp.STRAIGHT_M else "W", 0).mask)
    layout = sp.LAYOUTS["eu_fr_siv"]
    assert 0 < layout.french_letters < 1 and sp.LAYOUTS["eu_de"].french_letters == 0
    always = sp.Layout(**{**layout.__dict__, "french_letters": 1.0})
    never = sp.Layout(**{**layout.__dict__, "french_letters": 1e-12})  # draws the same random numbers
    drawn = [sp._render(["QQ-123-QQ"], lay, np.random.default_rng(4), 100).text_mask for lay in (always, never)]
    assert drawn[0].shape == drawn[1].shape and not np.array_equal(*drawn)  # same plate, different Q
    drawn = [sp._render(["MW-123-WM"], lay, np.random.default_rng(4), 100).text_mask for lay in (always, never)]
    assert drawn[0].shape == drawn[1].shape and not np.array_equal(*drawn)  # same plate, different M and W
    same = [sp._render(["AB-123-CD"], lay, np.random.default_rng(4), 100).text_mask for lay in (always, never)]
    assert np.array_equal(*same)  # no Q, nothing changes
    rng = np.random.default_rng(1)
    for _ in range(30):  # the label still says Q, M and W
        sample = sp.synth_sample(rng, ["eu_fr_siv"])
        assert set(sample.text) <= set(sp.CHARSET)


def test_chinese_plates_lead_with_a_province_character_that_is_not_in_the_label(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    for name, text in (("cn_blue", "A12345"), ("cn_green", "AD12345")):
        layout = sp.LAYOUTS[name]
        assert layout.emblem == "hanzi" and sp.layout_regex(layout).fullmatch(text)
        plate = sp._render(sp._shown_lines(text, layout, None), layout, rng, 100)
        assert len(plate.boxes) == len(text)  # the label's characters only
        first = min(plate.boxes)
        x1, y1, x2, y2 = (int(v) for v in first)
        # Left of the first label character: a character's worth of ink that is not label ink.
        left = plate.image[y1:y2, max(x1 - (x2 - x1) - 8, 0) : x1 - 2].astype(np.float32)
        assert left.size and left.std() > 30 and plate.text_mask[y1:y2, : x1 - 2].max() < 128
    for _ in range(20):
        sample = sp.synth_sample(rng, ["cn_blue", "cn_green"])
        assert set(sample.text) <= set(sp.CHARSET) and len(sample.text) in (6, 7)
        assert "I" not in sample.text and "O" not in sample.text
    monkeypatch.setattr(sp, "HANZI_FONT", "NoSuchFont")
    with pytest.raises(RuntimeError, match="apt-get install -y fonts-droid-fallback"):
        sp.render_plate("A12345", "cn_blue", rng)


def test_tunisian_plates_draw_the_arabic_words_their_labels_write_as_t_and_n() -> None:
    layout = sp.LAYOUTS["tn"]
    regex = sp.layout_regex(layout)
    # The real set's label forms (tn-plate-crops: ###T####, ##T####, ###T###, ######N) are all this layout's.
    assert all(regex.fullmatch(text) for text in ("164T9053", "95T6758", "129T327", "103679N"))
    assert not regex.fullmatch("103679T") and not regex.fullmatch("ABC123")
    digit = sp._glyph("OSP-DIN", "8", 0)
    cap = sp._cap_height("OSP-DIN", 0)
    for word, letter in ((sp.TUNIS_WORD, "T"), (sp.NT_WORD, "N")):
        glyph = sp._glyph("OSP-DIN", word, 0)
        ink_rows = np.flatnonzero((glyph.mask > 127).any(axis=1))
        # A word, not a Latin letter: wider than a digit, lower than the digits, centred on their mid-height.
        assert glyph.mask.shape[1] > 1.3 * digit.mask.shape[1] and len(ink_rows) < 0.85 * cap
        assert abs((glyph.top + glyph.mask.shape[0] / 2) + cap / 2) < 0.1 * cap
        assert not np.array_equal(glyph.mask, sp._glyph("OSP-DIN", letter, 0).mask)
    # Seen left to right, "تونس" has two connected pairs and the dots; "ن ت" two separate letters, the teh
    # (two dots) on the left. Counted as ink blobs: more than a Latin letter has.
    blobs = {word: cv2.connectedComponents((sp._glyph("OSP-DIN", word, 0).mask > 127).astype(np.uint8))[0] - 1
             for word in (sp.TUNIS_WORD, sp.NT_WORD)}
    assert blobs[sp.TUNIS_WORD] >= 4 and blobs[sp.NT_WORD] == 5
    rng = np.random.default_rng(5)
    plate = sp._render(sp._shown_lines("164T9053", layout, None), layout, rng, 100)
    assert len(plate.boxes) == 8  # one box per label character, the word's among them
    widths = [x2 - x1 for x1, _, x2, _ in sorted(plate.boxes)]
    assert widths[3] > 1.3 * max(widths[:3] + widths[4:])  # the T is the wide word
    texts = [sp.synth_sample(rng, ["tn"]).text for _ in range(60)]
    assert all(regex.fullmatch(text) for text in texts) and any(text.endswith("N") for text in texts)
    assert sum("T" in text for text in texts) > 0.6 * len(texts)


def test_chinese_plates_are_lettered_thin_with_mostly_digits_after_the_dot() -> None:
    rng = np.random.default_rng(3)
    after_dot = [sp.random_text("cn_blue", rng)[1:] for _ in range(400)]
    letters = np.array([sum(ch.isalpha() for ch in text) for text in after_dot])
    assert letters.max() == 5 and (letters <= 2).mean() > 0.9 and 0.15 < (letters == 0).mean() < 0.35
    for name in ("cn_blue", "cn_green"):
        layout = sp.LAYOUTS[name]
        assert set(layout.fonts) >= set(sp.THIN_FONTS) and layout.bold.count(0) >= 4
        assert all(stem in sp._font_index() for stem in layout.fonts)  # FONT_PACKAGES carries them
    # The thin faces' strokes: ink covers less of a regular-weight plate than of the bold face's.
    ink = {}
    for font, bold in (("NimbusSansNarrow-Regular", 0), ("NimbusSansNarrow-Bold", 2)):
        mask = sp._text_run("A05279", font, 60.0, 400.0, bold=bold).mask
        ink[font] = (mask > 127).mean()
    assert ink["NimbusSansNarrow-Regular"] < 0.75 * ink["NimbusSansNarrow-Bold"]


@pytest.mark.parametrize("font, bold", [("NimbusSansNarrow-Regular", 0), ("NimbusSansNarrow-Bold", 2), ("OSP-DIN", 0)])
@pytest.mark.parametrize("cap", [18.0, 40.0])
def test_reshaped_letters_change_shape_but_keep_every_character(font: str, bold: int, cap: float) -> None:
    mask = sp._text_run("A05279", font, cap, 10 * cap, bold=bold).mask
    ink = mask > 127
    characters = cv2.connectedComponents(ink.astype(np.uint8))[0] - 1
    assert characters == 6
    overlaps, weights = [], []
    for seed in range(20):
        out = sp.reshape_letters(mask, cap, np.random.default_rng(seed))
        assert out.shape == mask.shape and out.dtype == np.uint8
        reshaped = out > 127
        # No stroke vanishes (thin faces included) and no two characters run together.
        assert cv2.connectedComponents(reshaped.astype(np.uint8))[0] - 1 == characters
        overlaps.append((ink & reshaped).sum() / (ink | reshaped).sum())
        weights.append(reshaped.sum() / ink.sum())
    # Each character stays where it was, in a shape of its own: changed, never a different figure.
    assert 0.55 < min(overlaps) and max(overlaps) < 0.97
    assert 0.7 < min(weights) and max(weights) < 1.35 and max(weights) - min(weights) > 0.15  # bolder and lighter
    assert not np.array_equal(sp.reshape_letters(mask, cap, np.random.default_rng(0)),
                              sp.reshape_letters(mask, cap, np.random.default_rng(1)))


def test_reshape_share_reshapes_that_share_and_leaves_the_default_stream_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = sp.reshape_letters
    monkeypatch.setattr(sp, "reshape_letters", lambda *args: calls.append(1) or original(*args))
    plain = [sp.synth_sample(np.random.default_rng(seed)) for seed in range(3)]
    assert not calls
    rng = np.random.default_rng(4)
    for _ in range(80):
        sp.synth_sample(rng, reshape_share=0.5)
    assert 25 < len(calls) < 55
    # Off (the default), nothing is drawn for it: the same seed gives the same plate as before the option.
    again = [sp.synth_sample(np.random.default_rng(seed), reshape_share=0.0) for seed in range(3)]
    assert all(np.array_equal(a.image, b.image) and a.text == b.text for a, b in zip(plain, again))


def test_two_line_layouts_draw_two_rows_top_then_bottom() -> None:
    rng = np.random.default_rng(8)
    two_line = [layout for layout in sp.LAYOUTS.values() if layout.lines == 2]
    assert {"moto_2line", "us_stacked", "eu_square"} <= {layout.name for layout in two_line}
    for layout in two_line:
        for _ in range(5):
            text, lines = sp._random_shown(layout, rng)
            assert len(lines) == 2 and text == "".join(lines).translate(str.maketrans("", "", " -.·*"))
            plate = sp._render(lines, layout, rng, 100)
            # Clean render: the label's ink has two horizontal bands, the first line in the upper one.
            rows = _runs(plate.text_mask.max(axis=1).astype(float), 64)
            assert len(rows) == 2, (layout.name, lines, rows)
            top_line = len(lines[0].translate(str.maketrans("", "", " -.·*")))
            tops = [b[3] for b in plate.boxes[:top_line]]
            bottoms = [b[1] for b in plate.boxes[top_line:]]
            assert max(tops) <= min(bottoms) + 1
    # The picture itself: a horizontal profile of dark ink across the text columns has two bands.
    image = sp.render_plate("AB123CD45", "moto_2line", np.random.default_rng(2), height=100)
    gray = image.mean(axis=2)
    background = np.median(gray)
    ink = np.abs(gray[:, image.shape[1] // 4 : 3 * image.shape[1] // 4] - background).mean(axis=1)
    assert len(_runs(ink[5:-5], ink.max() * 0.35)) == 2


def test_sensible_split() -> None:
    assert sp._shown_lines("AB123CD45", sp.LAYOUTS["moto_2line"], None) == ["AB 123", "CD 45"]
    assert sp._shown_lines("XYZ12", sp.LAYOUTS["moto_2line"], None) == ["XYZ", "12"]


def test_synth_sample_is_deterministic() -> None:
    a = sp.synth_sample(np.random.default_rng(42))
    b = sp.synth_sample(np.random.default_rng(42))
    assert a.text == b.text and a.layout == b.layout and a.box == b.box
    assert np.array_equal(a.image, b.image) and np.array_equal(a.quad, b.quad)
    c = sp.synth_sample(np.random.default_rng(43))
    assert c.image.shape != a.image.shape or not np.array_equal(c.image, a.image)


def test_samples_have_consistent_geometry_and_labels() -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(150):
        s = sp.synth_sample(rng)
        seen.add(s.layout)
        h, w = s.image.shape[:2]
        assert s.image.dtype == np.uint8 and s.image.shape == (h, w, 3)
        assert s.quad.shape == (4, 2) and s.quad.dtype == np.float32
        x1, y1, x2, y2 = s.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert (s.quad[:, 0] >= x1).all() and (s.quad[:, 0] <= x2).all()
        assert (s.quad[:, 1] >= y1).all() and (s.quad[:, 1] <= y2).all()
        # TL, TR, BR, BL: top edge above bottom edge, left side left of right side.
        assert s.quad[0, 1] < s.quad[3, 1] and s.quad[1, 1] < s.quad[2, 1]
        assert s.quad[0, 0] < s.quad[1, 0] and s.quad[3, 0] < s.quad[2, 0]
        assert 30 <= x2 - x1 <= 320
        assert sp.layout_regex(s.layout).fullmatch(s.text)
        crop = crop_plate(s.image, s.box, (192, 64), padding=0.1).image
        assert crop.shape == (64, 192, 3)
    assert len(seen) > 15


def test_steep_side_views_keep_their_characters_legible(monkeypatch: pytest.MonkeyPatch) -> None:
    """The yaw tail: plates seen 30-60 degrees from the side, as near as needed to stay readable."""
    yaws: list[float] = []
    rotation = sp._rotation

    def recording(yaw: float, pitch: float, roll: float) -> np.ndarray:
        yaws.append(abs(np.degrees(yaw)))
        return rotation(yaw, pitch, roll)

    monkeypatch.setattr(sp, "_rotation", recording)
    monkeypatch.setattr(sp, "YAW_TAIL_SHARE", 1.0)
    rng = np.random.default_rng(5)
    for _ in range(60):
        quad = sp._pose(520.0, 110.0, 150.0, rng)
        # Narrowed by cos(yaw) and widened back by 1/cos(yaw): about as wide as a frontal plate.
        assert 0.75 * 150.0 <= quad[:, 0].max() - quad[:, 0].min() <= 1.6 * 150.0
    assert min(yaws) >= 30.0 and max(yaws) <= 60.0 and np.median(yaws) > 40.0
    for _ in range(40):
        s = sp.synth_sample(rng, layouts=["eu_fr_siv"])
        assert sp.layout_regex(s.layout).fullmatch(s.text) and 30 <= s.box[2] - s.box[0] <= 620
    monkeypatch.setattr(sp, "YAW_TAIL_SHARE", 0.0)
    yaws.clear()
    for _ in range(60):
        sp._pose(520.0, 110.0, 150.0, rng)
    assert max(yaws) <= 35.0


def test_layout_choice_and_weights() -> None:
    rng = np.random.default_rng(1)
    names = {sp.synth_sample(rng, layouts=["br_old", "uk_rear"], weights=[0, 1]).layout for _ in range(5)}
    assert names == {"uk_rear"}
    assert sp.synth_sample(rng, layouts=["eu_de"], weights={"eu_de": 1.0}).layout == "eu_de"
    with pytest.raises(ValueError):
        sp.synth_sample(rng, layouts=["eu_de", "eu_nl"], weights=[1.0])


def test_degradations_keep_uint8_and_shape() -> None:
    quad = np.array([[40, 30], [160, 35], [158, 70], [42, 66]], np.float64)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        canvas = rng.uniform(0, 255, (100, 200, 3)).astype(np.float32)
        out = sp._camera(canvas, quad, float(rng.uniform(6, 40)), rng)
        assert out.dtype == np.uint8 and out.shape == (100, 200, 3)
