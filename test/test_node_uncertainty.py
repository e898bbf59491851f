"""perception_node with a model that has the depth uncertainty head: ~/depth/uncertainty (32FC1 metres,
the input's header, NaN exactly where depth is NaN, equal to FramePipeline's), PerceptionResult's
depth_uncertainty, and max_point_uncertainty thinning ~/points. A node process (tiny random-weight
model with the head, torch backend) and a camera + recorder in this test process, private domain."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")

from rclpy.parameter import Parameter  # noqa: E402
from ros_helpers.procs import NODE_FQN, NodeProcess, Peer, float_image, ros_env, wait_for  # noqa: E402

from mtl_perception.ros import harness as H  # noqa: E402

pytestmark = [pytest.mark.ros]
FRAME_HW = (96, 160)


def _model_with_head(path: Path) -> Path:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_models import standardize_depth_head_, tiny_config

    from mtl_perception.model import build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = {**tiny_config("mlore"), "uncertainty": {"depth": True}}
    model = build_model(cfg)
    standardize_depth_head_(model, torch.randn(2, 3, *cfg["input_size"]))
    with torch.no_grad():
        model.uncertainty.out.weight.mul_(30.0)  # sigma that varies over the frame
    return save_checkpoint(model, path)


def test_node_publishes_depth_uncertainty_and_filters_points(tmp_path):
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.pipeline import FramePipeline

    ckpt = _model_with_head(tmp_path / "unc.safetensors")
    env = ros_env()
    # sky_beyond_range off: the random tiny model labels pixels sky at random, and this test is about the
    # uncertainty bound on points, not the sky policy
    node = NodeProcess(ckpt, env, tmp_path / "node.log", params={"point_stride": 2, "sky_beyond_range": False})
    peer = None
    try:
        node.wait_ready()
        assert "no depth uncertainty head" not in node.log()
        peer = Peer(env)
        cam = H.Camera(peer.node, "/camera/image", "/camera/camera_info", reliable=True, depth=5)
        rec = H.Recorder(peer.node, NODE_FQN, topics=("depth", "depth/uncertainty", "points", "result"))
        cam.wait_for_subscriber()
        wait_for(rec.matched, 10, "recorder not matched")

        def send(n: int) -> list[int]:
            stamps = []
            for _ in range(n):
                header = cam.header()
                cam.info.publish(H.camera_info_message(*FRAME_HW, header))
                cam.image.publish(H.image_message(H.pattern_frame(*FRAME_HW, seed=1), "rgb8", header))
                stamps.append(H.stamp_ns(header.stamp))
                time.sleep(0.4)
            return stamps

        def have(topic: str, stamps: list[int]) -> bool:
            with rec.lock:
                return set(stamps) <= {H.stamp_ns(m.header.stamp) for _, m in rec.messages[topic]}

        def by_stamp(topic: str) -> dict[int, object]:
            with rec.lock:
                return {H.stamp_ns(m.header.stamp): m for _, m in rec.messages[topic]}

        first = send(3)
        for topic in ("depth", "depth/uncertainty", "points", "result"):
            wait_for(lambda t=topic: have(t, first), 30, f"missing {topic}")
        depth, unc, points, result = (by_stamp(t) for t in ("depth", "depth/uncertainty", "points", "result"))
        engine = InferenceEngine.create(ckpt, backend="torch", precision="fp32", threads=1)
        # a legacy (stretch, metric) model: K does not change its depth
        expected = FramePipeline(engine, sky_beyond_range=False).process(
            H.pattern_frame(*FRAME_HW, seed=1), depth_uncertainty=True
        )
        for ns in first:
            u_msg, d_msg = unc[ns], depth[ns]
            assert u_msg.header.frame_id == d_msg.header.frame_id and (u_msg.height, u_msg.width) == FRAME_HW
            u, d = float_image(u_msg), float_image(d_msg)
            np.testing.assert_array_equal(np.isnan(u), np.isnan(d))
            assert np.nanmin(u) > 0 and np.nanstd(u) > 0
            np.testing.assert_allclose(u, expected.depth_uncertainty, rtol=1e-5)
            r = result[ns].depth_uncertainty
            assert (r.height, r.width, r.encoding, r.header.frame_id) == (*FRAME_HW, "32FC1", d_msg.header.frame_id)
            np.testing.assert_array_equal(float_image(r), u)
        n_all = points[first[-1]].width * points[first[-1]].height
        # a bound at the median uncertainty of the sampled pixels keeps about half the points
        bound = float(np.nanmedian(expected.depth_uncertainty[::2, ::2]))
        assert peer.set_params([Parameter("max_point_uncertainty", value=bound)]) == [True]
        second = send(3)
        wait_for(lambda: have("points", second), 30, "no points after setting max_point_uncertainty")
        cloud = by_stamp("points")[second[-1]]
        n_bounded = cloud.width * cloud.height
        keep = int((expected.depth_uncertainty[::2, ::2] <= np.float32(bound)).sum())
        assert 0 < n_bounded < n_all and n_bounded == keep, (n_bounded, n_all, keep)
    finally:
        node.kill()  # first: see Peer.close
        if peer is not None:
            peer.close()


def test_node_without_the_head_logs_it_once_and_publishes_no_uncertainty(tmp_path):
    from ros_helpers.procs import tiny_checkpoint

    env = ros_env()
    node = NodeProcess(tiny_checkpoint(tmp_path / "plain.safetensors"), env, tmp_path / "node.log")
    peer = None
    try:
        node.wait_ready()
        assert node.log().count("no depth uncertainty head") == 1
        peer = Peer(env)
        cam = H.Camera(peer.node, "/camera/image", "/camera/camera_info", reliable=True, depth=5)
        rec = H.Recorder(peer.node, NODE_FQN, topics=("depth", "depth/uncertainty", "result"))
        cam.wait_for_subscriber()
        wait_for(rec.matched, 10, "recorder not matched")
        header = cam.header()
        cam.info.publish(H.camera_info_message(*FRAME_HW, header))
        cam.image.publish(H.image_message(H.pattern_frame(*FRAME_HW, seed=1), "rgb8", header))
        wait_for(lambda: len(rec.messages["result"]) >= 1, 30, "no result")
        time.sleep(0.5)
        assert rec.messages["depth/uncertainty"] == []
        r = rec.messages["result"][0][1].depth_uncertainty
        assert (r.height, r.width) == (0, 0)
    finally:
        node.kill()  # first: see Peer.close
        if peer is not None:
            peer.close()
