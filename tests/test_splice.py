"""Real-glyph splicing (anpr_edge.train.splice) and the decoder's token noise."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from anpr_edge.train.splice import (
    SegmentedCrop,
    SplicePool,
    character_spans,
    segment_crops,
    splice,
)

SIZE = (192, 64)


def plate(text: str, x0: int = 14, pitch: int = 26, ink: int = 20, paper: int = 230) -> tuple[np.ndarray, list[int]]:
    """A fitted plate crop with one glyph every ``pitch`` px, and the glyphs' x centres. The glyphs are
    drawn 1.6x wider and squeezed, so they have a plate typeface's narrow shape."""
    squeeze = 1.6
    wide = np.full((SIZE[1], int(SIZE[0] * squeeze), 3), paper, np.uint8)
    cv2.rectangle(wide, (3, 6), (wide.shape[1] - 4, SIZE[1] - 7), (ink, ink, ink), 1)  # the plate's rim
    centres = []
    for i, char in enumerate(text):
        (w, _), _ = cv2.getTextSize(char, cv2.FONT_HERSHEY_SIMPLEX, 1.3, 3)
        x = int((x0 + i * pitch) * squeeze)
        cv2.putText(wide, char, (x, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.3, (ink, ink, ink), 3, cv2.LINE_AA)
        centres.append(int((x + w / 2) / squeeze))
    return cv2.resize(wide, SIZE, interpolation=cv2.INTER_AREA), centres


def test_character_spans_find_each_glyph_in_order() -> None:
    image, centres = plate("AB12CD")
    found = character_spans(image, 6)
    assert found is not None
    spans, top, bottom, clean = found
    assert len(spans) == 6 and clean == (True,) * 5
    for (x0, x1), centre in zip(spans, centres):
        assert x0 <= centre < x1
    assert 10 < top < bottom < 54
    # light text on a dark plate segments too
    assert character_spans(255 - image, 6) is not None


def test_character_spans_refuse_what_does_not_match_the_label() -> None:
    image, _ = plate("AB12CD")
    assert character_spans(image, 7) is None  # one more character in the label than on the plate
    assert character_spans(image, 5) is None
    blank = np.full((SIZE[1], SIZE[0], 3), 128, np.uint8)
    assert character_spans(blank, 3) is None


def test_splice_joins_left_and_right_parts_in_a_gap() -> None:
    left_image, _ = plate("AB12CD")
    right_image, _ = plate("XY78ZW", x0=20, pitch=24)  # framed differently
    left, right = segment_crops([(left_image, "AB12CD", "set"), (right_image, "XY78ZW", "set")])
    image, text = splice(left, right, 3, 3)
    assert text == "AB18ZW"
    assert image.shape == left_image.shape and image.dtype == np.uint8
    spans = character_spans(image, 6)
    assert spans is not None  # six whole glyphs: the cut went through the gaps, not through a character
    # the left part is left's own pixels (up to the final resize back to the crop width)
    part = slice(0, left.spans[2][1])
    assert np.abs(image[:, part].astype(int) - left_image[:, part]).mean() < 8


def test_pool_splices_within_a_set_and_length_only() -> None:
    letters = [plate(t) for t in ("ABCDEF", "GHJKLM", "NPRSTU")]
    digits = [plate(t) for t in ("123456", "789012", "345678")]
    short = [plate(t) for t in ("1234", "5678")]
    crops = segment_crops(
        [(image, t, "letters") for (image, _), t in zip(letters, ("ABCDEF", "GHJKLM", "NPRSTU"))]
        + [(image, t, "digits") for (image, _), t in zip(digits, ("123456", "789012", "345678"))]
        + [(image, t, "digits") for (image, _), t in zip(short, ("1234", "5678"))]
    )
    assert len(crops) == 8
    pool = SplicePool(crops, max_len=12)
    rng = np.random.default_rng(0)
    sources = {c.text for c in crops}
    texts = [sample[1] for sample in (pool.sample(rng) for _ in range(60)) if sample is not None]
    assert len(texts) > 40
    for text in texts:
        assert text not in sources
        assert text.isalpha() or text.isdigit()  # never one set's glyphs joined to another's
        assert len(text) in (4, 6)


def test_pool_keeps_pairs_of_one_colour_and_size() -> None:
    dark_image, _ = plate("ABCDEF", ink=230, paper=20)
    light_image, _ = plate("GHJKLM")
    crops = segment_crops([(dark_image, "ABCDEF", "s"), (light_image, "GHJKLM", "s")])
    assert len(crops) == 2
    assert SplicePool(crops, max_len=12).sample(np.random.default_rng(0)) is None


def test_segmented_crop_colour_is_the_character_band() -> None:
    image = np.zeros((64, 192, 3), np.uint8)
    image[20:40] = (10, 20, 30)
    crop = SegmentedCrop(image, "A", ((0, 5),), 20.0, 40.0, "s")
    assert crop.colour.tolist() == [10.0, 20.0, 30.0]


def test_token_noise_changes_what_the_decoder_is_told_but_not_the_first_step() -> None:
    torch = pytest.importorskip("torch", reason="needs the [train] extra")
    from anpr_edge.train.ocr_model import OcrModelConfig, PlateOcrNet

    torch.manual_seed(0)
    model = PlateOcrNet(OcrModelConfig(height=32, width=96, max_len=6, channels=(8, 16, 24), dim=32, heads=2,
                                       decoder_layers=1, dropout=0.0)).eval()
    images = torch.rand(4, 3, 32, 96)
    targets = torch.tensor([[1, 2, 3, 4, 0, 0]] * 4)
    with torch.no_grad():
        clean, _ = model.train_logits(images, targets)
        again, _ = model.train_logits(images, targets, token_noise=0.0)
        noisy, _ = model.train_logits(images, targets, token_noise=0.99)
    assert torch.equal(clean, again)
    assert torch.allclose(clean[:, 0], noisy[:, 0])  # the first step is told only the start token
    assert not torch.allclose(clean[:, 1:5], noisy[:, 1:5])


def test_the_training_sampler_splices_its_share_of_the_real_crops() -> None:
    pytest.importorskip("torch", reason="needs the [train] extra")
    from anpr_edge.train.ocr_train import BatchSampler, OcrDataSettings, OcrTrainConfig

    texts = ["AB12CD", "EF34GH", "JK56LM", "NP78QR", "ST90UV", "WX13YZ"]
    real = [(plate(t)[0], t, "us-nyc-plate-crops") for t in texts]

    def sampler(fraction: float) -> BatchSampler:
        data = OcrDataSettings(real_sets=["us-nyc-plate-crops"], test_sets=[], synthetic_samples=0,
                               splice_fraction=fraction)
        config = OcrTrainConfig(data=data, batch_size=32)
        empty = (np.zeros((0, 64, 192, 3), np.uint8), [])
        return BatchSampler(config, real, empty, np.random.default_rng(0))

    spliced = sampler(1.0)
    assert spliced.splices is not None and len(spliced.splices) == len(texts)
    images, batch_texts = spliced.next()
    assert tuple(images.shape) == (32, 3, 64, 192)
    assert not set(batch_texts) & set(texts) and all(len(t) == 6 for t in batch_texts)
    plain = sampler(0.0)
    assert plain.splices is None and set(plain.next()[1]) <= set(texts)


def test_gaps_with_something_in_them_are_never_cut() -> None:
    def blotted(text: str) -> np.ndarray:
        image, centres = plate(text)
        x = (centres[2] + centres[3]) // 2  # the gap before the fourth character
        cv2.rectangle(image, (x - 3, 30), (x + 3, 42), (20, 20, 20), -1)  # too low for a character, but ink
        return image

    left_image, right_image = blotted("AB12CD"), blotted("XY78ZW")
    found = character_spans(left_image, 6)
    assert found is not None and found[3] == (True, True, False, True, True)
    pool = SplicePool(segment_crops([(left_image, "AB12CD", "s"), (right_image, "XY78ZW", "s")]), max_len=12)
    rng = np.random.default_rng(0)
    cuts = set()
    for _ in range(40):
        sample = pool.sample(rng)
        assert sample is not None
        text = sample[1]
        first, second = ("AB12CD", "XY78ZW") if text[0] == "A" else ("XY78ZW", "AB12CD")
        cut = next(i for i in range(6) if text[i] != first[i])
        assert text == first[:cut] + second[cut:]
        cuts.add(cut)
    assert 3 not in cuts and cuts <= {1, 2, 4, 5}


def test_dataset_splices_writes_label_csvs_eval_ocr_can_score(tmp_path: Path) -> None:
    import csv
    import json
    import subprocess
    import sys

    texts = ["AB12CD", "EF34GH", "JK56LM", "NP78QR", "ST90UV", "WX13YZ", "BC24DF", "GH35JK"]
    folder = tmp_path / "datasets" / "us-nyc-plate-crops"
    (folder / "images").mkdir(parents=True)
    rows = ["file,text,xmin,ymin,xmax,ymax"]
    for n, text in enumerate(texts * 3):
        cv2.imwrite(str(folder / f"images/{n}.png"), plate(text)[0])
        rows.append(f"images/{n}.png,{text},,,,")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    env = {**__import__("os").environ, "ANPR_EDGE_DATASETS": str(tmp_path / "datasets"),
           "ANPR_EDGE_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "splices"

    def splices(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "anpr_edge", "dataset", "splices", "--out", str(out),
                               "--count", "12", *extra], capture_output=True, text=True, env=env, timeout=120,
                              check=False)

    result = splices("--sets", "us-nyc-plate-crops")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["set"] == "us-nyc-plate-crops" and record["written"] == 12 and record["segmented"] > 0
    with (out / "us-nyc-plate-crops" / "labels.csv").open() as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == 12
    for row in written:
        assert row["text"] not in texts and len(row["text"]) == 6
        assert cv2.imread(str(out / "us-nyc-plate-crops" / row["file"])).shape == (64, 192, 3)
    again = splices("--sets", "us-nyc-plate-crops")
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    wrong = splices("--sets", "fr-plate-scenes", "--overwrite")
    assert wrong.returncode == 2 and "not a shared training crop set" in wrong.stderr
    missing = splices("--overwrite")  # br and tn are not in this datasets folder: named, the others written
    assert missing.returncode == 1 and "br-plate-crops" in missing.stderr
    assert json.loads(missing.stdout.splitlines()[0])["written"] == 12
