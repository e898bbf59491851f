"""TensorRT backend: runs only where ``tensorrt`` imports and a CUDA GPU is present.

The development machines and CI have neither (TensorRT is not installable from PyPI here), so
these tests skip there with that reason; the pure-Python parts (cache keys, sidecar
validation) are tested everywhere.
"""

from __future__ import annotations

import json

import pytest

from mtl_perception.deploy.backends.tensorrt_backend import build_engine, engine_key, profile_shapes, sidecar_matches

GPU = {"gpu": "NVIDIA H100", "compute_capability": "9.0"}


def test_engine_key_changes_with_every_field():
    base = engine_key("abc", "fp16", (1, 3, 256, 512), "10.9.0", GPU)
    variants = [
        engine_key("abd", "fp16", (1, 3, 256, 512), "10.9.0", GPU),
        engine_key("abc", "int8", (1, 3, 256, 512), "10.9.0", GPU),
        engine_key("abc", "fp16", (1, 3, 128, 512), "10.9.0", GPU),
        engine_key("abc", "fp16", (1, 3, 256, 512), "11.0.0", GPU),
        engine_key("abc", "fp16", (1, 3, 256, 512), "10.9.0", {"gpu": "NVIDIA H100", "compute_capability": "8.9"}),
        engine_key("abc", "fp16", (1, 3, 256, 512), "10.9.0", GPU, max_batch=6),
    ]
    assert len({v["id"] for v in variants} | {base["id"]}) == 7
    assert base["max_batch"] == 1


def test_sidecar_of_another_max_batch_is_rebuilt(tmp_path):
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"x")
    engine.with_suffix(".json").write_text(json.dumps(engine_key("abc", "fp16", (1, 3, 256, 512), "10.9.0", GPU)))
    ok, why = sidecar_matches(engine, engine_key("abc", "fp16", (1, 3, 256, 512), "10.9.0", GPU, max_batch=6))
    assert not ok and "max_batch" in why


def test_profile_shapes():
    assert profile_shapes((256, 512), 1) is None  # static batch-1 engine: no profile
    assert profile_shapes((256, 512), 6) == ((1, 3, 256, 512), (6, 3, 256, 512), (6, 3, 256, 512))
    with pytest.raises(Exception, match="max_batch"):
        profile_shapes((256, 512), 0)


def _fake_tensorrt():
    """Just enough of the tensorrt module for ``build_engine``, recording its calls."""
    import types
    from unittest import mock

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    builder = mock.MagicMock(name="builder")
    builder.build_serialized_network.return_value = b"serialized-engine"
    config = builder.create_builder_config.return_value
    config.get_timing_cache.return_value.serialize.return_value = b"timing"
    network = builder.create_network.return_value
    network.get_input.return_value.name = "image"
    trt = types.SimpleNamespace(
        Logger=mock.MagicMock(WARNING=2),
        Builder=mock.MagicMock(return_value=builder),
        OnnxParser=mock.MagicMock(),
        NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=1),
        MemoryPoolType=types.SimpleNamespace(WORKSPACE=0),
        IProgressMonitor=IProgressMonitor,
    )
    return trt, builder


@pytest.mark.parametrize("max_batch", [1, 6])
def test_build_engine_adds_the_batch_profile(tmp_path, monkeypatch, max_batch):
    import sys

    trt, builder = _fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    key = engine_key("abc", "fp16", (1, 3, 256, 512), "10.9.0", GPU, max_batch=max_batch)
    engine = tmp_path / f"{key['id']}.engine"
    data = build_engine(
        tmp_path / "m.onnx",
        "fp16",
        key,
        engine,
        tmp_path / "timing.cache",
        profile=profile_shapes((256, 512), max_batch),
    )
    assert data == b"serialized-engine" and engine.read_bytes() == data
    assert json.loads(engine.with_suffix(".json").read_text())["max_batch"] == max_batch
    config = builder.create_builder_config.return_value
    profile = builder.create_optimization_profile.return_value
    if max_batch == 1:
        builder.create_optimization_profile.assert_not_called()
        config.add_optimization_profile.assert_not_called()
    else:
        profile.set_shape.assert_called_once_with("image", (1, 3, 256, 512), (6, 3, 256, 512), (6, 3, 256, 512))
        config.add_optimization_profile.assert_called_once_with(profile)


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


def test_tensorrt_dynamic_batch_engine_matches_onnxruntime(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed on this machine (not installable from PyPI here)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT imports but no CUDA GPU is visible")
    import numpy as np
    from tiny_models import tiny_config

    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.model import build_model, save_checkpoint

    ckpt = save_checkpoint(build_model(tiny_config("mlore")), tmp_path / "m.safetensors")
    imgs = np.random.default_rng(0).integers(0, 255, (3, 64, 128, 3), dtype=np.uint8)
    ref = InferenceEngine.create(ckpt, backend="onnxruntime", precision="fp32", device="cpu", cache_dir=tmp_path)
    eng = InferenceEngine.create(ckpt, backend="tensorrt", precision="fp32", cache_dir=tmp_path, max_batch=3)
    assert eng.describe()["max_batch"] == 3
    for n in (3, 2, 3):  # full batch, a partial one (another input shape), full again
        out = eng.infer(imgs[:n])
        assert out["semseg"].shape[0] == n
        assert np.abs(out["semseg"] - ref.infer(imgs[:n])["semseg"]).max() <= 1e-2
