"""Where the project's own files live: the bundled models and the per-user cache."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent

DETECTOR_MODEL = "plate_det.onnx"
OCR_MODEL = "ocr.onnx"


def engines_dirs() -> list[Path]:
    """Folders searched for the bundled models, first match wins.

    ``$ANPR_EDGE_ENGINES`` alone when set (a deployment saying where its models are: nothing else is
    searched, so a stale copy elsewhere is never picked up); otherwise the models packed into the wheel
    (``anpr_edge/_engines``) and the repository's ``engines/`` for a checkout or an editable install.
    """
    if os.environ.get("ANPR_EDGE_ENGINES"):
        return [Path(os.environ["ANPR_EDGE_ENGINES"])]
    return [_PACKAGE_DIR / "_engines", _PACKAGE_DIR.parent / "engines"]


def bundled_model(name: str) -> Path:
    """The path of a bundled model: the first existing one, else where a checkout would keep it."""
    folders = engines_dirs()
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    return folders[-1] / name


def cache_dir() -> Path:
    """Per-user cache for generated files (the demo clip): ``$ANPR_EDGE_CACHE_DIR`` or the XDG cache."""
    if os.environ.get("ANPR_EDGE_CACHE_DIR"):
        return Path(os.environ["ANPR_EDGE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "anpr-edge"
