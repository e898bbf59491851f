"""Road-plane metric scale (mtl_perception.ground_plane) and its place in FramePipeline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtl_perception.data.synthetic import CITYSCAPES_CLASSES
from mtl_perception.geometry import default_intrinsics
from mtl_perception.ground_plane import GroundPlaneScale

CLASSES = list(CITYSCAPES_CLASSES)
ROAD, BUILDING, CAR = (CLASSES.index(n) for n in ("road", "building", "car"))
H, W = 120, 240


def road_scene(
    K: np.ndarray, height: float, pitch_deg: float = 0.0, roll_deg: float = 0.0, hw: tuple[int, int] = (H, W)
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (road where the ray meets the ground within 80 m, building elsewhere) and true depth of a
    camera ``height`` m above a flat road, pitched down ``pitch_deg`` and rolled ``roll_deg``."""
    h, w = hw
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    # the world's down direction in the optical frame (x right, y down, z forward)
    down = np.array([-math.sin(r) * math.cos(p), math.cos(r) * math.cos(p), math.sin(p)])
    inv = (down[0] * x + down[1] * y + down[2]) / height  # 1/Z of the ground along each ray
    road = inv > 1.0 / 80.0
    depth = np.where(road, 1.0 / np.where(road, inv, 1.0), 80.0).astype(np.float32)
    labels = np.where(road, ROAD, BUILDING).astype(np.uint8)
    return labels, depth


def fit() -> GroundPlaneScale:
    g = GroundPlaneScale.for_classes(CLASSES)
    assert g is not None
    return g


@pytest.mark.parametrize("pitch,roll", [(0.0, 0.0), (4.0, 0.0), (-2.0, 3.0)])
def test_recovers_the_scale_of_a_too_far_road_whatever_the_pitch_and_roll(pitch, roll):
    K = default_intrinsics(H, W, 80.0)
    labels, depth = road_scene(K, 1.5, pitch, roll)
    g = fit()(labels, depth * np.float32(1.3), K, 1.5)  # the network: every distance 1.3x too far
    assert g.applied, g.reason
    assert g.factor == pytest.approx(1 / 1.3, rel=1e-3)
    assert g.fitted_height == pytest.approx(1.95, rel=1e-3) and g.inliers > 0.99
    # the normal points down the world's vertical, seen from the pitched and rolled camera
    p, r = math.radians(pitch), math.radians(roll)
    want = (-math.sin(r) * math.cos(p), math.cos(r) * math.cos(p), math.sin(p))
    np.testing.assert_allclose(g.normal, want, atol=1e-3)
    # no camera height: the plane alone (its normal, for the sky's horizon), never a scale
    n = fit()(labels, depth * np.float32(1.3), K, None)
    assert n.found and not n.applied and n.factor == 1.0 and "no camera height" in n.reason
    np.testing.assert_allclose(n.normal, g.normal, atol=1e-9)
    # a scale refused for its size still found the plane
    far = fit()(labels, depth * np.float32(4.0), K, 1.5)
    assert far.found and not far.applied and "mounting height" in far.reason


def test_a_third_of_the_road_wrong_does_not_move_the_fit():
    """Road pixels that are really a car (too near) or a far patch: RANSAC leaves them out."""
    K = default_intrinsics(H, W, 80.0)
    labels, depth = road_scene(K, 1.6)
    net = depth * np.float32(0.8)  # 0.8x: too near this time
    rng = np.random.default_rng(1)
    ys, xs = np.nonzero(labels == ROAD)
    bad = rng.random(ys.size) < 0.33
    net[ys[bad], xs[bad]] = rng.uniform(2.0, 60.0, bad.sum()).astype(np.float32)
    g = fit()(labels, net, K, 1.6)
    assert g.applied, g.reason
    assert g.factor == pytest.approx(1 / 0.8, rel=0.02)
    assert 0.55 < g.inliers < 0.8


def test_refuses_what_is_not_a_road_under_an_upright_camera():
    K = default_intrinsics(H, W, 80.0)
    labels, depth = road_scene(K, 1.5)
    g = fit()
    # too little road
    few = np.full_like(labels, BUILDING)
    few[-2:, :40] = ROAD
    r = g(few, depth, K, 1.5)
    assert not r.applied and r.factor == 1.0 and "road pixels" in r.reason and not r.found
    # road pixels whose depths agree on no plane
    noisy = np.random.default_rng(0).uniform(1.0, 60.0, depth.shape).astype(np.float32)
    r = g(labels, noisy, K, 1.5)
    assert not r.applied and r.factor == 1.0 and "on one plane" in r.reason and not r.found
    assert not g(labels, noisy, K, None).found
    # a wall facing the camera labelled road: a plane, but not below the camera
    wall = np.full((H, W), 10.0, np.float32)
    r = g(np.full_like(labels, ROAD), wall, K, 1.5)
    assert not r.applied and "tilted" in r.reason and not r.found
    assert not g(np.full_like(labels, ROAD), wall, K, None).found
    # a plane 5x higher than the mounting height: something else is wrong, keep the network's scale
    r = g(labels, depth * np.float32(5.0), K, 1.5)
    assert not r.applied and r.factor == 1.0 and "mounting height" in r.reason and r.fitted_height > 7
    # NaN depth (REP 118 invalid) counts as no depth
    nan = depth.copy()
    nan[labels == ROAD] = np.nan
    assert "road pixels" in g(labels, nan, K, 1.5).reason
    with pytest.raises(ValueError, match="camera_height"):
        g(labels, depth, K, 0.0)
    with pytest.raises(ValueError, match="same"):
        g(labels[:-1], depth, K, 1.5)
    assert GroundPlaneScale.for_classes(["sky", "car"]) is None


def test_the_same_answer_every_call():
    K = default_intrinsics(H, W, 80.0)
    labels, depth = road_scene(K, 1.5, 2.0)
    net = depth * np.float32(1.2)
    net[::7, ::5] = 3.0  # outliers, so RANSAC's choice matters
    a, b = fit()(labels, net, K, 1.5), fit()(labels, net, K, 1.5)
    assert a == b


@pytest.fixture(scope="module")
def tiny_engine():
    pytest.importorskip("torch")
    from tiny_models import tiny_letterbox_engine

    return tiny_letterbox_engine()


def test_pipeline_rescales_to_the_mounting_height_for_a_letterboxed_frame(tiny_engine, monkeypatch):
    """FramePipeline on a real tiny (letterboxing, canonical-depth) engine whose network output is
    replaced by a known road seen 1.3x too far (``engine.infer`` patched: a random tiny network puts
    its classes anywhere). The frame's aspect differs from the network's, so the plane is fitted with
    K mapped to the depth grid's content window: the node's real path from there on."""
    from tiny_models import one_hot_logits

    from mtl_perception.geometry import Letterbox, scale_intrinsics
    from mtl_perception.pipeline import FramePipeline

    engine = tiny_engine
    nh, nw = engine.input_size
    frame_hw = (nh * 3, int(nw * 3 * 1.25))  # wider than the network: letterboxed
    K = default_intrinsics(*frame_hw, 90.0)
    pipe = FramePipeline(engine, ground_contact=False)
    box = Letterbox.fit(frame_hw, (nh, nw))
    canonical = pipe.depth_scale(frame_hw, K)[0]
    # the scene on the network grid: content window with K scaled to it, pads outside
    Kc = scale_intrinsics(K, box.scale_x, box.scale_y)
    labels_c, depth_c = road_scene(Kc, 1.4, 3.0, 0.0, box.content_hw)
    labels = np.full((nh, nw), BUILDING, np.uint8)
    depth = np.full((nh, nw), 80.0, np.float32)
    win = np.s_[box.pad_top : box.pad_top + box.content_hw[0], box.pad_left : box.pad_left + box.content_hw[1]]
    labels[win], depth[win] = labels_c, depth_c * np.float32(1.3 / canonical)  # canonical units, 1.3x far
    logits = one_hot_logits(labels, len(CLASSES))

    def infer(batch):
        n = len(batch)
        return {"semseg": np.repeat(logits, n, 0), "depth": np.repeat(depth[None, None], n, 0)}

    monkeypatch.setattr(engine, "infer", infer)

    rgb = np.zeros((*frame_hw, 3), np.uint8)
    off = pipe.process(rgb, K=K)
    on = pipe.process(rgb, K=K, camera_height=1.4)
    assert off.ground_scale is None and on.ground_scale is not None and on.ground_scale.applied
    assert on.ground_scale.factor == pytest.approx(1 / 1.3, rel=0.01)
    assert on.depth_scale == pytest.approx(off.depth_scale / 1.3, rel=0.01)
    np.testing.assert_allclose(on.depth, off.depth * np.float32(on.ground_scale.factor), rtol=1e-5)
    # the pipeline's own height is the default; a batch takes one height per frame
    pipe.camera_height = 1.4
    assert pipe.process(rgb, K=K).ground_scale.factor == pytest.approx(on.ground_scale.factor)
    a, b = pipe.process_batch([rgb, rgb], [K, K], camera_heights=[None, 2.8])
    assert a.ground_scale is None
    assert b.ground_scale.factor == pytest.approx(2 / 1.3, rel=0.01)  # twice as high: twice as far
    with pytest.raises(ValueError, match="camera_heights"):
        pipe.process_batch([rgb], [K], camera_heights=[1.0, 2.0])


def test_node_diagnostics_say_what_the_fit_did():
    pytest.importorskip("rclpy", reason="the node module needs rclpy")
    from mtl_perception.ground_plane import GroundScale
    from mtl_perception.ros.node import ground_plane_text

    assert ground_plane_text(None, 0.0).startswith("off")
    assert ground_plane_text(None, 1.65) == "no frame yet"
    ok = GroundScale(0.8, 2.0625, (0.0, 1.0, 0.0), 0.9, 5000)
    assert ground_plane_text(ok, 1.65) == "depth x0.800 (road plane 2.06 m below, mounted 1.65 m)"
    bad = GroundScale(1.0, float("nan"), (np.nan,) * 3, 0.0, 10, "10 road pixels with depth (< 300)")
    assert ground_plane_text(bad, 1.65) == "not applied: 10 road pixels with depth (< 300)"
