"""Process plumbing for the ROS integration tests: a node process and camera -> node -> checker runs."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mtl_perception.ros import harness as H

HELPERS = Path(__file__).resolve().parent
ROOT = HELPERS.parents[1]
NODE_FQN = "/perception/perception_node"


def tiny_checkpoint(path: Path, camera: dict | None = None) -> Path:
    """A tiny random-weight mlore checkpoint; ``camera``: the model config's camera section
    (default: none, i.e. a legacy stretch model with depth in metres)."""
    import torch

    sys.path.insert(0, str(ROOT / "test"))
    from tiny_models import standardize_depth_head_, tiny_config

    from mtl_perception.model import build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = tiny_config("mlore")
    if camera is None:
        return save_checkpoint(build_model(cfg), path)
    cfg["camera"] = camera
    model = build_model(cfg)
    # depth that varies across the frame, so a ratio of two depth maps is tested on varied values
    standardize_depth_head_(model, torch.randn(2, 3, *cfg["input_size"]))
    return save_checkpoint(model, path)


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until it is true; TimeoutError(``what``) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def float_image(msg) -> np.ndarray:
    """A 32FC1 Image message (depth, uncertainty) as an (H, W) float32 array, unpadded rows checked."""
    assert msg.encoding == "32FC1" and msg.step == msg.width * 4
    return np.frombuffer(bytes(msg.data), np.float32).reshape(msg.height, msg.width)


def ros_env(transport: str = "large_data") -> dict[str, str]:
    """A private ROS domain (random id) on localhost with one transport for every participant."""
    return H.transport_env(transport, domain_id=random.randint(1, 100))


class NodeProcess:
    def __init__(self, model: Path, env: dict[str, str], log: Path, params: dict | None = None) -> None:
        p = {"backend": "torch", "threads": 1, **(params or {})}
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen(
            H.node_command(str(model), params=p), env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while "ready:" not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"node not ready after {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def interrupt(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def run_scenario(
    tmp: Path,
    env: dict[str, str],
    scenario: str,
    *camera_args: str,
    idle_exit: float = 2.5,
    npz: bool = False,
    timeout: float = 60.0,
) -> tuple[list[dict], dict, dict]:
    """checker process (waits for the node's outputs) -> camera process -> (sent, received, arrays)."""
    ready = tmp / f"{scenario}.ready"
    got, sent = tmp / f"{scenario}.got.json", tmp / f"{scenario}.sent.json"
    arrays = tmp / f"{scenario}.npz"
    cmd = [
        sys.executable,
        str(HELPERS / "checker.py"),
        "--ns",
        NODE_FQN,
        "--out",
        str(got),
        "--ready-file",
        str(ready),
        "--idle-exit",
        str(idle_exit),
        "--timeout",
        str(timeout),
    ]
    if npz:
        cmd += ["--npz", str(arrays)]
    # handshake until the checker hears the node on every output. Burst too: it drops frames by design,
    # but a CI run lost every output of its burst and its first paced frame to a node writer that had
    # not yet matched the checker (the checker's own settle time was not enough on a loaded machine)
    warmup = ["--warmup-file", str(tmp / f"{scenario}.warm")]
    cmd += warmup
    if scenario == "intrinsics":
        # its first frame must never have had a camera_info, so neither may the warm-up frames; the node
        # then publishes no points and no depth/camera_info for them
        warmup = [*warmup, "--warmup-without-info"]
        cmd += ["--warmup-skip", "points,depth/camera_info"]
    checker = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if checker.poll() is not None or time.monotonic() > deadline:
            checker.kill()
            raise RuntimeError(f"checker not ready: {checker.stderr.read()[-2000:]}")
        time.sleep(0.05)
    cam = subprocess.run(
        [
            sys.executable,
            str(HELPERS / "camera.py"),
            "--scenario",
            scenario,
            "--out",
            str(sent),
            *warmup,
            *camera_args,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert cam.returncode == 0, cam.stderr[-3000:]
    _, err = checker.communicate(timeout=timeout)
    assert checker.returncode == 0, err[-3000:]
    data = dict(np.load(arrays)) if npz else {}
    return json.loads(sent.read_text()), json.loads(got.read_text()), data


def env_with_pythonpath(env: dict[str, str]) -> dict[str, str]:
    e = dict(env)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH", "")]))
    return e


class Peer(H.SpinningNode):
    """This test process's side of a live node: an rclpy node in its own context (the test's domain),
    spun in a thread (``harness.SpinningNode``).

    ``close()`` deletes its DDS participant. Stop the node processes it talks to FIRST: deleting a
    participant whose TCP channel (the LARGE_DATA transport) is mid-read from a live peer deadlocks in
    Fast DDS 3.2.3 (TCPChannelResourceBasic::disconnect waits for the read mutex while the read waits
    for the peer forever; fixed upstream by eProsima/Fast-DDS PR 6066). The call holds the GIL, so it
    hung the whole pytest process in CI (test_runtime_switch_while_images_flow)."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__("peer", domain_id=int(env["ROS_DOMAIN_ID"]))

    def set_params(self, params: list, node: str = NODE_FQN) -> list[bool]:  # type: ignore[override]
        """Set parameters of ``node`` through its parameter service; one success flag per parameter."""
        return super().set_params(params, node)
