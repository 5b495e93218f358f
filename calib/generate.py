"""Write the bundled INT8 calibration frames (project-made only; shared datasets are never committed).

    .venv/bin/python calib/generate.py            # needs the [train] extra's pillow and the Debian fonts

160 synthetic scenes from the detector's training generator (``det_data.background_composite`` without real
backgrounds: procedural roads with car rears and plates, textures with plates and plate-like clutter, every
layout of ``synth_plates``) and 40 frames of the demo clip (``demo_clip``), as JPEG. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anpr_edge.demo_clip import default_demo_clip  # noqa: E402
from anpr_edge.train.det_data import background_composite, demo_frames  # noqa: E402

JPEG_QUALITY = 72


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--synthetic", type=int, default=160)
    parser.add_argument("--demo", type=int, default=40)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.jpg"):
        old.unlink()
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    written, index = 0, 0
    while written < args.synthetic:
        made = background_composite(np.random.default_rng([args.seed, 1, index]), [], imgsz=640)
        index += 1
        if made is None or not made[1]:
            continue  # keep frames that hold a plate: the OCR is calibrated on the detector's crops of them
        cv2.imwrite(str(args.out / f"synth_{written:03d}.jpg"), made[0], params)
        written += 1
    clip = default_demo_clip()
    total = int(cv2.VideoCapture(str(clip.path)).get(cv2.CAP_PROP_FRAME_COUNT))
    every = max(total // max(args.demo, 1), 1)
    for n, (frame_index, frame, _boxes) in enumerate(demo_frames(clip, every)):
        if n >= args.demo:
            break
        cv2.imwrite(str(args.out / f"demo_{frame_index:03d}.jpg"), frame, params)
    size = sum(p.stat().st_size for p in args.out.glob("*.jpg"))
    print(f"{len(list(args.out.glob('*.jpg')))} frames, {size / 1e6:.1f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
