#!/usr/bin/env bash
# Install anpr-edge as a systemd service. Run as root from a checkout (or a copy) of the repository:
#
#   sudo deploy/install.sh [--gpu] [--wheelhouse DIR] [--prefix DIR] [--no-enable] [--dry-run]
#
# Idempotent: running it again upgrades the package in place, keeps the user, the venv and, always,
# an existing /etc/anpr-edge/config.yaml. See deploy/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: install.sh [options]
  --wheelhouse DIR  install offline from wheels in DIR (pip --no-index --find-links DIR); build it on a
                    connected machine of the same architecture (see deploy/README.md)
  --prefix DIR      install root; the venv goes to DIR/venv (default /opt/anpr-edge)
  --gpu             add the [gpu] extra (TensorRT and pycuda wheels on x86-64; nothing on a Jetson,
                    whose TensorRT comes with JetPack)
  --python PY       the Python (>= 3.10) the venv is made from (default python3)
  --jetson          treat this machine as a Jetson (normally detected)
  --no-enable       install only: do not enable or start the service
  --dry-run         print the commands instead of running them (no root needed)
  -h, --help        this text
EOF
}

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/anpr-edge
WHEELHOUSE=""
GPU=0
ENABLE=1
DRY_RUN=0
JETSON=""
PYTHON=python3
SERVICE_USER=anpr-edge
CONF_DIR=/etc/anpr-edge
STATE_DIR=/var/lib/anpr-edge
UNIT=anpr-edge.service
UNIT_DIR=/etc/systemd/system

die() { echo "install.sh: $*" >&2; exit 1; }
note() { echo "install.sh: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) [ $# -ge 2 ] || { usage >&2; exit 2; }; WHEELHOUSE=$2; shift 2 ;;
    --wheelhouse=*) WHEELHOUSE=${1#*=}; shift ;;
    --prefix) [ $# -ge 2 ] || { usage >&2; exit 2; }; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --python) [ $# -ge 2 ] || { usage >&2; exit 2; }; PYTHON=$2; shift 2 ;;
    --python=*) PYTHON=${1#*=}; shift ;;
    --gpu) GPU=1; shift ;;
    --jetson) JETSON=1; shift ;;
    --no-enable) ENABLE=0; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$PREFIX" in /*) ;; *) die "--prefix must be an absolute path: $PREFIX" ;; esac
PREFIX=${PREFIX%/}
VENV=$PREFIX/venv

# run CMD...: run it, or with --dry-run print it (shell-quoted, so it can be pasted).
run() {
  if [ "$DRY_RUN" -eq 1 ]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo $0 ...), or with --dry-run to see what it would do"
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
  || die "$PYTHON is not Python >= 3.10 (choose one with --python)"
if [ -n "$WHEELHOUSE" ]; then
  [ -d "$WHEELHOUSE" ] || die "--wheelhouse $WHEELHOUSE is not a directory"
  WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
  compgen -G "$WHEELHOUSE/anpr_edge-*.whl" >/dev/null \
    || die "no anpr_edge-*.whl in $WHEELHOUSE (build it with pip wheel: see deploy/README.md)"
else
  [ -f "$SRC_DIR/pyproject.toml" ] || die "$SRC_DIR is not the anpr-edge source tree (or use --wheelhouse)"
fi

# Jetson (JetPack 6): TensorRT, CUDA and their Python bindings are system packages, not wheels.
if [ -z "$JETSON" ]; then
  JETSON=0
  if [ -f /etc/nv_tegra_release ] \
     || { [ "$(uname -m)" = aarch64 ] && compgen -G '/usr/lib/python3*/dist-packages/tensorrt' >/dev/null; }; then
    JETSON=1
  fi
fi
[ "$JETSON" -eq 1 ] && note "Jetson detected: the venv sees JetPack's TensorRT (--system-site-packages), numpy<2"

# 1. The service user: no login shell, home = the state directory (systemd creates it, StateDirectory=),
#    in its own group (it reads the config) and in video (cameras; the GPU on a Jetson).
NOLOGIN=/bin/false
for shell in /usr/sbin/nologin /sbin/nologin; do
  if [ -x "$shell" ]; then NOLOGIN=$shell; break; fi
done
if ! getent group video >/dev/null; then
  run groupadd --system video
fi
if getent passwd "$SERVICE_USER" >/dev/null; then
  run usermod --append --groups video "$SERVICE_USER"
else
  run useradd --system --user-group --groups video --home-dir "$STATE_DIR" --no-create-home \
    --shell "$NOLOGIN" --comment "anpr-edge daemon" "$SERVICE_USER"
fi
# systemd makes and owns it too (StateDirectory=); made here so the config check below has a home.
run install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"

# 2. The venv. On a Jetson it must see the system site-packages, where JetPack's TensorRT bindings
#    live (they are not on PyPI for aarch64). Re-running venv on an existing one keeps its packages.
venv_args=(-m venv)
[ "$JETSON" -eq 1 ] && venv_args+=(--system-site-packages)
if [ ! -x "$VENV/bin/python" ] \
   || { [ "$JETSON" -eq 1 ] && ! grep -qsiE '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg"; }; then
  run install -d -m 0755 "$PREFIX"
  run "$PYTHON" "${venv_args[@]}" "$VENV"
fi

# 3. The package, from the wheelhouse (offline) or from this source tree.
extras=""
[ "$GPU" -eq 1 ] && extras="[gpu]"
pip_args=(install --upgrade --disable-pip-version-check)
if [ -n "$WHEELHOUSE" ]; then
  pip_args+=(--no-index --find-links "$WHEELHOUSE" "anpr-edge$extras")
else
  pip_args+=("$SRC_DIR$extras")
  # x86-64 TensorRT wheels: NVIDIA's package index (as pyproject.toml says for the [gpu] extra).
  [ "$GPU" -eq 1 ] && [ "$JETSON" -eq 0 ] && pip_args+=(--extra-index-url https://pypi.nvidia.com)
fi
# JetPack 6's TensorRT (and OpenCV/VPI) Python bindings are built against numpy 1.x and fail to import
# under numpy 2; pip resolves everything else (e.g. an older opencv-python-headless) to fit.
[ "$JETSON" -eq 1 ] && pip_args+=("numpy<2")
run "$VENV/bin/pip" "${pip_args[@]}"

# 4. Configuration: the example config only if there is none. Never overwrite an integrator's config.
run install -d -m 0755 "$CONF_DIR"
if [ -e "$CONF_DIR/config.yaml" ]; then
  note "keeping the existing $CONF_DIR/config.yaml"
  CONFIG_IS_EXAMPLE=0
elif [ -f "$SRC_DIR/config.yaml" ]; then
  run install -m 0640 -o root -g "$SERVICE_USER" "$SRC_DIR/config.yaml" "$CONF_DIR/config.yaml"
  CONFIG_IS_EXAMPLE=1
else
  die "no $CONF_DIR/config.yaml and no example config.yaml in $SRC_DIR to start from"
fi
# Secrets file read by systemd as root (EnvironmentFile=): created empty, never overwritten.
if [ ! -e "$CONF_DIR/env" ]; then
  if [ "$DRY_RUN" -eq 1 ]; then
    run install -m 0600 -o root -g root /dev/null "$CONF_DIR/env"
  else
    (umask 077 && printf '%s\n' "# Environment for anpr-edge.service, read by systemd (root only). For example:" \
       "# ANPR_EDGE_MQTT_PASSWORD=..." "# ANPR_EDGE_HASH_SALT=..." > "$CONF_DIR/env")
  fi
fi

# 5. The unit, with the venv path of this --prefix.
if [ "$DRY_RUN" -eq 1 ]; then
  run install -m 0644 "$SRC_DIR/deploy/$UNIT" "$UNIT_DIR/$UNIT"
  [ "$PREFIX" = /opt/anpr-edge ] || run sed -i "s|/opt/anpr-edge/venv/|$VENV/|" "$UNIT_DIR/$UNIT"
else
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  sed "s|/opt/anpr-edge/venv/|$VENV/|" "$SRC_DIR/deploy/$UNIT" > "$tmp"
  install -m 0644 "$tmp" "$UNIT_DIR/$UNIT"
fi

# 6. systemd: reload units; enable and start (restart an already running one: it runs the old code).
if [ "$DRY_RUN" -eq 0 ] && [ ! -d /run/systemd/system ]; then
  note "systemd is not running here (container or chroot): unit installed, not enabled"
  exit 0
fi
run systemctl daemon-reload
if [ "$ENABLE" -eq 0 ]; then
  note "installed; start it with: systemctl enable --now $UNIT"
  exit 0
fi
# Validate the config first, as the service user (so its file permissions are checked too): with a bad
# config the service would exit 2 and stay failed, so it is enabled but not started.
check=(runuser -u "$SERVICE_USER" -- "$VENV/bin/anpr-edge" check-config --no-probe "$CONF_DIR/config.yaml")
if [ "$DRY_RUN" -eq 1 ]; then
  run "${check[@]}"
elif ! "${check[@]}"; then
  run systemctl enable "$UNIT"
  note "$CONF_DIR/config.yaml has errors (above): fix it, then: systemctl restart $UNIT"
  exit 1
fi
was_active=0
systemctl is-active --quiet "$UNIT" 2>/dev/null && was_active=1
run systemctl enable --now "$UNIT"
[ "$was_active" -eq 1 ] && run systemctl restart "$UNIT"
[ "$DRY_RUN" -eq 1 ] && exit 0
if [ "$CONFIG_IS_EXAMPLE" -eq 1 ]; then
  note "started with the example config (the demo camera): set cameras and mqtt in $CONF_DIR/config.yaml," \
    "then: systemctl restart $UNIT"
fi
note "done: systemctl status anpr-edge; journalctl -u anpr-edge -f"
