"""Sim-to-real training augmentations: random-aspect letterboxing keeps K, labels and depth
consistent (a 3D point still projects onto its label), sensor effects touch photometry only."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.data.transforms import RandomAspectLetterbox, RandomConvolution, SensorEffects
from mtl_perception.train.data import build_transform


def _marker_sample(H=120, W=240, u=150.0, v=40.0, depth=12.0):
    """A frame with one 3x3 marker (label 11, depth ``depth``) at pixel (u, v) and its camera."""
    K = np.array([[200.0, 0, 119.5], [0, 200.0, 59.5], [0, 0, 1]])
    img = np.full((H, W, 3), 90, np.uint8)
    sem = np.zeros((H, W), np.uint8)
    dep = np.full((H, W), 30.0, np.float32)
    ui, vi = int(u), int(v)
    img[vi - 1 : vi + 2, ui - 1 : ui + 2] = 250
    sem[vi - 1 : vi + 2, ui - 1 : ui + 2] = 11
    dep[vi - 1 : vi + 2, ui - 1 : ui + 2] = depth
    X = np.linalg.inv(K) @ np.array([u, v, 1.0]) * depth  # the marker's 3D point
    return {"image": img, "semseg": sem, "depth": dep, "K": K}, X


@pytest.mark.parametrize("seed", range(12))
def test_letterbox_window_keeps_the_projection_of_a_3d_point_on_its_label(seed):
    sample, X = _marker_sample()
    t = RandomAspectLetterbox((64, 128), p=1.0, aspect_range=(1.3, 3.4), zoom_range=(0.8, 1.0))
    out = t(sample, np.random.default_rng(seed))
    assert out["image"].shape == (64, 128, 3) and out["semseg"].shape == (64, 128)
    ys, xs = np.nonzero(out["semseg"] == 11)
    if ys.size == 0:  # the window cut the marker away: then its projection is outside the content
        p = out["K"] @ X
        u, v = p[0] / p[2], p[1] / p[2]
        inside = (out["semseg"] != 255)[int(np.clip(round(v), 0, 63)), int(np.clip(round(u), 0, 127))]
        assert not (0 <= u < 128 and 0 <= v < 64) or not inside
        return
    p = out["K"] @ X
    u, v = p[0] / p[2], p[1] / p[2]
    assert abs(u - xs.mean()) < 1.0 and abs(v - ys.mean()) < 1.0
    assert np.allclose(out["depth"][ys, xs], 12.0)  # depth stays metric (K carries the zoom)


def test_letterbox_pads_are_ignored_labels_invalid_depth_and_mean_colour():
    sample, _ = _marker_sample()
    t = RandomAspectLetterbox((64, 128), p=1.0, aspect_range=(3.3, 3.4), zoom_range=(1.0, 1.0), pad_rgb=(127, 128, 129))
    out = t(sample, np.random.default_rng(0))
    # a 3.3:1 window in a 2:1 input: pads above and below
    assert (out["semseg"][0] == 255).all() and (out["semseg"][-1] == 255).all()
    assert (out["depth"][0] == 0).all()
    assert (out["image"][0, 0] == [127, 128, 129]).all()
    assert (out["semseg"][32] != 255).all()


def test_letterbox_probability_zero_is_identity():
    sample, _ = _marker_sample()
    out = RandomAspectLetterbox((64, 128), p=0.0)(sample, np.random.default_rng(0))
    assert out is sample


def test_sensor_effects_are_photometric_and_seeded():
    sample, _ = _marker_sample()
    fx = SensorEffects()
    a = [fx(sample, np.random.default_rng(s)) for s in range(8)]
    b = fx(sample, np.random.default_rng(3))
    assert np.array_equal(a[3]["image"], b["image"])
    assert any(not np.array_equal(x["image"], sample["image"]) for x in a)
    for x in a:
        assert x["image"].dtype == np.uint8 and x["image"].shape == sample["image"].shape
        assert x["semseg"] is sample["semseg"] and x["depth"] is sample["depth"] and x["K"] is sample["K"]


def test_training_transform_outputs_the_crop_size_with_k():
    sample, _ = _marker_sample()
    aug = {"scale_range": [0.9, 1.1], "letterbox_prob": 0.5, "sensor": 1.0, "hflip": 0.5}
    t = build_transform(aug, (64, 96), [0.5, 0.5, 0.5])
    for s in range(10):
        out = t(dict(sample), np.random.default_rng(s))
        assert out["image"].shape == (64, 96, 3) and out["depth"].shape == (64, 96)
        assert out["K"][0, 0] > 0


def _textured_sample():
    sample, _ = _marker_sample()
    sample["image"] = np.random.default_rng(9).integers(30, 220, sample["image"].shape).astype(np.uint8)
    return sample


def test_random_convolution_scrambles_texture_only_and_is_seeded():
    sample = _textured_sample()
    rc = RandomConvolution(p=1.0)
    a = [rc(sample, np.random.default_rng(s)) for s in range(6)]
    assert np.array_equal(a[2]["image"], rc(sample, np.random.default_rng(2))["image"])
    assert all(not np.array_equal(x["image"], sample["image"]) for x in a)
    src = sample["image"].astype(np.float32).reshape(-1, 3)
    for x in a:
        assert x["image"].dtype == np.uint8 and x["image"].shape == sample["image"].shape
        assert x["semseg"] is sample["semseg"] and x["depth"] is sample["depth"] and x["K"] is sample["K"]
        # the luminance is brought back to the input's exposure, so channel means stay (clipping moves them a bit)
        assert np.allclose(x["image"].astype(np.float32).reshape(-1, 3).mean(0), src.mean(0), atol=12.0)
    # p = 0 returns the sample itself
    assert RandomConvolution(p=0.0)(sample, np.random.default_rng(0)) is sample
    with pytest.raises(ValueError, match="odd"):
        RandomConvolution(kernel_sizes=(1,))


def test_random_convolution_keep_polarity_keeps_bright_regions_bright():
    """A smooth bright-top / dark-bottom frame (sky over a wall): some kernels drawn by the seeds
    invert it; with keep_polarity none does, and the images differ only where a kernel was negated."""
    h, w = 48, 64
    img = np.zeros((h, w, 3), np.uint8)
    img[: h // 2] = (200, 210, 230)  # bright "sky"
    img[h // 2 :] = (70, 65, 60)  # shaded "wall"
    sample = {"image": img, "semseg": np.zeros((h, w), np.uint8), "depth": np.ones((h, w), np.float32), "K": np.eye(3)}
    luma = lambda x: x["image"].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # noqa: E731
    inverted_any, inverted_keep, same = 0, 0, 0
    for seed in range(40):
        any_ = RandomConvolution(p=1.0)(sample, np.random.default_rng(seed))
        keep = RandomConvolution(p=1.0, keep_polarity=True)(sample, np.random.default_rng(seed))
        top_minus_bottom = [luma(x)[: h // 2].mean() - luma(x)[h // 2 :].mean() for x in (any_, keep)]
        inverted_any += top_minus_bottom[0] < 0
        inverted_keep += top_minus_bottom[1] < 0
        same += np.array_equal(any_["image"], keep["image"])
    assert inverted_any > 0 and inverted_keep == 0
    assert 0 < same < 40  # the same draws: only the seeds with a negative kernel sum differ


def test_random_conv_is_off_unless_asked_and_validated():
    sample = _textured_sample()
    plain = build_transform({"scale_range": [1.0, 1.0]}, (64, 96), [0.5] * 3)
    with_rc = build_transform({"scale_range": [1.0, 1.0], "random_conv": 1.0}, (64, 96), [0.5] * 3)
    assert not any(isinstance(t, RandomConvolution) for t in plain.transforms)
    assert any(isinstance(t, RandomConvolution) for t in with_rc.transforms)
    a, b = plain(dict(sample), np.random.default_rng(4)), with_rc(dict(sample), np.random.default_rng(4))
    assert not np.array_equal(a["image"], b["image"]) and np.array_equal(a["semseg"], b["semseg"])
    from mtl_perception.train.config import ConfigError, load_train_config

    with pytest.raises(ConfigError, match="random_conv"):
        load_train_config("config/train/mlore_lite2.yaml", overrides=["data.augment.random_conv=2"])
    with pytest.raises(ConfigError, match="random_conv_polarity"):
        load_train_config("config/train/mlore_lite2.yaml", overrides=["data.augment.random_conv_polarity=flip"])
    keep = build_transform({"random_conv": 1.0, "random_conv_polarity": "keep"}, (64, 96), [0.5] * 3)
    assert [t.keep_polarity for t in keep.transforms if isinstance(t, RandomConvolution)] == [True]
