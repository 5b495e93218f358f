"""Plate formats: patterns, format-constrained decoding with look-alikes, allow/deny lists."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fake_reads import CHARSET, char_probs, make_read

from anpr_edge.config import FormatsConfig
from anpr_edge.plate_formats import (
    BUILTIN_FORMATS,
    PlateFormat,
    PlateLists,
    constrain,
    format_read,
    load_formats,
    parse_pattern,
    text_format,
)
from anpr_edge.values import ListMatch

pytestmark = pytest.mark.timeout(30)


def fmt(*names: str) -> tuple[PlateFormat, ...]:
    return load_formats(list(names))


# ------------------------------------------------------------------------------------------- patterns
def test_patterns_expand_to_fixed_layouts() -> None:
    layouts = parse_pattern("L{1,2}-DDDD-[EH]?")
    assert sorted(len(layout) for layout in layouts) == [5, 6, 6, 7]
    (siv,) = parse_pattern("[A-HJ-NP-TV-Z]{2}-DDD-[A-HJ-NP-TV-Z]{2}")
    assert "I" not in siv[0] and "O" not in siv[0] and "U" not in siv[0] and "H" in siv[0] and "J" in siv[0]
    assert siv[2] == frozenset("0123456789")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("", "empty"), ("LLX", "cannot read"), ("L{3,1}", "backwards"), ("[a-z]", "upper-case"), ("A{1,30}A{1,30}", "layouts"),
     ("[Z-A]", "backwards"), ("L{0}", "only the empty")],
)
def test_bad_patterns_are_named(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pattern(pattern)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("AB123CD", "FR"), ("BRA2E19", "BR-MERCOSUR"), ("ABC1234", "BR"), ("BD51SMR", "UK"), ("128T8086", "TN"),
     ("123456N", "TN"), ("1234BCD", "ES"), ("7ABC123", "US"), ("XY12", None)],
)
def test_texts_fit_the_shipped_formats(text: str, expected: str | None) -> None:
    formats = fmt("FR", "BR-MERCOSUR", "BR", "UK", "TN", "ES", "US")
    assert text_format(text, formats) == expected


def test_every_builtin_format_parses_and_has_an_example() -> None:
    examples = {"EU": "AB123CD", "FR": "AB123CD", "DE": "BMW1234", "ES": "1234BCD", "IT": "AB123CD", "UK": "BD51SMR",
                "NL": "12ABC3", "PL": "WA12345", "US": "ABC1234", "BR": "ABC1234", "BR-MERCOSUR": "BRA2E19",
                "TN": "128T8086", "CN": "AMS087", "RU": "A123BC77", "UA": "AA1234BB",
                "TR": "34ABC123", "IN": "MH12AB1234", "AR": "AB123CD", "GENERIC": "X1"}
    assert set(examples) == set(BUILTIN_FORMATS)
    for name, text in examples.items():
        assert PlateFormat.parse(name, BUILTIN_FORMATS[name]).matches(text), name


def test_unknown_format_names_and_custom_formats() -> None:
    with pytest.raises(ValueError, match="unknown plate format.*XX"):
        load_formats(["FR", "XX"])
    (custom,) = load_formats(["XX"], {"XX": ["DD-LLL"]})
    assert custom.matches("12ABC") and not custom.matches("12AB3")


def test_formats_config_is_validated() -> None:
    assert FormatsConfig(regions=["FR", "MY"], custom={"MY": ["LLL-DDD"]}).regions == ["FR", "MY"]
    with pytest.raises(ValueError, match="unknown plate format"):
        FormatsConfig(regions=["ATLANTIS"])
    with pytest.raises(ValueError, match="cannot read"):
        FormatsConfig(custom={"MY": ["LL?X"]})


# ------------------------------------------------------------------------------------- constraining
def test_mercosur_look_alike_is_fixed() -> None:
    # The OCR reads ABC1D23 as A8C1D23, quite sure of the 8: a digit cannot stand in a letter slot and 8
    # looks like B, so the format takes the 8's probability for the B.
    probs = char_probs("A8C1D23", alternatives={1: ("B", 0.05)})
    choice = constrain(probs, CHARSET, fmt("BR-MERCOSUR"))
    assert choice.text == "ABC1D23" and choice.format == "BR-MERCOSUR" and choice.corrected
    assert choice.unconstrained_text == "A8C1D23"
    assert choice.char_probs[1] == pytest.approx(0.9, abs=0.005)  # 0.85 for the 8 plus 0.05 for the B
    assert choice.ratio > 1.0  # with the B's own 0.05, the fixed text is more probable than the read one


def test_a_plate_matching_no_format_is_left_alone() -> None:
    # A vanity plate: fits neither Brazilian format, and no look-alike swap would make it fit.
    probs = char_probs("HELLO42")
    choice = constrain(probs, CHARSET, fmt("BR", "BR-MERCOSUR"))
    assert choice.text == "HELLO42" and choice.format is None and not choice.corrected


def test_a_non_look_alike_change_is_not_forced() -> None:
    # A4C1D23: a 4 in a letter slot has no look-alike; the best letter there is improbable, so no format.
    probs = char_probs("A4C1D23")
    choice = constrain(probs, CHARSET, fmt("BR-MERCOSUR"))
    assert choice.text == "A4C1D23" and choice.format is None
    # ... unless the OCR itself gave a letter a real chance there.
    probs = char_probs("A4C1D23", alternatives={1: ("A", 0.4)})
    choice = constrain(probs, CHARSET, fmt("BR-MERCOSUR"), min_ratio=0.5)
    assert choice.text == "AAC1D23" and choice.format == "BR-MERCOSUR"
    assert constrain(probs, CHARSET, fmt("BR-MERCOSUR"), min_ratio=0.95).format is None


def test_a_plate_that_fits_as_read_keeps_its_format() -> None:
    # ABC1234 fits BR as read; Mercosur would need 2 -> Z, which the look-alike rule makes as probable.
    # The format the OCR's own reading fits wins, whatever the order.
    probs = char_probs("ABC1234")
    for order in (("BR-MERCOSUR", "BR"), ("BR", "BR-MERCOSUR")):
        choice = constrain(probs, CHARSET, fmt(*order))
        assert (choice.text, choice.format) == ("ABC1234", "BR")


def test_several_look_alike_swaps_are_not_forced() -> None:
    # A 6-digit plate fits no US layout as read; DDDLLL would need 5->S, 1->I and 7->T. Each swap keeps its
    # look-alike's probability, so only the unaided ratio stops the format from rewriting the plate.
    probs = char_probs("356517")
    assert constrain(probs, CHARSET, fmt("US")).text == "356517"
    forced = constrain(probs, CHARSET, fmt("US"), min_unaided_ratio=0.0)
    assert (forced.text, forced.format) == ("356SIT", "US")


def test_format_read_rewrites_a_read_under_the_formats() -> None:
    read = make_read("B12AYS06", (10, 20, 110, 45), alternatives={0: ("8", 0.3)})
    fixed = format_read(read, CHARSET, fmt("FR"))
    assert (fixed.text, fixed.format) == ("812AYS06", "FR")
    assert len(fixed.char_confidences) == 8 and fixed.char_confidences[0] == pytest.approx(0.9, abs=0.005)
    # characters and the end token; look-alikes add their small share where the slot rules them out (S/5, 0/O...)
    assert fixed.confidence == pytest.approx(0.9**8 * 0.9, rel=0.03)
    assert fixed.box == read.box and read.text == "B12AYS06"  # a new value; the read itself is unchanged
    assert format_read(read, CHARSET, ()).format is None
    no_probs = replace(read, char_probs=None)
    assert format_read(no_probs, CHARSET, fmt("FR")) is no_probs
    vanity = make_read("HELLO42")
    assert format_read(vanity, CHARSET, fmt("FR")) is vanity


def test_french_old_plates_never_carry_i_or_o() -> None:
    # A narrow French D read as 0: the O it would become under "any letter" is never issued, so the D is kept.
    probs = char_probs("1218Z025", alternatives={5: ("D", 0.3)})
    assert constrain(probs, CHARSET, fmt("FR")).text == "1218ZD25"
    assert constrain(char_probs("515NO70", alternatives={4: ("D", 0.35)}), CHARSET, fmt("FR")).text == "515ND70"
    # Corsica's 2A/2B and the overseas 97x departments close an old plate too.
    for plate in ("123AB2A", "4567XY2B", "123ABC974", "1234AB75"):
        assert text_format(plate, fmt("FR")) == "FR", plate
    assert text_format("1234OB75", fmt("FR")) is None


def test_chinese_serials_never_carry_i_or_o() -> None:
    # The Hangzhou clip's APH188 read as APHI88: an I is never issued in a Chinese serial, the 1 is kept.
    probs = char_probs("APHI88", alternatives={3: ("1", 0.2)})
    choice = constrain(probs, CHARSET, fmt("CN"))
    assert (choice.text, choice.format) == ("APH188", "CN")
    # New-energy plates: six after the office letter, D or F first (small vehicles) or last (large).
    for plate in ("AD12345", "AFB1234", "A12345D"):
        assert text_format(plate, fmt("CN")) == "CN", plate
    for plate in ("AMS0O7", "AI2345", "AX12345", "A12345X"):
        assert text_format(plate, fmt("CN")) is None, plate


def test_tunisian_word_read_as_seven() -> None:
    probs = char_probs("12878086", alternatives={3: ("T", 0.1)})
    choice = constrain(probs, CHARSET, fmt("TN"))
    assert (choice.text, choice.format) == ("128T8086", "TN")


def test_length_is_not_changed_by_a_format() -> None:
    # A6-character read never becomes a 7-character Mercosur plate.
    probs = char_probs("ABC1D2")
    choice = constrain(probs, CHARSET, fmt("BR-MERCOSUR"))
    assert choice.text == "ABC1D2" and choice.format is None


def test_a_band_read_as_a_leading_character_is_trimmed() -> None:
    # The EU band read as a U in front of a French SIV plate: UCF058NS fits no format, CF058NS fits FR.
    probs = char_probs("UCF058NS")
    choice = constrain(probs, CHARSET, fmt("FR", "UK"))
    assert (choice.text, choice.format, choice.unconstrained_text) == ("CF058NS", "FR", "UCF058NS")
    assert len(choice.char_probs) == 7 and choice.corrected
    # ... and a look-alike behind the band is fixed as usual: the O of FCFO58NS stands in a digit slot.
    probs = char_probs("FCFO58NS", alternatives={3: ("0", 0.2)})
    assert constrain(probs, CHARSET, fmt("FR")).text == "CF058NS"
    # Off, the reading stays as it is.
    assert constrain(char_probs("UCF058NS"), CHARSET, fmt("FR"), trim_leading=False).text == "UCF058NS"


def test_a_reading_that_fits_as_it_is_is_never_trimmed() -> None:
    # FR's old FNI layout fits 1234AB75 itself; trimmed, 234AB75 would fit it too.
    choice = constrain(char_probs("1234AB75"), CHARSET, fmt("FR"))
    assert (choice.text, choice.format) == ("1234AB75", "FR")
    # A plate that fits no format either way keeps its reading and gets none.
    choice = constrain(char_probs("QHELLO42"), CHARSET, fmt("FR", "BR"))
    assert (choice.text, choice.format) == ("QHELLO42", None)
    # A leading digit is not the band: 5722WJG stays, although 722WJG would fit the US DDDLLL.
    assert constrain(char_probs("5722WJG"), CHARSET, fmt("FR", "US")).text == "5722WJG"
    # GENERIC fits every reading of 2-10 characters, so nothing is trimmed where it is configured.
    assert constrain(char_probs("UCF058NS"), CHARSET, fmt("FR", "GENERIC")).format == "GENERIC"


def test_format_read_trims_the_band() -> None:
    read = make_read("DAB123CD", (10, 20, 110, 45))
    fixed = format_read(read, CHARSET, fmt("FR"))
    assert (fixed.text, fixed.format) == ("AB123CD", "FR") and len(fixed.char_confidences) == 7
    assert format_read(read, CHARSET, fmt("FR"), trim_leading=False) is read
    assert FormatsConfig().trim_leading is True


def test_empty_reading_and_no_formats() -> None:
    assert constrain(char_probs(""), CHARSET, fmt("GENERIC")).text == ""
    assert constrain(char_probs("AB123CD"), CHARSET, ()).format is None


# ------------------------------------------------------------------------------------------------- lists
def test_list_matches_with_edit_distance() -> None:
    lists = PlateLists(allow=("AB-123-CD", "XY 999 ZZ"), deny=("FR000XX",), max_distance=1)
    assert lists.allow == ("AB123CD", "XY999ZZ")  # entries normalised like the OCR's text
    assert lists.match("AB123CD") == ListMatch("allow", "AB123CD", 0)
    assert lists.match("AB128CD") == ListMatch("allow", "AB123CD", 1)
    assert lists.match("AB12CD") == ListMatch("allow", "AB123CD", 1)  # a dropped character
    assert lists.match("AB183CE") is None  # two edits
    assert lists.match("FR000XY") == ListMatch("deny", "FR000XX", 1)
    assert lists.match(None) is None and lists.match("") is None
    assert PlateLists(allow=("AB123CD",), max_distance=0).match("AB123CE") is None


def test_nearest_entry_wins_and_deny_wins_ties() -> None:
    lists = PlateLists(allow=("AB123CD", "AB123CE"), deny=("AB123CF",), max_distance=2)
    assert lists.match("AB123CE") == ListMatch("allow", "AB123CE", 0)
    assert lists.match("AB123CX") == ListMatch("deny", "AB123CF", 1)  # one edit from all three
