"""TensorRT backend: runs only where ``tensorrt`` imports and a CUDA GPU is present.

The development machines and CI have neither (TensorRT is not installable from PyPI here), so
these tests skip there with that reason; the pure-Python parts (cache keys, sidecar
validation) are tested everywhere.
"""

from __future__ import annotations

import json

import pytest

from mtl_perception.deploy.backends.tensorrt_backend import engine_key, sidecar_matches

GPU = {"gpu": "NVIDIA H100", "compute_capability": "9.0"}


def test_engine_key_changes_with_every_field():
    base = engine_key("abc", "fp16", (1, 3, 256, 512), "10.9.0", GPU)
    variants = [
        engine_key("abd", "fp16", (1, 3, 256, 512), "10.9.0", GPU),
        engine_key("abc", "int8", (1, 3, 256, 512), "10.9.0", GPU),
        engine_key("abc", "fp16", (1, 3, 128, 512), "10.9.0", GPU),
        engine_key("abc", "fp16", (1, 3, 256, 512), "11.0.0", GPU),
        engine_key("abc", "fp16", (1, 3, 256, 512), "10.9.0", {"gpu": "NVIDIA H100", "compute_capability": "8.9"}),
    ]
    assert len({v["id"] for v in variants} | {base["id"]}) == 6


def test_sidecar_validation_detects_mismatch(tmp_path):
    key = engine_key("abc", "fp16", (1, 3, 256, 512), "10.9.0", GPU)
    engine = tmp_path / "e.engine"
    assert sidecar_matches(engine, key) == (False, "no cached engine")
    engine.write_bytes(b"x")
    engine.with_suffix(".json").write_text(json.dumps({**key, "tensorrt": "10.8.0"}))
    ok, why = sidecar_matches(engine, key)
    assert not ok and "tensorrt" in why
    engine.with_suffix(".json").write_text(json.dumps(key))
    assert sidecar_matches(engine, key)[0]


def test_tensorrt_engine_builds_and_matches_onnxruntime(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine (not installable from PyPI here)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT imports but no CUDA GPU is visible")
    import numpy as np
    from tiny_models import tiny_config

    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.model import build_model, save_checkpoint

    ckpt = save_checkpoint(build_model(tiny_config("mlore")), tmp_path / "m.safetensors")
    img = np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    ref = InferenceEngine.create(ckpt, backend="onnxruntime", precision="fp32", device="cpu", cache_dir=tmp_path).infer(
        img
    )
    eng = InferenceEngine.create(ckpt, backend="tensorrt", precision="fp32", cache_dir=tmp_path)
    out = eng.infer(img)
    assert np.abs(out["semseg"] - ref["semseg"]).max() <= 1e-2
    # second start reuses the cached engine
    again = InferenceEngine.create(ckpt, backend="tensorrt", precision="fp32", cache_dir=tmp_path)
    assert again.describe()["engine"] == eng.describe()["engine"]
