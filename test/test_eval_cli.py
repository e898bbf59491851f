"""End to end through the CLIs: synth -> train (2 steps) -> eval with report, as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from tiny_models import ROOT, tiny_config


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtl_perception.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def test_synth_train_eval_pipeline(tmp_path):
    data = tmp_path / "data"
    res = _cli(
        "synth",
        "--out",
        str(data),
        "--frames",
        "6",
        "--seed",
        "3",
        "--height",
        "64",
        "--width",
        "128",
        "--sequence-length",
        "3",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    recipe = {
        "model": tiny_config("mlore"),
        "data": {
            "train": {"type": "synthetic", "root": str(data)},
            "num_workers": 0,
            "augment": {"scale_range": [0.8, 1.25], "hflip": 0.5, "photometric": True},
        },
        "steps": 2,
        "batch_size": 2,
        "checkpoint_every": 1,
        "log_every": 1,
    }
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    res = _cli("train", "--config", str(cfg), "--out", str(run), "--no-progress", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["step"] == 2
    ckpt = run / "model.safetensors"
    assert ckpt.is_file()
    report = tmp_path / "report"
    res = _cli("eval", "--checkpoint", str(ckpt), "--data", str(data), "--report", str(report), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads(res.stdout)
    assert metrics["frames"] == 6
    assert 0 <= metrics["semseg"]["miou_present"] <= 1 and metrics["depth"]["rmse"] > 0
    assert metrics["meta"]["ground_contact"] is True
    # the network's depth as it is: same semantics, the flag recorded
    res = _cli("eval", "--checkpoint", str(ckpt), "--data", str(data), "--no-ground-contact", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    raw = json.loads(res.stdout)
    assert raw["meta"]["ground_contact"] is False and raw["semseg"] == metrics["semseg"]
    assert metrics["meta"]["sky_beyond_range"] is True
    res = _cli("eval", "--checkpoint", str(ckpt), "--data", str(data), "--network-sky-depth", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    sky = json.loads(res.stdout)
    assert sky["meta"]["sky_beyond_range"] is False and sky["semseg"] == metrics["semseg"]
    assert metrics["meta"]["sky_max_below_horizon_deg"] == 5.0
    res = _cli("eval", "--checkpoint", str(ckpt), "--data", str(data), "--sky-max-below-horizon-deg", "90", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    gate_off = json.loads(res.stdout)
    assert gate_off["meta"]["sky_max_below_horizon_deg"] == 90.0 and gate_off["semseg"] == metrics["semseg"]
    assert metrics["meta"]["sky_connected_to_top"] is False
    res = _cli("eval", "--checkpoint", str(ckpt), "--data", str(data), "--sky-connected-to-top", "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    top = json.loads(res.stdout)
    assert top["meta"]["sky_connected_to_top"] is True and top["semseg"] == metrics["semseg"]
    res = _cli("eval", "--checkpoint", str(ckpt), "--data", str(data), "--sky-max-below-horizon-deg", "120")
    assert res.returncode == 2 and "[0, 90]" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    for name in ("report.md", "metrics.json", "class_iou.png", "confusion.png", "depth_vs_distance.png", "samples.png"):
        assert (report / name).is_file(), name
    # onnxruntime int8 on the same data runs through the same pipeline
    res = _cli(
        "eval",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(data),
        "--backend",
        "onnxruntime",
        "--precision",
        "fp32",
        "--limit",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--json",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["frames"] == 2


def test_eval_errors_are_one_line(tmp_path):
    res = _cli("eval", "--checkpoint", str(tmp_path / "none.safetensors"), "--data", str(tmp_path))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    res = _cli("eval", "--data", str(tmp_path / "missing"))
    assert res.returncode == 2 and "does not exist" in res.stderr
