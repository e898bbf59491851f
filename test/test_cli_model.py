"""``mtl-perception model-info`` / ``bench-decoders``: run as real subprocesses on tiny configs."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from tiny_models import ROOT, tiny_config


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mtl_perception.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_model_info_json_reports_both_forms(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config("mlore")))
    res = _cli("model-info", "--config", str(cfg), "--json")
    assert res.returncode == 0, res.stderr
    card = json.loads(res.stdout)
    assert card["decoder"] == "mlore" and card["input"] == [64, 128]
    train, dep = card["forms"]["train"], card["forms"]["deploy"]
    for form in (train, dep):
        assert form["params"]["total"] == sum(form["params"][p] for p in ("backbone", "decoder", "heads"))
        parts = form["gflops"]["backbone"] + form["gflops"]["decoder"] + form["gflops"]["heads"]
        assert form["gflops"]["heads"] > 0 and abs(form["gflops"]["total"] - parts) <= 1e-6 * form["gflops"]["total"]
    assert train["gflops"]["backbone"] == dep["gflops"]["backbone"]
    assert dep["gflops"]["decoder"] < train["gflops"]["decoder"]  # folding removes the expert cost


def test_model_info_text_and_size_override(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config("baseline")))
    res = _cli("model-info", "--config", str(cfg), "--height", "32", "--width", "64", "--deploy")
    assert res.returncode == 0, res.stderr
    assert "input 32x64" in res.stdout and "deploy" in res.stdout and "train " not in res.stdout


def test_model_info_errors_are_one_line():
    res = _cli("model-info", "--config", "does/not/exist.yaml")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0]


def test_bench_decoders_json(tmp_path):
    (tmp_path / "baseline.yaml").write_text(yaml.safe_dump(tiny_config("baseline")))
    (tmp_path / "mlore.yaml").write_text(yaml.safe_dump(tiny_config("mlore")))
    res = _cli(
        "bench-decoders",
        "--config-dir",
        str(tmp_path),
        "--variants",
        "baseline",
        "mlore",
        "--height",
        "64",
        "--width",
        "128",
        "--warmup",
        "1",
        "--iters",
        "2",
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    rows = {r["decoder"]: r for r in report["results"]}
    assert set(rows) == {"baseline", "mlore"}
    assert rows["mlore"]["deploy_gflops_ratio"] < 1.0
    assert rows["baseline"]["vs_baseline"]["gflops_deploy"] == 1.0
    assert all(r["train"]["model"]["p50_ms"] > 0 for r in rows.values())
