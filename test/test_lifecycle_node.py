"""perception_node as a managed (lifecycle) node: transitions, a runtime engine switch while images
flow, N cameras through one engine, and SIGINT under load.

In-process for the state machine (a second node in the same context watches the graph); real
node processes with a camera + recorder in this test process for the rest (rclpy + Fast DDS on a
private domain, tiny random-weight models on the torch backend).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy not installed")

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from ros_helpers.procs import NODE_FQN, NodeProcess, Peer, ros_env, tiny_checkpoint, wait_for  # noqa: E402

from mtl_perception.ros import harness as H  # noqa: E402

pytestmark = [pytest.mark.ros]
SUCCESS = TransitionCallbackReturn.SUCCESS
FRAME_HW = (64, 128)


def _tiny(path: Path, decoder: str, camera: dict | None = None) -> Path:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_models import tiny_config

    from mtl_perception.model import build_model, save_checkpoint

    torch.manual_seed(1)
    cfg = tiny_config(decoder)
    if camera:
        cfg["camera"] = camera
    return save_checkpoint(build_model(cfg), path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lc")
    return {
        "mlore": tiny_checkpoint(tmp / "mlore.safetensors"),
        "baseline": _tiny(tmp / "baseline.safetensors", "baseline"),
    }


# ---------------------------------------------------------------------------------------------- state machine
def test_lifecycle_transitions_in_process(models):
    """autostart:=false: unconfigured, no engine, no subscription; configure builds the engine but
    does not subscribe; activate subscribes (so "subscribed" means "ready"); deactivate
    unsubscribes; cleanup drops the engine; configure with a missing model fails and says why."""
    from mtl_perception.ros.node import PerceptionNode

    env = ros_env()
    ctx = Context()
    rclpy.init(context=ctx, domain_id=int(env["ROS_DOMAIN_ID"]))
    values = {"model_path": str(models["mlore"]), "backend": "torch", "threads": 1, "autostart": False}
    node = PerceptionNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    probe = rclpy.create_node("probe", context=ctx)

    def subscribed() -> bool:
        return any(i.node_name == "perception_node" for i in probe.get_subscriptions_info_by_topic("/image"))

    try:
        assert node.engine is None and not subscribed()
        assert node.trigger_configure() == SUCCESS
        assert node.engine is not None and node.engine.info.decoder == "mlore"
        time.sleep(0.3)
        assert not subscribed()
        assert node.trigger_activate() == SUCCESS
        wait_for(subscribed, 5, "no /image subscription after activate")
        assert node.trigger_deactivate() == SUCCESS
        wait_for(lambda: not subscribed(), 5, "still subscribed after deactivate")
        assert node.trigger_cleanup() == SUCCESS
        assert node.engine is None
        node.set_parameters([Parameter("model_path", value="/nonexistent/model.safetensors")])
        assert node.trigger_configure() != SUCCESS
        assert "/nonexistent/model.safetensors" in node._startup_error and "not found" in node._startup_error
        node.set_parameters([Parameter("model_path", value=str(models["mlore"]))])
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        assert node.trigger_shutdown() == SUCCESS and node.engine is None
    finally:
        node.close()
        probe.destroy_node()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


# ---------------------------------------------------------------------------------------------- runtime switch
def _get_param(peer: Peer, name: str):
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(peer.node, NODE_FQN)
    assert client.wait_for_services(timeout_sec=10)
    future = client.get_parameters([name])
    wait_for(future.done, 10, "get_parameters did not answer")
    return future.result().values[0].string_value


@pytest.mark.slow
def test_runtime_switch_while_images_flow(models, tmp_path, capsys):
    """Images at 10 Hz; model_path is switched mlore -> baseline while they flow. The old engine
    serves until the new one is built; afterwards every result comes from the new model (decoder
    and model hash in ~/result); no frame fails and none is lost beyond the latest-frame policy
    (received = processed + stale drops). A switch to a missing model keeps the serving engine,
    is counted, and sets the parameter back."""
    env = ros_env()
    node = NodeProcess(models["mlore"], env, tmp_path / "node.log")
    peer = None
    try:
        node.wait_ready()
        peer = Peer(env)
        cam = H.Camera(peer.node, "/camera/image", "/camera/camera_info", reliable=True, depth=5)
        rec = H.Recorder(peer.node, NODE_FQN, topics=("result", "stats"))
        cam.wait_for_subscriber()
        wait_for(rec.matched, 10, "recorder not matched")
        sent: list[int] = []
        stop = threading.Event()

        def stream() -> None:
            i = 0
            while not stop.is_set():
                header = cam.header()
                cam.image.publish(H.image_message(H.pattern_frame(*FRAME_HW, seed=i % 5), "rgb8", header))
                cam.info.publish(H.camera_info_message(*FRAME_HW, header))
                sent.append(H.stamp_ns(header.stamp))
                i += 1
                time.sleep(0.1)

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()

        def results():
            with rec.lock:
                return [m for _, m in rec.messages["result"]]

        wait_for(lambda: len(results()) >= 10, 30, "no results before the switch")
        t_set = time.monotonic()
        assert peer.set_params([Parameter("model_path", value=str(models["baseline"]))]) == [True]
        wait_for(lambda: any(r.decoder == "baseline" for r in results()), 60, "no result from the new model")
        t_new = time.monotonic()
        n_at_switch = len(results())
        wait_for(lambda: len(results()) >= n_at_switch + 10, 30, "results stopped after the switch")

        # a switch that cannot be built: the serving engine stays, the parameter is set back
        assert peer.set_params([Parameter("model_path", value=str(tmp_path / "missing.safetensors"))]) == [True]
        wait_for(lambda: _get_param(peer, "model_path") == str(models["baseline"]), 30, "model_path not reverted")
        n = len(results())
        wait_for(lambda: len(results()) >= n + 5, 30, "results stopped after the failed switch")
        stop.set()
        streamer.join(5)
        time.sleep(1.5)  # the last frames through the node
        with rec.lock:
            stats = [m for _, m in rec.messages["stats"]]
        log = node.log()
    finally:
        node.kill()  # first: see Peer.close
        if peer is not None:
            peer.close()

    seq = [r.decoder for r in results()]
    first_new = seq.index("baseline")
    assert set(seq[:first_new]) == {"mlore"} and set(seq[first_new:]) == {"baseline"}, seq
    hashes = [r.model_hash for r in results()]
    assert len(set(hashes[:first_new])) == 1 and len(set(hashes[first_new:])) == 1 and hashes[0] != hashes[-1]
    stamps = [H.stamp_ns(r.header.stamp) for r in results()]
    assert stamps == sorted(stamps) and set(stamps) <= set(sent)
    last = stats[-1]
    assert last.engine_switches == 1 and last.engine_switch_failures == 1
    assert last.frames_failed == 0 and last.frames_dropped_invalid == 0
    assert last.frames_received == last.frames_processed + last.frames_dropped_stale
    assert "engine switched mlore torch/fp32 -> baseline torch/fp32" in log, log[-3000:]
    assert "engine switch to" in log and "failed" in log and "set back" in log
    switch_s = float(re.search(r"engine switched .* in ([0-9.]+) s", log).group(1))
    with capsys.disabled():
        print(
            f"\n[switch] mlore->baseline: {switch_s:.2f} s request->swap, first new result after "
            f"{t_new - t_set:.2f} s; frames sent {len(sent)}, results {len(seq)}, stale drops "
            f"{last.frames_dropped_stale}, failed {last.frames_failed}"
        )


# ---------------------------------------------------------------------------------------------- many cameras
@pytest.mark.slow
def test_two_cameras_one_engine(tmp_path):
    """cameras:=[front, rear]: each camera's frames come out under ~/<camera>/ with its own header;
    each camera's K sets its metric depth (same picture, rear fx = 2 front fx -> twice the depth)."""
    camera = {"resize": "letterbox", "canonical_focal": 300.0, "default_hfov_deg": 70.0}
    model = tiny_checkpoint(tmp_path / "lb.safetensors", camera)
    env = ros_env()
    node = NodeProcess(model, env, tmp_path / "node.log", params={"cameras": "[front, rear]"})
    peer = None
    try:
        node.wait_ready()
        assert "2 camera(s)" in node.log()
        peer = Peer(env)
        cams = {
            name: H.Camera(peer.node, f"/perception/{name}/image", f"/perception/{name}/camera_info", reliable=True)
            for name in ("front", "rear")
        }
        recs = {name: H.Recorder(peer.node, f"{NODE_FQN}/{name}", topics=("depth", "stats")) for name in cams}
        for c in cams.values():
            c.wait_for_subscriber()
        for r in recs.values():
            wait_for(r.matched, 10, "recorder not matched")
        frame = H.pattern_frame(*FRAME_HW, seed=3)
        sent = []
        for _ in range(8):
            ns = time.time_ns()
            for name, focal in (("front", 0.5), ("rear", 1.0)):
                header = cams[name].header(frame_id=f"{name}_optical_frame", ns=ns)
                cams[name].image.publish(H.image_message(frame, "rgb8", header))
                cams[name].info.publish(H.camera_info_message(*FRAME_HW, header, focal_ratio=focal))
            sent.append(ns)
            time.sleep(0.3)
        wait_for(lambda: all(len(r.messages["depth"]) >= 6 for r in recs.values()), 30, "missing depth outputs")
        time.sleep(0.5)
    finally:
        node.kill()  # first: see Peer.close
        if peer is not None:
            peer.close()

    depth = {}
    for name, rec in recs.items():
        msgs = [m for _, m in rec.messages["depth"]]
        assert {m.header.frame_id for m in msgs} == {f"{name}_optical_frame"}
        assert {H.stamp_ns(m.header.stamp) for m in msgs} <= set(sent)
        depth[name] = {H.stamp_ns(m.header.stamp): np.frombuffer(bytes(m.data), np.float32) for m in msgs}
        assert rec.messages["stats"][-1][1].frames_failed == 0
    common = sorted(set(depth["front"]) & set(depth["rear"]))
    assert len(common) >= 4
    for ns in common:
        np.testing.assert_allclose(depth["rear"][ns], 2 * depth["front"][ns], rtol=1e-4)


# ---------------------------------------------------------------------------------------------- SIGINT
@pytest.mark.slow
def test_sigint_under_load_exits_zero_every_time(models, tmp_path):
    """Ctrl-C while frames flow at 30 Hz, three times: exit code 0 and no traceback each time
    (rclpy's own SIGINT handler invalidated the context under the executor: RCLError, exit 1)."""
    env = ros_env()
    for attempt in range(3):
        node = NodeProcess(models["mlore"], env, tmp_path / f"node{attempt}.log")
        peer = None
        try:
            node.wait_ready()
            peer = Peer(env)
            cam = H.Camera(peer.node, "/camera/image", "/camera/camera_info")
            rec = H.Recorder(peer.node, NODE_FQN, topics=("stats",), keep=False)
            cam.wait_for_subscriber()
            deadline = time.monotonic() + 15
            i = 0
            while rec.counts["stats"] < 5 + attempt * 3 and time.monotonic() < deadline:
                header = cam.header()
                cam.image.publish(H.image_message(H.pattern_frame(*FRAME_HW, seed=i % 3), "rgb8", header))
                i += 1
                time.sleep(1 / 30)
            assert rec.counts["stats"] > 0, node.log()[-2000:]
            stop = threading.Event()

            def flood(cam=cam, stop=stop) -> None:
                j = 0
                while not stop.is_set():
                    cam.image.publish(H.image_message(H.pattern_frame(*FRAME_HW, seed=j % 3), "rgb8", cam.header()))
                    j += 1
                    time.sleep(1 / 30)

            t = threading.Thread(target=flood, daemon=True)
            t.start()
            rc = node.interrupt()
            stop.set()
            t.join(5)
        finally:
            node.kill()  # first: see Peer.close
            if peer is not None:
                peer.close()
        log = node.log()
        assert rc == 0, f"attempt {attempt}: exit {rc}\n{log[-3000:]}"
        assert "Traceback" not in log and "RCLError" not in log, log[-3000:]


@pytest.mark.slow
def test_sigint_while_building_the_engine_stops_promptly(tmp_path):
    """Ctrl-C during start-up (here an int8 ONNX export with calibration into an empty cache, tens of
    seconds) ends the node within seconds with exit 0 instead of after the build."""
    from mtl_perception.deploy.artifacts import shipped_checkpoint

    env = ros_env()
    node = NodeProcess(
        shipped_checkpoint("mlore"),
        env,
        tmp_path / "node.log",
        params={"backend": "onnxruntime", "precision": "int8", "engine_cache_dir": str(tmp_path / "cache")},
    )
    try:
        wait_for(lambda: "configuring: building the engine" in node.log(), 60, "no configure line")
        time.sleep(1.0)
        assert "ready:" not in node.log()
        t0 = time.monotonic()
        rc = node.interrupt(timeout=20)
        took = time.monotonic() - t0
    finally:
        node.kill()
    log = node.log()
    assert rc == 0 and took < 10, (rc, took, log[-2000:])
    assert "interrupted during start-up" in log and "Traceback" not in log and "ready:" not in log
