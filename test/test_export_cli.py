"""``export`` and ``build-engine`` CLIs on a tiny checkpoint (real ONNX checker + ORT run)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from tiny_models import tiny_config


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    import torch

    from mtl_perception.model import build_model
    from mtl_perception.model.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    # seeded: an unseeded random tiny net sometimes has near-tied logits, and the int8 argmax agreement
    # then depended on the draw (0.71 once in a full run; 1.0 for seeds 0-3)
    torch.manual_seed(0)
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


@pytest.mark.parametrize("scheme", ["u8s8", "s8s8"])
def test_int8_schemes_zero_points(tiny_ckpt, tmp_path, scheme):
    """s8s8 is what TensorRT accepts (int8 activations and weights, every zero point 0); u8s8 (the
    ONNX Runtime x86 default) has uint8 activations and int8 weights with zero point 0."""
    import onnx
    from onnx import numpy_helper

    from mtl_perception.deploy.artifacts import synthetic_calibration_frames
    from mtl_perception.deploy.engine import preprocess_frames
    from mtl_perception.deploy.export import export_onnx, read_metadata
    from mtl_perception.model import load_checkpoint

    model = load_checkpoint(tiny_ckpt)
    norm = model.config["normalization"]
    batches = [
        preprocess_frames([f], (64, 128), norm["mean"], norm["std"]) for f in synthetic_calibration_frames(2, (64, 128))
    ]
    out = tmp_path / f"{scheme}.onnx"
    export_onnx(model, out, "int8", calibration=batches, int8_scheme=scheme)
    assert read_metadata(out)["int8_scheme"] == scheme
    proto = onnx.load(str(out))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    zero_points = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    dequant_ops = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    assert zero_points and len(dequant_ops) >= len(zero_points)
    act_dtypes = {z.dtype for z in zero_points}
    assert act_dtypes == ({np.dtype(np.int8)} if scheme == "s8s8" else {np.dtype(np.uint8)})
    if scheme == "s8s8":
        assert all((z == 0).all() for z in zero_points)
    weight_zps = [
        inits[n.input[2]]
        for n in dequant_ops
        if n.input[0] in inits and len(n.input) > 2 and inits[n.input[0]].ndim > 1
    ]
    assert weight_zps and all(z.dtype == np.int8 and (z == 0).all() for z in weight_zps)


def test_int8_keeps_a_cnn_backbone_fp32(tmp_path):
    """A CNN backbone stays fp32 in int8 exports (export._int8_excluded_nodes): no Conv under the
    backbone reads a dequantised weight, while the decoder's do."""
    import onnx
    from tiny_models import tiny_cnn_config

    from mtl_perception.deploy.artifacts import synthetic_calibration_frames
    from mtl_perception.deploy.engine import preprocess_frames
    from mtl_perception.deploy.export import export_onnx, read_metadata
    from mtl_perception.model import build_model

    model = build_model(tiny_cnn_config("mlore")).eval()
    norm = model.config["normalization"]
    size = tuple(model.config["input_size"])
    batches = [preprocess_frames([f], size, norm["mean"], norm["std"]) for f in synthetic_calibration_frames(2, size)]
    out = tmp_path / "int8.onnx"
    export_onnx(model, out, "int8", calibration=batches)
    assert read_metadata(out)["int8_excluded"] == "cnn backbone (fp32)"
    graph = onnx.load(str(out)).graph
    dequantised = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}

    def quantised_convs(prefix: str) -> list[str]:
        return [
            n.name
            for n in graph.node
            if n.op_type == "Conv" and n.name.startswith(prefix) and n.input[1] in dequantised
        ]

    assert [n.name for n in graph.node if n.op_type == "Conv" and "/backbone/" in n.name]
    assert quantised_convs("/model/backbone/") == []
    assert quantised_convs("/model/decoder/") or quantised_convs("/model/heads/")
