"""Typed configuration, validated at load.

Every option is a typed, documented field (the ``description`` is the reference the README is written
from). Loading turns every mistake into one ``ConfigError`` that names the key path and the file:
unknown keys (with a suggestion), wrong types, out-of-range values, missing model or source files,
duplicate YAML keys. Relative paths are resolved against the config file's folder.

Secrets: ``mqtt.password`` is a ``SecretStr`` (never printed); ``$ANPR_EDGE_MQTT_PASSWORD`` or
``mqtt.password_file`` override it so the YAML need not hold the secret.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from anpr_edge import paths
from anpr_edge.crop import CropCut
from anpr_edge.errors import ConfigError
from anpr_edge.source_spec import SourceSpec, parse_source

PASSWORD_ENV = "ANPR_EDGE_MQTT_PASSWORD"
HASH_SALT_ENV = "ANPR_EDGE_HASH_SALT"


def _base_dir(info: ValidationInfo) -> Path | None:
    return (info.context or {}).get("base_dir")


def _existing_file(value: object, info: ValidationInfo) -> Path:
    """A path that must exist and be readable, resolved against the config file's folder."""
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise ValueError("must be a file path")
    path = Path(value).expanduser()
    base = _base_dir(info)
    if not path.is_absolute() and base is not None:
        path = base / path
    path = path.resolve()
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"file not readable (permissions): {path}")
    return path


def _relative_to_config(value: Path | None, info: ValidationInfo) -> Path | None:
    """A path that need not exist yet (an output), resolved against the config file's folder."""
    base = _base_dir(info)
    if value is None or value.is_absolute() or base is None:
        return value
    return (base / value).resolve()


def _source(value: object, info: ValidationInfo) -> SourceSpec:
    return parse_source(value, _base_dir(info))


ExistingFile = Annotated[Path, BeforeValidator(_existing_file)]
OutputPath = Annotated[Path, AfterValidator(_relative_to_config)]
Source = Annotated[SourceSpec, BeforeValidator(_source)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- models
class DetectorConfig(Section):
    path: ExistingFile | None = Field(
        None, description="Plate detector ONNX model. Default: the bundled engines/plate_det.onnx."
    )
    input_size: int | None = Field(
        None,
        ge=160,
        le=1920,
        multiple_of=32,
        description="Letterbox size in pixels (multiple of 32). Default: the model's own input size.",
    )
    fallback_size: int | None = Field(
        512,
        ge=160,
        le=1920,
        multiple_of=32,
        description="`anpr-edge read` only: a photo in which the detector finds no plate at input_size is looked "
        "at again at this larger size, which finds small, distant plates (docs/BENCHMARKS.md); it costs a second "
        "detector run on those photos only. null, or a size not above input_size, turns it off. The daemon does "
        "not use it: an approaching car's plate grows in later frames.",
    )
    fallback_below: Probability | None = Field(
        0.7,
        description="`anpr-edge read` only: also take the second look (fallback_size) at a photo whose plates "
        "found at input_size all read below this confidence, as `read` reports it (the chance the read is right, "
        "by the OCR model's read calibration) (a grille found instead of a distant plate, a plate too small to "
        "read); the boxes it adds are read as well. null: only photos with no plate found.",
    )
    confidence: Probability = Field(0.35, description="Minimum detector score for a plate box.")
    iou: Probability = Field(0.5, description="IoU above which overlapping boxes are merged by NMS.")
    max_detections: int = Field(20, ge=1, le=1000, description="Most plates kept per frame.")


class OcrConfig(Section):
    path: ExistingFile | None = Field(
        None, description="Plate OCR ONNX model. Default: the bundled engines/ocr.onnx."
    )
    min_confidence: Probability = Field(
        0.0, description="Reads below this confidence are not reported by `anpr-edge read`."
    )


class ModelsConfig(Section):
    detector: DetectorConfig = DetectorConfig()
    ocr: OcrConfig = OcrConfig()

    def detector_path(self) -> Path:
        return self.detector.path or paths.bundled_model(paths.DETECTOR_MODEL)

    def ocr_path(self) -> Path:
        return self.ocr.path or paths.bundled_model(paths.OCR_MODEL)


# Measured with eval-ocr on the validation splits (docs/BENCHMARKS.md).
RECTIFY_DEFAULT = False
# Chosen among cut sets of up to four reads by the vote's exact match on the validation splits, read as the
# runtime cuts detector boxes and as tight crop images (docs/BENCHMARKS.md, "Reading each plate in several views").
PHOTO_CUTS_DEFAULT: tuple[CropCut, ...] = ("wide", "cw", "ccw")


class CropConfig(Section):
    padding: float = Field(
        0.15,
        ge=0.0,
        le=1.0,
        description="Margin added around each detector box before cropping, as a fraction of the box "
        "width/height on each side, so no part of the plate is lost to a tight box.",
    )
    rectify: bool = Field(
        RECTIFY_DEFAULT,
        description="Turn plates that sit tilted in their box level before reading (the angle is estimated from "
        "the crop's edges; rolls under 4 degrees are left alone).",
    )
    photo_cuts: list[CropCut] = Field(
        list(PHOTO_CUTS_DEFAULT),
        description="Other cuts of each plate that `anpr-edge read`, `ocr`, `eval-ocr` and `eval-read` read besides "
        "the box cut; the reads of all cuts are voted into one, as a track votes its frames: wide (7% more margin "
        "per side), level (the plate turned level, only when it sits tilted 4-35 degrees in its box), cw / ccw "
        "(turned 8 degrees clockwise / counter-clockwise). A photo gets one look, so it gets several views: each "
        "costs one more OCR read (batched). The default was chosen on the validation splits (docs/BENCHMARKS.md).",
    )
    extra_cuts: list[CropCut] = Field(
        [],
        description="The same for the daemon (`anpr-edge run`) and the video benchmarks: the cuts of each plate "
        "read in every frame, voted into that frame's read. [wide, cw, ccw] gave 8 more of 229 benchmark passages "
        "the right text at 28% fewer frames per second on one stream; off by default until the multi-camera "
        "budget is measured with it (docs/BENCHMARKS.md).",
    )

    @field_validator("photo_cuts", "extra_cuts")
    @classmethod
    def _distinct_cuts(cls, cuts: list[CropCut]) -> list[CropCut]:
        if len(set(cuts)) != len(cuts):
            raise ValueError("each cut at most once")
        return cuts


class InferenceConfig(Section):
    backend: Literal["auto", "onnxruntime", "tensorrt"] = Field(
        "auto",
        description="auto (default: TensorRT when it is installed and a GPU is present, else ONNX Runtime; the "
        "choice is logged), onnxruntime (CPU) or tensorrt (GPU boxes and Jetson; an error where it cannot run).",
    )
    engine_cache_dir: OutputPath | None = Field(
        None,
        description="TensorRT plan cache (relative to this file). Default: engines/ in the cache directory "
        "($ANPR_EDGE_CACHE_DIR, systemd's /var/cache/anpr-edge, or ~/.cache/anpr-edge).",
    )
    threads: int = Field(
        2, ge=0, le=256, description="CPU threads per model for ONNX Runtime (0: ONNX Runtime decides)."
    )


# -------------------------------------------------------------------------------------------- cameras
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class CountingLineConfig(Section):
    start: tuple[Fraction, Fraction] = Field(
        ...,
        description="First point [x, y] of the line, as fractions of the frame width and height (so the line "
        "survives a change of stream resolution).",
    )
    end: tuple[Fraction, Fraction] = Field(..., description="Second point [x, y] of the line, as fractions.")
    in_side: Literal["left", "right"] = Field(
        "right",
        description="The side of the line, looking from start to end, that counts as inside: a plate that "
        "crosses to it (or heads to it) is 'in', the other way 'out'.",
    )

    @model_validator(mode="after")
    def _two_points(self) -> CountingLineConfig:
        if self.start == self.end:
            raise ValueError("start and end must be two different points")
        return self


class CameraConfig(Section):
    id: str = Field(
        ...,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
        description="Camera name used in events and MQTT topics: letters, digits, '_' and '-'.",
    )
    source: Source = Field(
        ...,
        description="Video file (relative to this file), rtsp:// / http(s):// URL, /dev/videoN or camera "
        "index, or 'demo' for the built-in synthetic clip.",
    )
    enabled: bool = Field(True, description="Set false to keep a camera configured but not run it.")
    fps_limit: float | None = Field(
        None, gt=0, le=240, description="Process at most this many frames per second (None: all)."
    )
    realtime: bool = Field(
        False,
        description="File sources only: pace frames at the clip's native rate (true) or read as fast as "
        "the pipeline goes (false). Live sources always run in real time.",
    )
    loop: bool = Field(False, description="File sources only: restart at the end instead of stopping.")
    open_timeout_s: float = Field(5.0, gt=0, le=120, description="Give up opening the source after this.")
    read_timeout_s: float = Field(
        5.0, gt=0, le=120, description="A live source with no frame for this long counts as stalled."
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTSP transport: tcp survives packet loss without smeared frames; udp has less latency."
    )
    reconnect_min_s: float = Field(
        1.0, gt=0, le=60, description="First reconnect delay after a live source fails; doubles per failure."
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, le=600, description="Longest reconnect delay (each delay is jittered by +-20%)."
    )
    counting_line: CountingLineConfig | None = Field(
        None, description="Line that gives events a direction (in/out); without it only the motion angle."
    )
    roi: list[tuple[Fraction, Fraction]] | None = Field(
        None,
        min_length=3,
        description="Region of interest: a polygon of [x, y] points as fractions of the frame; plates whose "
        "box centre lies outside are ignored (parked cars, the other lane). None: the whole frame.",
    )
    detect_in_roi: bool = Field(
        True, description="With an roi: the detector looks only at the ROI's bounding rectangle plus "
        "detect_margin of the frame, so plates in it get more of the detector's input pixels at the same cost "
        "(small, distant plates are found sooner). false: the whole frame, the ROI only filters.",
    )
    detect_margin: float = Field(
        0.1, ge=0.0, le=0.5, description="How far the detector's ROI window reaches beyond the ROI's bounding "
        "rectangle on each side, as a fraction of the frame's width and height, so a plate that straddles the "
        "ROI's edge is still found whole. Smaller: plates larger to the detector, for an ROI drawn with room to "
        "spare; larger: for an ROI drawn tight. Only with an roi and detect_in_roi.",
    )
    detect_tiles: int = Field(
        1, ge=1, le=3, description="1: the detector sees the frame (or its ROI window) once. 2 or 3: also as that "
        "many x that many overlapping tiles, each at the detector's full input size, so plates small against a "
        "wide view get up to 2-3 times the pixels, for 5 or 10 times the detector work per frame. For wide views "
        "where plates can be anywhere; with a lane, an roi is cheaper.",
    )
    confidence: Probability | None = Field(
        None, description="Detector score threshold for this camera (overrides models.detector.confidence)."
    )
    min_text_confidence: Probability | None = Field(
        None, description="Voted-text confidence below which a passage counts as unread, for this camera "
        "(overrides events.min_confidence).",
    )
    formats: list[str] | None = Field(
        None, description="Plate formats for this camera, in order of preference (overrides formats.regions).",
    )

    @model_validator(mode="after")
    def _roi_is_an_area(self) -> CameraConfig:
        if self.roi is not None:
            points = self.roi
            area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1])))
            if area < 1e-4:
                raise ValueError("roi: the polygon encloses no area (points in a line or repeated)")
        return self

    @field_serializer("source")
    def _redacted_source(self, source: SourceSpec) -> str:
        # Dumps feed status messages and check-config output: never show stream credentials.
        return str(source)


# ------------------------------------------------------------------------------ tracking, voting, events
class TrackingConfig(Section):
    iou_threshold: Probability = Field(
        0.2, description="Overlap (IoU) with a track's predicted box that lets a detection join the track."
    )
    max_distance: float = Field(
        1.0,
        ge=0.0,
        le=20.0,
        description="Or: distance from the predicted box centre, in plate widths, within which a confident "
        "detection joins the track (fast small plates overlap nothing from frame to frame).",
    )
    high_confidence: Probability = Field(
        0.5,
        description="Detections at or above this score are matched first and may start tracks; weaker ones "
        "only continue a track seen in the previous frame (ByteTrack).",
    )
    min_hits: int = Field(2, ge=1, le=100, description="Detections before a track counts as a plate passage.")
    max_age: int = Field(
        10,
        ge=0,
        le=10_000,
        description="Processed frames a track may go unseen (occlusion) before it ends and its event is due.",
    )
    fragment_hold_s: float = Field(
        1.0,
        ge=0.0,
        le=30.0,
        description="A short track (fewer than fragment_max_hits detections, vote not settled) that ends is "
        "held this long: a track that starts near where it ended absorbs it (a small plate detected on and "
        "off as it enters, then steadily), so one car gives one event. A longer unsettled track lost in view "
        "is held too and joins only a track whose text is at most two edits from its own (a distant plate "
        "read weakly, lost while it came closer). A short track starting this soon after a passage ended, near "
        "where it was last seen, that reads about the same text or too weakly to tell, is that plate's tail "
        "(cut by the border as it leaves the frame) and yields no event. 0: every track is its own passage.",
    )
    fragment_max_hits: int = Field(
        8, ge=1, le=1000, description="Tracks with fewer detections than this may be fragments (see fragment_hold_s)."
    )


def _monotone_points(points: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
    if points is None:
        return None
    if len(points) < 2:
        raise ValueError("give at least two [score, confidence] points")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if any(b <= a for a, b in zip(xs, xs[1:])) or any(b < a for a, b in zip(ys, ys[1:])):
        raise ValueError("points must have increasing scores and non-decreasing confidences")
    return points


class VotingConfig(Section):
    candidates: int = Field(5, ge=1, le=20, description="Alternative texts reported per event (top N, best first).")
    settle_reads: int = Field(
        3, ge=1, le=1000, description="A track's vote is settled once this many reads agree with the voted text..."
    )
    settle_agreement: Probability = Field(
        0.7, description="... and they carry at least this share of the track's read weight."
    )
    # 1.0 was chosen on the labelled passage clips (bench-passages, seeds 1 and 2, 2026-12-04): against 0 it
    # took correct text from 65.0 to 76.7% and from 70.4 to 83.3% for 0.5 s later events; 2 read no more right.
    settle_weight: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="... and weigh at least this much together (a read weighs its confidence times crop quality: "
        "1 for a certain read of a sharp plate at least 148 px wide), so reads of a small, distant plate do "
        "not settle it before it comes closer.",
    )
    stop_reading_when_settled: bool = Field(
        True, description="Stop running the OCR on a track once its vote is settled (it is still tracked)."
    )
    calibration: Annotated[
        list[tuple[Probability, Probability]] | None, AfterValidator(_monotone_points)
    ] = Field(
        None,
        description="Map from the vote's score to the reported confidence, as [score, confidence] points "
        "(linear in between). Default: the map stored in the OCR model (measured for it with `anpr-edge "
        "fit-calibration` on labelled passages; the bundled model has one), else the score as it is.",
    )


class EventsConfig(Section):
    early: bool = Field(
        True,
        description="Emit a passage's event as soon as its vote is settled rather than when the track ends "
        "(a car waiting at a barrier gets its answer while it waits).",
    )
    max_wait_s: float | None = Field(
        3.0,
        gt=0,
        description="With events.early: a plate in view this long whose reads still disagree (say a band "
        "read as a letter on every other frame) gets its event with the current vote anyway, so a car "
        "waiting at a barrier is never left waiting; null waits for the track to end.",
    )
    emit_unread: bool = Field(
        False, description="Also emit passages whose plate was not read: text null and a reason."
    )
    min_confidence: Probability = Field(
        0.0, description="A voted text below this confidence counts as not read."
    )
    dedup_window_s: float = Field(
        30.0,
        ge=0.0,
        le=86_400.0,
        description="A passage with the same text within this many seconds of the last sighting of an earlier "
        "one on the camera is the same car (lost and found again, idling at a barrier) and is not reported; so is "
        "one that appears, within it, where a standing plate was lost, unless both read surely and differently.",
    )
    dedup_max_distance: int = Field(
        1, ge=0, le=3, description="Edit distance up to which two texts count as the same for deduplication."
    )
    crop: Literal["base64", "file", "none"] = Field(
        "base64",
        description="Best plate crop: inline JPEG in the event (base64), a JPEG file on this box (file, its "
        "path in the event), or none.",
    )
    crop_dir: OutputPath | None = Field(
        None,
        description="Folder for crop: file (relative to this file). Default: crops/ in the state directory "
        "($ANPR_EDGE_STATE_DIR, $STATE_DIRECTORY or ~/.local/state/anpr-edge).",
    )
    snapshot: bool = Field(False, description="Add the full frame of the best read to the event (JPEG, base64).")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of crops and snapshots.")
    hash_text: bool = Field(
        False,
        description="Privacy: publish a salted hash of the plate text (text_hash) instead of the text; "
        "candidates are left out and list matches hashed. Set crop: none and snapshot: false too.",
    )
    hash_salt: SecretStr | None = Field(
        None,
        description=f"Secret salt of the text hash (HMAC-SHA256); ${HASH_SALT_ENV} overrides it. Required "
        "with hash_text.",
    )

    @model_validator(mode="after")
    def _salt_for_hash(self) -> EventsConfig:
        if self.hash_text and self.hash_salt is None and not os.environ.get(HASH_SALT_ENV):
            raise ValueError(f"hash_text needs hash_salt (or ${HASH_SALT_ENV})")
        return self

    def effective_salt(self, environ: Mapping[str, str] | None = None) -> bytes:
        environ = os.environ if environ is None else environ
        if environ.get(HASH_SALT_ENV):
            return environ[HASH_SALT_ENV].encode("utf-8")
        return b"" if self.hash_salt is None else self.hash_salt.get_secret_value().encode("utf-8")


class FormatsConfig(Section):
    regions: list[str] = Field(
        default_factory=list,
        description="Plate formats that constrain reading, in order of preference: EU, FR, DE, ES, IT, UK, NL, "
        "PL, US, BR, BR-MERCOSUR, TN, CN, RU, UA, TR, IN, AR, GENERIC, or a name from custom. Empty: no constraint.",
    )
    custom: dict[str, list[str]] = Field(
        default_factory=dict,
        description="More formats: name -> patterns of slots L (letter), D (digit), A (either), [chars], "
        "each optionally repeated {n}, {m,n} or ?; e.g. {XX: ['LL-DDD-LL']}.",
    )
    min_ratio: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="A format is applied only if its text is at least this probable relative to the "
        "unconstrained reading; plates that fit no format are left as read.",
    )
    min_unaided_ratio: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="...and only if its text, without the look-alikes' probability (0/O, 8/B...), is at least "
        "this probable relative to the reading: one confident swap is fixed, several are not forced.",
    )
    trim_leading: bool = Field(
        True,
        description="A reading that fits no format but does without its first letter is reported "
        "without it: the EU band's country code or stars read as one more character (UCF058NS for CF058NS). "
        "A reading that fits a format as it is is never trimmed.",
    )
    allow: list[str] = Field(default_factory=list, description="Allow-list plates (events say which entry matched).")
    deny: list[str] = Field(default_factory=list, description="Deny-list plates (deny wins a tie with allow).")
    max_distance: int = Field(1, ge=0, le=3, description="Edit distance up to which a plate matches a list entry.")

    @model_validator(mode="after")
    def _known_formats(self) -> FormatsConfig:
        from anpr_edge.plate_formats import load_formats

        for name in self.custom:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", name):
                raise ValueError(f"custom format name {name!r}: letters, digits, '_', '.', '-'")
        # Every custom pattern is checked, used or not: a typo should not wait until it is enabled.
        load_formats([*self.regions, *self.custom], self.custom)  # ValueError names the format or pattern
        return self


# ----------------------------------------------------------------------------------------------- mqtt
class MqttTlsConfig(Section):
    ca_file: ExistingFile | None = Field(None, description="CA certificate (PEM) to verify the broker.")
    cert_file: ExistingFile | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: ExistingFile | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    insecure: bool = Field(False, description="Skip broker certificate verification. Testing only.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class HomeAssistantConfig(Section):
    enabled: bool = Field(
        False,
        description="Publish Home Assistant MQTT discovery configs (retained, on each connect): one sensor per "
        "camera showing its last plate.",
    )
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[^#+\s]+$", description="Home Assistant's MQTT discovery topic prefix."
    )


class MqttConfig(Section):
    enabled: bool = Field(False, description="Publish events to an MQTT broker.")
    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS).")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of plate events (1: at least once).")
    client_id: str | None = Field(None, description="MQTT client id. Default: anpr-edge-<device_id>.")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(
        None, description=f"Broker password. Prefer ${PASSWORD_ENV} or password_file to keep it out of this file."
    )
    password_file: ExistingFile | None = Field(None, description="File whose first line is the password.")
    topic_prefix: str = Field(
        "anpr", pattern=r"^[^#+\s]+$", description="First topic level: {prefix}/{device}/{camera}/plate."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive interval.")
    tls: MqttTlsConfig | None = Field(None, description="TLS settings; absent means plain TCP.")
    max_inflight: int = Field(
        10, ge=1, le=1000, description="Most events sent and not yet acknowledged (PUBACK) at any time."
    )
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First reconnect delay; doubles per failure.")
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="Longest reconnect delay (jittered).")
    outbox_path: OutputPath | None = Field(
        None,
        description="SQLite store-and-forward outbox (relative to this file). Default: outbox.sqlite in "
        "$ANPR_EDGE_STATE_DIR, systemd's $STATE_DIRECTORY or ~/.local/state/anpr-edge.",
    )
    outbox_max_events: int = Field(
        100_000, ge=1, le=100_000_000, description="Outbox bound: beyond it the oldest events are dropped (counted)."
    )
    outbox_max_age_h: float = Field(
        168.0, gt=0, le=87_600, description="Outbox bound: events older than this are dropped (counted)."
    )
    replay_rate: float = Field(
        250.0,
        gt=0,
        le=100_000,
        description="Backlog events sent per second after a reconnect (live events are not limited); 250/s "
        "drains a 10,000-event backlog in 40 s while live events keep a few ms latency (bench-mqtt).",
    )
    home_assistant: HomeAssistantConfig = Field(
        HomeAssistantConfig(), description="Home Assistant MQTT discovery (off by default)."
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        return self

    @model_validator(mode="after")
    def _reconnect_delays_in_order(self) -> MqttConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    def effective_password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The password to use: the environment variable, else the file, else the config value."""
        environ = os.environ if environ is None else environ
        if environ.get(PASSWORD_ENV):
            return environ[PASSWORD_ENV]
        if self.password_file is not None:
            lines = self.password_file.read_text(encoding="utf-8").splitlines()
            return lines[0] if lines else ""
        return self.password.get_secret_value() if self.password is not None else None


# ------------------------------------------------------------------------------------------- outputs
class OutputsConfig(Section):
    stdout: bool = Field(True, description="Write results as JSON lines on standard output.")
    jsonl_file: OutputPath | None = Field(
        None, description="Also append results as JSON lines to this file (relative to this file)."
    )


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level (stderr).")
    format: Literal["text", "json"] = Field(
        "text",
        description="text: one readable line per record; json: one JSON object per line on stderr (ts, "
        "level, logger, msg, camera, exc) for journald, Loki and other log collectors. Credentials in URLs "
        "are masked in both.",
    )


# ------------------------------------------------------------------------------- health and metrics
class HttpConfig(Section):
    """The HTTP server: /healthz and /metrics (never authenticated), and the installer's web page with its
    JSON API (``/``, ``/api/...``), which shows plates, crops and live video: on a non-loopback ``host`` the
    page and API are served only with ``token`` and/or ``username``/``password`` set (without them they
    answer 403 and a warning is logged at start; health and metrics are served as before)."""

    enabled: bool = Field(
        True, description="Serve /healthz (JSON), /metrics (Prometheus) and the web page over HTTP."
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Address to listen on: loopback by default, so only this box can read them; 0.0.0.0 "
        "exposes health and metrics to the network (no authentication) and the web page only with a "
        "token or user/password.",
    )
    port: int = Field(9108, ge=0, le=65535, description="TCP port (0: any free port, logged at start).")
    token: SecretStr | None = Field(
        None,
        description="Access token of the web page and API: 'Authorization: Bearer <token>' or ?token=<token>. "
        "$ANPR_EDGE_HTTP_TOKEN overrides it. Never logged.",
    )
    username: str | None = Field(None, min_length=1, description="HTTP basic auth user of the web page and API.")
    password: SecretStr | None = Field(
        None, description="HTTP basic auth password (with username); $ANPR_EDGE_HTTP_PASSWORD overrides it."
    )
    events_keep: int = Field(
        1000, ge=0, le=1_000_000,
        description="Recent events kept for the web page (SQLite, with their crops); 0: none kept.",
    )
    events_max_age_h: float = Field(
        168.0, gt=0, le=87_600, description="Recent events older than this are deleted from the page's store."
    )
    events_path: OutputPath | None = Field(
        None,
        description="SQLite file of the recent events (relative to this file). Default: events.sqlite in "
        "the state directory ($ANPR_EDGE_STATE_DIR, $STATE_DIRECTORY or ~/.local/state/anpr-edge).",
    )

    @field_validator("token", "password", mode="before")
    @classmethod
    def _secret_text(cls, value: object) -> object:
        # Errors about these keys must never quote them: numbers become text here, and the only other
        # complaint is a value error, which is never quoted.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and len(value) < 8:
            raise ValueError("must be at least 8 characters")
        return value

    @model_validator(mode="after")
    def _user_and_password_together(self) -> HttpConfig:
        if self.username is None and self.password is not None:
            raise ValueError("password needs username (HTTP basic auth)")
        if self.username is not None and self.password is None and not os.environ.get("ANPR_EDGE_HTTP_PASSWORD"):
            raise ValueError("username needs password (or $ANPR_EDGE_HTTP_PASSWORD)")
        return self

    def effective_token(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The web page's token: ``$ANPR_EDGE_HTTP_TOKEN``, else ``token``; None when neither is set."""
        environ = os.environ if environ is None else environ
        if environ.get("ANPR_EDGE_HTTP_TOKEN"):
            return environ["ANPR_EDGE_HTTP_TOKEN"]
        return self.token.get_secret_value() if self.token is not None and self.token.get_secret_value() else None

    def effective_password(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The basic auth password: ``$ANPR_EDGE_HTTP_PASSWORD``, else ``password`` (None without a user)."""
        if self.username is None:
            return None
        environ = os.environ if environ is None else environ
        if environ.get("ANPR_EDGE_HTTP_PASSWORD"):
            return environ["ANPR_EDGE_HTTP_PASSWORD"]
        return self.password.get_secret_value() if self.password is not None else None

    @property
    def loopback(self) -> bool:
        """Whether ``host`` is a loopback address (only this box can connect)."""
        import ipaddress

        name = self.host.strip().strip("[]").lower()
        if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(name).is_loopback  # 127.0.0.0/8, ::1
        except ValueError:
            return False  # a host name or another address: reachable from the network

    @property
    def web_allowed(self) -> bool:
        """The web page and API are served on loopback, or elsewhere only with some authentication."""
        return self.loopback or self.effective_token() is not None or self.effective_password() is not None


# -------------------------------------------------------------------------------------------- the app
class AppConfig(Section):
    device_id: str = Field(
        default_factory=lambda: socket.gethostname().split(".")[0] or "anpr-edge",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="This box's name in MQTT topics and events. Default: the host name.",
    )
    models: ModelsConfig = ModelsConfig()
    crop: CropConfig = CropConfig()
    inference: InferenceConfig = InferenceConfig()
    tracking: TrackingConfig = TrackingConfig()
    voting: VotingConfig = VotingConfig()
    events: EventsConfig = EventsConfig()
    formats: FormatsConfig = FormatsConfig()
    cameras: list[CameraConfig] = Field(..., min_length=1, description="At least one camera.")
    mqtt: MqttConfig = MqttConfig()
    outputs: OutputsConfig = OutputsConfig()
    logging: LoggingConfig = LoggingConfig()
    http: HttpConfig = HttpConfig()

    @field_validator("cameras", mode="after")
    @classmethod
    def _unique_ids(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for camera in cameras:
            if camera.id in seen:
                raise ValueError(f"camera id '{camera.id}' is used twice; ids must be unique")
            seen.add(camera.id)
        return cameras

    @model_validator(mode="after")
    def _camera_formats_exist(self) -> AppConfig:
        from anpr_edge.plate_formats import load_formats

        for camera in self.cameras:
            if camera.formats:
                try:
                    load_formats(camera.formats, self.formats.custom)
                except ValueError as error:
                    raise ValueError(f"cameras[{camera.id}].formats: {error}") from None
        return self

    def for_camera(self, camera_id: str) -> AppConfig:
        """This config with the camera's own overrides applied to the global sections (detector threshold,
        events.min_confidence, formats.regions): what that camera's passages run on."""
        camera = next(c for c in self.cameras if c.id == camera_id)
        updates: dict[str, object] = {}
        if camera.min_text_confidence is not None:
            updates["events"] = self.events.model_copy(update={"min_confidence": camera.min_text_confidence})
        if camera.formats is not None:
            updates["formats"] = self.formats.model_copy(update={"regions": camera.formats})
        if camera.confidence is not None:
            detector = self.models.detector.model_copy(update={"confidence": camera.confidence})
            updates["models"] = self.models.model_copy(update={"detector": detector})
        return self.model_copy(update=updates) if updates else self

    def with_ocr_model(self, path: Path) -> AppConfig:
        """This config reading with the OCR model at ``path`` (a command's ``--model``)."""
        return self.model_copy(update={"models": self.models.model_copy(
            update={"ocr": self.models.ocr.model_copy(update={"path": path})})})

    @property
    def detector_floor(self) -> float:
        """The lowest detector threshold any enabled camera asks for: the shared detector runs at it and
        each camera keeps what passes its own."""
        return min([self.models.detector.confidence] +
                   [c.confidence for c in self.enabled_cameras if c.confidence is not None])

    @property
    def detector_batch(self) -> int:
        """Images the detector gets per round: one per enabled camera, plus its tiles where it has them."""
        return max(sum(1 + (c.detect_tiles ** 2 if c.detect_tiles > 1 else 0) for c in self.enabled_cameras), 1)

    @property
    def enabled_cameras(self) -> list[CameraConfig]:
        return [camera for camera in self.cameras if camera.enabled]


def default_config() -> AppConfig:
    """The built-in configuration: the synthetic demo clip, events on stdout, no broker."""
    return AppConfig(cameras=[CameraConfig(id="demo", source=SourceSpec("demo", "demo"))])


def command_config(config_path: str | None, model_path: str | None = None) -> AppConfig:
    """The config a command's ``--config`` names (the built-in one without it), reading with the OCR model a
    ``--model`` names; a missing model file is a ``ConfigError`` naming the option."""
    config = load_config(config_path) if config_path else default_config()
    if model_path:
        if not Path(model_path).is_file():
            raise ConfigError(f"--model: file not found: {model_path}")
        config = config.with_ocr_model(Path(model_path).resolve())
    return config


# ------------------------------------------------------------------------------------------- loading
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, which plain YAML silently resolves to the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[object, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            mark = key_node.start_mark
            raise ConfigError(
                f"line {mark.line + 1}: duplicate key '{key}' (first at line {seen[key].start_mark.line + 1})"
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(path: str | os.PathLike[str]) -> AppConfig:
    """Read and validate a YAML config file. Raises ``ConfigError`` naming the file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: config file not readable (permissions)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    return parse_config({} if data is None else data, base_dir=path.resolve().parent, origin=str(path))


def parse_config(data: object, *, base_dir: Path | None = None, origin: str = "config") -> AppConfig:
    """Validate already-parsed config data (a mapping). Raises ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of keys, not {type(data).__name__}")
    try:
        return AppConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as error:
        problems = [_describe(item) for item in error.errors(include_url=False)]
        if len(problems) == 1:
            raise ConfigError(f"{origin}: {problems[0]}") from None
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"{origin}: {len(problems)} problems:\n{listing}") from None


def _key_path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(item: Mapping[str, Any]) -> str:
    loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and "[" in part))
    key = _key_path(loc)
    kind = item["type"]
    if kind == "extra_forbidden":
        hint = _suggest(loc)
        return f"{key}: unknown key" + (f" (did you mean '{hint}'?)" if hint else "")
    if kind == "missing":
        return f"{key}: required key is missing"
    message = item["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    value = item.get("input")
    secret = any(isinstance(part, str) and ("password" in part or "salt" in part) for part in loc)
    if not secret and isinstance(value, (str, int, float, bool)) and kind not in ("value_error",):
        message += f" (got {value!r})"
    return f"{key}: {message}"


def _suggest(loc: tuple[int | str, ...]) -> str | None:
    """The closest valid key at the level of an unknown key."""
    model: type[BaseModel] | None = AppConfig
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _section_type(field.annotation) if field else None
    if model is None:
        return None
    matches = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _section_type(annotation: object) -> type[BaseModel] | None:
    """The config section class inside an annotation such as ``list[CameraConfig]`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_type(arg)
        if found is not None:
            return found
    return None
