"""deploy/: the systemd unit parses and keeps its promises, install.sh is valid bash and does the right steps."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anpr_edge.config import PASSWORD_ENV

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "anpr-edge.service"
INSTALL = DEPLOY / "install.sh"


def unit_settings(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values, in order (a key may repeat, e.g. Environment=)."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


SETTINGS = unit_settings(UNIT.read_text())


def service(key: str) -> str | None:
    values = SETTINGS.get(("Service", key))
    return values[-1] if values else None


def test_unit_promises() -> None:
    assert service("Type") == "notify"
    assert service("NotifyAccess") == "main"
    assert service("WatchdogSec") == "30"
    assert service("Restart") == "on-failure"
    assert service("RestartSec")
    assert service("RestartPreventExitStatus") == "2"  # config error: no restart loop
    assert service("ExecStart") == "/opt/anpr-edge/venv/bin/anpr-edge run --config /etc/anpr-edge/config.yaml"
    assert service("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert service("KillSignal") == "SIGTERM" and service("TimeoutStopSec") == "20"
    assert service("User") == service("Group") == "anpr-edge"
    assert service("SupplementaryGroups") == "video"
    for key in ("StateDirectory", "CacheDirectory", "ConfigurationDirectory"):
        assert service(key) == "anpr-edge", key
    environment = SETTINGS[("Service", "Environment")]
    assert "ANPR_EDGE_CACHE_DIR=/var/cache/anpr-edge" in environment and "PYTHONUNBUFFERED=1" in environment
    assert service("EnvironmentFile") == "-/etc/anpr-edge/env"
    assert PASSWORD_ENV in UNIT.read_text()  # the env file comment names the variable the daemon reads
    assert ("Install", "WantedBy") in SETTINGS


def test_unit_start_timeout_is_generous_and_extended() -> None:
    timeout = service("TimeoutStartSec")
    assert timeout is not None
    match = re.fullmatch(r"(\d+)\s*(min|s)?", timeout)
    assert match, timeout
    seconds = int(match.group(1)) * (60 if match.group(2) == "min" else 1)
    assert seconds >= 300  # TensorRT engine builds on a first start
    assert "EXTEND_TIMEOUT_USEC" in UNIT.read_text()


def test_unit_hardening() -> None:
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectControlGroups",
                "RestrictSUIDSGID", "LockPersonality"):
        assert service(key) == "yes", key
    assert service("ProtectSystem") == "strict"
    # Both would break the product: no GPU or camera device nodes / no CUDA JIT. Only in comments.
    for key in ("PrivateDevices", "MemoryDenyWriteExecute", "DeviceAllow", "ProtectClock"):
        assert ("Service", key) not in SETTINGS, key
    text = UNIT.read_text()
    assert "PrivateDevices" in text and "MemoryDenyWriteExecute" in text  # ... and why, in a comment


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd; .ci/run does)")
    # verify insists that every Exec*= binary exists; the venv does not here. Point missing ones at an
    # existing executable, keeping the arguments, so everything else is checked as written.
    stand_in = sys.executable

    def existing(match: re.Match[str]) -> str:
        return match.group(1) + (match.group(2) if os.access(match.group(2), os.X_OK) else stand_in)

    copy = tmp_path / "anpr-edge.service"
    copy.write_text(re.sub(r"^(Exec\w+=[-@:+!]*)(/\S+)", existing, UNIT.read_text(), flags=re.M))
    result = subprocess.run([analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and unparsable values ("..., ignoring"): any output is a failure.
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


def test_install_sh_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert os.access(INSTALL, os.X_OK)
    assert "set -euo pipefail" in INSTALL.read_text()


def test_install_sh_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    result = subprocess.run([shellcheck, str(INSTALL)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def dry_run(*args: str) -> str:
    result = subprocess.run(["bash", str(INSTALL), "--dry-run", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_install_dry_run_steps() -> None:
    out = dry_run()
    commands = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    assert commands, out

    def ran(pattern: str) -> bool:
        return any(re.search(pattern, command) for command in commands)

    user_exists = subprocess.run(["getent", "passwd", "anpr-edge"], capture_output=True).returncode == 0
    if user_exists:
        assert ran(r"^usermod --append --groups video anpr-edge$")
    else:
        assert ran(r"^useradd --system .*--groups video .*--home-dir /var/lib/anpr-edge .*--shell \S*(nologin|false)"
                   r".* anpr-edge$"), out
    venv_exists = Path("/opt/anpr-edge/venv/bin/python").exists()
    assert venv_exists or ran(r"-m venv /opt/anpr-edge/venv$"), out
    assert not ran("--system-site-packages") or Path("/etc/nv_tegra_release").exists()
    assert ran(r"^/opt/anpr-edge/venv/bin/pip install .*" + re.escape(str(REPO)) + "$"), out
    if Path("/etc/anpr-edge/config.yaml").exists():  # copied only if absent
        assert "keeping the existing /etc/anpr-edge/config.yaml" in out
        assert not ran(r"config\.yaml /etc/anpr-edge/config\.yaml")
    else:
        assert ran(r"^install -m 0640 -o root -g anpr-edge \S*/config\.yaml /etc/anpr-edge/config\.yaml$"), out
    assert ran(r"^install -m 0644 \S*/deploy/anpr-edge\.service /etc/systemd/system/anpr-edge\.service$")
    assert ran(r"^systemctl daemon-reload$")
    assert ran(r"check-config .*/etc/anpr-edge/config\.yaml$")
    assert commands[-1] in ("systemctl enable --now anpr-edge.service", "systemctl restart anpr-edge.service")


def test_install_dry_run_options(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "anpr_edge-0.1.0-py3-none-any.whl").touch()
    out = dry_run("--jetson", "--gpu", "--prefix", "/srv/anpr", "--wheelhouse", str(wheelhouse), "--no-enable")
    assert re.search(r"^\+ \S*python3?\S* -m venv --system-site-packages /srv/anpr/venv$", out, re.M), out
    pip = next(line for line in out.splitlines() if line.startswith("+ /srv/anpr/venv/bin/pip install"))
    assert f"--no-index --find-links {wheelhouse}" in pip
    assert "anpr-edge\\[gpu\\]" in pip and "numpy\\<2" in pip  # printed shell-quoted
    assert "/srv/anpr/venv/" in out and "sed -i" in out  # the unit's ExecStart follows --prefix
    assert not re.search(r"^\+ systemctl enable", out, re.M)

    x86 = dry_run("--gpu", "--no-enable")
    if "Jetson detected" not in x86:
        assert "numpy\\<2" not in x86 and "--system-site-packages" not in x86


def test_install_refuses_bad_use(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)

    assert run("--frobnicate").returncode == 2
    assert run("--dry-run", "--wheelhouse", str(tmp_path)).returncode == 1  # no anpr_edge wheel in it
    assert run("--dry-run", "--prefix", "relative/dir").returncode == 1
    if os.geteuid() != 0:
        result = run("--no-enable")
        assert result.returncode == 1 and "root" in result.stderr


def test_deploy_files_exist_and_say_untested() -> None:
    for name in ("Dockerfile", "Dockerfile.jetson"):
        text = (DEPLOY / name).read_text()
        head = "\n".join(text.splitlines()[:15]).lower()
        assert "not been built" in head, name
        assert "anpr-edge" in text and "/etc/anpr-edge/config.yaml" in text
    jetson = (DEPLOY / "Dockerfile.jetson").read_text()
    assert "nvcr.io/nvidia/l4t-jetpack:" in jetson and re.search(r"^ARG L4T=r36\.", jetson, re.M)
    assert "--system-site-packages" in jetson and "numpy<2" in jetson
    readme = (DEPLOY / "README.md").read_text()
    for needle in ("install.sh", "--wheelhouse", "RestartPreventExitStatus", "systemctl reload", "anpr-edge probe",
                   "/var/cache/anpr-edge", "/var/lib/anpr-edge", "not been built"):
        assert needle in readme, needle
