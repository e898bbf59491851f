"""Aspect kept and camera-aware depth (issue 11): Letterbox maths, pixel alignment of the products
through the real ``FramePipeline`` + torch engine of a tiny letterboxing model, and metric depth
from the frame's intrinsics (canonical camera) with the default field of view as the fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_models import randomize_bn_, standardize_depth_head_, tiny_config

from mtl_perception.data.transforms import scale_intrinsics
from mtl_perception.deploy.engine import InferenceEngine, preprocess_frames
from mtl_perception.geometry import DEFAULT_HFOV_DEG, Letterbox, default_intrinsics
from mtl_perception.imaging import scale_camera_info
from mtl_perception.model import build_model, save_checkpoint
from mtl_perception.pipeline import FramePipeline

NET = (64, 128)  # the tiny model's input: 2:1
# frames of 2:1 (no pad), 3.3:1 (pads above and below), 16:10 (pads left and right)
FRAMES = {"2:1": (128, 256), "3.3:1": (100, 330), "16:10": (160, 256)}
CANONICAL_FOCAL = 300.0


def _standardize_semseg_head_(model, x) -> None:
    """Per-class standardised logits: the argmax then changes across the image."""
    out = model.heads["semseg"].out
    captured = {}
    handle = out.register_forward_hook(lambda m, i, o: captured.__setitem__("y", o.detach()))
    with torch.no_grad():
        model.eval()(x)
        handle.remove()
        y = captured["y"].transpose(0, 1).flatten(1)
        mean, std = y.mean(1), y.std(1)
        out.weight.div_(std.view(-1, 1, 1, 1))
        out.bias.sub_(mean).div_(std)


def _engine(path, camera: dict | None) -> InferenceEngine:
    cfg = tiny_config("mlore")
    if camera is not None:
        cfg["camera"] = camera
    torch.manual_seed(0)
    model = build_model(cfg)
    randomize_bn_(model)
    # depth maps that span metres and labels that vary across the frame (random heads give
    # near-constant outputs), so a sample taken at the wrong place shows
    x = torch.randn(2, 3, *NET)
    standardize_depth_head_(model, x)
    _standardize_semseg_head_(model, x)
    ckpt = save_checkpoint(model, path)
    return InferenceEngine.create(ckpt, backend="torch", precision="fp32", device="cpu", threads=1)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    camera = {"resize": "letterbox", "canonical_focal": CANONICAL_FOCAL, "default_hfov_deg": 70.0}
    return _engine(tmp_path_factory.mktemp("lb") / "m.safetensors", camera)


@pytest.fixture(scope="module")
def legacy_engine(tmp_path_factory):
    return _engine(tmp_path_factory.mktemp("legacy") / "m.safetensors", None)


def _K(hw: tuple[int, int], f_ratio: float = 0.8) -> np.ndarray:
    H, W = hw
    return np.array([[f_ratio * W, 0.0, (W - 1) / 2 + 3.0], [0.0, f_ratio * W, (H - 1) / 2 - 2.0], [0, 0, 1.0]])


def _textured(hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    import cv2

    noise = np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


# ---------------------------------------------------------------------------------------------- maths
@pytest.mark.parametrize("name", FRAMES)
def test_fit_one_scale_factor_and_symmetric_pads(name):
    H, W = FRAMES[name]
    box = Letterbox.fit((H, W), NET)
    s = min(NET[0] / H, NET[1] / W)
    ch, cw = box.content_hw
    assert (ch, cw) == (round(H * s), round(W * s))
    assert ch == NET[0] or cw == NET[1]  # fills one axis
    # one scale factor: the per-axis factors differ only by rounding the content to whole pixels
    assert abs(box.scale_x - box.scale_y) <= s / min(ch, cw)
    bottom, right = NET[0] - ch - box.pad_top, NET[1] - cw - box.pad_left
    assert 0 <= bottom - box.pad_top <= 1 and 0 <= right - box.pad_left <= 1
    expected_pads = {"2:1": (0, 0), "3.3:1": (12, 0), "16:10": (0, 13)}[name]
    assert (box.pad_top, box.pad_left) == expected_pads


@pytest.mark.parametrize("name", FRAMES)
def test_network_K_is_scale_intrinsics_plus_the_pad_offset(name):
    hw = FRAMES[name]
    box = Letterbox.fit(hw, NET)
    K = _K(hw)
    K[0, 1] = 0.7  # skew scales with x
    expected = scale_intrinsics(K, box.scale_x, box.scale_y).astype(np.float64)
    expected[0, 2] += box.pad_left
    expected[1, 2] += box.pad_top
    np.testing.assert_allclose(box.network_K(K), expected, rtol=1e-6)  # scale_intrinsics returns float32
    assert box.network_focal(K) == pytest.approx(K[0, 0] * box.scale_x)


@pytest.mark.parametrize("name", FRAMES)
def test_a_3d_point_round_trips_frame_network_frame(name):
    """Projecting with the frame's K then mapping into the network equals projecting with network_K;
    the inverse map brings the network pixel back to the frame pixel."""
    hw = FRAMES[name]
    box = Letterbox.fit(hw, NET)
    K = _K(hw)
    Kn = box.network_K(K)
    pts = np.array([[0.3, -0.2, 4.0], [-2.0, 1.0, 9.0], [0.0, 0.0, 1.0]])
    uv = (K @ pts.T).T
    uv = uv[:, :2] / uv[:, 2:]
    uvn = (Kn @ pts.T).T
    uvn = uvn[:, :2] / uvn[:, 2:]
    fwd = np.stack(
        [(uv[:, 0] + 0.5) * box.scale_x - 0.5 + box.pad_left, (uv[:, 1] + 0.5) * box.scale_y - 0.5 + box.pad_top], 1
    )
    np.testing.assert_allclose(uvn, fwd, atol=1e-9)
    back = np.stack(
        [(uvn[:, 0] - box.pad_left + 0.5) / box.scale_x - 0.5, (uvn[:, 1] - box.pad_top + 0.5) / box.scale_y - 0.5], 1
    )
    np.testing.assert_allclose(back, uv, atol=1e-9)


@pytest.mark.parametrize("name", FRAMES)
def test_resize_into_then_content_round_trip(name):
    import cv2

    hw = FRAMES[name]
    box = Letterbox.fit(hw, NET)
    img = _textured(hw)
    net = np.full((*NET, 3), 77, np.uint8)
    box.resize_into(img, net, pad_value=5)
    ch, cw = box.content_hw
    np.testing.assert_array_equal(box.content(net), cv2.resize(img, (cw, ch), interpolation=cv2.INTER_AREA))
    pad = np.ones(NET, bool)
    pad[box.pad_top : box.pad_top + ch, box.pad_left : box.pad_left + cw] = False
    assert (net[pad] == 5).all()
    # a product on a 4x coarser grid: the same window, scaled to that grid
    coarse = np.arange((NET[0] // 4) * (NET[1] // 4)).reshape(NET[0] // 4, NET[1] // 4)
    win = box.content(coarse)
    assert abs(win.shape[0] - ch / 4) <= 1 and abs(win.shape[1] - cw / 4) <= 1
    assert box.content(np.zeros((19, *NET))).shape == (19, ch, cw)  # (C, H, W) logits


@pytest.mark.parametrize("name", FRAMES)
def test_network_resolution_camera_info_is_the_content_window_camera(name):
    """What the node publishes on ~/depth/camera_info at output_resolution 'network': the camera_info
    scaled to the products' size (``output_size``: the content window) is network_K without the pads."""
    hw = FRAMES[name]
    box = Letterbox.fit(hw, NET)
    K = _K(hw)
    P = np.hstack([K, np.zeros((3, 1))])
    k_out, _ = scale_camera_info(K, P, hw, box.content_hw)
    expected = box.network_K(K)
    expected[0, 2] -= box.pad_left
    expected[1, 2] -= box.pad_top
    np.testing.assert_allclose(k_out, expected, rtol=1e-12, atol=1e-9)


def test_stretch_mode_is_the_legacy_resize():
    box = Letterbox.fit((100, 330), NET, mode="stretch")
    assert box.content_hw == NET and (box.pad_top, box.pad_left) == (0, 0)
    assert (box.scale_x, box.scale_y) == (NET[1] / 330, NET[0] / 100)
    with pytest.raises(ValueError, match="resize mode"):
        Letterbox.fit((100, 330), NET, mode="crop")


# ---------------------------------------------------------------------------------------------- pixel alignment
def _object_frame(hw: tuple[int, int], top_left: tuple[int, int], size: int) -> np.ndarray:
    rgb = np.full((*hw, 3), 60, np.uint8)
    y, x = top_left
    rgb[y : y + size, x : x + size] = 250
    return rgb


def _moments(net_chw: np.ndarray, engine: InferenceEngine, window: tuple[slice, slice]) -> tuple[float, ...]:
    """Centroid (y, x) and spread (std y, std x) of the bright object in a preprocessed input."""
    grey = net_chw[0] * engine.info.std[0] * 255 + engine.info.mean[0] * 255  # back to grey levels
    w = np.zeros_like(grey)
    w[window] = np.clip(grey[window] - 60.0, 0, None)  # the pads are the mean colour: outside the window
    ys, xs = np.mgrid[: grey.shape[0], : grey.shape[1]]
    m = w.sum()
    cy, cx = (w * ys).sum() / m, (w * xs).sum() / m
    sy, sx = math.sqrt((w * (ys - cy) ** 2).sum() / m), math.sqrt((w * (xs - cx) ** 2).sum() / m)
    return cy, cx, sy, sx


def _bilinear(grid: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Sample ``grid`` at continuous pixel-centre coordinates, clamped to its border (cv2's replicate)."""
    y = np.clip(y, 0, grid.shape[0] - 1)
    x = np.clip(x, 0, grid.shape[1] - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, grid.shape[0] - 1), np.minimum(x0 + 1, grid.shape[1] - 1)
    fy, fx = y - y0, x - x0
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bot = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return top * (1 - fy) + bot * fy


@pytest.mark.parametrize("name", FRAMES)
def test_an_object_at_a_known_pixel_lands_on_that_pixel(engine, name):
    """The issue's test, through the real pipeline and engine, for frames of 2:1, 3.3:1 and 16:10.

    1. frame -> network: a bright square at a known frame pixel shows up in the preprocessed input at
       the pixel the Letterbox maps it to, and stays square (one scale factor; stretch would not).
    2. network -> frame: every product pixel is the network output at the mapped location (depth:
       bilinear there, times the canonical scale; labels: one of the 4 network pixels around it).
    So what the network sees at the object is what the products report at the object's pixel."""
    hw = FRAMES[name]
    H, W = hw
    box = engine.letterbox(hw)
    ch, cw = box.content_hw
    window = (slice(box.pad_top, box.pad_top + ch), slice(box.pad_left, box.pad_left + cw))
    size = 24
    top_left = (H // 3, W // 5)
    x = engine.preprocess(_object_frame(hw, top_left, size))[0]
    cy, cx, sy, sx = _moments(x, engine, window)
    oy, ox = top_left[0] + (size - 1) / 2, top_left[1] + (size - 1) / 2  # object centre, frame pixels
    assert cy == pytest.approx((oy + 0.5) * box.scale_y - 0.5 + box.pad_top, abs=0.1)
    assert cx == pytest.approx((ox + 0.5) * box.scale_x - 0.5 + box.pad_left, abs=0.1)
    assert sy / sx == pytest.approx(1.0, abs=0.04)  # square stays square
    stretched = preprocess_frames(_object_frame(hw, top_left, size), NET, engine.info.mean, engine.info.std, "stretch")
    ssy, ssx = _moments(stretched[0], engine, (slice(None), slice(None)))[2:]
    aspect = (NET[0] / H) / (NET[1] / W)
    assert ssy / ssx == pytest.approx(aspect, rel=0.05)  # control: stretching distorts unless the aspects agree

    rgb = _textured(hw, seed=1)
    rgb[top_left[0] : top_left[0] + size, top_left[1] : top_left[1] + size] = 250
    K = _K(hw)
    # compared with the network's own depth pixel by pixel: without the sky mask (test_sky_depth.py)
    res = FramePipeline(engine, sky_beyond_range=False).process(rgb, K=K)
    out = engine.infer(engine.preprocess(rgb))
    assert res.labels.shape == res.depth.shape == hw
    vs, us = np.mgrid[:H, :W].astype(np.float64)
    ny = (vs + 0.5) * box.scale_y - 0.5  # network pixel, in content-window coordinates
    nx = (us + 0.5) * box.scale_x - 0.5
    content_depth = out["depth"][0, 0][window].astype(np.float64)
    expected = _bilinear(content_depth, ny, nx) * box.network_focal(K) / CANONICAL_FOCAL
    np.testing.assert_allclose(res.depth, expected, rtol=2e-5)
    assert float(np.std(content_depth)) > 0.05 * float(np.mean(content_depth))  # the check has teeth

    net_labels = np.argmax(out["semseg"][0][(slice(None), *window)], axis=0)
    y0 = np.clip(np.floor(ny).astype(int), 0, ch - 1)
    x0 = np.clip(np.floor(nx).astype(int), 0, cw - 1)
    y1, x1 = np.minimum(y0 + 1, ch - 1), np.minimum(x0 + 1, cw - 1)
    around = np.stack([net_labels[y0, x0], net_labels[y0, x1], net_labels[y1, x0], net_labels[y1, x1]])
    assert (around == res.labels[None]).any(0).all()
    assert len(np.unique(net_labels)) > 1  # the label check has teeth too


def test_network_resolution_products_are_the_content_window(engine):
    hw = FRAMES["3.3:1"]
    box = engine.letterbox(hw)
    p = FramePipeline(engine, output_resolution="network", sky_beyond_range=False)
    assert p.output_size(hw) == box.content_hw != NET
    rgb = _textured(hw, seed=2)
    K = _K(hw)
    res = p.process(rgb, K=K)
    out = engine.infer(engine.preprocess(rgb))
    assert res.depth.shape == res.labels.shape == box.content_hw
    scale = box.network_focal(K) / CANONICAL_FOCAL
    np.testing.assert_allclose(res.depth, box.content(out["depth"][0, 0]) * np.float32(scale), rtol=1e-6)
    np.testing.assert_array_equal(res.labels, np.argmax(box.content(out["semseg"][0]), 0))


# ---------------------------------------------------------------------------------------------- metric depth
def test_metric_depth_scales_with_fx(engine):
    hw = FRAMES["16:10"]
    rgb = _textured(hw, seed=3)
    K = _K(hw)
    K2 = K.copy()
    K2[0, 0] *= 2
    K2[1, 1] *= 2
    p = FramePipeline(engine)
    r1, r2 = p.process(rgb, K=K), p.process(rgb, K=K2)
    assert r1.intrinsics_source == r2.intrinsics_source == "frame"
    assert r1.depth_scale == pytest.approx(K[0, 0] * engine.letterbox(hw).scale_x / CANONICAL_FOCAL)
    assert r2.depth_scale == pytest.approx(2 * r1.depth_scale)
    np.testing.assert_allclose(r2.depth, 2 * r1.depth, rtol=1e-6)
    np.testing.assert_array_equal(r1.labels, r2.labels)  # intrinsics change metres only


@pytest.mark.parametrize(
    "K",
    [None, np.zeros((3, 3)), np.full((3, 3), np.nan), np.diag([-100.0, 100.0, 1.0]), np.eye(2)],
    ids=["none", "zeros", "nan", "negative_fx", "wrong_shape"],
)
def test_default_intrinsics_without_a_usable_K(engine, K):
    hw = FRAMES["3.3:1"]
    rgb = _textured(hw, seed=4)
    p = FramePipeline(engine)
    res = p.process(rgb, K=K)
    assert res.intrinsics_source == "default"
    assert engine.info.default_hfov_deg == DEFAULT_HFOV_DEG
    Kd = default_intrinsics(*hw, engine.info.default_hfov_deg)
    assert res.depth_scale == pytest.approx(Kd[0, 0] * engine.letterbox(hw).scale_x / CANONICAL_FOCAL)
    ref = p.process(rgb, K=Kd)
    assert ref.intrinsics_source == "frame"
    np.testing.assert_array_equal(res.depth, ref.depth)


def test_legacy_model_ignores_intrinsics(legacy_engine):
    """Checkpoints without a camera section (the shipped one): stretch, depth already in metres."""
    info = legacy_engine.info
    assert (info.resize, info.canonical_focal) == ("stretch", None)
    hw = FRAMES["3.3:1"]
    box = legacy_engine.letterbox(hw)
    assert box.content_hw == NET and (box.pad_top, box.pad_left) == (0, 0)
    rgb = _textured(hw, seed=5)
    p = FramePipeline(legacy_engine)
    a, b, c = p.process(rgb, K=_K(hw)), p.process(rgb, K=2 * _K(hw)), p.process(rgb)
    assert a.depth_scale == b.depth_scale == c.depth_scale == 1.0
    assert (a.intrinsics_source, c.intrinsics_source) == ("frame", "default")
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.depth, c.depth)
