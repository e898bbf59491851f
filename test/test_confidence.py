"""Semantic confidence: softmax of the predicted class, temperature scaling, ECE, the checkpoint's
temperature, the pipeline's ``confidence`` and its parity across torch / ONNX Runtime fp32."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_models import tiny_cnn_config

from mtl_perception.deploy.engine import EngineError, InferenceEngine
from mtl_perception.deploy.postprocess import confidence_from_logits, labels_and_confidence
from mtl_perception.evaluate.calibration import (
    CalibrationMeter,
    ece_from_logits,
    fit_temperature,
    nll,
    softmax_confidence,
)
from mtl_perception.model import build_model, save_checkpoint
from mtl_perception.model.checkpoint import rewrite_metadata, tensors_sha256
from mtl_perception.pipeline import FramePipeline


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return save_checkpoint(build_model(tiny_cnn_config("mlore")), tmp_path_factory.mktemp("m") / "m.safetensors")


@pytest.fixture(scope="module")
def ckpt_t(ckpt, tmp_path_factory):
    """The same weights with semseg_temperature=2.5 in the metadata."""
    return rewrite_metadata(ckpt, tmp_path_factory.mktemp("t") / "t.safetensors", {"semseg_temperature": "2.5"})


def _torch_conf(logits: np.ndarray, t: float) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).double() / t, 0).max(0).values.numpy()


@pytest.mark.parametrize("t", [1.0, 0.7, 2.5])
def test_confidence_is_softmax_of_the_argmax(t):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((19, 33, 47)) * 4).astype(np.float32)
    logits[:, :3, :3] = 1.5  # ties: confidence 1/K
    labels, conf = labels_and_confidence(logits, t)
    np.testing.assert_array_equal(labels, np.argmax(logits, 0))
    assert conf.dtype == np.float32 and conf.shape == (33, 47)
    np.testing.assert_allclose(conf, _torch_conf(logits, t), atol=2e-6)
    assert conf.min() >= 1 / 19 - 1e-6 and conf.max() <= 1.0
    np.testing.assert_allclose(conf[:3, :3], 1 / 19, rtol=1e-5)
    # strided (letterbox content crop) input and the standalone function agree
    crop = logits[:, 2:30, 5:40]
    np.testing.assert_allclose(confidence_from_logits(crop, t), _torch_conf(np.ascontiguousarray(crop), t), atol=2e-6)
    big = logits * 1e3  # the max-logit shift never overflows
    assert np.isfinite(confidence_from_logits(big, t)).all()
    with pytest.raises(ValueError, match="temperature"):
        confidence_from_logits(logits, 0.0)


def test_ece_meter_known_values_and_exact_merge():
    m = CalibrationMeter(n_bins=10)
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55, 1.0, 0.0])
    pred = np.array([1, 1, 1, 0, 2, 2, 3, 0])
    gt = np.array([1, 1, 1, 1, 2, 0, 3, 255])  # the last pixel is unlabelled
    m.update(conf, pred, gt)
    r = m.compute()
    assert r["pixels"] == 7
    # bin (0.9, 1.0]: 5 pixels, 4 correct, mean conf 0.96; bin (0.5, 0.6]: 2 pixels, 1 correct, conf 0.55
    assert r["ece"] == pytest.approx(5 / 7 * abs(0.8 - 0.96) + 2 / 7 * abs(0.5 - 0.55))
    assert r["accuracy"] == pytest.approx(5 / 7)
    a, b = CalibrationMeter(10), CalibrationMeter(10)
    a.update(conf[:3], pred[:3], gt[:3])
    b.update(conf[3:], pred[3:], gt[3:])
    merged = CalibrationMeter.from_state(a.state() + b.state())
    assert merged.compute() == r
    assert a.merge(b).compute() == r


def test_fit_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((40000, 8)) * 3).astype(np.float32)
    t_true = 1.8  # labels drawn from softmax(z / 1.8): the logits are over-confident by 1.8x
    p = torch.softmax(torch.from_numpy(z).double() / t_true, 1).numpy()
    labels = (p.cumsum(1) > rng.random((len(z), 1))).argmax(1)
    t = fit_temperature(z, labels)
    assert t == pytest.approx(t_true, rel=0.05)
    assert nll(z, labels, t) < nll(z, labels, 1.0)
    assert ece_from_logits(z, labels, t)["ece"] < ece_from_logits(z, labels, 1.0)["ece"]
    pred, conf = softmax_confidence(z, t)
    np.testing.assert_allclose(conf, _torch_conf(z.T.copy(), t), rtol=1e-9)


def test_temperature_rewrite_keeps_weights_and_reaches_model_info(ckpt, ckpt_t, tmp_path):
    from mtl_perception.deploy.artifacts import model_info
    from mtl_perception.model import load_checkpoint, read_metadata

    assert tensors_sha256(ckpt) == tensors_sha256(ckpt_t)
    assert read_metadata(ckpt_t)["config"] == read_metadata(ckpt)["config"]
    assert model_info(ckpt).semseg_temperature == 1.0  # none in the metadata
    assert model_info(ckpt_t).semseg_temperature == 2.5
    a, b = load_checkpoint(ckpt).state_dict(), load_checkpoint(ckpt_t).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    bad = rewrite_metadata(ckpt, tmp_path / "bad.safetensors", {"semseg_temperature": "-1"})
    with pytest.raises(EngineError, match="semseg_temperature"):
        model_info(bad)


def test_pipeline_confidence_on_request_resized_like_labels(ckpt_t):
    eng = InferenceEngine.create(ckpt_t, backend="torch", precision="fp32", device="cpu", threads=1)
    rgb = np.random.default_rng(0).integers(0, 256, (90, 170, 3), dtype=np.uint8)
    plain = FramePipeline(eng).process(rgb)
    assert plain.confidence is None  # not asked: not built
    pipe = FramePipeline(eng, reuse_buffers=True)
    res = pipe.process(rgb, confidence=True)
    assert pipe.temperature == 2.5
    assert res.confidence.shape == res.labels.shape and res.confidence.dtype == np.float32
    np.testing.assert_array_equal(res.labels, plain.labels)
    # reference: softmax on the letterbox content of the grid at T, then the labels' nearest resize
    box = eng.letterbox((90, 170))
    logits = np.ascontiguousarray(box.content(eng.infer(rgb)["semseg"][0]))
    from mtl_perception.deploy.postprocess import resize_confidence

    ref = resize_confidence(_torch_conf(logits, 2.5).astype(np.float32), (90, 170))
    np.testing.assert_allclose(res.confidence, ref, atol=2e-6)
    assert 0.0 <= res.confidence.min() and res.confidence.max() <= 1.0
    # per-frame flags in a batch; network resolution gives grid-sized confidence
    batch = FramePipeline(eng).process_batch([rgb, rgb[:64, :128]], confidence=[False, True])
    assert batch[0].confidence is None and batch[1].confidence.shape == (64, 128)
    net = FramePipeline(eng, output_resolution="network", confidence=True).process(rgb)
    assert net.confidence.shape == net.labels.shape


def test_confidence_identical_across_torch_and_onnxruntime_fp32(ckpt_t, tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (72, 160, 3), dtype=np.uint8)
    out = {}
    for backend in ("torch", "onnxruntime"):
        eng = InferenceEngine.create(
            ckpt_t, backend=backend, precision="fp32", device="cpu", cache_dir=tmp_path, threads=1
        )
        out[backend] = FramePipeline(eng, confidence=True).process(rgb)
    a, b = out["torch"], out["onnxruntime"]
    assert (a.labels == b.labels).mean() > 0.999
    same = a.labels == b.labels  # an argmax flip at a near-tie changes which class's probability it is
    np.testing.assert_allclose(a.confidence[same], b.confidence[same], atol=1e-5)
    from mtl_perception.deploy.export import read_metadata

    onnx_path = next(tmp_path.rglob("*.onnx"))
    assert read_metadata(onnx_path)["semseg_temperature"] == "2.5"


def test_calibrate_cli_fits_writes_and_refuses_real_frames(ckpt, tmp_path, capsys):
    from mtl_perception.cli import main
    from mtl_perception.deploy.artifacts import model_info

    data = tmp_path / "val"
    assert main(["synth", "--out", str(data), "--frames", "3", "--height", "64", "--width", "128",
                 "--seed", "4242", "--no-progress"]) == 0  # fmt: skip
    capsys.readouterr()
    out = tmp_path / "cal.safetensors"
    args = ["calibrate", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--json"]
    assert main(args + ["--pixel-stride", "2"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["frames"] == 3 and r["pixels"] > 0 and r["data_seed"] == 4242
    assert r["temperature"] > 0 and r["nll_after"] <= r["nll_before"] + 1e-9
    assert r["tensors_identical"] is True and r["tensors_sha256"] == tensors_sha256(ckpt)
    assert model_info(out).semseg_temperature == pytest.approx(r["temperature"], rel=1e-5)
    assert 0 <= r["ece_after"] <= 1 and r["ece_bins"] == 15
    # in place (--out = --checkpoint): the source is hashed before it is replaced
    inplace = tmp_path / "inplace.safetensors"
    inplace.write_bytes(ckpt.read_bytes())
    assert main(["calibrate", "--checkpoint", str(inplace), "--data", str(data), "--out", str(inplace), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tensors_identical"] is True
    assert tensors_sha256(inplace) == tensors_sha256(ckpt) and model_info(inplace).semseg_temperature != 1.0
    # not a synthetic dataset (e.g. the real frames): refused, nothing written
    real = tmp_path / "realdata"
    real.mkdir()
    assert main(["calibrate", "--checkpoint", str(ckpt), "--data", str(real), "--out", str(tmp_path / "x")]) == 2
    assert "synthetic" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_eval_runner_reports_ece(ckpt_t, tmp_path):
    from mtl_perception.evaluate.runner import evaluate_engine

    eng = InferenceEngine.create(ckpt_t, backend="torch", precision="fp32", device="cpu", threads=1)
    rng = np.random.default_rng(3)
    samples = [
        {"image": rng.integers(0, 256, (64, 128, 3), dtype=np.uint8), "semseg": rng.integers(0, 19, (64, 128))}
        for _ in range(2)
    ]
    results, _ = evaluate_engine(eng, samples, keep_samples=0)
    cal = results["calibration"]
    assert cal["pixels"] == 2 * 64 * 128 and cal["bins"] == 15 and cal["temperature"] == 2.5
    assert 0 <= cal["ece"] <= 1


def test_onnx_graph_computes_class_ids_and_confidence(ckpt_t, tmp_path):
    """The exported graph's own class ids / confidence (deploy.graph_products) equal the host functions
    on the graph's logits, at the checkpoint's temperature, in fp32 and fp16; the pipeline uses them;
    a cached export from before they existed is exported again."""
    import onnx
    import onnxruntime as ort

    from mtl_perception.deploy.artifacts import onnx_artifact
    from mtl_perception.deploy.export import _attach_metadata, read_metadata
    from mtl_perception.deploy.postprocess import GRAPH_CONFIDENCE, GRAPH_LABELS, resize_confidence, resize_labels

    rgb = np.random.default_rng(3).integers(0, 256, (72, 160, 3), dtype=np.uint8)
    eng = InferenceEngine.create(ckpt_t, backend="onnxruntime", precision="fp32", cache_dir=tmp_path, threads=1)
    out = eng.infer(rgb)
    res = FramePipeline(eng, confidence=True).process(rgb)
    box = eng.letterbox((72, 160))
    graph_labels = box.content(out[GRAPH_LABELS][0, 0]).astype(np.uint8)
    np.testing.assert_array_equal(res.labels, resize_labels(graph_labels, (72, 160)))
    np.testing.assert_array_equal(
        res.confidence, resize_confidence(box.content(out[GRAPH_CONFIDENCE][0, 0]), (72, 160))
    )
    # fp16 (a GPU precision: its graph run here by ONNX Runtime directly)
    sess = ort.InferenceSession(
        str(onnx_artifact(ckpt_t, "fp16", (64, 128), tmp_path)), providers=["CPUExecutionProvider"]
    )
    x = eng.preprocess([rgb])
    fp16 = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
    for graph, tol in ((out, 2e-6), (fp16, 2e-3)):
        logits = graph["semseg"][0]
        labels, conf = labels_and_confidence(np.ascontiguousarray(logits, np.float32), 2.5)
        assert graph[GRAPH_LABELS].shape == graph[GRAPH_CONFIDENCE].shape == (1, 1, *logits.shape[1:])
        np.testing.assert_array_equal(graph[GRAPH_LABELS][0, 0], labels)  # ties and all: the same argmax
        np.testing.assert_allclose(graph[GRAPH_CONFIDENCE][0, 0], conf, atol=tol)
    # an artifact exported before the graph products: re-exported, not used as it is
    path = onnx_artifact(ckpt_t, "fp32", (64, 128), tmp_path)
    proto = onnx.load(str(path))
    meta = read_metadata(path)
    meta["outputs"] = json.dumps({k: v for k, v in json.loads(meta["outputs"]).items() if k != GRAPH_LABELS})
    _attach_metadata(proto, meta)
    onnx.save(proto, str(path))
    again = onnx_artifact(ckpt_t, "fp32", (64, 128), tmp_path)
    assert GRAPH_LABELS in json.loads(read_metadata(again)["outputs"])
