"""perception_node with ``camera_height``: the depth it publishes is FramePipeline's with the same
height (the road-plane scale of mtl_perception.ground_plane), /diagnostics says what the fit did and
which depth options are in force, and setting the parameters while serving changes the next frames.
A node process (the shipped model, torch backend: a random tiny network has no road to fit) and a
camera + recorder in this test process, private domain; the frame is a rendered street with its
exact K and camera height."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")

from rclpy.parameter import Parameter  # noqa: E402
from ros_helpers.procs import NODE_FQN, NodeProcess, Peer, float_image, ros_env, wait_for  # noqa: E402

from mtl_perception.ros import harness as H  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_node_scales_depth_to_the_camera_height_and_reports_it(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CameraInfo

    from mtl_perception.data.synthetic import render_frame
    from mtl_perception.deploy.artifacts import shipped_checkpoint
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.pipeline import FramePipeline
    from mtl_perception.ros.node import ground_plane_text

    frame = render_frame(seed=5, height=256, width=512)
    K = frame.K.astype(np.float64)
    mounted = float(frame.pose[1, 3])  # world y is up, the road at y = 0
    ckpt = shipped_checkpoint()
    env = ros_env()
    node = NodeProcess(ckpt, env, tmp_path / "node.log", params={"camera_height": mounted})
    peer = None
    try:
        node.wait_ready()
        peer = Peer(env)
        cam = H.Camera(peer.node, "/camera/image", "/camera/camera_info", reliable=True, depth=5)
        rec = H.Recorder(peer.node, NODE_FQN, topics=("depth", "semantic", "semantic/confidence"))
        diags: list = []
        peer.node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        cam.wait_for_subscriber()
        wait_for(rec.matched, 10, "recorder not matched")

        def send() -> int:
            header = cam.header()
            info = CameraInfo(header=header, height=256, width=512, distortion_model="plumb_bob")
            info.k = [float(v) for v in K.ravel()]
            info.d = [0.0] * 5
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            info.p = [K[0, 0], 0.0, K[0, 2], 0.0, 0.0, K[1, 1], K[1, 2], 0.0, 0.0, 0.0, 1.0, 0.0]
            cam.info.publish(info)
            time.sleep(0.1)  # camera_info first: the node pairs the image with it
            cam.image.publish(H.image_message(frame.image, "rgb8", header))
            return H.stamp_ns(header.stamp)

        def depth_of(ns: int) -> np.ndarray | None:
            with rec.lock:
                got = {H.stamp_ns(m.header.stamp): m for _, m in rec.messages["depth"]}
            return None if ns not in got else float_image(got[ns])

        def labels_of(ns: int) -> np.ndarray | None:
            with rec.lock:
                got = {H.stamp_ns(m.header.stamp): m for _, m in rec.messages["semantic"]}
            if ns not in got:
                return None
            m = got[ns]
            return np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.step)[:, : m.width]

        def confidence_of(ns: int) -> np.ndarray | None:
            with rec.lock:
                got = {H.stamp_ns(m.header.stamp): m for _, m in rec.messages["semantic/confidence"]}
            return None if ns not in got else float_image(got[ns])

        def diagnostic(key: str) -> str | None:
            for arr in reversed(diags):
                for st in arr.status:
                    kv = {v.key: v.value for v in st.values}
                    if key in kv:
                        return kv[key]
            return None

        def ground_plane_status() -> str | None:
            return diagnostic("ground_plane")

        first = send()
        wait_for(lambda: depth_of(first) is not None, 60, "no depth for the first frame")
        engine = InferenceEngine.create(ckpt, backend="torch", precision="fp32", threads=1)
        pipe = FramePipeline(engine)
        want = pipe.process(frame.image, K=K, camera_height=mounted)
        assert want.ground_scale.applied, want.ground_scale.reason  # a rendered street: a flat road
        np.testing.assert_allclose(depth_of(first), want.depth, rtol=1e-4, equal_nan=True)
        wait_for(lambda: ground_plane_status() == ground_plane_text(want.ground_scale, mounted), 15, "diagnostics")
        # twice the height: every distance twice as far, from the next frame on
        assert peer.set_params([Parameter("camera_height", value=2 * mounted)]) == [True]
        second = send()
        wait_for(lambda: depth_of(second) is not None, 60, "no depth after setting camera_height")
        np.testing.assert_allclose(depth_of(second), 2 * want.depth, rtol=1e-4, equal_nan=True)
        # off: the network's own scale
        assert peer.set_params([Parameter("camera_height", value=0.0)]) == [True]
        third = send()
        wait_for(lambda: depth_of(third) is not None, 60, "no depth after camera_height 0")
        plain = pipe.process(frame.image, K=K)
        np.testing.assert_allclose(depth_of(third), plain.depth, rtol=1e-4, equal_nan=True)
        wait_for(lambda: (ground_plane_status() or "").startswith("off"), 15, "diagnostics off")
        assert peer.set_params([Parameter("camera_height", value=-1.0)]) == [False]  # validated
        # sky is beyond range: +inf exactly on the pixels the node labels sky with P(sky) >= 0.5 (its
        # ~/semantic and ~/semantic/confidence); the network's value when off
        wait_for(lambda: labels_of(third) is not None, 30, "no semantic for the third frame")
        wait_for(lambda: confidence_of(third) is not None, 30, "no confidence for the third frame")
        sky = (labels_of(third) == list(engine.info.classes).index("sky")) & (confidence_of(third) >= 0.5)
        assert sky.any() and np.isposinf(depth_of(third)[sky]).all() and not np.isinf(depth_of(third)[~sky]).any()
        assert peer.set_params([Parameter("sky_beyond_range", value=False)]) == [True]
        fourth = send()
        wait_for(lambda: depth_of(fourth) is not None, 60, "no depth after sky_beyond_range false")
        raw = FramePipeline(engine, sky_beyond_range=False).process(frame.image, K=K)
        np.testing.assert_allclose(depth_of(fourth), raw.depth, rtol=1e-4, equal_nan=True)
        assert np.isfinite(depth_of(fourth)[sky]).all()
        # /diagnostics names the depth options in force, by the parameters' names, after run-time changes
        assert peer.set_params([Parameter("sky_min_confidence", value=0.9)]) == [True]
        want_text = (
            "ground_contact_depth=true sky_beyond_range=false sky_min_confidence=0.9 "
            "sky_max_below_horizon_deg=5 sky_connected_to_top=false people_need_support=false"
        )
        wait_for(lambda: diagnostic("depth_options") == want_text, 15, f"depth_options: {diagnostic('depth_options')}")
    finally:
        node.kill()  # first: see Peer.close
        if peer is not None:
            peer.close()
