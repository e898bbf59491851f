"""Many cameras, one engine: ``FramePipeline.process_batch`` and ``InferenceEngine(max_batch=...)``
on a tiny letterboxing, canonical-depth model (the shipped camera handling at test size)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_cnn_config

from mtl_perception.deploy.engine import EngineError, InferenceEngine
from mtl_perception.geometry import default_intrinsics
from mtl_perception.model import build_model, save_checkpoint
from mtl_perception.pipeline import FramePipeline

# three "cameras": different sizes and aspect ratios, each with its own intrinsics (one without)
SIZES = [(90, 170), (64, 128), (120, 96)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_cnn_config("mlore")
    assert cfg["camera"]["resize"] == "letterbox" and cfg["camera"]["canonical_focal"]
    return save_checkpoint(build_model(cfg), tmp_path_factory.mktemp("m") / "m.safetensors")


@pytest.fixture(scope="module")
def torch_engine(ckpt):
    return InferenceEngine.create(ckpt, backend="torch", precision="fp32", device="cpu", threads=1, max_batch=3)


@pytest.fixture(scope="module")
def cameras():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    Ks = [default_intrinsics(90, 170, 50.0), None, default_intrinsics(120, 96, 95.0)]
    return frames, Ks


def _assert_same(a, b, depth_rtol: float = 0.0, label_agreement: float = 1.0) -> None:
    """Same products; ``depth_rtol=0`` and ``label_agreement=1``: bit for bit."""
    assert a.labels.shape == b.labels.shape and a.depth.shape == b.depth.shape
    assert (a.intrinsics_source, a.depth_scale) == (b.intrinsics_source, b.depth_scale)
    if label_agreement == 1.0:
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.grid_labels, b.grid_labels)
    else:
        assert (a.labels == b.labels).mean() >= label_agreement
    if depth_rtol == 0.0:
        np.testing.assert_array_equal(a.depth, b.depth)
    else:
        np.testing.assert_allclose(a.depth, b.depth, rtol=depth_rtol, equal_nan=True)


@pytest.mark.parametrize("resolution", ["input", "network"])
def test_batch_equals_per_frame_torch(torch_engine, cameras, resolution):
    frames, Ks = cameras
    pipe = FramePipeline(torch_engine, output_resolution=resolution)
    batch = pipe.process_batch(frames, Ks)
    assert len(batch) == 3
    for res, rgb, K in zip(batch, frames, Ks):
        single = pipe.process(rgb, K)
        assert res.labels.shape == pipe.output_size(rgb.shape[:2])
        # labels bit for bit; depth to float rounding (oneDNN blocks a batch-3 conv differently
        # from batch 1: ~2e-6 m differences in a few % of the pixels)
        _assert_same(res, single, depth_rtol=1e-5)
        assert res.batch_size == 3 and single.batch_size == 1
        assert set(res.timings_ms) == {"preprocess", "inference", "postprocess"}
    # each frame's own K: the frames with a K differ in scale, the one without uses the default
    assert [r.intrinsics_source for r in batch] == ["frame", "default", "frame"]
    assert len({r.depth_scale for r in batch}) == 3
    # the inference time is the one call, shared
    assert len({r.timings_ms["inference"] for r in batch}) == 1


def test_batch_of_one_is_process_exactly(torch_engine, cameras):
    frames, Ks = cameras
    pipe = FramePipeline(torch_engine)
    _assert_same(pipe.process_batch([frames[0]], [Ks[0]])[0], pipe.process(frames[0], Ks[0]))
    _assert_same(pipe.process_batch([frames[1]])[0], pipe.process(frames[1]))


def test_one_inference_call_per_batch(torch_engine, cameras, monkeypatch):
    calls = []
    run = torch_engine.backend.run
    monkeypatch.setattr(torch_engine.backend, "run", lambda x: calls.append(x.shape) or run(x))
    FramePipeline(torch_engine).process_batch(*cameras)
    assert calls == [(3, 3, *torch_engine.input_size)]


def test_reuse_buffers_are_per_batch_index(torch_engine):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (90, 170, 3), dtype=np.uint8) for _ in range(3)]  # same size: same shapes
    ref = FramePipeline(torch_engine).process_batch(frames)
    pipe = FramePipeline(torch_engine, reuse_buffers=True)
    out = pipe.process_batch(frames)
    for i in range(3):
        _assert_same(out[i], ref[i])
        for j in range(i + 1, 3):
            assert not np.shares_memory(out[i].labels, out[j].labels)
            assert not np.shares_memory(out[i].depth, out[j].depth)
    assert not np.array_equal(out[0].labels, out[1].labels) or not np.array_equal(out[0].depth, out[1].depth)
    # the next call writes index i's arrays again (the documented contract of reuse_buffers)
    again = pipe.process_batch(frames[::-1])
    assert np.shares_memory(again[0].depth, out[0].depth)
    np.testing.assert_array_equal(out[0].depth, ref[2].depth)


def test_bad_arguments(torch_engine, cameras):
    frames, Ks = cameras
    pipe = FramePipeline(torch_engine)
    with pytest.raises(ValueError, match="at least one frame"):
        pipe.process_batch([])
    with pytest.raises(ValueError, match="one K .* per frame: 3 frames, 2 Ks"):
        pipe.process_batch(frames, Ks[:2])
    with pytest.raises(EngineError, match="max_batch"):
        InferenceEngine.create(torch_engine.info.extra["checkpoint"], backend="torch", device="cpu", max_batch=0)


def test_describe_reports_max_batch(torch_engine):
    assert torch_engine.describe()["max_batch"] == 3


def _ort_engine(ckpt, tmp_path, precision: str, max_batch: int, calibration=None):
    return InferenceEngine.create(
        ckpt,
        backend="onnxruntime",
        precision=precision,
        device="cpu",
        cache_dir=tmp_path,
        threads=1,
        max_batch=max_batch,
        calibration=calibration,
    )


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_ort_dynamic_batch_runs_in_one_session_call(ckpt, cameras, tmp_path, monkeypatch, precision):
    frames, Ks = cameras
    cal = [np.random.default_rng(i).integers(0, 256, (64, 128, 3), dtype=np.uint8) for i in range(2)]
    eng = _ort_engine(ckpt, tmp_path, precision, 3, cal)
    backend = eng.backend
    assert isinstance(backend.session.get_inputs()[0].shape[0], str)  # symbolic batch dimension
    assert backend.static_batch == 0 and eng.describe()["max_batch"] == 3
    calls = []
    inner = backend._run
    monkeypatch.setattr(backend, "_run", lambda x: calls.append(x.shape[0]) or inner(x))
    batch = FramePipeline(eng).process_batch(frames, Ks)
    assert calls == [3]
    pipe = FramePipeline(eng)
    for res, rgb, K in zip(batch, frames, Ks):
        _assert_same(res, pipe.process(rgb, K), depth_rtol=1e-4, label_agreement=0.99)
    if precision == "fp32":  # and the static (batch-1) artifact's products (int8: another calibration graph)
        single = FramePipeline(_ort_engine(ckpt, tmp_path, precision, 1))
        assert single.engine.backend.static_batch == 1
        for res, rgb, K in zip(batch, frames, Ks):
            _assert_same(res, single.process(rgb, K), depth_rtol=1e-4, label_agreement=0.99)


def test_fp16_dynamic_export_keeps_the_batch_dimension(ckpt, tmp_path):
    import onnx

    from mtl_perception.deploy import artifacts
    from mtl_perception.deploy.export import read_metadata

    path = artifacts.onnx_artifact(ckpt, "fp16", (64, 128), tmp_path, dynamic_batch=True)
    proto = onnx.load(str(path))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 64, 128]
    assert read_metadata(path)["dynamic_batch"] == "true"
    # static and dynamic exports are separate cache entries
    assert artifacts.onnx_artifact(ckpt, "fp16", (64, 128), tmp_path) != path


def test_bench_batch_reports_per_call_latency_and_frames_per_second(ckpt, tmp_path, capsys):
    import json

    from mtl_perception.cli import main

    out = tmp_path / "bench.json"
    argv = ["bench", "--checkpoint", str(ckpt), "--batch", "1", "3", "--iters", "2", "--warmup", "1"]
    argv += ["--eval-frames", "0", "--threads", "1", "--height", "72", "--width", "160"]
    assert main([*argv, "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["name"]: r for r in report["results"]}
    assert list(rows) == ["onnxruntime/fp32", "onnxruntime/fp32/batch3"]
    one, three = rows["onnxruntime/fp32"], rows["onnxruntime/fp32/batch3"]
    assert (one["batch"], three["batch"]) == (1, 3) and three["engine"]["max_batch"] == 3
    assert three["fps"] == pytest.approx(3000.0 / three["latency_ms"]["p50"])
    assert three["latency_per_frame_ms"] == pytest.approx(three["latency_ms"]["p50"] / 3)
    assert report["ratios"]["onnxruntime/fp32/batch3 vs batch 1 fps"] == pytest.approx(three["fps"] / one["fps"])
    with pytest.raises(SystemExit):
        main(["bench", "--batch"])
    assert main(["bench", "--checkpoint", str(ckpt), "--batch", "0"]) == 2
    assert "--batch values must be >= 1" in capsys.readouterr().err
