"""``mtl-perception bench``: one run over several backends, JSON with latency and accuracy deltas."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from tiny_models import ROOT, tiny_config

from mtl_perception.model import build_model, save_checkpoint


def test_bench_json_reports_each_combination(tmp_path):
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(tiny_config("mlore")), tmp_path / "m.safetensors")
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "mtl_perception.cli",
        "bench",
        "--checkpoint",
        str(ckpt),
        "--backend",
        "onnxruntime",
        "--precision",
        "fp32",
        "--train-form",
        "--iters",
        "3",
        "--warmup",
        "1",
        "--eval-frames",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        "--json",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(out.read_text())
    names = [r["name"] for r in report["results"]]
    assert names == ["torch/fp32", "torch/fp32/train-form", "onnxruntime/fp32"]
    for r in report["results"]:
        assert r["latency_ms"]["p50"] > 0 and r["fps"] > 0 and r["rss_mb"]["peak"] > 0
        assert set(r["accuracy_delta_vs_torch_fp32"]) == {"miou_present", "abs_rel", "rmse"}
    # the same network in three forms: fp32 ONNX Runtime and the train form agree with the deploy form
    ort = report["results"][2]["accuracy_delta_vs_torch_fp32"]
    assert abs(ort["abs_rel"]) < 1e-3
    assert "deploy_vs_train_form_fps" in report["ratios"]
