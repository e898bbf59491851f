"""Launch correctness without ``launch`` (issue 12): what the real ``ros2 launch`` relies on.

``launch`` / ``launch_ros`` are not on PyPI, so these tests check the pieces the real tool uses:

* the share directory ``ament_index_python`` returns is walkable with ``os.walk`` WITHOUT following
  links (how ``ros2launch`` finds a launch file) and holds each launch file exactly once, the
  parameter files and the RViz config; ``tools/install_share.py`` lays it out that way (real
  directories, one link per file) and migrates / cleans the old directory-symlink layout;
* ``<prefix>/lib/mtl_perception/`` (where launch_ros resolves ``Node(executable=...)``) holds
  executable ``perception_node`` and ``mtl-perception`` that run with a PATH lacking the venv;
* every command the launch files start is an absolute, existing executable;
* the launch files reference only launch APIs and keyword arguments that exist upstream (AST), and
  their event wiring (readiness gate -> evaluator -> player, shutdown on exit, failure) behaves as
  intended, executed against small stand-ins for the ``launch`` classes;
* ``mtl-perception wait-ready`` fails (exit 2, one line) against no node and succeeds against a real
  rclpy node subscribed in another process.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import py_compile
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
PKG = "mtl_perception"


@pytest.fixture
def ament_env(monkeypatch):
    """A plain venv has no setup.bash: the ament prefix defaults to this interpreter's."""
    pytest.importorskip("ament_index_python", reason="ament_index_python not installed")
    if not os.environ.get("AMENT_PREFIX_PATH"):
        monkeypatch.setenv("AMENT_PREFIX_PATH", sys.prefix)
    return os.environ["AMENT_PREFIX_PATH"]


def _load_install_share():
    spec = importlib.util.spec_from_file_location("install_share", ROOT / "tools" / "install_share.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _no_venv_path_env() -> dict[str, str]:
    """The environment minus this venv's bin/ on PATH (what a launch from another shell sees)."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    return env


# --- the share directory and lib/ executables (what ros2 launch / launch_ros look up) ------------


def test_share_dir_is_walkable_without_following_links(ament_env):
    from ament_index_python.packages import get_package_share_directory

    share = get_package_share_directory(PKG)
    found: dict[str, list[str]] = {}
    for root, _dirs, files in os.walk(share):  # followlinks=False, exactly as ros2launch searches
        for name in files:
            found.setdefault(name, []).append(os.path.join(root, name))
    for launch_file in ("camera.launch.py", "bag_replay.launch.py"):
        # ros2launch: not found -> "was not found in the share directory"; twice -> MultipleLaunchFilesError
        assert len(found.get(launch_file, [])) == 1, (launch_file, found.get(launch_file), share)
    params = {p.name for p in (ROOT / "config" / "ros").glob("*.param.yaml")}
    assert params and params <= set(found), sorted(params - set(found))
    for name in params:
        assert Path(found[name][0]).parent == Path(share) / "config" / "ros"
    assert "mtl_perception.rviz" in found and "package.xml" in found
    for paths in found.values():  # every file readable (no dangling link)
        assert all(Path(p).is_file() for p in paths), paths


def test_lib_executables_exist_and_run_without_path(ament_env):
    from ament_index_python.packages import get_package_prefix

    libdir = Path(get_package_prefix(PKG)) / "lib" / PKG
    env = _no_venv_path_env()
    for name in ("perception_node", "mtl-perception"):
        exe = libdir / name
        assert exe.is_file() and os.access(exe, os.X_OK), f"{exe} missing or not executable: run `make setup`"
        shebang = exe.read_text().splitlines()[0]
        interp = shebang[2:].strip()
        assert shebang.startswith("#!/") and " " not in interp, shebang  # absolute, no `env python3` lookup
        assert os.access(interp, os.X_OK), shebang
    help_run = subprocess.run([str(libdir / "mtl-perception"), "--help"], env=env, capture_output=True, text=True)
    assert help_run.returncode == 0, help_run.stderr
    assert "wait-ready" in help_run.stdout
    # perception_node: its interpreter imports the node's entry point with the same PATH-less env
    interp = (libdir / "perception_node").read_text().splitlines()[0][2:].strip()
    probe = subprocess.run(
        [interp, "-c", "import mtl_perception.ros.node as m; assert callable(m.main)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr


def test_replay_plan_commands_are_absolute_executables(ament_env, tmp_path, monkeypatch):
    from mtl_perception.ros.player import replay_plan

    plan = replay_plan({"bag": str(tmp_path / "bag"), "player": "mtl"})
    cmds = [plan[k] for k in ("gate", "evaluator", "evaluator_gate", "player")]
    for cmd in cmds:
        assert os.path.isabs(cmd[0]) and os.access(cmd[0], os.X_OK), cmd
        assert cmd[0].endswith(f"/lib/{PKG}/mtl-perception"), cmd
    # `ros2 bag play` is resolved on PATH at plan time, then started by absolute path
    bindir = tmp_path / "rosbin"
    bindir.mkdir()
    (bindir / "ros2").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "ros2").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    ros2 = replay_plan({"bag": "/b", "player": "ros2"})
    assert ros2["player"][0] == str(bindir / "ros2") and ros2["uses_ros2_bag"]


# --- tools/install_share.py (the colcon --symlink-install layout in a venv) ----------------------


def _fake_checkout(root: Path) -> None:
    for rel, text in {
        "package.xml": "<package/>",
        "launch/a.launch.py": "# a",
        "launch/__pycache__/a.cpython-311.pyc": "x",
        "config/ros/mlore.param.yaml": "a: 1",
        "config/models/m.yaml": "b: 2",
        "rviz/v.rviz": "c",
        "scripts/perception_node": "#!/usr/bin/env python3\nprint('node')\n",
        "scripts/mtl-perception": "#!/usr/bin/env python3\nprint('cli')\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_install_share_layout_migration_and_stale_links(tmp_path):
    mod = _load_install_share()
    root, prefix = tmp_path / "src", tmp_path / "prefix"
    _fake_checkout(root)
    share = prefix / "share" / PKG
    share.mkdir(parents=True)
    (share / "launch").symlink_to(root / "launch")  # the old layout: invisible to os.walk
    (share / "config").symlink_to(root / "config")

    log = mod.install(prefix, root, python=sys.executable)
    assert any("migrate" in line for line in log)
    walked = {str(Path(r, f).relative_to(share)) for r, _d, fs in os.walk(share) for f in fs}
    assert walked == {
        "package.xml",
        "launch/a.launch.py",
        "config/ros/mlore.param.yaml",
        "config/models/m.yaml",
        "rviz/v.rviz",
    }
    for sub in ("launch", "config", "config/ros", "rviz"):
        assert (share / sub).is_dir() and not (share / sub).is_symlink(), sub
    assert os.readlink(share / "launch" / "a.launch.py") == str(root / "launch" / "a.launch.py")
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PKG).exists()
    for name, out in (("perception_node", "node"), ("mtl-perception", "cli")):
        exe = prefix / "lib" / PKG / name
        assert exe.read_text().startswith(f"#!{sys.executable}\n") and os.access(exe, os.X_OK)
        assert subprocess.run([str(exe)], capture_output=True, text=True).stdout.strip() == out

    assert mod.install(prefix, root, python=sys.executable) == []  # idempotent

    (root / "launch" / "a.launch.py").unlink()  # renamed / removed upstream
    (root / "launch" / "b.launch.py").write_text("# b")
    log = mod.install(prefix, root, python=sys.executable)
    assert not (share / "launch" / "a.launch.py").is_symlink() and (share / "launch" / "b.launch.py").is_file()
    assert any("remove stale" in line for line in log)


def test_make_setup_runs_install_share_every_time():
    """New launch / config files must reach the venv's share dir without a requirements change."""
    text = (ROOT / "Makefile").read_text()
    recipe = text.split("\nsetup:", 1)[1].split("\n\n", 1)[0]
    lines = [line for line in recipe.splitlines() if "install_share.py" in line]
    assert lines and not lines[0].rstrip().endswith("\\"), lines  # its own line, outside the stamp check


# --- launch files: syntax and the launch API they use ------------------------------------------

# Names and constructor keywords from ros2/launch (3.x) and ros2/launch_ros (Humble .. Rolling).
_EXECUTE_LOCAL = {
    "shell", "sigterm_timeout", "sigkill_timeout", "emulate_tty", "output", "output_format", "cached_output",
    "log_cmd", "on_exit", "respawn", "respawn_delay", "condition",
}  # fmt: skip
_EXECUTE_PROCESS = {"cmd", "prefix", "name", "cwd", "env", "additional_env"} | _EXECUTE_LOCAL
API = {
    "launch": {"LaunchDescription": {"initial_entities", "deprecated_reason"}},
    "launch.actions": {
        "DeclareLaunchArgument": {"name", "default_value", "description", "choices", "condition"},
        "ExecuteProcess": _EXECUTE_PROCESS,
        "LogInfo": {"msg", "condition"},
        "OpaqueFunction": {"function", "args", "kwargs", "condition"},
        "RegisterEventHandler": {"event_handler", "condition"},
        "SetEnvironmentVariable": {"name", "value", "condition"},
        "Shutdown": {"reason", "condition"},
        "EmitEvent": {"event", "condition"},
    },
    "launch.event_handlers": {"OnProcessExit": {"target_action", "on_exit", "handle_once"}},
    "launch.events": {"Shutdown": {"reason", "due_to_sigint"}},
    "launch.logging": {"get_logger": {"name"}},
    "launch.substitutions": {"LaunchConfiguration": {"variable_name", "default"}},
    "launch_ros.actions": {
        "Node": {
            "executable",
            "package",
            "name",
            "namespace",
            "exec_name",
            "parameters",
            "remappings",
            "ros_arguments",
            "arguments",
        }
        | _EXECUTE_PROCESS - {"cmd"},  # fmt: skip
    },
}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_compiles_and_uses_existing_launch_api(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "x.pyc"), doraise=True)
    tree = ast.parse(path.read_text())
    imported: dict[str, str] = {}  # local name -> module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("launch", "launch_ros"):
            for alias in node.names:
                assert node.module in API and alias.name in API[node.module], f"{node.module}.{alias.name}"
                imported[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] in ("launch", "launch_ros") for a in node.names), ast.dump(node)
    assert "generate_launch_description" in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    used = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported:
            allowed = API[imported[node.func.id]][node.func.id]
            kws = {k.arg for k in node.keywords if k.arg}
            assert kws <= allowed, f"{path.name}:{node.lineno} {node.func.id}({', '.join(sorted(kws - allowed))}=...)"
            used += 1
    assert used >= 5


# --- launch files executed against stand-ins for the launch classes -----------------------------


class _Entity:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kwargs.get('name') or self.kwargs.get('msg') or ''})"


class _LaunchConfiguration(_Entity):
    def perform(self, context):
        return context.values[self.args[0]]


LEVELS = ("debug", "info", "warning", "error")


class _Context:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.is_shutdown = False


@pytest.fixture
def fake_launch(monkeypatch, ament_env):
    """Minimal ``launch`` / ``launch_ros`` modules recording what the launch files construct."""
    mods = {m: types.ModuleType(m) for m in API}
    for module, names in API.items():
        for name in names:
            setattr(mods[module], name, type(name, (_Entity,), {}))
    mods["launch.substitutions"].LaunchConfiguration = _LaunchConfiguration
    logged: list[tuple[str, str]] = []

    def get_logger(name=None):
        return types.SimpleNamespace(**{lvl: (lambda msg, lvl=lvl: logged.append((lvl, msg))) for lvl in LEVELS})

    mods["launch.logging"].get_logger = get_logger
    mods["launch_ros"] = types.ModuleType("launch_ros")
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(mods[parent], child, mod)

    def load(name: str, **overrides: str):
        spec = importlib.util.spec_from_file_location(f"_launch_{name}", ROOT / "launch" / name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        desc = module.generate_launch_description()
        entities = desc.args[0]
        values = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
        assert set(overrides) <= set(values), set(overrides) - set(values)
        ctx = _Context({**values, **overrides})
        opaque = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
        assert len(opaque) == 1
        return opaque[0].kwargs["function"](ctx), ctx

    load.logged = logged
    return load


def _of(actions, kind: str, **match):
    return [a for a in actions if type(a).__name__ == kind and all(a.kwargs.get(k) == v for k, v in match.items())]


def _handler_for(actions, target):
    regs = [
        a.args[0].kwargs["on_exit"]
        for a in _of(actions, "RegisterEventHandler")
        if a.args[0].kwargs.get("target_action") is target
    ]
    assert len(regs) == 1, regs
    return regs[0]


def _exited(code: int, name: str = "proc-1"):
    return types.SimpleNamespace(returncode=code, process_name=name)


def _assert_absolute_commands(actions):
    from ament_index_python.packages import get_package_prefix

    for proc in _of(actions, "ExecuteProcess"):
        exe = proc.kwargs["cmd"][0]
        assert os.path.isabs(exe) and os.access(exe, os.X_OK), proc.kwargs["cmd"]
    for node in _of(actions, "Node", package=PKG):  # launch_ros: <prefix>/lib/<package>/<executable>
        exe = Path(get_package_prefix(PKG)) / "lib" / PKG / node.kwargs["executable"]
        assert os.access(exe, os.X_OK), exe


def test_bag_replay_gates_player_on_readiness_and_ends_with_evaluation(fake_launch, tmp_path):
    actions, ctx = fake_launch("bag_replay.launch.py", bag=str(tmp_path / "bag"), player="mtl")
    (node,) = _of(actions, "Node", package=PKG)
    (gate,) = _of(actions, "ExecuteProcess", name="wait_ready")
    assert gate.kwargs["cmd"][1:6] == ["wait-ready", "--topic", "/camera/image_raw", "--node", "/perception_node"]
    assert not _of(actions, "ExecuteProcess", name="player"), "the player must wait for the gate"
    assert not _of(actions, "TimerAction")
    _assert_absolute_commands(actions)

    started = _handler_for(actions, gate)(_exited(0, "wait_ready-2"), ctx)
    (evaluator,) = _of(started, "ExecuteProcess", name="evaluator")
    (evaluator_gate,) = _of(started, "ExecuteProcess", name="wait_evaluator")
    assert evaluator.kwargs["cmd"][1] == "live-eval" and "/replay_evaluator" in evaluator_gate.kwargs["cmd"]
    _assert_absolute_commands(started)

    playing = _handler_for(actions, evaluator_gate)(_exited(0), ctx)
    (player,) = _of(playing, "ExecuteProcess", name="player")
    assert player.kwargs["cmd"][1:4] == ["play", "--bag", str(tmp_path / "bag")]
    _assert_absolute_commands(playing)

    done = _handler_for(actions, evaluator)
    assert _of(done(_exited(0), ctx), "Shutdown")  # the evaluation ends the launch
    with pytest.raises(RuntimeError, match="evaluation failed"):  # ros2 launch: logged, exit 1
        done(_exited(1, "evaluator-3"), ctx)
    with pytest.raises(RuntimeError, match="did not subscribe to /camera/image_raw"):
        _handler_for(actions, gate)(_exited(2, "wait_ready-2"), ctx)

    assert _of(node.kwargs["on_exit"](_exited(1), ctx), "Shutdown")  # a dead node ends the launch
    ctx.is_shutdown = True  # Ctrl-C / already ending: gates and processes stopped by launch are not failures
    assert _handler_for(actions, gate)(_exited(-2), ctx) is None
    assert done(_exited(1), ctx) is None and node.kwargs["on_exit"](_exited(0), ctx) is None


def test_bag_replay_without_evaluator_ends_with_player(fake_launch, tmp_path):
    actions, ctx = fake_launch(
        "bag_replay.launch.py", bag=str(tmp_path / "b"), evaluate="false", player="mtl", start_delay="1.5"
    )
    (gate,) = _of(actions, "ExecuteProcess", name="wait_ready")
    started = _handler_for(actions, gate)(_exited(0), ctx)
    (player,) = _of(started, "ExecuteProcess", name="player")
    assert "1.5" in player.kwargs["cmd"] and not _of(started, "ExecuteProcess", name="evaluator")
    assert _of(player.kwargs["on_exit"](_exited(0), ctx), "Shutdown")


@pytest.mark.parametrize("launch_file", ["camera.launch.py", "bag_replay.launch.py"])
def test_rviz_missing_warns_and_runs_without_it(fake_launch, launch_file, tmp_path, monkeypatch):
    from mtl_perception.ros.launch_args import rviz_missing_message

    if rviz_missing_message() is None:
        pytest.skip("rviz2 is installed here")
    extra = {"bag": str(tmp_path / "b"), "player": "mtl"} if launch_file.startswith("bag") else {}
    actions, _ctx = fake_launch(launch_file, rviz="true", **extra)
    assert not _of(actions, "Node", package="rviz2")
    assert _of(actions, "Node", package=PKG)
    assert [lvl for lvl, msg in fake_launch.logged if "rviz2 package is not installed" in msg] == ["warning"]
    _assert_absolute_commands(actions)

    # with an rviz2 package in the index: RViz starts, and closing it ends the launch
    fake = tmp_path / "rviz_prefix"
    (fake / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (fake / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{os.environ['AMENT_PREFIX_PATH']}{os.pathsep}{fake}")
    actions, ctx = fake_launch(launch_file, rviz="true", **extra)
    (rviz,) = _of(actions, "Node", package="rviz2")
    assert _of(rviz.kwargs["on_exit"](_exited(0, "rviz2-2"), ctx), "Shutdown")


def test_camera_launch_node_by_package_executable(fake_launch):
    actions, ctx = fake_launch("camera.launch.py", namespace="front", image="/front/image_raw")
    (node,) = _of(actions, "Node", package=PKG)
    assert node.kwargs["executable"] == "perception_node" and node.kwargs["namespace"] == "front"
    assert ("image", "/front/image_raw") in node.kwargs["remappings"]
    assert not _of(actions, "ExecuteProcess")  # nothing started through PATH
    _assert_absolute_commands(actions)
    assert _of(node.kwargs["on_exit"](_exited(1), ctx), "Shutdown")


# --- launch_args helpers --------------------------------------------------------------------------


def test_node_config_input_topic_and_fqn():
    from mtl_perception.ros.launch_args import node_config

    cfg = node_config({}, "/s")
    assert cfg.input_topic == "/camera/image_raw" and cfg.node_fqn == "/perception/perception_node"
    cfg = node_config({"namespace": "", "input_transport": "compressed", "image": "cam/img"}, "/s")
    assert cfg.input_topic == "/cam/img/compressed" and cfg.node_fqn == "/perception_node"
    cfg = node_config({"namespace": "front", "image": "img"}, "/s")
    assert cfg.input_topic == "/front/img"


def test_package_executable_paths(ament_env, tmp_path):
    from mtl_perception.ros.launch_args import package_executable

    assert package_executable("mtl-perception", tmp_path) == str(tmp_path / "lib" / PKG / "mtl-perception")
    assert os.access(package_executable("mtl-perception"), os.X_OK)


# --- the readiness gate (mtl-perception wait-ready) ----------------------------------------------


def test_wait_ready_requirement_pairing():
    from mtl_perception.ros.ready import Requirement, node_fqn, not_ready_message, pair_requirements

    assert pair_requirements(["/a"], None) == [Requirement("/a", None)]
    assert pair_requirements(["a", "/b"], ["n"]) == [Requirement("/a", "/n"), Requirement("/b", "/n")]
    assert pair_requirements(["/a", "/b"], ["/x", "/y/z"]) == [Requirement("/a", "/x"), Requirement("/b", "/y/z")]
    with pytest.raises(ValueError, match="one per --topic"):
        pair_requirements(["/a", "/b", "/c"], ["/x", "/y"])
    assert node_fqn("/", "perception_node") == "/perception_node"
    assert node_fqn("/cam/front", "perception_node") == "/cam/front/perception_node"
    msg = not_ready_message(
        {"requirements": [{"topic": "/t", "node": "/n", "ok": False, "subscribers": ["/other"]}]}, 5.0
    )
    assert msg == "not ready after 5 s: /n has not subscribed to /t (subscribers: /other)"


SUBSCRIBER = """
import sys
import rclpy
from rclpy.executors import ExternalShutdownException
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node(sys.argv[1], namespace=sys.argv[2])
node.create_subscription(Image, sys.argv[3], lambda msg: None, 1)
print("subscribed", flush=True)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, ExternalShutdownException):
    pass
"""


def _gate(env, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mtl_perception.cli", "wait-ready", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.ros
def test_wait_ready_times_out_without_node():
    pytest.importorskip("rclpy", reason="rclpy not installed")
    from ros_helpers.procs import ros_env

    r = _gate(ros_env(), "--topic", "/nobody/image_raw", "--node", "/perception_node", "--timeout", "1")
    assert r.returncode == 2, r
    assert json.loads(r.stdout)["ready"] is False
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "not ready after 1 s: /perception_node has not subscribed to /nobody/image_raw" in err[0]


@pytest.mark.ros
def test_wait_ready_sees_a_real_subscription(tmp_path):
    pytest.importorskip("rclpy", reason="rclpy not installed")
    from ros_helpers.procs import ros_env

    env = ros_env()
    sub = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, "perception_node", "/gate_cam", "/gate/image_raw"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ok = _gate(env, "--topic", "/gate/image_raw", "--node", "/gate_cam/perception_node", "--timeout", "60")
        assert ok.returncode == 0, (ok.stdout, ok.stderr)
        result = json.loads(ok.stdout)
        assert result["ready"] is True
        assert result["requirements"][0]["subscribers"] == ["/gate_cam/perception_node"]
        # another node's subscription does not count for --node
        other = _gate(env, "--topic", "/gate/image_raw", "--node", "/perception_node", "--timeout", "5")  # > discovery
        assert other.returncode == 2 and "(subscribers: /gate_cam/perception_node)" in other.stderr
    finally:
        sub.terminate()
        try:
            sub.wait(10)
        except subprocess.TimeoutExpired:
            sub.kill()
            sub.wait()


def test_cli_without_an_optional_dependency_keeps_other_commands(monkeypatch, capsys, tmp_path):
    """A ROS-only install (colcon, no cv2/torch): `mtl-perception --help` and `wait-ready` still run."""
    import mtl_perception.cli as cli

    (tmp_path / "_mtl_test_broken_cmd.py").write_text("import _no_such_dependency_\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, ("broken", "_mtl_test_broken_cmd")])
    cli.build_parser()  # does not raise
    assert cli.main(["broken", "--out", "x"]) == 2
    assert "unavailable: No module named '_no_such_dependency_'" in capsys.readouterr().err
    monkeypatch.setattr(cli, "SUBCOMMANDS", [("gone", "mtl_perception._no_such_module_")])
    with pytest.raises(ModuleNotFoundError):  # a module of ours missing is a bug: not hidden
        cli.build_parser()


def test_evaluator_teardown_is_bounded(monkeypatch):
    """A Fast DDS participant deletion that hangs must not keep live-eval (and the replay launch) alive."""
    pytest.importorskip("rclpy", reason="rclpy not installed")
    import threading
    import time

    import rclpy

    from mtl_perception.ros.evaluator import teardown

    monkeypatch.setattr(rclpy, "try_shutdown", lambda *a, **k: None)
    release = threading.Event()
    destroyed: list[str] = []

    class Node:
        def __init__(self, hang: bool) -> None:
            self.hang = hang

        def destroy_subscription(self, s):
            destroyed.append(s)

        def destroy_node(self):
            if self.hang:
                release.wait(30)
            destroyed.append("node")

    assert teardown(Node(hang=False), ["a", "b"], timeout=5.0) is True and destroyed == ["a", "b", "node"]
    t0 = time.monotonic()
    assert teardown(Node(hang=True), [], timeout=0.3) is False
    assert time.monotonic() - t0 < 5.0
    release.set()
