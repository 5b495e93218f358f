#!/usr/bin/python3
"""Test RTSP camera: serves an mp4 in an endless loop on rtsp://127.0.0.1:PORT/MOUNT.

Run with the *system* Python (needs python3-gi and the GStreamer RTSP server typelib):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --file clip.mp4 [--mount /stream]

Prints READY (flushed) once the server is listening and the first frame has been decoded,
and exits with status 0 on SIGTERM/SIGINT. Driven from tests via tests/servers.py.

Design: two pipelines.
  * a "camera" pipeline we own:  filesrc ! decodebin ! videoconvert ! appsink (sync=true),
    which loops by seeking back to 0 on EOS and paces frames in real time;
  * the RTSP media pipeline:     appsrc (live) ! videoconvert ! x264enc ! rtph264pay,
    fed by the camera pipeline with fresh, monotonically increasing timestamps.
Looping inside the RTSP media pipeline itself does not work well: `multifilesrc loop=true !
qtdemux` stops after one pass (qtdemux does not accept a second mp4 header mid-stream), and the
server owns the media's bus, so there is no clean place to catch EOS and seek back.
Keeping the file loop in a separate pipeline also makes the served stream look like a real
camera: live, not seekable, always "on air" whether or not anyone is watching.
"""
import argparse
import signal
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# Decode + re-encode so any clip works (cv2 writes MPEG-4 part 2 "mp4v", which RTSP clients can't
# be assumed to decode), and so we control the GOP: a keyframe every 15 frames lets a client that
# joins a shared stream start decoding within ~0.6 s. config-interval=-1 repeats SPS/PPS with
# every IDR for the same reason. threads=1: zerolatency otherwise cuts each frame into one slice
# per thread, rtph264pay then repeats SPS/PPS before every IDR *slice*, and ffmpeg splits such a
# keyframe into two packets with the same timestamp ("concealing ... errors in I frame").
MEDIA_LAUNCH = (
    "( appsrc name=src is-live=true format=time do-timestamp=false"
    "  max-buffers=4 leaky-type=downstream"  # a stalled consumer drops old frames, like a camera
    " ! videoconvert"
    " ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 threads=1"
    " ! video/x-h264,profile=constrained-baseline"
    " ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)


class Camera:
    """Decodes the clip forever in real time and forwards each frame to the current appsrc."""

    def __init__(self, path):
        self.pipeline = Gst.parse_launch(
            "filesrc name=file ! decodebin ! videoconvert ! video/x-raw,format=I420"
            " ! appsink name=sink sync=true emit-signals=true max-buffers=2 drop=true"
        )
        self.pipeline.get_by_name("file").set_property("location", path)
        self.pipeline.get_by_name("sink").connect("new-sample", self._on_sample)
        self.caps = None
        self.first_frame = threading.Event()
        self._lock = threading.Lock()
        self._appsrc = None

    def start(self, on_error):
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::eos", self._on_eos)
        bus.connect("message::error", lambda _b, msg: on_error(msg.parse_error()))
        self.pipeline.set_state(Gst.State.PLAYING)

    def stop(self):
        self.pipeline.set_state(Gst.State.NULL)

    def attach(self, appsrc):
        # Called per RTSP media (a new one each time the first client of a shared media arrives).
        with self._lock:
            appsrc.set_property("caps", self.caps)
            self._appsrc = appsrc

    def _on_eos(self, _bus, _msg):
        # A flushing seek resets the pipeline's running time, so appsink keeps real-time pacing.
        self.pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)

    def _on_sample(self, sink):
        sample = sink.emit("pull-sample")
        if self.caps is None:
            self.caps = sample.get_caps()
            self.first_frame.set()
        with self._lock:
            appsrc = self._appsrc
        if appsrc is None:
            return Gst.FlowReturn.OK
        clock = appsrc.get_clock()
        if clock is None:  # media pipeline not running (being prepared or torn down)
            return Gst.FlowReturn.OK
        # Restamp with the media pipeline's running time: the file's own timestamps jump back at
        # every loop, which a live RTSP stream must never do.
        buf = sample.get_buffer().copy()
        buf.pts = clock.get_time() - appsrc.get_base_time()
        buf.dts = Gst.CLOCK_TIME_NONE
        appsrc.emit("push-buffer", buf)  # FLUSHING after teardown is fine: nobody is watching
        return Gst.FlowReturn.OK


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--mount", default="/stream")
    args = ap.parse_args()

    Gst.init(None)
    loop = GLib.MainLoop()
    status = {"rc": 0}

    def fail(err):
        gerror, debug = err
        print(f"rtsp_server: pipeline error: {gerror.message} ({debug})", file=sys.stderr, flush=True)
        status["rc"] = 1
        loop.quit()

    camera = Camera(args.file)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    # Clients asking for UDP get RTP/RTCP sockets too, bound to 0.0.0.0 unless a unicast pool
    # says otherwise (a taken port pair is skipped, so parallel servers can share the range).
    pool = GstRtspServer.RTSPAddressPool()
    pool.add_range("127.0.0.1", "127.0.0.1", 40000, 49999, 0)

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(MEDIA_LAUNCH)
    factory.set_shared(True)
    factory.set_address_pool(pool)
    factory.connect("media-configure", lambda _f, media: camera.attach(
        media.get_element().get_child_by_name("src")))
    server.get_mount_points().add_factory(args.mount, factory)

    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    # Started only once listening, so a failed bind exits before any streaming thread exists.
    camera.start(fail)

    # Only claim READY once a frame exists: media-configure needs the caps, and a client that
    # connects earlier would otherwise get a stream that never starts.
    def wait_first_frame():
        if camera.first_frame.is_set():
            print("READY", flush=True)
            return False
        return True

    GLib.timeout_add(20, wait_first_frame)
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    camera.stop()
    return status["rc"]


if __name__ == "__main__":
    sys.exit(main())
