"""Live replay with real rclpy processes: ``mtl-perception play`` publishes a small synthetic bag, a
subscriber in another process receives every frame with its recorded stamp, and /clock advances."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from tiny_models import ROOT

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs not installed")
pytest.importorskip("rosgraph_msgs.msg", reason="rosgraph_msgs not installed")

from mtl_perception.data.synthetic_io import write_bag  # noqa: E402

FRAMES = 10
TOPICS = ["/camera/image_raw", "/camera/camera_info", "/camera/gt/semantic", "/camera/gt/depth"]

SUBSCRIBER = r"""
import json, sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image, CameraInfo
from rosgraph_msgs.msg import Clock
expected, timeout = int(sys.argv[1]), float(sys.argv[2])
rclpy.init()
node = rclpy.create_node("player_checker")
qos = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
got = {}
clock = []
def cb(topic):
    def f(msg):
        s = msg.header.stamp
        extra = [int(msg.width), int(msg.height), msg.encoding, len(msg.data)] if isinstance(msg, Image) else []
        got.setdefault(topic, []).append([s.sec * 10**9 + s.nanosec, *extra])
    return f
subs = [node.create_subscription(Image if "info" not in t else CameraInfo, t, cb(t), qos) for t in sys.argv[3:]]
on_clock = lambda m: clock.append(m.clock.sec * 10**9 + m.clock.nanosec)
subs.append(node.create_subscription(Clock, "/clock", on_clock, qos))
print("ready", flush=True)
t0 = time.monotonic()
while time.monotonic() - t0 < timeout:
    rclpy.spin_once(node, timeout_sec=0.05)
    if all(len(got.get(t, [])) >= expected for t in sys.argv[3:]) and clock:
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
        break
print(json.dumps({"got": got, "clock": clock}), flush=True)
node.destroy_node()
rclpy.shutdown()
"""


def ros_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 100)  # unique per test process
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("FASTDDS_BUILTIN_TRANSPORTS", None)
    return env


def test_player_publishes_every_frame_with_stamps_and_clock(tmp_path):
    bag = tmp_path / "drive"
    info = write_bag(bag, seed=11, n_frames=FRAMES, height=64, width=128, rate_hz=20.0, storage="mcap")
    env = ros_env()
    sub = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER, str(FRAMES), "40", *TOPICS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert sub.stdout.readline().strip() == "ready", sub.stderr.read()
        t0 = time.monotonic()
        play = subprocess.run(
            [
                sys.executable,
                "-m",
                "mtl_perception.cli",
                "play",
                "--bag",
                str(bag),
                "--rate",
                "2",
                "--clock",
                "--wait-for-subscribers",
                "15",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=90,
        )
        wall = time.monotonic() - t0
        assert play.returncode == 0, play.stderr[-2000:]
        stats = json.loads(play.stdout)
        out, err = sub.communicate(timeout=60)
    finally:
        if sub.poll() is None:
            sub.kill()
    assert sub.returncode == 0, err[-2000:]
    data = json.loads(out.strip().splitlines()[-1])
    assert stats["published"] == dict.fromkeys(TOPICS, FRAMES)
    # bag spans 0.45 s; at rate 2 playback takes ~0.23 s of wall time (plus start-up)
    assert 0.15 < stats["wall_s"] < 5 and stats["clock_msgs"] > FRAMES and wall < 60
    period = 1e9 / 20.0
    expected = [int(info["start_ns"] + round(i * period)) for i in range(FRAMES)]
    for topic in TOPICS:
        stamps = [row[0] for row in data["got"][topic]]
        assert stamps == expected, topic  # all frames, in order, with the recorded header stamps
    img = data["got"]["/camera/image_raw"][0]
    assert img[1:] == [128, 64, "rgb8", 128 * 64 * 3]
    depth = data["got"]["/camera/gt/depth"][0]
    assert depth[3] == "32FC1"
    clock = data["clock"]
    assert clock == sorted(clock), "clock went backwards"
    assert clock[0] >= info["start_ns"] and clock[-1] >= expected[-1]
    assert len(set(clock)) > FRAMES // 2


def test_play_bad_bag_one_line_error(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "mtl_perception.cli", "play", "--bag", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        env=ros_env(),
        cwd=ROOT,
        timeout=60,
    )
    assert res.returncode == 2
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr


def _node_available() -> bool:
    try:
        import mtl_perception.ros.node  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _node_available(), reason="mtl_perception.ros.node (the perception node) not importable")
def test_live_replay_matches_offline(tmp_path):
    """player -> perception_node -> live-eval gives the offline replay metrics on the frames it processed."""
    import torch
    from tiny_models import standardize_depth_head_, tiny_config

    from mtl_perception.data.bags import find_gt_topics, open_bag
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.evaluate.replay import ReplayAccumulator, ReplaySpec, replay_bag
    from mtl_perception.model import build_model, save_checkpoint
    from mtl_perception.pipeline import FramePipeline

    torch.manual_seed(0)
    model = build_model(tiny_config("mlore"))
    standardize_depth_head_(model, torch.randn(1, 3, 64, 128))  # depth maps that span metres
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    bag = tmp_path / "drive"
    write_bag(bag, seed=12, n_frames=FRAMES, height=64, width=128, rate_hz=10.0, storage="sqlite3")
    env = ros_env()
    report = tmp_path / "live"
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mtl_perception.ros.node",
            "--ros-args",
            "-p",
            f"model_path:={ckpt}",
            "-p",
            "backend:=torch",
            "-p",
            "input_reliability:=reliable",
            "-p",
            "input_depth:=20",
            "-p",
            "publish_points:=false",
            "-r",
            "image:=/camera/image_raw",
            "-r",
            "camera_info:=/camera/camera_info",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    evaluator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mtl_perception.cli",
            "live-eval",
            "--report",
            str(report),
            "--expected-frames",
            str(FRAMES),
            "--idle-timeout",
            "20",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        play = subprocess.run(
            [
                sys.executable,
                "-m",
                "mtl_perception.cli",
                "play",
                "--bag",
                str(bag),
                "--rate",
                "0.25",
                "--clock",
                "--wait-for-subscribers",
                "40",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
        assert play.returncode == 0, play.stderr[-2000:]
        out, err = evaluator.communicate(timeout=120)
    finally:
        for p in (evaluator, node):
            if p.poll() is None:
                p.send_signal(2)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
    assert evaluator.returncode == 0, err[-3000:]
    live = json.loads(out)
    drops = live["counters"]["frames_dropped_by_node"]
    assert live["frames"] + drops == FRAMES and live["frames"] >= FRAMES // 2, live["counters"]
    assert (report / "report.md").is_file() and (report / "metrics.json").is_file()
    # offline replay of exactly the frames the live run evaluated: same pipeline code, same numbers
    engine = InferenceEngine.create(ckpt, backend="torch")
    with open_bag(bag) as b:
        sem, dep = find_gt_topics(b)
        acc = ReplayAccumulator(list(engine.info.classes), engine.info.palette)
        spec = ReplaySpec(["/camera/image_raw"], sem, dep, stamps=set(live["stamps_ns"]))
        replay_bag(b, FramePipeline(engine), spec, acc)
    offline = acc.results()
    assert offline["frames"] == live["frames"]
    for key in ("miou_all", "miou_present", "pixel_acc"):
        assert offline["semseg"][key] == pytest.approx(live["semseg"][key], abs=1e-6), key
    for key in ("rmse", "abs_rel", "delta1"):
        assert offline["depth"][key] == pytest.approx(live["depth"][key], rel=1e-4), key
    assert offline["depth"]["n_valid"] == live["depth"]["n_valid"]


def test_replay_launch_plan_without_launch():
    from mtl_perception.ros.player import replay_plan

    mtl = "/opt/ws/install/mtl_perception/lib/mtl_perception/mtl-perception"
    plan = replay_plan({"bag": "/data/drive", "rate": "0.5", "player": "auto"}, ros2_available=False, mtl_exe=mtl)
    assert plan["player"][:4] == [mtl, "play", "--bag", "/data/drive"] and "--clock" in plan["player"]
    assert plan["evaluator"][:4] == [mtl, "live-eval", "--node", "/perception_node"]
    gate = [mtl, "wait-ready", "--topic", "/camera/image_raw", "--node", "/perception_node", "--timeout", "120.0"]
    assert plan["gate"] == gate
    assert plan["evaluator_gate"][:2] == [mtl, "wait-ready"] and "/replay_evaluator" in plan["evaluator_gate"]
    assert plan["node_overrides"]["use_sim_time"] is True and plan["report"] == "replay_report_drive"
    ros2 = replay_plan(
        {"bag": "/data/drive", "namespace": "cam", "image_topic": "/cam/img", "start_delay": "2"},
        ros2_available=True,
        mtl_exe=mtl,
        ros2_exe="/opt/ros/kilted/bin/ros2",
    )
    assert ros2["player"][:4] == ["/opt/ros/kilted/bin/ros2", "bag", "play", "/data/drive"]
    assert "/cam/perception_node" in ros2["evaluator"]
    assert ros2["gate"][3:6] == ["/cam/img", "--node", "/cam/perception_node"]
    assert float(ros2["player"][ros2["player"].index("--delay") + 1]) > 2.0  # + discovery margin
    no_eval = replay_plan({"bag": "/b", "evaluate": "false"}, ros2_available=False, mtl_exe=mtl)
    assert no_eval["evaluator"] is None and no_eval["evaluator_gate"] is None
    with pytest.raises(ValueError, match="bag:=PATH"):
        replay_plan({})
    with pytest.raises(ValueError, match="no `ros2` executable"):
        replay_plan({"bag": "/b", "player": "ros2"}, mtl_exe=mtl, ros2_exe="")


def test_bag_replay_launch_file_with_launch():
    pytest.importorskip("launch", reason="`launch` (ROS 2) is not installed here: launch file not executable")
    pytest.importorskip("launch_ros", reason="`launch_ros` (ROS 2) is not installed here")
    import importlib.util

    spec = importlib.util.spec_from_file_location("bag_replay_launch", ROOT / "launch" / "bag_replay.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    desc = mod.generate_launch_description()
    names = {a.name for a in desc.get_launch_arguments()}
    assert {"bag", "rate", "player", "decoder", "rviz"} <= names
