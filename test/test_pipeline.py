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
    raw = FramePipeline(engine, sky_beyond_range=False).process(rgb)
    np.testing.assert_allclose(raw.depth, depth, rtol=1e-5, equal_nan=True)
    assert int(res.labels.max()) < len(engine.info.classes)
    # by default, pixels labelled sky with P(sky) >= 0.5 are beyond range (+inf); with 0, every sky pixel
    sky_id = list(engine.info.classes).index("sky")
    res = FramePipeline(engine).process(rgb, confidence=True)
    sky = (res.labels == sky_id) & (res.confidence >= 0.5)
    assert np.isposinf(res.depth[sky]).all() and not np.isinf(res.depth[~sky]).any()
    res = FramePipeline(engine, sky_min_confidence=0.0).process(rgb)
    sky = res.labels == sky_id
    assert sky.any() and np.isposinf(res.depth[sky]).all() and not np.isinf(res.depth[~sky]).any()


def test_network_resolution(engine):
    p = FramePipeline(engine, output_resolution="network")
    rgb = np.zeros((90, 170, 3), np.uint8)
    res = p.process(rgb)
    assert res.labels.shape == res.depth.shape == tuple(engine.input_size) == p.output_size((90, 170))
    assert FramePipeline(engine).output_size((90, 170)) == (90, 170)


def test_bad_output_resolution(engine):
    with pytest.raises(ValueError, match="output_resolution"):
        FramePipeline(engine, output_resolution="half")


def test_fast_argmax_equals_numpy_argmax_including_ties():
    from mtl_perception.deploy.postprocess import labels_from_logits

    rng = np.random.default_rng(3)
    logits = rng.standard_normal((19, 37, 53)).astype(np.float32)
    logits[:, :5, :5] = 0.25  # all classes tied: the lowest id wins, like np.argmax
    logits[[4, 9], 10:20, 10:20] = 9.0  # two-way tie
    assert np.array_equal(labels_from_logits(logits), np.argmax(logits, axis=0).astype(np.uint8))
    assert np.array_equal(labels_from_logits(logits[:, ::2, ::3]), np.argmax(logits[:, ::2, ::3], axis=0))
    many = rng.standard_normal((255, 9, 11)).astype(np.float32)  # class ids up to 254 (uint8, 255 = unknown)
    many[254, 0, 0] = 99.0
    assert np.array_equal(labels_from_logits(many), np.argmax(many, axis=0).astype(np.uint8))
    assert labels_from_logits(many)[0, 0] == 254


def test_preprocess_matches_reference_normalisation():
    """Straight resize + normalise: identical to the textbook formula; large frames go through an
    exact 2x2 box mean first, which stays within a grey level or two of one-step INTER_AREA."""
    import cv2

    from mtl_perception.deploy.engine import preprocess_frames

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rng = np.random.default_rng(0)

    def reference(im, size):
        im = cv2.resize(im, size[::-1], interpolation=cv2.INTER_AREA) if im.shape[:2] != size else im
        x = im.astype(np.float32).transpose(2, 0, 1)[None]
        return (x - np.float32(255) * np.float32(mean).reshape(1, 3, 1, 1)) / (
            np.float32(255) * np.float32(std).reshape(1, 3, 1, 1)
        )

    small = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    out = preprocess_frames(small, (32, 64), mean, std)
    assert out.shape == (1, 3, 32, 64) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, reference(small, (32, 64)), atol=1e-5)
    big = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (5, 5), 2)
    diff = np.abs(preprocess_frames(big, (256, 512), mean, std) - reference(big, (256, 512)))
    grey_levels = diff * 255 * np.float32(std).reshape(1, 3, 1, 1)
    assert float(grey_levels.mean()) < 3.0 and float(grey_levels.max()) < 32


def test_colorize_labels_lut_matches_palette_lookup():
    from mtl_perception.visualize import IGNORE_COLOR, colorize_labels

    palette = np.random.default_rng(1).integers(0, 256, (19, 3), dtype=np.uint8)
    labels = np.random.default_rng(2).integers(0, 19, (31, 47), dtype=np.uint8)
    labels[0, :5] = 255
    rgb = colorize_labels(labels, palette)
    assert rgb.shape == (31, 47, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[1:], palette[labels[1:]])
    assert (rgb[0, :5] == np.asarray(IGNORE_COLOR, np.uint8)).all()


def test_reused_buffers_give_identical_products(engine):
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (96, 200, 3), dtype=np.uint8) for _ in range(3)]
    plain, reusing = FramePipeline(engine), FramePipeline(engine, reuse_buffers=True)
    kept = []
    for f in frames:
        a, b = plain.process(f), reusing.process(f)
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.depth, b.depth, equal_nan=True)
        kept.append(b.labels)
    assert kept[0] is kept[-1]  # one buffer, refilled per frame (why only publish-and-drop callers use it)


def test_reused_buffers_are_message_arrays(engine):
    """The node's pipeline resizes its products into ``message_array``s, which the node's message pool
    publishes without a copy; a non-reusing pipeline's products are plain arrays (kept by callers)."""
    from mtl_perception.pipeline import array_owner

    frame = np.random.default_rng(7).integers(0, 256, (96, 200, 3), dtype=np.uint8)
    res = FramePipeline(engine, reuse_buffers=True).process(frame, confidence=True)
    assert res.labels.shape == (96, 200)
    assert array_owner(res.labels) is not None and array_owner(res.confidence) is not None
    if np.isfinite(res.depth).all():  # NaN-free depth is resized in place; else a fresh NaN-aware array
        assert array_owner(res.depth) is not None
    plain = FramePipeline(engine).process(frame, confidence=True)
    assert array_owner(plain.labels) is None and array_owner(plain.confidence) is None


@pytest.mark.parametrize("size", [(720, 1280), (375, 1242), (64, 128), (37, 53)])
def test_colorize_then_resize_equals_resize_then_colorize(size):
    from mtl_perception.deploy.postprocess import resize_labels
    from mtl_perception.visualize import colorize_labels, colorize_labels_resized

    grid = np.random.default_rng(4).integers(0, 19, (64, 128), dtype=np.uint8)
    grid[0, :3] = 255
    assert np.array_equal(colorize_labels_resized(grid, size), colorize_labels(resize_labels(grid, size)))


def test_pipeline_exposes_grid_labels(engine):
    frame = np.random.default_rng(6).integers(0, 256, (96, 200, 3), dtype=np.uint8)
    res = FramePipeline(engine).process(frame)
    from mtl_perception.deploy.postprocess import resize_labels

    assert res.grid_labels.shape == tuple(engine.input_size)
    assert np.array_equal(resize_labels(res.grid_labels, (96, 200)), res.labels)
