"""Test helpers that run real network peers in child processes.

RtspServer drives tests/rtsp_server.py, which needs GStreamer's RTSP server through python3-gi.
Those are Debian packages importable only from the system interpreter, never from the project
venv, so the server always runs under SYSTEM_PYTHON in its own process.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from anpr_edge.bench.broker import free_port, stop_process_group

__all__ = ["RtspServer", "free_port", "rtsp_available", "stop_process_group"]

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")
RTSP_INSTALL_HINT = (
    "apt-get install gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
    "gstreamer1.0-plugins-ugly gstreamer1.0-libav python3-gi"
)

_rtsp_available: tuple[bool, str] | None = None


def rtsp_available() -> tuple[bool, str]:
    """(ok, reason) for pytest.skip: can the system Python import GstRtspServer? Cached."""
    global _rtsp_available
    if _rtsp_available is None:
        # Besides the typelib, the elements the server's pipelines need (x264enc is in -ugly,
        # avdec_* in -libav: both are easy to miss).
        code = (
            "import sys, gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0')\n"
            "from gi.repository import Gst, GstRtspServer\n"
            "Gst.init(None)\n"
            "need = 'filesrc decodebin qtdemux videoconvert appsink appsrc x264enc rtph264pay'.split()\n"
            "missing = [e for e in need if Gst.ElementFactory.find(e) is None]\n"
            "sys.exit('missing GStreamer elements: ' + ' '.join(missing) if missing else 0)\n"
        )
        try:
            r = subprocess.run([SYSTEM_PYTHON, "-c", code], capture_output=True, text=True, timeout=30)
            ok, detail = r.returncode == 0, (r.stderr.strip().splitlines() or [""])[-1]
        except (OSError, subprocess.TimeoutExpired) as e:
            ok, detail = False, str(e)
        _rtsp_available = (True, "") if ok else (
            False, f"GStreamer RTSP server unavailable ({detail}): {RTSP_INSTALL_HINT}")
    return _rtsp_available


class RtspServer:
    """A looping RTSP camera serving `clip_path` at rtsp://127.0.0.1:PORT/stream.

    freeze()/resume() stop and continue the whole process (a stalled camera: sockets stay open,
    nothing is sent); kill() makes it vanish abruptly (camera unplugged).
    """

    def __init__(self, clip_path, port: int | None = None, mount: str = "/stream"):
        self.clip_path = str(clip_path)
        self.port = port
        self.mount = mount if mount.startswith("/") else "/" + mount
        self.proc: subprocess.Popen | None = None
        self._stderr = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("RtspServer not started")
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def start(self, timeout: float = 15) -> "RtspServer":
        if self.proc is not None:
            raise RuntimeError("RtspServer already started")
        if not Path(self.clip_path).is_file():
            raise FileNotFoundError(self.clip_path)
        if self.port is None:
            self.port = free_port()
        # stderr goes to a file, not a pipe: nobody drains it while the test runs, and GStreamer
        # warnings could otherwise fill the pipe and block the server mid-test.
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port), "--file", self.clip_path,
             "--mount", self.mount],
            stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: signals reach it alone, not pytest
        )
        if not self._wait_ready(timeout):
            try:
                rc = self.proc.wait(timeout=1)  # EOF on stdout usually means it is exiting
            except subprocess.TimeoutExpired:
                rc = None
            self.stop()
            state = f"exited with status {rc}" if rc is not None else f"no READY within {timeout} s"
            raise RuntimeError(f"RTSP test server on port {self.port} failed to start ({state}); "
                               f"stderr:\n{self.stderr_text()}")
        return self

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            buf = b""
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(left):
                    return False
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:  # EOF: the script died
                    return False
                buf += chunk
                if b"READY\n" in buf:
                    return True
        return False

    def stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def _signal(self, sig) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError("RtspServer is not running")
        os.killpg(self.proc.pid, sig)

    def freeze(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 3 s. Safe to call at any time, any number of times."""
        proc = self.proc
        if proc is not None:
            stop_process_group(proc, timeout=3)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "RtspServer":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
