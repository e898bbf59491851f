"""Every decoder the launch files offer ships a model, and the node starts with each of them.

What `ros2 launch mtl_perception camera.launch.py decoder:=<d>` runs: the node with the decoder's
params file (config/ros/<d>.param.yaml) and the launch overrides, here with backend torch so five
starts stay fast on a CPU (the ONNX export per model is covered by the export / parity tests).
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from mtl_perception.deploy.artifacts import shipped_checkpoint
from mtl_perception.ros.launch_args import ARGUMENTS, node_config

DECODERS = ARGUMENTS["decoder"].choices
SHIPPED_BUDGET_MB = 60.0
SHIPPED_INPUT = {"mlore": (224, 448)}


def test_every_offered_decoder_ships_a_model_within_budget():
    from mtl_perception.deploy.artifacts import model_info

    total = 0.0
    for decoder in DECODERS:
        path = shipped_checkpoint(decoder)  # FileNotFoundError naming the train command if absent
        info = model_info(path)
        # mlore ships on EfficientNet-Lite2 at 224x448 (docs/sim2real.md, section 31), the others at 256x512
        assert info.decoder == decoder and tuple(info.input_size) == SHIPPED_INPUT.get(decoder, (256, 512))
        total += path.stat().st_size / 2**20
    assert total <= SHIPPED_BUDGET_MB, f"shipped weights {total:.1f} MB > {SHIPPED_BUDGET_MB} MB"


@pytest.mark.parametrize("decoder", DECODERS)
def test_shipped_model_of_each_decoder_infers(decoder):
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.pipeline import FramePipeline

    engine = InferenceEngine.create(shipped_checkpoint(decoder), backend="torch", precision="fp32", threads=1)
    rgb = np.random.default_rng(0).integers(0, 255, (120, 200, 3), np.uint8)
    res = FramePipeline(engine).process(rgb)
    assert res.labels.shape == res.depth.shape == (120, 200)
    # no holes: every pixel has metres or +inf (sure sky: beyond range)
    answered = np.isfinite(res.depth) | np.isposinf(res.depth)
    assert answered.mean() > 0.99 and np.nanmin(res.depth) > 0


@pytest.mark.ros
@pytest.mark.slow
def test_node_starts_with_each_launch_decoder_choice(tmp_path):
    pytest.importorskip("rclpy", reason="rclpy not installed")
    from ros_helpers.procs import ROOT, ros_env

    env = ros_env()
    for decoder in DECODERS:
        cfg = node_config({"decoder": decoder, "backend": "torch"}, ROOT)
        params_file, overrides = cfg.parameters
        cmd = [sys.executable, "-m", "mtl_perception.ros.node", "--ros-args", "--params-file", params_file]
        for k, v in {**overrides, "threads": 1}.items():
            cmd += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
        log = tmp_path / f"{decoder}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + 120
                while "ready:" not in log.read_text():
                    assert proc.poll() is None, f"{decoder}: exited {proc.returncode}\n{log.read_text()[-2000:]}"
                    assert time.monotonic() < deadline, f"{decoder}: not ready\n{log.read_text()[-2000:]}"
                    time.sleep(0.2)
            finally:
                proc.send_signal(2)
                rc = proc.wait(30)
        text = log.read_text()
        assert f"ready: {decoder} torch/fp32" in text, text[-2000:]
        assert rc == 0 and "Traceback" not in text, text[-2000:]
