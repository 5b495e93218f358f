"""`anpr-edge probe`: codec, resolution, fps and plate widths of real H.264/H.265 clips, advice, snapshot,
errors that name the source without its password."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from servers import free_port

from anpr_edge import probe
from anpr_edge.errors import AnprError, ConfigError
from anpr_edge.probe import (
    MIN_DETECT_PLATE_PX,
    MIN_FPS,
    MIN_OCR_PLATE_PX,
    ProbedPlate,
    ProbeReport,
    add_parser,
    advise,
    codec_family,
    fourcc_text,
)
from anpr_edge.source_spec import parse_source
from anpr_edge.sources import SourceOptions

REPO = Path(__file__).resolve().parent.parent
# A real French scene (1440x1080) whose plate the bundled detector finds: box 610..915 px wide (305 px).
SCENE = "fr-plate-scenes/images/1131 XD 29.jpg"
# Plate box in the 960x720 H.264 clip (the scene scaled by 2/3), hidden on the first frames by a grey patch.
PATCH = "drawbox=x=380:y=440:w=260:h=120:color=gray:t=fill:enable='lt(n\\,3)'"


# ------------------------------------------------------------------------------------------------ helpers
def run_probe(*argv: str) -> int:
    """Parse with a parser built from ``add_parser`` and dispatch like ``anpr_edge.cli.main``."""
    parser = argparse.ArgumentParser(prog="anpr-edge")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["probe", *argv])
    try:
        return int(args.handler(args))
    except AnprError as error:
        sys.stderr.write(f"anpr-edge: error: {error}\n")
        return error.exit_code


def probe_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict, str]:
    assert run_probe(*argv) == 0
    out, err = capsys.readouterr()
    (line,) = out.splitlines()  # one JSON object, nothing else on stdout
    return json.loads(line), err


def encoders() -> str:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    return subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout


def make_clip(scene: Path, out: Path, codec: str, size: str, fps: int, frames: int, extra_vf: str = "") -> Path:
    vf = f"scale={size.replace('x', ':')}" + (f",{extra_vf}" if extra_vf else "")
    codec_args = ["-c:v", codec, "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if codec == "libx265":
        codec_args += ["-x265-params", "log-level=error"]
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-loop", "1", "-framerate", str(fps), "-i", str(scene),
         "-frames:v", str(frames), "-vf", vf, *codec_args, "-movflags", "+faststart", str(out)],
        check=True, capture_output=True, timeout=60,
    )
    return out


@pytest.fixture(scope="module")
def scene() -> Path:
    from anpr_edge.train.datasets import datasets_root

    try:
        path = datasets_root() / SCENE
    except ConfigError as error:
        pytest.skip(f"shared datasets not available: {error}")
    if not path.is_file():
        pytest.skip(f"shared scene image missing: {path}")
    return path


@pytest.fixture(scope="module")
def h264_clip(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "libx264" not in encoders():
        pytest.skip("this ffmpeg has no libx264 encoder")
    return make_clip(scene, tmp_path_factory.mktemp("h264") / "cam.mp4", "libx264", "960x720", 10, 8, PATCH)


@pytest.fixture(scope="module")
def h265_clip(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "libx265" not in encoders():
        pytest.skip("this ffmpeg has no libx265 encoder (H.265 clip cannot be made)")
    return make_clip(scene, tmp_path_factory.mktemp("h265") / "cam.mp4", "libx265", "640x480", 6, 6)


@pytest.fixture(scope="module")
def h264_probe(h264_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    snapshot = tmp_path_factory.mktemp("snap") / "cam.jpg"
    with pytest.MonkeyPatch.context() as patch:
        # Module-scoped: capture by hand (capsys is per test).
        out, err = io.StringIO(), io.StringIO()
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        code = run_probe(str(h264_clip), "--snapshot", str(snapshot))
    assert code == 0, err.getvalue()
    (line,) = out.getvalue().splitlines()
    return json.loads(line), err.getvalue(), snapshot


# -------------------------------------------------------------------------------------------- real clips
def test_h264_clip_report(h264_probe: tuple[dict, str, Path]) -> None:
    report, err, _ = h264_probe
    assert report["kind"] == "file" and report["codec"] == "h264"
    assert report["fourcc"] in ("h264", "avc1")
    assert (report["width"], report["height"]) == (960, 720)
    assert report["fps_nominal"] == pytest.approx(10.0)
    assert report["fps_measured"] == pytest.approx(10.0, rel=0.05)
    assert report["frames_requested"] == 25 and report["frames_read"] == 8  # the clip ended first
    assert report["detector_input_size"] > 0
    # The plate is hidden on frames 0-2: the frame kept is one where it shows.
    assert report["best_frame"] >= 3 and report["frames_with_plates"] >= 5
    plate = max(report["plates"], key=lambda p: p["width_px"])
    assert 170 <= plate["width_px"] <= 250  # 305 px in the photo, scaled by 2/3
    x1, y1, x2, y2 = plate["box"]
    assert plate["width_px"] == pytest.approx(x2 - x1, abs=0.2)
    assert 390 <= x1 <= 420 and 600 <= x2 <= 630 and 460 <= y1 <= 490 and 510 <= y2 <= 540
    assert 0 < plate["confidence"] <= 1 and 0 <= plate["text_confidence"] <= 1
    assert len(plate["text"]) >= 5  # the OCR's reading (1131XD29); its exact accuracy is the OCR card's business
    # 720p, 10 fps, a 200 px plate: nothing to fix in the camera. No formats are configured, so a sure read
    # (an old French number) gets exactly one piece of advice: the formats it fits.
    if plate["text_confidence"] >= probe.MIN_FORMAT_ADVICE_CONFIDENCE:
        (advice,) = report["advice"]
        assert advice.startswith(f"no plate formats configured: the plates read here ({plate['text']}) fit")
    else:
        assert report["advice"] == []
    assert "h264, 960x720" in err and "px wide" in err and ("advice: none" in err) == (not report["advice"])


def test_snapshot_is_a_readable_jpeg_with_the_plate_labelled(h264_probe: tuple[dict, str, Path]) -> None:
    report, _, snapshot = h264_probe
    assert report["snapshot"] == str(snapshot)
    image = cv2.imread(str(snapshot))
    assert image is not None and image.shape == (720, 960, 3)
    assert snapshot.read_bytes()[:2] == b"\xff\xd8"  # JPEG
    # The box is drawn: the pixels on its left edge are the green of a readable-width plate.
    x1, y1, x2, y2 = (int(round(v)) for v in report["plates"][0]["box"])
    edge = image[y1 + 5 : y2 - 5, x1].astype(int)
    assert (edge[:, 1] > 150).mean() > 0.8 and (edge[:, 2] < 100).mean() > 0.8


def test_h265_clip_report_and_advice(h265_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, err = probe_json(capsys, str(h265_clip), "--frames", "4")
    assert report["codec"] == "hevc" and report["fourcc"] in ("hevc", "hev1", "hvc1")
    assert (report["width"], report["height"]) == (640, 480)
    assert report["fps_nominal"] == pytest.approx(6.0) and report["frames_read"] == 4
    plate = max(report["plates"], key=lambda p: p["width_px"])
    assert 110 <= plate["width_px"] <= 170
    advice = report["advice"]
    assert any("6.0 fps is below 8" in a for a in advice)
    assert any("640x480 is below 720p" in a for a in advice)
    assert any(a.startswith("H.265 stream: fine, decoded by FFmpeg") for a in advice)
    assert "hevc, 640x480" in err and "advice:" in err


def test_codec_from_opencv_without_ffprobe(h265_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe.shutil, "which", lambda name: None)  # no ffprobe on PATH
    report, image = probe.probe_source(parse_source(str(h265_clip)), SourceOptions(), frames=2)
    assert report.codec == "hevc" and report.codec_from == "opencv" and report.profile is None
    assert report.plates is None and report.frames_read == 2 and image is not None


def test_no_detect_reports_the_stream_only(h264_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, err = probe_json(capsys, str(h264_clip), "--no-detect", "--frames", "3")
    assert report["plates"] is None and report["detector_input_size"] is None
    assert report["frames_read"] == 3 and report["best_frame"] == 2  # the last frame read
    assert report["codec"] == "h264" and report["advice"] == []
    assert "not checked (--no-detect)" in err


# ------------------------------------------------------------------------------------------------ errors
def test_unreachable_rtsp_names_the_stream_without_its_password() -> None:
    url = f"rtsp://user:secret@127.0.0.1:{free_port()}/x"
    result = subprocess.run(
        [sys.executable, "-m", "anpr_edge", "probe", url, "--timeout", "2", "--rtsp-transport", "udp"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "secret" not in result.stderr and "secret" not in result.stdout
    assert "Traceback" not in result.stderr
    assert "anpr-edge: error:" in result.stderr
    assert "rtsp://user:***@127.0.0.1" in result.stderr and "cannot open" in result.stderr
    assert "RTSP over udp" in result.stderr


def test_stream_with_credentials_is_reported_redacted(h264_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stream that opens (an HTTP server sending the clip): the JSON and summary show no password."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=h264_clip.parent))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://user:secret@127.0.0.1:{server.server_address[1]}/{h264_clip.name}"
        report, err = probe_json(capsys, url, "--no-detect", "--frames", "3", "--timeout", "5")
    finally:
        server.shutdown()
        server.server_close()
    assert report["kind"] == "stream" and report["codec"] == "h264" and report["frames_read"] >= 1
    assert report["source"] == url.replace("user:secret@", "user:***@")
    assert "secret" not in json.dumps(report) and "secret" not in err


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_probe(str(tmp_path / "nope.mp4"), "--no-detect") == 2
    out, err = capsys.readouterr()
    assert out == "" and f"video file not found: {tmp_path / 'nope.mp4'}" in err


def test_not_a_video_and_bad_snapshot_paths(
    tmp_path: Path, h264_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    assert run_probe(str(text), "--no-detect") == 1
    assert "cannot decode" in capsys.readouterr().err
    # Checked before the source is opened.
    assert run_probe(str(h264_clip), "--no-detect", "--snapshot", str(tmp_path / "no" / "s.jpg")) == 2
    assert "folder does not exist" in capsys.readouterr().err
    assert run_probe(str(h264_clip), "--no-detect", "--snapshot", str(tmp_path / "s.xyz")) == 2
    assert "use .jpg or .png" in capsys.readouterr().err


def test_arguments() -> None:
    parser = argparse.ArgumentParser(prog="anpr-edge")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["probe", "0"])
    assert (args.frames, args.rtsp_transport, args.timeout) == (25, "tcp", 5.0)
    assert not args.no_detect and args.snapshot is None and args.config is None
    assert args.handler is probe.cmd_probe
    for bad in (["--rtsp-transport", "http"], ["--frames", "0"], ["--timeout", "-1"]):
        with pytest.raises(SystemExit) as caught:
            parser.parse_args(["probe", "x.mp4", *bad])
        assert caught.value.code == 2


def test_registered_in_the_main_cli(h264_clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from anpr_edge import cli

    assert cli.main(["probe", str(h264_clip), "--no-detect", "--frames", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["frames_read"] == 2


# ------------------------------------------------------------------------------------------------ advice
def report_with(*widths: float, **fields: object) -> ProbeReport:
    plates = [ProbedPlate(box=(100.0, 100.0, 100.0 + w, 100.0 + w / 4), confidence=0.8, text="AB123CD",
                          text_confidence=0.9, input_width_px=w / 4) for w in widths]
    defaults: dict[str, object] = dict(source="cam.mp4", kind="file", width=1920, height=1080, codec="h264",
                                       fps_nominal=25.0, frames_read=25, detector_input_size=320, plates=plates)
    defaults.update(fields)
    return ProbeReport(**defaults)  # type: ignore[arg-type]


def test_advise_nothing_when_all_is_well() -> None:
    assert advise(report_with(150.0)) == []
    assert advise(report_with(MIN_OCR_PLATE_PX)) == []  # thresholds are inclusive of "good enough"


def test_advise_no_plate() -> None:
    (advice,) = advise(report_with(frames_read=25))
    assert advice == "no plate in 25 frames: point the camera at traffic or use a clip with cars"
    assert advise(report_with(frames_read=1))[0].startswith("no plate in 1 frame:")
    assert advise(report_with(plates=None)) == []  # --no-detect: plates not checked, no plate advice


def test_advise_plate_too_small_for_the_detector() -> None:
    (advice,) = advise(report_with(MIN_DETECT_PLATE_PX - 8))
    assert "32 px: too small for the detector at this size" in advice
    assert "zoom in, give the camera an roi around the lane" in advice and "raise the detector input size" in advice and "at 320 px, where the plate is 8 px" in advice


def test_advise_plate_detectable_but_too_small_to_read() -> None:
    for width in (MIN_DETECT_PLATE_PX, 70.0, MIN_OCR_PLATE_PX - 1):
        (advice,) = advise(report_with(width))
        assert "detectable but the OCR needs ~100+ px for reliable reads: zoom in or move closer" in advice
    # The widest plate decides: a small plate far away next to a readable one needs nothing.
    assert advise(report_with(20.0, 180.0)) == []


def test_advise_frame_rate_uses_the_measured_rate() -> None:
    assert any(f"below {MIN_FPS:g}" in a for a in advise(report_with(150.0, fps_nominal=5.0)))
    assert advise(report_with(150.0, fps_nominal=MIN_FPS)) == []
    # A camera declaring 25 fps that delivers 4 gets the advice; one whose rate is unknown does not.
    assert any("4.0 fps is below" in a for a in advise(report_with(150.0, fps_nominal=25.0, fps_measured=4.0)))
    assert advise(report_with(150.0, fps_nominal=None)) == []


def test_advise_resolution_and_codec() -> None:
    (advice,) = advise(report_with(150.0, width=1280, height=719))
    assert "1280x719 is below 720p" in advice and "main stream" in advice
    assert advise(report_with(150.0, width=1280, height=720)) == []
    (advice,) = advise(report_with(150.0, codec="hevc"))
    assert advice.startswith("H.265 stream: fine, decoded by FFmpeg") and "Jetson" in advice


def test_advise_plate_formats_from_the_reads() -> None:
    def plate(text: str, confidence: float = 0.9, fmt: str | None = None) -> ProbedPlate:
        return ProbedPlate(box=(100.0, 100.0, 250.0, 137.0), confidence=0.8, text=text, text_confidence=confidence,
                           input_width_px=40.0, format=fmt)

    # None configured: the specific formats every sure read fits (GENERIC, which fits all, is not offered).
    (advice,) = advise(report_with(plates=[plate("AB123CD"), plate("EF456GH")], formats_configured=[]))
    assert advice.startswith("no plate formats configured: the plates read here (AB123CD, EF456GH) fit the formats")
    assert "FR" in advice and "IT" in advice and "GENERIC" not in advice and "formats.regions" in advice
    (advice,) = advise(report_with(plates=[plate("AB123CD"), plate("A123BC77")], formats_configured=[]))
    assert "fit no single built-in format" in advice
    # Unsure reads are no evidence of the site's format; unknown configuration (None): no advice either.
    assert advise(report_with(plates=[plate("AB123CD", confidence=0.2)], formats_configured=[])) == []
    assert advise(report_with(plates=[plate("AB123CD", confidence=0.45)], formats_configured=[]))  # a sure read
    assert advise(report_with(plates=[plate("AB123CD")], formats_configured=None)) == []
    # Configured: only reads that fit none of them are pointed out.
    assert advise(report_with(plates=[plate("AB123CD", fmt="FR")], formats_configured=["FR"])) == []
    (advice,) = advise(report_with(plates=[plate("A123BC77")], formats_configured=["FR", "UK"]))
    assert advice.startswith("plates read here (A123BC77) fit none of formats.regions [FR, UK]")


def test_advice_order_and_combination() -> None:
    advice = advise(report_with(30.0, width=640, height=480, fps_nominal=5.0, codec="hevc"))
    assert [a.split()[0] for a in advice] == ["widest", "5.0", "resolution", "H.265"]


def test_fourcc_and_codec_names() -> None:
    assert fourcc_text(cv2.VideoWriter_fourcc(*"avc1")) == "avc1"
    assert fourcc_text(cv2.VideoWriter_fourcc(*"hev1")) == "hev1"
    assert fourcc_text(0.0) is None and fourcc_text(float("nan")) is None
    assert fourcc_text(float(0x01020304)) is None  # not printable: no garbage in the report
    assert [codec_family(n) for n in ("avc1", "H264", "hvc1", "hev1", "HEVC", "MJPG", None)] == [
        "h264", "h264", "hevc", "hevc", "hevc", "mjpeg", None]
