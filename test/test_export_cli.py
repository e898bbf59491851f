"""``export`` and ``build-engine`` CLIs on a tiny checkpoint (real ONNX checker + ORT run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tiny_models import tiny_config


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from mtl_perception.model import build_model
    from mtl_perception.model.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(build_model(tiny_config("mlore")).eval(), path)
    return path


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mtl_perception.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_export_writes_checked_onnx_with_metadata(tiny_ckpt, tmp_path, precision):
    from mtl_perception.deploy.export import read_metadata

    out = tmp_path / f"m_{precision}.onnx"
    res = _cli("export", "--checkpoint", str(tiny_ckpt), "--precision", precision, "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    meta = read_metadata(out)
    assert meta["precision"] == precision and summary["input"] == [64, 128]
    assert json.loads(meta["classes"])[0] == "road"
    v = summary["verification"]
    if precision == "fp32":
        assert v["semseg_max_abs_diff"] <= 1e-4 and v["semseg_argmax_agreement"] == 1.0
    else:
        assert v["semseg_argmax_agreement"] > 0.8
    if precision == "int8":
        assert json.loads(meta["calibration"])["source"] == "synthetic"


def test_export_rejects_bad_size_and_missing_calibration(tiny_ckpt, tmp_path):
    res = _cli("export", "--checkpoint", str(tiny_ckpt), "--height", "70", "--out", str(tmp_path / "x.onnx"))
    assert res.returncode == 2 and "multiples of 16" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _cli(
        "export", "--checkpoint", str(tiny_ckpt), "--precision", "int8", "--calibration", str(tmp_path / "nope"),
        "--out", str(tmp_path / "x.onnx"),
    )  # fmt: skip
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_build_engine_onnxruntime_caches_and_tensorrt_says_why(tiny_ckpt, tmp_path):
    res = _cli("build-engine", "--checkpoint", str(tiny_ckpt), "--backend", "onnxruntime", "--precision", "fp32",
               "--cache-dir", str(tmp_path), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    desc = json.loads(res.stdout)
    assert desc["backend"] == "onnxruntime" and (tmp_path / "onnx").is_dir()
    res = _cli("build-engine", "--checkpoint", str(tiny_ckpt), "--backend", "tensorrt", "--cache-dir", str(tmp_path))
    if res.returncode == 0:
        pytest.skip("a usable TensorRT GPU is present; covered by test_tensorrt.py")
    assert res.returncode == 2 and "TensorRT" in res.stderr
