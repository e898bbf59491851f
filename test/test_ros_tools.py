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
        "--out",
        str(out),
        "--json",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep["measured"] == 8 and rep["lost"] == 0 and rep["node_exit_code"] == 0
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
    res = _cli("node-grid", "--checkpoint", str(model), "--width", "320", "--height", "192", "--out", str(png))
    assert res.returncode == 0, res.stderr[-3000:]
    img = cv2.imread(str(png))
    assert img.shape == (384, 640, 3)
    assert "points" in res.stdout


def test_missing_checkpoint_is_one_line_error(tmp_path):
    res = _cli("bench-node", "--checkpoint", str(tmp_path / "nope.safetensors"), "--frames", "1", timeout=60)
    assert res.returncode == 2 and "nope.safetensors" in res.stderr and "Traceback" not in res.stderr
