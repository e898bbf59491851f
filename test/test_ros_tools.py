"""``mtl-perception bench-node`` and ``node-grid`` against a live node (tiny model, small frames)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest
from ros_helpers.procs import ROOT, ros_env, tiny_checkpoint

pytest.importorskip("rclpy", reason="rclpy not installed")
pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("m") / "tiny.safetensors")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mtl_perception.cli", *args, "--backend", "torch", "--threads", "1"]
    return subprocess.run(cmd, cwd=ROOT, env=ros_env(), capture_output=True, text=True, timeout=timeout)


def test_bench_node_reports_stages_and_rss(model, tmp_path):
    out = tmp_path / "bench.json"
    res = _cli(
        "bench-node",
        "--checkpoint",
        str(model),
        "--width",
        "320",
        "--height",
        "240",
        "--frames",
        "8",
        "--warmup",
        "2",
        "--log",
        str(tmp_path / "node.log"),
        "--out",
        str(out),
        "--json",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["measured"] == 8 and rep["lost"] == 0 and rep["node_exit_code"] == 0
    assert rep["node_log"] == str(tmp_path / "node.log") and "ready:" in (tmp_path / "node.log").read_text()
    lat = rep["latency_ms"]
    for k in (
        "end_to_end",
        "end_to_end_minus_inference",
        "conversion",
        "preprocess",
        "inference",
        "postprocess",
        "encode",
        "publish",
        "node",
    ):
        assert lat[k]["p50"] >= 0 and lat[k]["p99"] >= lat[k]["p50"], k
    assert lat["end_to_end"]["p50"] > lat["inference"]["p50"]
    assert rep["rss_mb"]["peak"] > 0 and len(rep["rss_mb"]["samples"]) >= 2


def test_node_grid_writes_the_four_outputs(model, tmp_path):
    png = tmp_path / "grid.png"
    log = tmp_path / "node.log"
    res = _cli(
        "node-grid",
        "--checkpoint",
        str(model),
        "--width",
        "320",
        "--height",
        "192",
        "--log",
        str(log),
        "--out",
        str(png),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ready:" in log.read_text()  # the node's log lands where --log says
    img = cv2.imread(str(png))
    assert img.shape == (384, 640, 3)
    assert "points" in res.stdout


def test_bench_node_surround_one_node_vs_separate_nodes(model, tmp_path):
    """--cameras 3: one node serving 3 cameras, then 3 single-camera nodes, in one run; every
    camera's frames are answered in both modes and the report carries the comparison."""
    out = tmp_path / "surround.json"
    res = _cli(
        "bench-node",
        "--checkpoint",
        str(model),
        "--cameras",
        "3",
        "--rate",
        "2",
        "--duration",
        "3",
        "--settle",
        "1",
        "--width",
        "160",
        "--height",
        "96",
        "--log",
        str(tmp_path / "logs"),
        "--out",
        str(out),
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(out.read_text())
    # every node's log lands under --log, one folder per mode (nothing left in the system temp dir)
    assert (tmp_path / "logs" / "one_node" / "one.log").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "logs" / "separate_nodes").glob("*.log")) == [
        "cam0.log",
        "cam1.log",
        "cam2.log",
    ]
    one, sep = rep["modes"]["one_node"], rep["modes"]["separate_nodes"]
    assert (one["node_processes"], sep["node_processes"]) == (1, 3)
    for m in (one, sep):
        assert set(m["per_camera"]) == {"cam0", "cam1", "cam2"}
        assert all(c["answered"] >= 3 for c in m["per_camera"].values()), m["per_camera"]
        assert m["node_exit_codes"] == [0] * m["node_processes"]
        assert m["end_to_end_ms_all_cameras"]["p99"] >= m["end_to_end_ms_all_cameras"]["p50"] > 0
    assert rep["throughput_ratio_one_node_vs_separate"] > 0 and rep["rss_ratio_one_node_vs_separate"] > 0
    assert "throughput one node / separate nodes" in res.stdout


def test_bench_node_switch_reports_the_new_engine(model, tmp_path):
    """--switch backend=onnxruntime while frames flow: accepted, the answers after the first new one
    all come from the new engine, and the report carries the switch timings and frame counts. A
    --duration shorter than the build (an ONNX export): frames flow on until the new engine answers."""
    out = tmp_path / "switch.json"
    res = _cli(
        "bench-node",
        "--checkpoint",
        str(model),
        "--switch",
        "backend=onnxruntime",
        "--rate",
        "4",
        "--settle",
        "2",
        "--duration",
        "0.5",
        "--width",
        "160",
        "--height",
        "96",
        "--log",
        str(tmp_path / "node.log"),
        "--out",
        str(out),
        timeout=240,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["accepted"] and rep["engine_before"].startswith("mlore torch/fp32")
    assert rep["engine_after"].startswith("mlore onnxruntime/fp32")
    assert rep["answers_from_old_engine_after_first_new"] == 0
    assert rep["node_stats"]["engine_switches"] == 1 and rep["node_stats"]["frames_failed"] == 0
    assert 0 < rep["node_request_to_swap_s"] <= rep["request_to_first_new_answer_s"] + 1.0
    assert rep["frames_after_switch"]["answered"] > 0
    bad = _cli("bench-node", "--checkpoint", str(model), "--switch", "colour=red", timeout=60)
    assert bad.returncode != 0 and "--switch 'colour=red'" in bad.stderr


def test_missing_checkpoint_is_one_line_error(tmp_path):
    res = _cli("bench-node", "--checkpoint", str(tmp_path / "nope.safetensors"), "--frames", "1", timeout=60)
    assert res.returncode == 2 and "nope.safetensors" in res.stderr and "Traceback" not in res.stderr
