"""ROS layer units: launch argument mapping, parameter validation, latest-frame slot, stats, message builders."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mtl_perception.ros import launch_args
from mtl_perception.ros import params as P
from mtl_perception.ros.latest import LatestSlots
from mtl_perception.ros.stats import NodeStats, Throttle

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- launch args
def test_launch_defaults_map_to_variant_params_file_and_large_data():
    cfg = launch_args.node_config({}, "/share/mtl_perception")
    assert cfg.namespace == "perception"
    assert cfg.parameters[0] == "/share/mtl_perception/config/ros/mlore.param.yaml"
    assert cfg.parameters[1] == {
        "decoder": "mlore",
        "precision": "fp32",
        "backend": "auto",
        "input_transport": "raw",
        "use_sim_time": False,
    }
    assert ("image", "/camera/image_raw") in cfg.remappings
    assert ("image/compressed", "/camera/image_raw/compressed") in cfg.remappings
    assert ("camera_info", "/camera/camera_info") in cfg.remappings
    assert cfg.env["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA"
    assert cfg.env["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("config/ros/fastdds_large_data.xml")
    assert cfg.rviz is False and cfg.rviz_config.endswith("rviz/mtl_perception.rviz")


def test_launch_arguments_override():
    cfg = launch_args.node_config(
        {
            "decoder": "meco",
            "precision": "fp16",
            "backend": "tensorrt",
            "namespace": "/front/",
            "image": "/cam0/img",
            "camera_info": "/cam0/info",
            "use_sim_time": "true",
            "rviz": "true",
            "params_file": "/my.yaml",
            "model_path": "/m.safetensors",
            "dds_transport": "default",
            "input_transport": "compressed",
        },
        "/s",
    )
    assert cfg.namespace == "front" and cfg.parameters[0] == "/my.yaml"
    assert cfg.parameters[1]["decoder"] == "meco" and cfg.parameters[1]["precision"] == "fp16"
    assert cfg.parameters[1]["backend"] == "tensorrt" and cfg.parameters[1]["use_sim_time"] is True
    assert cfg.parameters[1]["model_path"] == "/m.safetensors" and cfg.parameters[1]["input_transport"] == "compressed"
    assert ("image", "/cam0/img") in cfg.remappings and ("image/compressed", "/cam0/img/compressed") in cfg.remappings
    assert cfg.env == {"FASTDDS_BUILTIN_TRANSPORTS": "DEFAULT"} and cfg.rviz is True
    assert "camera_height" not in cfg.parameters[1]  # empty: the params file's value
    assert launch_args.node_config({"camera_height": "1.65"}, "/s").parameters[1]["camera_height"] == 1.65


@pytest.mark.parametrize(
    "values,match",
    [
        ({"decoder": "resnet"}, "decoder"),
        ({"precision": "fp64"}, "precision"),
        ({"backend": "cuda"}, "backend"),
        ({"rviz": "maybe"}, "rviz"),
        ({"bogus": "1"}, "unknown"),
        ({"camera_height": "tall"}, "camera_height"),
        ({"camera_height": "-1"}, "camera_height"),
    ],
)
def test_launch_rejects_bad_values(values, match):
    with pytest.raises(ValueError, match=match):
        launch_args.node_config(values, "/s")


def test_every_variant_has_a_params_file_that_the_node_accepts():
    import yaml

    for decoder in launch_args.ARGUMENTS["decoder"].choices:
        path = ROOT / "config" / "ros" / f"{decoder}.param.yaml"
        values = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
        assert values["decoder"] == decoder
        # `cameras` is documented in a comment: rcl's YAML parser rejects an empty sequence
        assert set(values) == set(P.BY_NAME) - {"cameras"}, f"{path.name}: {set(values) ^ set(P.BY_NAME)}"
        assert "# cameras: [" in path.read_text()
        for name, value in values.items():
            assert P.validate(name, value) is None, (path.name, name, value)


def test_launch_file_declares_the_arguments():
    """The launch file itself, run with launch_testing where `launch` exists (a ROS install)."""
    pytest.importorskip("launch", reason="`launch`/`launch_ros` are not on PyPI: launch file not executed here")
    import importlib.util

    spec = importlib.util.spec_from_file_location("camera_launch", ROOT / "launch" / "camera.launch.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ld = mod.generate_launch_description()
    names = {a.name for a in ld.get_launch_arguments()}
    assert set(launch_args.ARGUMENTS) <= names


def test_launch_file_compiles():
    compile((ROOT / "launch" / "camera.launch.py").read_text(), "camera.launch.py", "exec")


# ---------------------------------------------------------------------------------------------- params
@pytest.mark.parametrize(
    "name,value,ok",
    [
        ("point_stride", 4, True),
        ("point_stride", 0, False),
        ("point_stride", 2.5, False),
        ("point_stride", True, False),
        ("color_blend", 0.5, True),
        ("color_blend", 1.5, False),
        ("output_resolution", "network", True),
        ("output_resolution", "half", False),
        ("decoder", "", True),
        ("decoder", "moe", True),
        ("decoder", "x", False),
        ("precision", "int8", True),
        ("input_size", [0, 0], True),
        ("input_size", [256, 512], True),
        ("input_size", [0, 512], False),
        ("input_size", [256], False),
        ("use_sim_time", True, True),
        ("camera_height", 0.0, True),
        ("camera_height", 1.65, True),
        ("camera_height", -1.0, False),
        ("camera_height", 12.0, False),
        ("cameras", [], True),
        ("cameras", ["front", "rear/left"], True),
        ("cameras", ["front", "front"], False),
        ("cameras", ["1st"], False),
        ("cameras", ["/abs"], False),
    ],
)
def test_validate(name, value, ok):
    reason = P.validate(name, value)
    assert (reason is None) == ok, reason
    if not ok:
        assert name in reason


def test_reload_parameters_are_read_only_with_a_reason():
    pytest.importorskip("rcl_interfaces", reason="rclpy not installed")
    for spec in P.SPECS:
        d = P.descriptor(spec)
        assert d.read_only == spec.read_only
        if spec.read_only:
            assert "restart" in d.description
        if spec.name in P.ENGINE_PARAMS:  # hot-swapped, and the description says so
            assert not spec.read_only and "background" in d.description
    assert {s.name for s in P.SPECS if s.read_only} >= {
        "engine_cache_dir",
        "input_size",
        "input_transport",
        "cameras",
        "autostart",
    }
    assert {s.name for s in P.SPECS if not s.read_only} >= {
        "point_stride",
        "color_blend",
        "output_resolution",
        "publish_points",
        "decoder",
        "model_path",
        "backend",
        "precision",
    }


# ---------------------------------------------------------------------------------------------- latest slot / stats
def test_latest_slot_replaces_and_counts():
    slots = LatestSlots(["cam"])
    replaced = [slots.put("cam", i) for i in (1, 2, 3)]
    assert replaced == [False, True, True]
    assert slots.take_all(0) == {"cam": 3} and slots.take_all(0.01) == {} and sum(replaced) == 2


def test_latest_slots_one_per_key_newest_wins():
    slots = LatestSlots(["a", "b", "c"])
    assert slots.put("b", 1) is False and slots.put("a", 2) is False and slots.put("b", 3) is True
    assert slots.take_all(0) == {"a": 2, "b": 3} and list(slots.take_all(0)) == []
    slots.put("c", 4)
    assert slots.clear_keys() == ["c"] and slots.take_all(0) == {}


def test_latest_slot_wakes_worker_and_closes():
    slots, got = LatestSlots(["cam"]), []

    def worker():
        while not slots.closed:
            items = slots.take_all(1.0)
            got.extend(items.values())

    t = threading.Thread(target=worker)
    t.start()
    slots.put("cam", "a")
    time.sleep(0.05)
    slots.close()
    t.join(2)
    assert got == ["a"] and not t.is_alive()


def test_stats_and_throttle():
    s = NodeStats()
    s.add("frames_received", 3)
    s.frame_done({"inference": 10.0})
    s.frame_done({"inference": 30.0})
    assert s.snapshot()["frames_processed"] == 2 and s.fps(1.0) == 2.0
    assert s.percentiles(50)["inference"] == 20.0
    logged = []
    th = Throttle(logged.append, period_s=10)
    assert th("a", "x") and not th("a", "y") and th("b", "z")
    assert logged == ["x", "z"]


# ---------------------------------------------------------------------------------------------- messages (rclpy)
def test_cloud_numpy_packer_and_sensor_msgs_py_agree():
    pytest.importorskip("sensor_msgs", reason="rclpy messages not installed")
    from std_msgs.msg import Header

    from mtl_perception.imaging import CLOUD_DTYPE, semantic_cloud
    from mtl_perception.ros import conversions as C

    depth = np.random.default_rng(0).uniform(1, 50, (12, 16)).astype(np.float32)
    depth[0, :5] = np.nan
    labels = np.random.default_rng(1).integers(0, 19, (12, 16), dtype=np.uint8)
    colors = np.random.default_rng(2).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    pts, _ = semantic_cloud(depth, labels, colors, [[10, 0, 8], [0, 10, 6], [0, 0, 1]], stride=2)
    h = Header(frame_id="cam")
    ours = C.cloud_msg(pts, h, use_sensor_msgs_py=False)
    assert ours.width == len(pts) and ours.height == 1 and ours.point_step == 20 and ours.row_step == 20 * len(pts)
    assert [(f.name, f.offset, f.datatype, f.count) for f in ours.fields] == [
        ("x", 0, 7, 1),
        ("y", 4, 7, 1),
        ("z", 8, 7, 1),
        ("rgb", 12, 7, 1),
        ("label", 16, 6, 1),
    ]
    back = np.frombuffer(bytes(ours.data), CLOUD_DTYPE)
    np.testing.assert_array_equal(back, pts)
    pc2 = pytest.importorskip("sensor_msgs_py.point_cloud2", reason="sensor_msgs_py comes with a ROS install, not PyPI")
    theirs = C.cloud_msg(pts, h, use_sensor_msgs_py=True)
    assert bytes(theirs.data) == bytes(ours.data) and theirs.point_step == ours.point_step
    assert list(pc2.read_points(ours, field_names=("x", "label")))[0][1] == pts[0]["label"]


def test_camera_info_for_scales_to_the_products():
    pytest.importorskip("sensor_msgs", reason="rclpy messages not installed")
    from std_msgs.msg import Header

    from mtl_perception.ros import conversions as C
    from mtl_perception.ros.harness import camera_info_message

    info = camera_info_message(480, 640, Header(frame_id="a"))
    info.roi.width, info.roi.height = 640, 480
    same = C.camera_info_for(info, (480, 640), Header(frame_id="b"))
    assert same.header.frame_id == "b" and list(same.k) == list(info.k)
    half = C.camera_info_for(info, (240, 320), Header(frame_id="b"))
    assert (half.height, half.width) == (240, 320) and half.k[0] == pytest.approx(info.k[0] / 2)
    assert half.k[2] == pytest.approx(159.5) and half.p[0] == pytest.approx(info.p[0] / 2)
    assert (half.roi.width, half.roi.height) == (320, 240) and list(half.d) == list(info.d)


def test_image_msg_is_fast_bytes_path():
    pytest.importorskip("sensor_msgs", reason="rclpy messages not installed")
    from std_msgs.msg import Header

    from mtl_perception.ros.conversions import image_msg

    depth = np.full((720, 1280), 3.5, np.float32)
    t = time.perf_counter()
    m = image_msg(depth, "32FC1", Header(frame_id="x"))
    assert time.perf_counter() - t < 0.1  # a numpy assignment takes ~250 ms at this size
    assert m.step == 1280 * 4 and len(m.data) == 720 * 1280 * 4 and m.header.frame_id == "x"


def test_diagnostics_assessment():
    pytest.importorskip("diagnostic_msgs", reason="diagnostic_msgs not installed")
    from mtl_perception.ros.diagnostics import ERROR, OK, WARN, assess

    base = {"frames_received": 10, "frames_failed": 0, "frames_dropped_invalid": 0, "camera_info_mismatches": 0}
    assert assess(base, base, 0.1)[0] == OK
    assert assess({**base, "frames_failed": 1}, base, 0.1)[0] == ERROR
    assert assess({**base, "frames_dropped_invalid": 2}, base, 0.1)[0] == WARN
    assert assess({**base, "frames_received": 0}, base, None)[0] == WARN
    assert assess(base, base, 9.0) == (WARN, "no frame processed for 9 s")


def test_image_message_pool_matches_image_msg_and_reuses_its_buffer():
    from std_msgs.msg import Header

    from mtl_perception.ros.conversions import ImageMessagePool, image_msg

    pool = ImageMessagePool()
    rng = np.random.default_rng(0)
    header = Header(frame_id="cam")
    for encoding, shape, dtype in (
        ("32FC1", (6, 10), np.float32),
        ("mono8", (6, 10), np.uint8),
        ("rgb8", (6, 10, 3), np.uint8),
    ):
        a = (rng.random(shape) * 200).astype(dtype)
        got, ref = pool.image(encoding, a, encoding, header), image_msg(a, encoding, header)
        for f in ("height", "width", "encoding", "is_bigendian", "step"):
            assert getattr(got, f) == getattr(ref, f)
        assert bytes(got.data) == bytes(ref.data) and got.header.frame_id == "cam"
    first = pool.image("d", np.ones((4, 4), np.float32), "32FC1", header)
    buf = first.data
    second = pool.image("d", np.full((4, 4), 2.0, np.float32), "32FC1", header)
    assert second.data is buf  # same storage, refilled
    assert np.frombuffer(second.data, np.float32).tolist() == [2.0] * 16
    third = pool.image("d", np.zeros((2, 4), np.float32), "32FC1", header)  # size change: new buffer
    assert third.data is not buf and len(third.data) == 32


def test_image_message_pool_publishes_message_arrays_without_a_copy():
    """A product resized into ``pipeline.message_array`` becomes the message's storage itself; views,
    strided arrays and plain arrays are copied as before (the bytes are the same either way)."""
    from std_msgs.msg import Header

    from mtl_perception.pipeline import message_array
    from mtl_perception.ros.conversions import ImageMessagePool, image_msg

    pool, header = ImageMessagePool(), Header(frame_id="cam")
    owned = message_array((6, 10), np.float32)
    owned[:] = np.arange(60, dtype=np.float32).reshape(6, 10)
    msg = pool.image("depth", owned, "32FC1", header)
    assert np.shares_memory(np.frombuffer(msg.data, np.uint8), owned)  # no copy
    assert bytes(msg.data) == bytes(image_msg(owned, "32FC1", header).data)
    for other in (owned[1:4], owned[:, ::2], owned.copy(), np.asfortranarray(owned)):
        m = pool.image("other", other, "32FC1", header)
        assert not np.shares_memory(np.frombuffer(m.data, np.uint8), owned)
        assert bytes(m.data) == np.ascontiguousarray(other).tobytes()


def test_transport_env_matches_the_launch_files():
    """Every participant a tool starts gets what camera.launch.py sets: the variable AND the profile
    (the variable alone measured 4x the DDS latency and multi-second stalls); `default` clears both,
    even when inherited, because mixed participants do not discover each other."""
    from mtl_perception.ros.harness import transport_env

    inherited = {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA", "FASTDDS_DEFAULT_PROFILES_FILE": "/x.xml", "A": "1"}
    large = transport_env("large_data", domain_id=7, base=inherited)
    assert large["FASTDDS_BUILTIN_TRANSPORTS"] == "LARGE_DATA" and large["ROS_DOMAIN_ID"] == "7" and large["A"] == "1"
    assert Path(large["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()
    assert "<builtinTransports" in Path(large["FASTDDS_DEFAULT_PROFILES_FILE"]).read_text()
    default = transport_env("default", base=inherited)
    assert "FASTDDS_BUILTIN_TRANSPORTS" not in default and "FASTDDS_DEFAULT_PROFILES_FILE" not in default
    cfg = launch_args.node_config({"dds_transport": "large_data"}, ROOT)
    assert (
        Path(cfg.env["FASTDDS_DEFAULT_PROFILES_FILE"]).read_text()
        == Path(large["FASTDDS_DEFAULT_PROFILES_FILE"]).read_text()
    )


def test_launch_cameras_argument_maps_to_the_node_parameter():
    cfg = launch_args.node_config({"cameras": "[front, rear]", "namespace": "perception"}, ROOT)
    assert cfg.parameters[1]["cameras"] == ["front", "rear"]
    assert cfg.input_topic == "/perception/front/image"  # the replay gate waits for the first camera
    assert launch_args.parse_cameras("front,rear left") == ["front", "rear", "left"]
    assert "cameras" not in launch_args.node_config({}, ROOT).parameters[1]  # default: one camera
    with pytest.raises(ValueError, match="cameras"):
        launch_args.node_config({"cameras": "front,front"}, ROOT)
