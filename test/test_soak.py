"""``mtl-perception soak``: frames back to back through the node's pipeline; RSS and latency reported."""

from __future__ import annotations

import json

import torch
from tiny_models import tiny_config

from mtl_perception.cli import main
from mtl_perception.model import build_model, save_checkpoint


def test_soak_reports_rss_and_latency(tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(tiny_config("mlore")), tmp_path / "m.safetensors")
    out = tmp_path / "soak.json"
    code = main(
        [
            "soak",
            "--frames",
            "24",
            "--checkpoint",
            str(ckpt),
            "--backend",
            "torch",
            "--height",
            "48",
            "--width",
            "96",
            "--sample-every",
            "5",
            "--warmup",
            "4",
            "--distinct",
            "3",
            "--out",
            str(out),
            "--no-progress",
            "--json",
            "--network-sky-depth",
        ]
    )
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frames"] == 24 and r["fps"] > 0 and r["meta"]["frame"] == "96x48"
    assert r["meta"]["sky_beyond_range"] is False and r["meta"]["ground_contact"] is True  # the options in force
    rss = r["rss_mb"]
    assert rss["start_after_warmup"] > 0 and rss["end"] > 0 and rss["samples"] == 6  # 4 (baseline), 5, 10, 15, 20, 24
    assert abs(rss["growth_pct"]) < 50
    lat = r["latency_ms"]
    assert set(lat) >= {"decode", "preprocess", "inference", "postprocess", "total"}
    assert lat["total"]["n"] == 20 and lat["total"]["p99"] >= lat["total"]["p50"] > 0
    series = json.loads(out.read_text())["rss_series"]
    assert series[0][0] == 4 and series[-1][0] == 24


def test_soak_rejects_bad_arguments(capsys):
    assert main(["soak", "--frames", "0"]) == 2
    assert "--frames must be >= 1" in capsys.readouterr().err
