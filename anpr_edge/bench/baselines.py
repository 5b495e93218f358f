"""Baseline OCRs run by the same harness as ours (``anpr-edge eval``): RapidOCR 3.x and Tesseract 5.

Both are optional (``pip install 'anpr-edge[bench]'``; Tesseract also needs Debian's ``tesseract-ocr``).
One that is not installed is reported with the command that installs it, and the run goes on without it.

- **RapidOCR** (``rapidocr`` 3.x, PP-OCR text detection + recognition on ONNX Runtime). Its PP-OCR models
  ship inside the wheel (``rapidocr/models``); they are passed to it by path, so it never downloads anything
  (its default route would fetch a missing model or character list from the network at run time: here a
  missing file makes it unavailable, with the reason). It reads every text line of an image; a plate
  reader built on it still has to pick the plate among them (``pick_plate``), and the harness also scores
  the oracle "some line is the plate" (``any_line_matches``) as its upper bound. On a plate crop it also
  reads the whole crop as one line (recognition alone, as a plate reader with its own plate detector
  would use it): its text detector misses the text of many tight crops (on 20 Brazilian val crops it found
  text in 7, recognition alone read 17 right), and either line may be the plate.
- **Tesseract** 5 through ``pytesseract``: one text line restricted to the charset, as
  ``anpr_edge.ocr_eval.tesseract_reader`` runs it for ``eval-ocr --baseline tesseract``.

Each baseline is a ``LineReader``: one BGR image in, its text lines out (normalised to the charset, with a
score), single-threaded unless told otherwise, so its time per image is comparable with ours.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anpr_edge.errors import AnprError, ConfigError
from anpr_edge.ocr import DEFAULT_CHARSET, normalize_text

log = logging.getLogger("anpr_edge.bench")

BASELINES = ("rapidocr", "tesseract")
INSTALL = {
    "rapidocr": "pip install 'anpr-edge[bench]' (or: pip install 'rapidocr>=3' onnxruntime)",
    "tesseract": "apt-get install tesseract-ocr && pip install 'anpr-edge[bench]' (or: pip install pytesseract)",
}
# The models of rapidocr 3.x's default route (PP-OCRv6 small detection and recognition, the v2.0 mobile
# direction classifier), as its wheel ships them.
RAPIDOCR_MODELS = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
}
PLATE_MIN_CHARS = 4
PLATE_MAX_CHARS = 10

Line = tuple[str, float]


class BaselineUnavailable(AnprError):
    """A baseline cannot run here; the message says why and how to install it."""


@dataclass
class LineReader:
    """A baseline OCR: ``lines(image)`` -> [(text, score)], text normalised to the charset, best first
    where the OCR ranks them (RapidOCR: reading order)."""

    name: str
    version: str
    lines: Callable[[np.ndarray], list[Line]]
    whole_images: bool  # can it find text in a full photo (it has its own text detector)?
    note: str = ""
    crop_lines: Callable[[np.ndarray], list[Line]] | None = None  # on a plate crop (default: ``lines``)

    def read_crop(self, image: np.ndarray) -> list[Line]:
        return (self.crop_lines or self.lines)(image)


# ------------------------------------------------------------------------------------------ scoring rules
def pick_plate(lines: Sequence[Line]) -> str:
    """The line a plate reader built on a general OCR would report: among lines of 4 to 10 characters
    with at least one digit (plates have digits; state names, slogans and makes do not), the most
    confident, then the longest; with none of those, the longest line; '' when there is no text."""
    texts = [(text, score) for text, score in lines if text]
    if not texts:
        return ""
    plate_like = [(t, s) for t, s in texts
                  if PLATE_MIN_CHARS <= len(t) <= PLATE_MAX_CHARS and any(ch.isdigit() for ch in t)]
    if plate_like:
        return max(plate_like, key=lambda item: (item[1], len(item[0])))[0]
    return max(texts, key=lambda item: (len(item[0]), item[1]))[0]


def any_line_matches(lines: Sequence[Line], truth: str) -> bool:
    """Oracle: some line, or two or three consecutive lines joined (a plate split at its gap), is ``truth``."""
    texts = [text for text, _ in lines]
    for n in range(len(texts)):
        for k in (1, 2, 3):
            if n + k <= len(texts) and "".join(texts[n : n + k]) == truth:
                return True
    return False


# ------------------------------------------------------------------------------------------- RapidOCR
@contextlib.contextmanager
def _no_downloads() -> Iterator[None]:
    """RapidOCR's downloader raises instead of reaching the network (belt and braces: every file is given
    by path, so nothing should be fetched)."""
    try:
        from rapidocr.utils.download_file import DownloadFile
    except ImportError:  # another 3.x layout: the explicit model paths alone keep it offline
        yield
        return

    original = DownloadFile.__dict__["run"]

    def refuse(cls: object, params: object) -> None:
        raise BaselineUnavailable(
            f"rapidocr tried to download {getattr(params, 'file_url', 'a file')}: this benchmark runs offline "
            "with the models of the rapidocr wheel only")

    DownloadFile.run = classmethod(refuse)  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        DownloadFile.run = original  # type: ignore[method-assign]


def rapidocr_reader(threads: int = 1, charset: str = DEFAULT_CHARSET) -> LineReader:
    """RapidOCR 3.x with the models its wheel ships, on ONNX Runtime with ``threads`` threads (0: its
    default). Raises ``BaselineUnavailable`` with the reason where it cannot run offline."""
    try:
        import rapidocr
        from rapidocr import RapidOCR
    except ImportError:
        raise BaselineUnavailable(f"rapidocr is not installed: {INSTALL['rapidocr']}") from None
    try:
        from importlib.metadata import version as dist_version

        version = dist_version("rapidocr")
    except Exception:  # noqa: BLE001 - a vendored copy without metadata
        version = getattr(rapidocr, "__version__", None) or "?"
    if not version.startswith("3."):
        raise BaselineUnavailable(f"rapidocr {version} is installed; this baseline is written for 3.x: "
                                  f"{INSTALL['rapidocr']}")
    folder = Path(rapidocr.__file__).resolve().parent / "models"
    missing = [name for name in RAPIDOCR_MODELS.values() if not (folder / name).is_file()]
    if missing:
        raise BaselineUnavailable(
            f"rapidocr {version}: its wheel's models are missing ({', '.join(missing)} not in {folder}); it would "
            "download them at run time, which this benchmark does not allow")
    import onnxruntime

    rec = onnxruntime.InferenceSession(str(folder / RAPIDOCR_MODELS["Rec"]), providers=["CPUExecutionProvider"])
    if "character" not in rec.get_modelmeta().custom_metadata_map:
        raise BaselineUnavailable(f"rapidocr {version}: {RAPIDOCR_MODELS['Rec']} carries no character list; "
                                  "rapidocr would download one at run time, which this benchmark does not allow")
    del rec
    params: dict[str, object] = {"Global.log_level": "error"}
    for stage, name in RAPIDOCR_MODELS.items():
        params[f"{stage}.model_path"] = str(folder / name)
    if threads > 0:
        params["EngineConfig.onnxruntime.intra_op_num_threads"] = threads
        params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
    with _no_downloads():
        try:
            engine = RapidOCR(params=params)
            # Load every model now, offline (RapidOCR loads them on first use): recognition and direction
            # on a crop without detection, then the detector. ``use_det`` sticks, so it is set back.
            probe = np.full((48, 160, 3), 255, np.uint8)
            probe[14:34, 20:140] = 0
            engine(probe, use_det=False, use_cls=True, use_rec=True)
            engine(probe, use_det=True, use_cls=True, use_rec=True)
            engine(probe, use_det=False, use_cls=False, use_rec=True)
        except BaselineUnavailable:
            raise
        except Exception as error:  # noqa: BLE001 - any failure of a third-party OCR makes it unavailable
            raise BaselineUnavailable(f"rapidocr {version} failed to start: {error}") from None

    def run(image: np.ndarray, *, detect: bool) -> list[Line]:
        # Every switch passed on every call: RapidOCR keeps the last call's use_det/use_cls.
        result = engine(image, use_det=detect, use_cls=detect, use_rec=True)
        texts = getattr(result, "txts", None) or ()
        scores = getattr(result, "scores", None) or (0.0,) * len(texts)
        return [(normalize_text(str(t), charset), float(s)) for t, s in zip(texts, scores)]

    def lines(image: np.ndarray) -> list[Line]:
        return run(image, detect=True)

    def crop_lines(image: np.ndarray) -> list[Line]:
        return run(image, detect=True) + run(image, detect=False)

    return LineReader("rapidocr", version, lines, whole_images=True, crop_lines=crop_lines,
                      note="PP-OCRv6 small det + rec, v2.0 mobile direction classifier (the wheel's models); "
                      "on crops its text lines plus the whole crop read as one line")


# ------------------------------------------------------------------------------------------ Tesseract
def tesseract_line_reader(charset: str = DEFAULT_CHARSET) -> LineReader:
    """Tesseract 5 on crops: ``anpr_edge.ocr_eval.tesseract_reader`` (one line, the charset only, x2 up)."""
    from anpr_edge.ocr_eval import tesseract_reader

    try:
        read = tesseract_reader(charset)
    except AnprError as error:
        raise BaselineUnavailable(f"{error} ({INSTALL['tesseract']})") from None
    import pytesseract

    version = str(pytesseract.get_tesseract_version()).split()[0]

    def lines(image: np.ndarray) -> list[Line]:
        ((text, score),) = read([image])
        return [(text, score)] if text else []

    return LineReader("tesseract", version, lines, whole_images=False,
                      note="--psm 7 --oem 1, charset whitelist, crop scaled x2")


FACTORIES: dict[str, Callable[[int, str], LineReader]] = {
    "rapidocr": lambda threads, charset: rapidocr_reader(threads, charset),
    "tesseract": lambda threads, charset: tesseract_line_reader(charset),
}


def load_baselines(names: Sequence[str], *, threads: int = 1,
                   charset: str = DEFAULT_CHARSET) -> tuple[list[LineReader], dict[str, str]]:
    """The named baselines that can run here, and {name: reason} for those that cannot (logged)."""
    readers, skipped = [], {}
    for name in names:
        if name not in FACTORIES:
            raise ConfigError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
        try:
            readers.append(FACTORIES[name](threads, charset))
        except BaselineUnavailable as error:
            skipped[name] = str(error)
            log.warning("baseline %s skipped: %s", name, error)
    return readers, skipped
