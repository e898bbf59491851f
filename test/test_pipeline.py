"""FramePipeline: the node's / replay-eval's frame path on a tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_config

from mtl_perception.deploy.engine import InferenceEngine
from mtl_perception.deploy.postprocess import frame_products
from mtl_perception.model import build_model, save_checkpoint
from mtl_perception.pipeline import FramePipeline, FrameResult


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(tiny_config("mlore")), tmp_path_factory.mktemp("m") / "m.safetensors")
    return InferenceEngine.create(ckpt, backend="torch", precision="fp32", device="cpu", threads=1)


def test_input_resolution_matches_engine_and_postprocess(engine):
    rgb = np.random.default_rng(0).integers(0, 256, (90, 170, 3), dtype=np.uint8)
    res = FramePipeline(engine).process(rgb)
    assert isinstance(res, FrameResult)
    assert res.labels.shape == (90, 170) and res.labels.dtype == np.uint8
    assert res.depth.shape == (90, 170) and res.depth.dtype == np.float32
    assert set(res.timings_ms) == {"preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in res.timings_ms.values())
    labels, depth = frame_products(engine.infer(rgb), 0, (90, 170))  # the eval path
    np.testing.assert_array_equal(res.labels, labels)
    np.testing.assert_allclose(res.depth, depth, rtol=1e-5, equal_nan=True)
    assert int(res.labels.max()) < len(engine.info.classes)


def test_network_resolution(engine):
    p = FramePipeline(engine, output_resolution="network")
    rgb = np.zeros((90, 170, 3), np.uint8)
    res = p.process(rgb)
    assert res.labels.shape == res.depth.shape == tuple(engine.input_size) == p.output_size((90, 170))
    assert FramePipeline(engine).output_size((90, 170)) == (90, 170)


def test_bad_output_resolution(engine):
    with pytest.raises(ValueError, match="output_resolution"):
        FramePipeline(engine, output_resolution="half")
