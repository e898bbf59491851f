"""The node's intrinsics: K from camera_info (rescaled when it is for another size) turns a
canonical-camera model's depth into metres; without a usable camera_info the model's default field
of view is used, warned once and counted. Unit tests of the K handling, then a real camera process
-> perception_node process -> checker process run (tiny letterboxing model, canonical focal 300)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")

from ros_helpers.procs import NodeProcess, ros_env, run_scenario, tiny_checkpoint  # noqa: E402
from sensor_msgs.msg import CameraInfo  # noqa: E402

from mtl_perception import imaging as C  # noqa: E402
from mtl_perception.geometry import Letterbox, default_intrinsics  # noqa: E402
from mtl_perception.ros.diagnostics import OK, WARN, assess  # noqa: E402
from mtl_perception.ros.stats import COUNTERS  # noqa: E402

H_, W_ = 96, 160  # the camera helper's frame size
NET = (64, 128)  # tiny model input
CANONICAL_FOCAL = 300.0


def _info(h: int, w: int, f: float) -> CameraInfo:
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return CameraInfo(height=h, width=w, k=[f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0])


# ---------------------------------------------------------------------------------------------- units
def test_frame_intrinsics_exact_size():
    K, status = C.frame_intrinsics(_info(H_, W_, 128.0), (H_, W_))
    assert status == C.INTRINSICS_EXACT
    np.testing.assert_array_equal(K, np.array([[128.0, 0, 79.5], [0, 128.0, 47.5], [0, 0, 1]]))


def test_frame_intrinsics_rescales_another_size():
    """A camera_info of twice the image size: K scaled to the image (pixel-centre convention)."""
    K, status = C.frame_intrinsics(_info(2 * H_, 2 * W_, 256.0), (H_, W_))
    assert status == C.INTRINSICS_SCALED
    np.testing.assert_allclose(K, np.array([[128.0, 0, 79.5], [0, 128.0, 47.5], [0, 0, 1]]))
    K, status = C.frame_intrinsics(_info(H_, 2 * W_, 256.0), (H_, W_))  # per axis
    assert status == C.INTRINSICS_SCALED and (K[0, 0], K[1, 1]) == (128.0, 256.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _info(H_, W_, 0.0),  # an uncalibrated driver: K all zero
        lambda: CameraInfo(height=H_, width=W_),
        lambda: _info(H_, W_, float("nan")),
        lambda: _info(H_, W_, -128.0),
        lambda: _info(0, 0, 128.0),  # no size: cannot be rescaled
    ],
    ids=["zero_fx", "default_msg", "nan", "negative", "no_size"],
)
def test_frame_intrinsics_unusable(make):
    assert C.frame_intrinsics(make(), (H_, W_)) == (None, C.INTRINSICS_INVALID)


def test_frame_intrinsics_without_camera_info():
    assert C.frame_intrinsics(None, (H_, W_)) == (None, C.INTRINSICS_NONE)


def test_default_intrinsics_counter_warns_in_diagnostics():
    assert "frames_default_intrinsics" in COUNTERS
    base = dict.fromkeys(COUNTERS, 0) | {"frames_received": 10}
    assert assess(base, base, 0.1)[0] == OK
    level, text = assess({**base, "frames_default_intrinsics": 3}, base, 0.1)
    assert level == WARN and "camera_info" in text and "field of view" in text


def test_stats_message_has_every_counter():
    msg = pytest.importorskip("mtl_perception.msg", reason="msg interfaces not generated")
    fields = msg.PerceptionStats.get_fields_and_field_types()
    assert set(COUNTERS) <= set(fields), "msg/PerceptionStats.msg lacks a counter of ros/stats.py (rebuild msgs?)"


@pytest.fixture(scope="module")
def letterbox_model(tmp_path_factory):
    camera = {"resize": "letterbox", "canonical_focal": CANONICAL_FOCAL, "default_hfov_deg": 70.0}
    return tiny_checkpoint(tmp_path_factory.mktemp("lb") / "lb.safetensors", camera)


def test_node_waits_once_for_the_first_camera_info(letterbox_model):
    """In-process node: the first image usually comes just before its camera_info (CameraPublisher
    order); the worker waits briefly for it, once, and then uses it; without any camera_info later
    frames are not delayed, use the default field of view and are counted."""
    import threading
    import time

    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from std_msgs.msg import Header

    from mtl_perception.ros import harness as H
    from mtl_perception.ros.node import FIRST_CAMERA_INFO_WAIT_S, PerceptionNode

    ctx = Context()
    rclpy.init(context=ctx, domain_id=int(ros_env()["ROS_DOMAIN_ID"]))
    values = {"model_path": str(letterbox_model), "backend": "torch", "threads": 1}
    node = PerceptionNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    try:
        info = _info(H_, W_, 128.0)
        threading.Timer(0.02, node.streams[0]._on_camera_info, (info,)).start()  # "arrives" just after the image
        K, cam = node.streams[0].intrinsics_for_frame((H_, W_), node.engine.info)
        assert cam is info and K[0, 0] == 128.0

        node2 = PerceptionNode(
            context=ctx, node_name="no_info", parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]
        )
        try:
            t0 = time.monotonic()
            assert node2.streams[0].intrinsics_for_frame((H_, W_), node2.engine.info) == (None, None)
            assert time.monotonic() - t0 >= FIRST_CAMERA_INFO_WAIT_S * 0.9  # waited once...
            t0 = time.monotonic()
            assert node2.streams[0].intrinsics_for_frame((H_, W_), node2.engine.info) == (None, None)
            assert time.monotonic() - t0 < FIRST_CAMERA_INFO_WAIT_S / 2  # ...and never again
            header = Header(stamp=H.to_stamp(time.time_ns()), frame_id="camera_optical_frame")
            frame = H.image_message(H.pattern_frame(H_, W_, seed=1), "rgb8", header)
            node2._process(frame, time.perf_counter())
            counts = node2.stats.snapshot()
            assert counts["frames_processed"] == 1 and counts["frames_default_intrinsics"] == 1
        finally:
            node2.close()
            node2.destroy_node()
    finally:
        node.close()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


# ---------------------------------------------------------------------------------------------- live node
@pytest.mark.ros
@pytest.mark.slow
def test_camera_info_fx_sets_the_published_depth(tmp_path, letterbox_model):
    """Same picture, camera_info fx then 2 fx: published depth doubles exactly. A camera_info of twice
    the size is rescaled (same depth as fx, counted as a mismatch, no ~/depth/camera_info from it);
    none or an unusable K: the default field of view, one warning, counted. At output_resolution
    'network' the products and ~/depth/camera_info are the letterbox content window."""
    env = ros_env("large_data")
    node = NodeProcess(
        letterbox_model,
        env,
        tmp_path / "node.log",
        # the random tiny model's sky is not this test's subject: depth values are compared one to one
        params={"output_resolution": "network", "sky_beyond_range": False},
    )
    try:
        node.wait_ready()
        sent, got, arrays = run_scenario(tmp_path, env, "intrinsics", "--rate", "4", npz=True)
        log = node.log()
    finally:
        node.kill()
    stamp = {s["label"]: s["stamp_ns"] for s in sent}
    depth = {label: arrays.get(f"depth_{ns}") for label, ns in stamp.items()}
    assert all(d is not None for d in depth.values()), {k for k, d in depth.items() if d is None}
    box = Letterbox.fit((H_, W_), NET)
    assert (box.pad_top, box.pad_left) != (0, 0)  # 5:3 frames into a 2:1 network: letterboxed
    assert depth["fx"].shape == box.content_hw

    ref = depth["fx"].astype(np.float64)
    assert np.isfinite(ref).all() and ref.std() > 0
    np.testing.assert_allclose(depth["2fx"], 2 * ref, rtol=1e-5)
    np.testing.assert_allclose(depth["scaled"], ref, rtol=1e-5)
    np.testing.assert_allclose(depth["fx_again"], ref, rtol=1e-5)
    f_default = default_intrinsics(H_, W_, 70.0)[0, 0]
    assert f_default == pytest.approx(0.5 * W_ / math.tan(math.radians(35)))
    for label in ("none", "invalid/0", "invalid/1", "invalid/2"):
        np.testing.assert_allclose(depth[label], ref * f_default / (0.8 * W_), rtol=1e-5, err_msg=label)
    # absolute metres: what FramePipeline gives in this process for the same frame and K
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.pipeline import FramePipeline
    from mtl_perception.ros import harness as H

    engine = InferenceEngine.create(letterbox_model, backend="torch", precision="fp32", threads=1)
    K = np.array([[0.8 * W_, 0, (W_ - 1) / 2], [0, 0.8 * W_, (H_ - 1) / 2], [0, 0, 1]])
    expected = FramePipeline(engine, "network", sky_beyond_range=False).process(H.pattern_frame(H_, W_, seed=1), K=K)
    np.testing.assert_allclose(depth["fx"], expected.depth, rtol=1e-5)
    assert expected.depth_scale == pytest.approx(0.8 * W_ * box.scale_x / CANONICAL_FOCAL)

    infos = {r["stamp_ns"]: r for r in got["depth/camera_info"]}
    with_info = {label for label, ns in stamp.items() if ns in infos}
    assert with_info == {"fx", "2fx", "fx_again"}, with_info
    info = infos[stamp["fx"]]
    sx = box.content_hw[1] / W_
    assert (info["height"], info["width"]) == box.content_hw
    assert info["k"][0] == pytest.approx(0.8 * W_ * sx)
    assert info["k"][2] == pytest.approx(((W_ - 1) / 2 + 0.5) * sx - 0.5)
    assert {r["stamp_ns"] for r in got["points"]} == {stamp[k] for k in with_info}

    st = got["stats"][-1]
    # the camera's warm-up frames (no camera_info either) are processed before the scenario's
    warmup = st["frames_processed"] - len(sent)
    assert warmup >= 1 and st["frames_default_intrinsics"] == 4 + warmup
    assert st["camera_info_mismatches"] == 1
    assert st["frames_failed"] == 0
    assert log.count("frames_default_intrinsics") == 1, log[-3000:]  # warned once, not per frame
    assert "no camera_info on /camera/camera_info yet: metric depth assumes" in log
    assert "has no usable intrinsics" not in log  # the second cause is not warned again
    assert log.count("received: using its intrinsics") == 1
