# shellcheck shell=bash
# Environment of the robot_training suite. Source it from bash:
#
#     source scripts/env.sh
#
# Afterwards the virtual environment's python, `python -m robot_training...`, pytest, the
# console scripts in install/robot_training/lib/robot_training/ and any non-Python process
# (cmake, generated type-support libraries loaded by another process) see rclpy, the
# generated messages of robot_training_msgs and the robot_training package.
#
# Two modes, recorded by scripts/setup.sh in <venv>/.robot_training_mode:
#   wheels  ROS 2 Kilted installed from wheels into the venv; the venv root is the underlay.
#   system  a system ROS 2 (/opt/ros/$ROS_DISTRO) is the underlay; the venv sees its
#           packages through --system-site-packages.
#
# Variables read: ROBOT_TRAINING_VENV (default <repo>/.venv), ROBOT_TRAINING_INSTALL
# (default <repo>/install), ROBOT_TRAINING_ENV_UNDERLAY_ONLY=1 (skip install/setup.bash;
# scripts/setup.sh uses it before building).
# Nothing here exits the calling shell; problems are reported and `return 1`.

_rt_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_rt_venv="${ROBOT_TRAINING_VENV:-$_rt_root/.venv}"
_rt_install="${ROBOT_TRAINING_INSTALL:-$_rt_root/install}"

# Prepend a directory to a colon-separated variable unless it is already in it.
_rt_prepend() {
    local var="$1" dir="$2" cur
    cur="${!var:-}"
    case ":$cur:" in
        *":$dir:"*) ;;
        *) export "$var=$dir${cur:+:$cur}" ;;
    esac
}

_rt_env_main() {
    if [ ! -x "$_rt_venv/bin/python" ]; then
        echo "robot_training env: no virtual environment at $_rt_venv; run 'make setup' (or scripts/setup.sh) first" >&2
        return 1
    fi

    local mode="wheels" distro=""
    if [ -f "$_rt_venv/.robot_training_mode" ]; then
        read -r mode distro < "$_rt_venv/.robot_training_mode" || true
    fi

    # The venv, as `activate` would set it (without its prompt changes).
    export VIRTUAL_ENV="$_rt_venv"
    unset PYTHONHOME
    _rt_prepend PATH "$_rt_venv/bin"

    if [ "$mode" = "system" ]; then
        if [ -z "${ROS_DISTRO:-}" ]; then
            if [ -n "$distro" ] && [ -f "/opt/ros/$distro/setup.bash" ]; then
                # shellcheck disable=SC1090
                source "/opt/ros/$distro/setup.bash"
            else
                echo "robot_training env: venv was set up on a system ROS 2 ($distro) that is not sourced now" >&2
                return 1
            fi
        fi
    else
        # The ROS wheels put the underlay (share/, lib/, include/) at the venv root.
        local pyver site libs
        pyver="$("$_rt_venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" || {
            echo "robot_training env: $_rt_venv/bin/python does not run" >&2
            return 1
        }
        site="$_rt_venv/lib/python$pyver/site-packages"
        _rt_prepend AMENT_PREFIX_PATH "$_rt_venv"
        _rt_prepend CMAKE_PREFIX_PATH "$_rt_venv"
        for libs in "$site"/ros_*.libs; do
            [ -d "$libs" ] && _rt_prepend LD_LIBRARY_PATH "$libs"
        done
        _rt_prepend LD_LIBRARY_PATH "$_rt_venv/lib"
        # The wheels' .pth re-executes each interpreter to set LD_LIBRARY_PATH; it is set
        # already, so tell it to skip (one process, one pid, no double start-up).
        export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
        export ROS_VERSION=2
        export ROS_PYTHON_VERSION=3
        export ROS_DISTRO="${ROS_DISTRO:-kilted}"
    fi

    if [ -z "${ROBOT_TRAINING_ENV_UNDERLAY_ONLY:-}" ]; then
        if [ -f "$_rt_install/setup.bash" ]; then
            # shellcheck disable=SC1091
            source "$_rt_install/setup.bash"
        else
            echo "robot_training env: $_rt_install/setup.bash not found; the packages are not built yet (run 'make setup')" >&2
            return 1
        fi
    fi
    return 0
}

_rt_env_main
_rt_status=$?
unset -f _rt_env_main _rt_prepend
unset _rt_root _rt_venv _rt_install
# shellcheck disable=SC2317
return $_rt_status 2>/dev/null || exit $_rt_status
