"""Integration: camera process -> perception_node process -> checker process, real rclpy + Fast DDS.

One node process (tiny random-weight model, torch backend) serves the module; each test runs a
camera scenario against it with a fresh checker. A private ROS domain and the LARGE_DATA
transport are set in every participant. The last test stops the node with SIGINT.
"""

from __future__ import annotations

import numpy as np
import pytest
from ros_helpers.procs import NodeProcess, ros_env, run_scenario, tiny_checkpoint

pytest.importorskip("rclpy", reason="rclpy not installed")
pytestmark = [pytest.mark.ros, pytest.mark.slow]

OUTPUTS = (
    "semantic",
    "semantic/confidence",
    "semantic_color",
    "depth",
    "depth/camera_info",
    "points",
    "result",
    "stats",
)
TEMPERATURE = 1.7  # a calibrated temperature in the tiny checkpoint: the node must apply it


@pytest.fixture(scope="module")
def env():
    return ros_env("large_data")


@pytest.fixture(scope="module")
def node(tmp_path_factory, env):
    from mtl_perception.model.checkpoint import rewrite_metadata

    tmp = tmp_path_factory.mktemp("node")
    ckpt = rewrite_metadata(
        tiny_checkpoint(tmp / "raw.safetensors"), tmp / "tiny.safetensors", {"semseg_temperature": str(TEMPERATURE)}
    )
    # sky_beyond_range off: the random tiny model labels most pixels sky, and these tests check that depth
    # and points arrive intact, not the sky policy (test_node_camera_height.py checks that with the shipped model)
    proc = NodeProcess(ckpt, env, tmp / "node.log", params={"sky_beyond_range": False})
    proc.checkpoint = ckpt
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


def _by_stamp(records):
    return {r["stamp_ns"]: r for r in records}


def test_every_output_carries_the_input_header(node, env, tmp_path):
    sent, got, _ = run_scenario(tmp_path, env, "headers", "--count", "5", "--rate", "4")
    expected = {(s["stamp_ns"], s["frame_id"]) for s in sent}
    for topic in OUTPUTS:
        received = {(r["stamp_ns"], r["frame_id"]) for r in got[topic]}
        assert received == expected, f"{topic}: {sorted(received)} != {sorted(expected)}"
    d = got["depth"][0]
    assert (d["encoding"], d["height"], d["width"], d["step"]) == ("32FC1", 96, 160, 160 * 4)
    s = got["semantic"][0]
    assert (s["encoding"], s["height"], s["width"]) == ("mono8", 96, 160)
    c = got["semantic/confidence"][0]
    assert (c["encoding"], c["height"], c["width"], c["step"]) == ("32FC1", 96, 160, 160 * 4)
    assert got["semantic_color"][0]["encoding"] == "rgb8"
    info = got["depth/camera_info"][0]
    assert (info["height"], info["width"]) == (96, 160) and info["k"][0] == pytest.approx(0.8 * 160)
    pts = got["points"][0]
    assert pts["fields"] == ["x", "y", "z", "rgb", "label"] and 0 < pts["n"] <= (96 // 4) * (160 // 4)
    res = got["result"][0]
    assert res["semantic"] == [96, 160, "mono8"] and res["depth"] == [96, 160, "32FC1"]
    assert res["confidence"] == [96, 160, "32FC1"] and res["confidence_frame_id"] == res["frame_id"]
    assert len(res["class_names"]) == 19 and res["class_names"][0] == "road" and res["decoder"] == "mlore"
    assert res["semantic_frame_id"] == res["frame_id"] and res["info"] == [96, 160] and res["inference_ms"] > 0
    st = got["stats"][-1]
    assert st["frames_processed"] >= 5 and st["inference_ms"] > 0 and st["end_to_end_ms"] >= st["inference_ms"]


def test_confidence_is_the_pipelines_for_the_same_frame(node, env, tmp_path):
    """~/semantic/confidence (32FC1 in [0, 1], the input's header) equals FramePipeline's confidence
    at the checkpoint's temperature for the same frame, and ~/result carries the same pixels."""
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.pipeline import FramePipeline
    from mtl_perception.ros import harness as H

    sent, got, arrays = run_scenario(tmp_path, env, "headers", "--count", "3", "--rate", "4", npz=True)
    stamps = [s["stamp_ns"] for s in sent]
    assert {r["stamp_ns"] for r in got["semantic/confidence"]} == set(stamps)
    assert {r["frame_id"] for r in got["semantic/confidence"]} == {s["frame_id"] for s in sent}
    engine = InferenceEngine.create(node.checkpoint, backend="torch", precision="fp32", threads=1)
    expected = FramePipeline(engine).process(H.pattern_frame(96, 160, seed=1), confidence=True)
    assert engine.info.semseg_temperature == TEMPERATURE
    for ns in stamps:
        conf, labels = arrays[f"confidence_{ns}"], arrays[f"semantic_{ns}"]
        assert conf.dtype == np.float32 and conf.shape == (96, 160)
        assert 0.0 < conf.min() and conf.max() <= 1.0
        np.testing.assert_array_equal(labels, expected.labels)
        np.testing.assert_allclose(conf, expected.confidence, atol=1e-6)
        np.testing.assert_array_equal(arrays[f"result_confidence_{ns}"], conf)


def test_encodings_decode_to_the_same_pixels(node, env, tmp_path):
    """The same picture in every lossless encoding (and padded rows) gives bit-identical depth and labels."""
    sent, got, arrays = run_scenario(tmp_path, env, "encodings", "--rate", "4", npz=True)
    label_of = {s["stamp_ns"]: s["label"] for s in sent}
    depth = {label_of[int(k.split("_")[1])]: v for k, v in arrays.items() if k.startswith("depth_")}
    sem = {label_of[int(k.split("_")[1])]: v for k, v in arrays.items() if k.startswith("semantic_")}
    assert set(depth) == set(label_of.values()), f"missing outputs for {set(label_of.values()) - set(depth)}"
    for group, ref in (("colour", "colour/rgb8/pad0"), ("gray", "gray/rgb8/pad0")):
        for label in depth:
            if label.startswith(group + "/") and label.split("/")[1] in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8"):
                np.testing.assert_array_equal(depth[label], depth[ref], err_msg=label)
                np.testing.assert_array_equal(sem[label], sem[ref], err_msg=label)
    # lossy encodings (demosaicing, chroma subsampling) are processed, at the right size
    for label in ("colour/bayer_rggb8/pad4", "colour/yuv422/pad4", "colour/yuyv/pad4"):
        assert depth[label].shape == (96, 160) and np.isfinite(depth[label]).any()
    assert got["stats"][-1]["frames_dropped_invalid"] == 0


def test_bad_input_is_counted_and_the_node_keeps_running(node, env, tmp_path):
    before = node.log()
    sent, got, _ = run_scenario(tmp_path, env, "bad", "--rate", "4")
    stamps_out = {r["stamp_ns"] for r in got["depth"]}
    for s in sent:
        if s["label"].startswith("bad/") and s["label"] != "bad/camera_info_size":
            assert s["stamp_ns"] not in stamps_out, s["label"]
        else:
            assert s["stamp_ns"] in stamps_out, s["label"]
    st = got["stats"][-1]
    assert st["frames_dropped_invalid"] == 6  # encoding, truncated, step, zero size, unknown encoding, out of order
    assert st["camera_info_mismatches"] >= 1
    assert st["resolution_changes"] == 2
    assert st["frames_failed"] == 0
    # the mismatched camera_info frame got depth but no points / camera_info
    mismatch = next(s["stamp_ns"] for s in sent if s["label"] == "bad/camera_info_size")
    assert mismatch not in {r["stamp_ns"] for r in got["points"]}
    assert mismatch not in {r["stamp_ns"] for r in got["depth/camera_info"]}
    # the frame at another resolution got outputs at its own size
    big = next(s["stamp_ns"] for s in sent if s["label"] == "resolution_change")
    assert (_by_stamp(got["depth"])[big]["height"], _by_stamp(got["depth"])[big]["width"]) == (192, 320)
    log = node.log()[len(before) :]
    for needle in (
        "unsupported encoding '32FC1'",
        "truncated",
        "step",
        "empty image",
        "out-of-order",
        "camera_info",
        "resolution changed",
    ):
        assert needle in log, needle
    assert node.proc.poll() is None


def test_latest_frame_policy_drops_instead_of_queueing(node, env, tmp_path):
    """Frames as fast as the camera can publish: the node drops stale frames, latency stays flat."""
    sent, got, _ = run_scenario(tmp_path, env, "burst", "--count", "150", "--rate", "0", idle_exit=3.0)
    st = got["stats"][-1]
    processed = [r["stamp_ns"] for r in got["depth"]]
    assert processed == sorted(processed), "frames processed out of order"
    assert st["frames_dropped_stale"] > 0, st
    assert len(processed) < len(sent)
    after = [s["stamp_ns"] for s in sent if s["label"].startswith("after/")]
    # frames after the burst are processed at once: no backlog of burst frames in front of them
    assert processed[-3:] == after, (after, processed[-4:])
    lat = np.array([(r["recv_ns"] - r["stamp_ns"]) / 1e6 for r in got["depth"]])
    queue = np.array([r["queue_ms"] for r in got["stats"]])
    infer = np.median([r["inference_ms"] + r["preprocess_ms"] + r["postprocess_ms"] for r in got["stats"]])
    # no backlog: waiting time is below one frame of work and latency does not grow along the burst
    assert np.median(queue) < 2 * infer + 20, (np.median(queue), infer)
    k = max(3, len(lat) // 4)
    assert np.median(lat[-k:]) < 2 * np.median(lat[:k]) + 100, lat


def test_zz_sigint_shuts_down_cleanly(node):
    rc = node.interrupt()
    log = node.log()
    assert rc == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
