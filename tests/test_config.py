"""Config loading: the example file, and every kind of mistake named clearly (key path, file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anpr_edge.config import PASSWORD_ENV, AppConfig, default_config, load_config
from anpr_edge.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.exit_code == 2
    return str(caught.value)


def test_example_config_loads_and_is_complete() -> None:
    config = load_config(REPO / "config.yaml")
    assert isinstance(config, AppConfig)
    assert [c.id for c in config.cameras] == ["demo", "gate", "usb"]
    assert [c.id for c in config.enabled_cameras] == ["demo"]
    gate = config.cameras[1]
    assert gate.source.kind == "stream" and gate.fps_limit == 10 and gate.rtsp_transport == "tcp"
    assert config.cameras[2].source.kind == "device"
    # Every section of the schema appears in the example, so it documents every option group.
    text = (REPO / "config.yaml").read_text()
    for section in AppConfig.model_fields:
        assert f"{section}:" in text, section


def test_default_config_is_the_demo() -> None:
    config = default_config()
    assert config.cameras[0].source.kind == "demo"
    assert config.mqtt.enabled is False and config.outputs.stdout is True


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "clips").mkdir()
    clip = tmp_path / "clips" / "a.mp4"
    clip.write_bytes(b"not checked at load beyond existence")
    model = tmp_path / "det.onnx"
    model.write_bytes(b"x")
    path = write(
        tmp_path,
        "cameras:\n  - {id: a, source: clips/a.mp4}\nmodels:\n  detector: {path: det.onnx}\n"
        "outputs: {jsonl_file: out/results.jsonl}\n",
    )
    monkeypatch.chdir("/")  # the process's working directory must not matter
    config = load_config(path)
    assert config.cameras[0].source.uri == str(clip)
    assert config.models.detector.path == model
    assert config.outputs.jsonl_file == tmp_path / "out" / "results.jsonl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cameras:\n  - {id: a, sorce: demo}\n", "cameras[0].sorce: unknown key (did you mean 'source'?)"),
        ("camras: []\n", "camras: unknown key (did you mean 'cameras'?)"),
        ("cameras:\n  - {id: a, source: demo}\nmqtt: {prot: 1883}\n", "mqtt.prot: unknown key (did you mean 'port'?)"),
        ("cameras:\n  - {id: a, source: demo, fps_limit: fast}\n", "cameras[0].fps_limit: Input should be a valid number"),
        ("cameras:\n  - {id: a, source: demo}\nmqtt: {port: 70000}\n", "mqtt.port: Input should be less than or equal to 65535"),
        ("cameras:\n  - {id: a, source: demo}\nmodels: {detector: {confidence: 1.5}}\n", "models.detector.confidence"),
        ("cameras:\n  - {id: a, source: demo}\nmodels: {detector: {input_size: 300}}\n", "multiple of 32"),
        ("cameras:\n  - {id: a, source: demo}\ninference: {backend: cuda}\n", "inference.backend: Input should be 'auto', 'onnxruntime' or 'tensorrt'"),
        ("cameras:\n  - {id: a, source: demo}\ncrop: {extra_cuts: [wide, tall]}\n", "crop.extra_cuts[1]: Input should be 'wide', 'level', 'cw' or 'ccw'"),
        ("cameras:\n  - {id: a, source: demo}\ncrop: {extra_cuts: [wide, wide]}\n", "crop.extra_cuts: each cut at most once"),
        ("cameras:\n  - {id: a, source: demo}\n  - {id: a, source: demo}\n", "camera id 'a' is used twice"),
        ("cameras:\n  - {id: 'bad id', source: demo}\n", "cameras[0].id"),
        ("cameras: []\n", "cameras: List should have at least 1 item"),
        ("mqtt: {}\n", "cameras: required key is missing"),
        ("cameras:\n  - {id: a}\n", "cameras[0].source: required key is missing"),
        ("cameras:\n  - {id: a, source: 'ftp://host/x'}\n", "cameras[0].source: unsupported URL scheme 'ftp'"),
        ("cameras:\n  - {id: a, source: missing.mp4}\n", "cameras[0].source: video file not found:"),
        ("cameras:\n  - {id: a, source: demo}\nmodels: {ocr: {path: nope.onnx}}\n", "models.ocr.path: file not found:"),
        ("cameras:\n  - {id: a, source: demo}\nmqtt: {tls: {cert_file: config.yaml}}\n", "mqtt.tls: cert_file and key_file"),
        ("cameras:\n  - {id: a, source: demo}\nmqtt: {home_assistant: {enable: true}}\n",
         "mqtt.home_assistant.enable: unknown key (did you mean 'enabled'?)"),
        ("cameras:\n  - {id: a, source: demo}\nmqtt: {home_assistant: {discovery_prefix: 'ha/#'}}\n",
         "mqtt.home_assistant.discovery_prefix"),
        ("cameras:\n  - {id: a, source: demo}\n  - {id: b, source: demo}\ncameras: []\n", "duplicate key 'cameras'"),
        ("cameras: [\n", "invalid YAML"),
        ("- just\n- a list\n", "the top level must be a mapping"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert str(path) in message
    assert expected in message
    assert "Traceback" not in message


def test_several_problems_are_listed_in_one_message(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - {id: a, source: demo, loop: maybe}\nmqtt: {qos: 3}\nextra: 1\n")
    message = error_of(path)
    assert "3 problems" in message
    for key in ("cameras[0].loop", "mqtt.qos", "extra: unknown key"):
        assert key in message


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - id: a\n    source: demo\n  bad indent: [\n")
    message = error_of(path)
    assert f"{path}:" in message and "invalid YAML" in message
    assert message.split(":")[1].isdigit()  # path:LINE:COL


def test_missing_unreadable_and_directory_config(tmp_path: Path) -> None:
    assert "config file not found" in error_of(tmp_path / "nope.yaml")
    assert "is a directory" in error_of(tmp_path)
    path = write(tmp_path, "cameras: []\n")
    if os.geteuid() != 0:  # root reads anything
        path.chmod(0)
        assert "not readable" in error_of(path)


def test_unreadable_source_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").mkdir()
    path = write(tmp_path, "cameras:\n  - {id: a, source: clip.mp4}\n")
    assert "cameras[0].source: not a file" in error_of(path)


def test_stream_credentials_never_show(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cameras:\n  - {id: a, source: 'rtsp://admin:s3cret@10.1.2.3/live'}\n"
        "mqtt: {username: u, password: hunter2, port: nope}\n",
    )
    message = error_of(path)
    assert "hunter2" not in message and "mqtt.port" in message
    config = load_config(write(tmp_path, "cameras:\n  - {id: a, source: 'rtsp://admin:s3cret@10.1.2.3/live'}\n"
                                         "mqtt: {username: u, password: hunter2}\n", "ok.yaml"))
    shown = [str(config), repr(config), config.model_dump_json(), str(config.cameras[0].source)]
    for text in shown:
        assert "s3cret" not in text and "hunter2" not in text
    assert "rtsp://admin:***@10.1.2.3/live" in str(config.cameras[0].source)
    # The real URL is still what the source opens.
    assert config.cameras[0].source.uri == "rtsp://admin:s3cret@10.1.2.3/live"


def test_password_from_environment_file_or_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    in_file = load_config(write(tmp_path, "cameras: [{id: a, source: demo}]\nmqtt: {password_file: secret}\n"))
    in_config = load_config(write(tmp_path, "cameras: [{id: a, source: demo}]\nmqtt: {password: inline}\n", "b.yaml"))
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    assert in_file.mqtt.effective_password() == "from-file"
    assert in_config.mqtt.effective_password() == "inline"
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert in_file.mqtt.effective_password() == "from-env"
    assert in_config.mqtt.effective_password() == "from-env"
    both = write(tmp_path, "cameras: [{id: a, source: demo}]\nmqtt: {password: x, password_file: secret}\n", "c.yaml")
    assert "either password or password_file" in error_of(both)


def test_camera_sources_of_every_kind(tmp_path: Path) -> None:
    (tmp_path / "v.mp4").write_bytes(b"x")
    config = load_config(
        write(
            tmp_path,
            "cameras:\n"
            "  - {id: f, source: v.mp4}\n"
            "  - {id: r, source: 'rtsp://cam/stream'}\n"
            "  - {id: h, source: 'https://cam/mjpeg'}\n"
            "  - {id: d, source: /dev/video7}\n"
            "  - {id: i, source: 0}\n"
            "  - {id: demo, source: demo}\n",
        )
    )
    kinds = {c.id: (c.source.kind, c.source.is_live) for c in config.cameras}
    assert kinds == {
        "f": ("file", False),
        "r": ("stream", True),
        "h": ("stream", True),
        "d": ("device", True),
        "i": ("device", True),
        "demo": ("demo", False),
    }
    assert config.cameras[4].source.device_index == 0
