"""``mtl-perception bench``: one run over several backends, JSON with latency and accuracy deltas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_bench_rounds_interleave_the_models_and_report_each_rounds_ratio(tmp_path, capsys, monkeypatch):
    """--rounds 3: both engines built first, then timed A B / B A / A B (the order rotated each round), so a
    host that slows down mid-run slows both; every row and ratio carries its per-round figures."""
    from mtl_perception.cli import bench, main

    torch.manual_seed(0)
    a = save_checkpoint(build_model(tiny_config("mlore")), tmp_path / "a.safetensors")
    b = save_checkpoint(build_model(tiny_config("baseline")), tmp_path / "b.safetensors")
    calls = []
    timed = bench._Case.time

    def spy(self, iters):
        calls.append((Path(self.checkpoint).stem, iters))
        return timed(self, iters)

    monkeypatch.setattr(bench._Case, "time", spy)
    argv = ["bench", "--checkpoint", str(a), "--checkpoint", str(b), "--backend", "torch", "--rounds", "3"]
    assert main([*argv, "--iters", "2", "--warmup", "0", "--eval-frames", "0", "--json"]) == 0
    assert calls == [("a", 2), ("b", 2), ("b", 2), ("a", 2), ("a", 2), ("b", 2)]
    report = json.loads(capsys.readouterr().out)
    assert report["rounds"] == 3
    for r in report["results"]:
        assert len(r["fps_per_round"]) == 3 and all(f > 0 for f in r["fps_per_round"])
    key = "b vs a fps (torch/fp32)"
    assert set(report["ratios"]) == set(report["ratios_per_round"]) == {key}
    fa, fb = (r["fps_per_round"] for r in report["results"])
    assert report["ratios_per_round"][key] == [y / x for x, y in zip(fa, fb)]


def test_bench_sequential_default_and_bad_rounds(tmp_path, capsys):
    """Without --rounds nothing is interleaved (no per-round figures); --rounds 0 and --iters 0 are one-line errors."""
    from mtl_perception.cli import main

    torch.manual_seed(0)
    a = save_checkpoint(build_model(tiny_config("mlore")), tmp_path / "a.safetensors")
    base = ["bench", "--checkpoint", str(a), "--backend", "torch", "--warmup", "0", "--eval-frames", "0"]
    assert main([*base, "--iters", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rounds"] == 1 and "ratios_per_round" not in report and "fps_per_round" not in report["results"][0]
    from mtl_perception.pipeline import PipelineOptions

    assert report["depth_options"] == PipelineOptions().as_dict()  # the node's defaults unless asked
    assert main([*base, "--iters", "2", "--json", "--no-ground-contact", "--sky-connected-to-top"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["depth_options"] == PipelineOptions(ground_contact=False, sky_connected_to_top=True).as_dict()
    for bad, word in ((["--rounds", "0", "--iters", "2"], "--rounds"), (["--iters", "0"], "--iters")):
        assert main([*base, *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert word in err and len(err.splitlines()) == 1
