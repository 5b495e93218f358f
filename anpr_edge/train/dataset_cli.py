"""The ``anpr-edge dataset`` commands: cut fixed-size OCR training crops, list the shared sets.

``register(commands)`` adds the group to the main CLI's subparsers. Like every subcommand: JSON on
stdout, logs and the progress bar on stderr, user mistakes raised as ``AnprError`` (one clear message,
exit code 2), and a file that fails mid-run is reported and the run goes on (exit code 1 at the end).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from anpr_edge.argtypes import number_between, parse_size, positive_int
from anpr_edge.errors import AnprError, ConfigError
from anpr_edge.ocr import DEFAULT_CHARSET

log = logging.getLogger("anpr_edge.dataset")

LABEL_HEADER = ("file", "text", "xmin", "ymin", "xmax", "ymax")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``dataset crops``, ``dataset list`` and ``dataset splices`` to the main CLI's subparsers object."""
    dataset = commands.add_parser(
        "dataset",
        help="prepare OCR training data (fixed-size crops) and list the shared real sets",
        description="Tools for the labelled plate data the OCR is trained on.",
    )
    actions = dataset.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    crops = actions.add_parser(
        "crops",
        help="cut fixed-size plate crops from a label CSV",
        description="Read LABELS.csv (file,text,xmin,ymin,xmax,ymax or the attention-OCR tutorial's "
        "files,text,xmin,xmax,ymin,ymax; box columns empty for images that already are crops), cut each "
        "plate with the runtime's crop function and write DIR/images/*.png and DIR/labels.csv (box "
        'columns empty). Prints {"written", "skipped", "failed", "out"} as one JSON line; each skipped row '
        "is logged with its CSV line and reason.",
    )
    crops.add_argument("labels", metavar="LABELS.csv", help="label CSV; image paths are relative to its folder")
    crops.add_argument("--out", required=True, metavar="DIR",
                       help="output folder (created; must not hold a labels.csv)")
    crops.add_argument("--size", type=parse_size, default=(192, 64), metavar="WxH",
                       help="crop size, the OCR's input size (default 192x64)")
    crops.add_argument("--padding", type=number_between(0.0, 1.0), default=0.15, metavar="P",
                       help="margin added on each side of a box, as a fraction of its size (default 0.15)")
    crops.add_argument("--jitter", type=number_between(0.0, 0.5), default=0.0, metavar="J",
                       help="random box shift of up to J of its size and rescale of up to 1.5*J, like detector "
                       "error (default 0: the labelled box; 0.08 is a typical value); boxed rows only")
    crops.add_argument("--seed", type=int, default=0, help="random seed for the jitter (default 0)")
    crops.add_argument("--copies", type=positive_int, default=1, metavar="N",
                       help="crops per boxed row, each with its own jitter (needs --jitter > 0; default 1)")
    crops.add_argument("--charset", default=DEFAULT_CHARSET,
                       help="characters a label may use; rows with others are skipped (default 0-9A-Z)")
    crops.add_argument("--overwrite", action="store_true", help="write into a DIR that already has a labels.csv")
    crops.set_defaults(handler=cmd_dataset_crops)

    listing = actions.add_parser(
        "list",
        help="list the shared real sets with their train/val counts",
        description="One JSON line per shared set: name, region, kind, role, rows, train, val, test, skipped. "
        "The split is the fixed split by plate text; a set with role 'test' is never trained on, so all its "
        "rows count as 'test'.",
    )
    listing.add_argument("--val-fraction", type=number_between(0.0, 1.0), default=0.2, metavar="F",
                         help="share of plate texts in the val split (default 0.2)")
    listing.add_argument("--charset", default=DEFAULT_CHARSET, help="characters a label may use (default 0-9A-Z)")
    listing.set_defaults(handler=cmd_dataset_list)

    splices = actions.add_parser(
        "splices",
        help="write spliced crops (train-ocr's data.splice_fraction) of each shared set to look at or score",
        description="Splice COUNT crops per shared training set from its train split, as train-ocr does with "
        "data.splice_fraction (anpr_edge/train/splice.py: a real crop's left part joined in a clean gap "
        "between characters to another crop's right part), and write them as DIR/<set>/images/*.png with "
        "DIR/<set>/labels.csv, a label CSV that eval-ocr scores (how the OCR reads new texts of glyphs it "
        'trained on). Prints {"set", "train", "segmented", "written", "out"} per set as one JSON line.',
    )
    splices.add_argument("--out", required=True, metavar="DIR", help="output folder (one subfolder per set)")
    splices.add_argument("--count", type=positive_int, default=400, metavar="N", help="crops per set (default 400)")
    splices.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    splices.add_argument("--size", type=parse_size, default=(192, 64), metavar="WxH",
                         help="crop size, as the OCR reads (default 192x64)")
    splices.add_argument("--sets", metavar="SET,SET", help="the shared crop sets to splice (default: every training one)")
    splices.add_argument("--overwrite", action="store_true", help="write into folders that already have a labels.csv")
    splices.set_defaults(handler=cmd_dataset_splices)




# ----------------------------------------------------------------------------------------- handlers
def cmd_dataset_crops(args: argparse.Namespace) -> int:
    from anpr_edge.train.datasets import cut_crops, read_labels

    if args.copies > 1 and args.jitter <= 0:
        raise ConfigError("--copies > 1 needs --jitter > 0, otherwise the copies are identical")
    out = Path(args.out)
    labels_out = out / "labels.csv"
    if labels_out.exists() and not args.overwrite:
        raise ConfigError(f"{labels_out} already exists; choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if not args.charset:
        raise ConfigError("--charset is empty")

    label_set = read_labels(args.labels, charset=args.charset)
    for line, reason in label_set.skipped:
        log.warning("%s:%d: skipped: %s", args.labels, line, reason)
    if label_set.clipped:
        lines = ", ".join(map(str, label_set.clipped[:20])) + (" ..." if len(label_set.clipped) > 20 else "")
        log.info("%s: %d box(es) reached outside the image, clipped (lines %s)",
                 args.labels, len(label_set.clipped), lines)

    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    rows: list[tuple[str, str]] = []
    failed = 0
    expected = [args.copies if item.box is not None else 1 for item in label_set.items]
    with tqdm(total=sum(expected), desc="crops", unit="crop", file=sys.stderr, disable=None) as progress:
        for item, count in zip(label_set.items, expected):
            # One item at a time so an undecodable image is reported and the others still get written.
            try:
                crops = list(
                    cut_crops([item], args.size, args.padding, jitter=args.jitter, rng=rng, copies=args.copies)
                )
            except ConfigError as error:
                failed += 1
                log.error("%s", error)
                progress.update(count)
                continue
            for crop_item, crop in crops:
                name = f"images/{len(rows):06d}_{_safe_name(crop_item.text)}.png"
                _write_png(out / name, crop)
                rows.append((name, crop_item.text))
                progress.update()
    _write_labels(labels_out, rows)
    _emit({"written": len(rows), "skipped": len(label_set.skipped), "failed": failed, "out": str(out)})
    return 1 if failed else 0


def cmd_dataset_list(args: argparse.Namespace) -> int:
    from anpr_edge.train.datasets import SHARED_SETS, load_shared, split_items

    failed = 0
    for shared in SHARED_SETS.values():
        record: dict[str, Any] = {
            "name": shared.name, "region": shared.region, "kind": shared.kind, "role": shared.role
        }
        try:
            label_set = load_shared(shared.name, charset=args.charset)
        except AnprError as error:
            # One broken set should not hide the others' counts.
            failed += 1
            log.error("%s", error)
            _emit({**record, "error": str(error)})
            continue
        train, val = split_items(label_set.items, args.val_fraction)
        if shared.role == "test":
            train, val, test = [], [], label_set.items
        else:
            test = []
        _emit({**record, "rows": len(label_set), "train": len(train), "val": len(val), "test": len(test),
               "skipped": len(label_set.skipped), "corrected": len(label_set.corrected)})
    return 1 if failed else 0


def cmd_dataset_splices(args: argparse.Namespace) -> int:
    from anpr_edge.train.datasets import SHARED_SETS, load_shared, read_image
    from anpr_edge.train.splice import pool_of

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    usable = [shared.name for shared in SHARED_SETS.values() if shared.role == "train" and shared.kind == "crops"]
    names = [n.strip() for n in args.sets.split(",") if n.strip()] if args.sets else usable
    for name in names:
        if name not in usable:
            raise ConfigError(f"--sets: '{name}' is not a shared training crop set (those are: {', '.join(usable)})")
    for name in names:
        if (out / name / "labels.csv").exists() and not args.overwrite:
            raise ConfigError(f"{out / name / 'labels.csv'} already exists; choose another --out or pass --overwrite")
    failed = 0
    for name in names:
        try:
            labels = load_shared(name)
        except AnprError as error:  # one missing set should not stop the others
            failed += 1
            log.error("%s", error)
            continue
        train, _ = labels.split()
        if not train:
            log.warning("%s: no usable training rows; left out", name)
            continue
        images = [(read_image(item.path), item.text, name)
                  for item in tqdm(train, desc=name, unit="crop", file=sys.stderr, disable=None)]
        pool = pool_of(images, args.size, max_len=32)
        rng = np.random.default_rng(args.seed)
        target = out / name
        (target / "images").mkdir(parents=True, exist_ok=True)
        rows: list[tuple[str, str]] = []
        for _ in range(args.count * 4):  # a draw can find no pair that fits: try a few times more
            if len(rows) == args.count:
                break
            sample = pool.sample(rng)
            if sample is not None:
                image, text = sample
                file = f"images/{len(rows):06d}_{_safe_name(text)}.png"
                _write_png(target / file, image)
                rows.append((file, text))
        _write_labels(target / "labels.csv", rows)
        _emit({"set": name, "train": len(train), "segmented": len(pool), "written": len(rows), "out": str(target)})
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------ helpers
def _safe_name(text: str) -> str:
    # The text in the name only helps browsing; anything outside ASCII letters/digits becomes '_'.
    return re.sub(r"[^0-9A-Za-z]", "_", text)[:32] or "_"


def _write_png(path: Path, image: np.ndarray) -> None:
    # imencode + tofile mirrors the np.fromfile read: any folder name works on every platform.
    ok, data = cv2.imencode(".png", image)
    try:
        if not ok:
            raise OSError("PNG encoding failed")
        data.tofile(str(path))
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {getattr(error, 'strerror', None) or error}") from None


def _write_labels(path: Path, rows: list[tuple[str, str]]) -> None:
    # Written last and renamed into place: an interrupted run never leaves a labels.csv that looks whole.
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LABEL_HEADER)
        writer.writerows((name, text, "", "", "", "") for name, text in rows)
    os.replace(partial, path)


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
    sys.stdout.flush()
