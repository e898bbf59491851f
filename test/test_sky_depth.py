"""Sky is beyond range: the pipeline's depth is +inf on pixels labelled sky (REP 117), and neither the
point cloud nor the metrics take the network's untrained value there."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.data.synthetic import CITYSCAPES_CLASSES
from mtl_perception.evaluate.metrics import DepthMeter, scored_depth
from mtl_perception.imaging import semantic_cloud

CLASSES = list(CITYSCAPES_CLASSES)
ROAD, BUILDING, SKY = CLASSES.index("road"), CLASSES.index("building"), CLASSES.index("sky")


def test_scored_depth_counts_nan_as_a_miss_and_sky_as_max_depth():
    gt = np.array([[10.0, 10.0, 10.0]], np.float32)
    pred = scored_depth(np.array([[10.0, np.nan, np.inf]], np.float32))
    assert pred[0, 0] == 10.0 and pred[0, 1] == 0.0 and np.isposinf(pred[0, 2])
    meter = DepthMeter(max_depth=80.0)
    meter.update(pred[:, 2:], gt[:, 2:])
    assert meter.compute()["abs_rel"] == pytest.approx((80.0 - 10.0) / 10.0)


def test_pipeline_puts_sky_beyond_range_and_out_of_the_cloud(monkeypatch):
    """A real tiny letterboxing, canonical-depth engine whose network output is replaced by a known
    street with a sky the network calls 2 m away (``engine.infer`` patched: a random tiny network
    puts its classes anywhere; on real frames the shipped network's sky is often that near). The frame
    is twice the network's size, so the resize to the frame (sky filled first) is the node's real path."""
    pytest.importorskip("torch")
    from tiny_models import one_hot_logits, tiny_letterbox_engine

    from mtl_perception.geometry import default_intrinsics
    from mtl_perception.pipeline import FramePipeline

    engine = tiny_letterbox_engine()
    h, w = engine.input_size
    labels = np.full((h, w), BUILDING, np.uint8)
    labels[: h // 4] = SKY
    labels[h // 2 :] = ROAD
    depth = np.full((h, w), 40.0, np.float32)
    depth[: h // 4] = 2.0  # the untrained sky: a phantom wall 2 m ahead
    logits = one_hot_logits(labels, len(CLASSES))
    # a tree top the network half calls sky: sky wins the argmax at P(sky) ~ 0.35, under 0.5
    unsure = np.s_[: h // 4, : w // 4]
    logits[0, :, unsure[0], unsure[1]] = -5.0
    logits[0, SKY, unsure[0], unsure[1]] = 1.0
    logits[0, CLASSES.index("vegetation"), unsure[0], unsure[1]] = 0.8
    logits[0, BUILDING, unsure[0], unsure[1]] = 0.6
    depth[unsure] = 12.0
    monkeypatch.setattr(engine, "infer", lambda batch: {"semseg": logits, "depth": depth[None, None]})

    H, W = 2 * h, 2 * w
    rgb = np.zeros((H, W, 3), np.uint8)
    K = default_intrinsics(H, W, 70.0)
    on = FramePipeline(engine).process(rgb, K=K, confidence=True)
    off = FramePipeline(engine, sky_beyond_range=False).process(rgb, K=K)
    np.testing.assert_array_equal(on.labels, off.labels)
    labelled_sky = on.labels == SKY
    sky = labelled_sky & (on.confidence >= 0.5)
    assert sky.any() and (labelled_sky & ~sky).any() and on.depth.shape == (H, W)
    assert np.isposinf(on.depth[sky]).all() and not np.isinf(on.depth[~sky]).any()
    # the unsure sky keeps the network's depth (its own interior: the masked sky's edge is excluded)
    inner = np.s_[: H // 4 - 4, : W // 4 - 4]
    np.testing.assert_allclose(on.depth[inner], off.depth[inner], rtol=1e-6)
    phantom = float(np.median(off.depth[sky]))  # the 2 (canonical) m wall, in metres
    assert on.depth[inner].min() > 5 * phantom
    # asked for confidence or not, the same mask
    np.testing.assert_array_equal(FramePipeline(engine).process(rgb, K=K).depth, on.depth)
    assert np.isfinite(off.depth[sky]).all() and off.depth[sky].max() < 10.0
    # away from the sky's edge nothing else moves; at the edge the sky's 2 m no longer bleeds in
    rows = np.arange(H)
    far = (rows >= H // 4 + 4)[:, None] & np.ones((1, W), bool)
    np.testing.assert_allclose(on.depth[far], off.depth[far], rtol=1e-6)
    edge = on.depth[H // 4 : H // 4 + 4, W // 4 + 4 :]
    edge = edge[np.isfinite(edge)]
    assert edge.size and np.allclose(edge, edge.max(), rtol=1e-5) and edge.min() > 10 * phantom
    # the cloud: no sky points with the default, the phantom wall without it
    pts_on, _ = semantic_cloud(on.depth, on.labels, None, K, stride=2)
    pts_off, _ = semantic_cloud(off.depth, off.labels, None, K, stride=2)
    assert (pts_on["label"] == SKY).sum() == (sky[::2, ::2] != labelled_sky[::2, ::2]).sum()  # the unsure only
    assert (pts_off["label"] == SKY).sum() == labelled_sky[::2, ::2].sum()
    assert np.isfinite(pts_on["z"]).all() and pts_on["z"].min() > 5 * phantom
    # switched at run time, as the node's dynamic parameter does
    pipe = FramePipeline(engine)
    pipe.sky_beyond_range = False
    np.testing.assert_array_equal(pipe.process(rgb, K=K).depth, off.depth)
    pipe.sky_beyond_range, pipe.sky_min_confidence = True, 0.0  # every pixel labelled sky
    assert np.isposinf(pipe.process(rgb, K=K).depth[labelled_sky]).all()
    with pytest.raises(ValueError, match="sky_min_confidence"):
        FramePipeline(engine, sky_min_confidence=1.5)


def test_below_horizon_measures_the_angle_under_the_planes_horizon():
    """A camera pitched 3 deg down: a ray b deg below the optical axis is 3 + b deg below the horizon."""
    from mtl_perception.ground_plane import below_horizon

    f, cy = 500.0, 100.0
    K = np.array([[f, 0, 100.0], [0, f, cy], [0, 0, 1]])
    pitch = np.radians(3.0)
    normal = (0.0, np.cos(pitch), np.sin(pitch))  # towards the ground, in the optical frame
    mask = np.ones((201, 201), bool)
    rows = cy + f * np.tan(np.radians([-10.0, -3.5, -2.5, 1.0, 1.9, 2.1, 4.0, 20.0]))
    out = below_horizon(mask, K, normal, 5.0)
    flagged = [bool(out[int(round(r)), 100]) if 0 <= round(r) <= 200 else None for r in rows]
    # -10, -3.5 deg: above the horizon; -2.5 .. 1.9: within 5 deg under it; 2.1, 4 (5.1, 7 deg): beyond
    assert flagged[:6] == [False, False, False, False, False, True] and flagged[6] is True
    assert not below_horizon(mask, K, normal, 90.0).any()
    # only masked pixels are ever flagged
    half = np.zeros_like(mask)
    half[:, :100] = True
    assert not below_horizon(half, K, normal, 5.0)[:, 100:].any()
    assert below_horizon(half, K, normal, 5.0)[:, :100].any()
    # the rows it skips are only ones that cannot reach the limit: equal to the formula on every pixel
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:48, 0:96]
    for _ in range(30):
        n = rng.normal(size=3)
        n[1] = abs(n[1]) + 1.0
        n /= np.linalg.norm(n)
        Kr = np.array(
            [[rng.uniform(30, 200), 0, rng.uniform(0, 96)], [0, rng.uniform(30, 200), rng.uniform(0, 48)], [0, 0, 1]]
        )
        m = rng.random((48, 96)) < 0.3
        deg = rng.uniform(0, 30)
        x, y = (u - Kr[0, 2]) / Kr[0, 0], (v - Kr[1, 2]) / Kr[1, 1]
        want = m & ((n[0] * x + n[1] * y + n[2]) / np.sqrt(x * x + y * y + 1) > np.sin(np.radians(deg)))
        np.testing.assert_array_equal(below_horizon(m, Kr, n, deg), want)


def test_pipeline_keeps_the_network_depth_on_sky_below_the_road_horizon(monkeypatch):
    """A real tiny engine (``engine.infer`` patched with a known street, as above): a level camera, a
    road whose depth is a plane, true sky above the horizon and a confident 'sky' blob on the road 10
    deg below it (real frames: a rear window mirroring the sky, sunlit leaves). With the camera height
    given the road plane is fitted and scaled: the sky goes to +inf, the blob keeps the network's depth.
    Without a camera height the plane is fitted for its normal alone: the same. With the test off (90
    deg), or no road to fit a plane to, the blob is +inf as before."""
    pytest.importorskip("torch")
    from tiny_models import one_hot_logits, tiny_letterbox_engine

    from mtl_perception.geometry import default_intrinsics, scale_intrinsics
    from mtl_perception.pipeline import FramePipeline

    engine = tiny_letterbox_engine()
    h, w = engine.input_size
    H, W = 2 * h, 2 * w
    K = default_intrinsics(H, W, 70.0)
    gK = scale_intrinsics(K, w / W, h / H)
    labels = np.full((h, w), BUILDING, np.uint8)
    labels[: h // 4] = SKY
    labels[5 * h // 8 :] = ROAD
    depth = np.full((h, w), 40.0, np.float32)
    depth[: h // 4] = 2.0
    v = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, w))
    road = labels == ROAD
    depth[road] = (1.5 * gK[1, 1] / (v[road] - gK[1, 2])).astype(np.float32)  # a level road 1.5 units below
    blob = np.s_[3 * h // 4 : 7 * h // 8, w // 2 : 5 * w // 8]
    labels[blob] = SKY
    assert np.degrees(np.arctan((3 * h // 4 - gK[1, 2]) / gK[1, 1])) > 9.0
    logits = one_hot_logits(labels, len(CLASSES))
    monkeypatch.setattr(engine, "infer", lambda batch: {"semseg": logits, "depth": depth[None, None]})
    rgb = np.zeros((H, W, 3), np.uint8)

    probe = FramePipeline(engine).process(rgb, K=K, camera_height=1.0).ground_scale
    height = probe.fitted_height / 1.2  # the network 1.2x too far: a fit the pipeline applies
    on = FramePipeline(engine).process(rgb, K=K, camera_height=height)
    assert on.ground_scale.applied and on.ground_scale.factor == pytest.approx(1 / 1.2, rel=1e-3)
    assert np.allclose(on.ground_scale.normal, (0, 1, 0), atol=1e-3)
    off = FramePipeline(engine, sky_beyond_range=False).process(rgb, K=K, camera_height=height)
    inner = np.s_[3 * H // 4 + 2 : 7 * H // 8 - 2, W // 2 + 2 : 5 * W // 8 - 2]
    assert (on.labels[inner] == SKY).all()
    assert np.isfinite(on.depth[inner]).all()
    np.testing.assert_allclose(on.depth[inner], off.depth[inner], rtol=1e-6)
    assert np.isposinf(on.depth[: H // 4 - 2]).all()  # the sky above the horizon: beyond range
    gate_off = FramePipeline(engine, sky_max_below_horizon_deg=90.0).process(rgb, K=K, camera_height=height)
    assert np.isposinf(gate_off.depth[inner]).all() and np.isposinf(gate_off.depth[: H // 4 - 2]).all()
    no_height = FramePipeline(engine).process(rgb, K=K)
    no_height_off = FramePipeline(engine, sky_beyond_range=False).process(rgb, K=K)
    assert no_height.ground_scale is None  # no scale asked for: the normal-only fit is not reported
    np.testing.assert_allclose(no_height.depth[inner], no_height_off.depth[inner], rtol=1e-6)
    assert np.isposinf(no_height.depth[: H // 4 - 2]).all()
    # no road: no plane, no horizon; every confident sky pixel beyond range as before
    labels_no_road = labels.copy()
    labels_no_road[labels_no_road == ROAD] = BUILDING
    no_road_logits = one_hot_logits(labels_no_road, len(CLASSES))
    monkeypatch.setattr(engine, "infer", lambda batch: {"semseg": no_road_logits, "depth": depth[None, None]})
    no_road = FramePipeline(engine).process(rgb, K=K, camera_height=height)
    assert not no_road.ground_scale.found and np.isposinf(no_road.depth[inner]).all()
    monkeypatch.setattr(engine, "infer", lambda batch: {"semseg": logits, "depth": depth[None, None]})
    # switched at run time, as the node's dynamic parameter does
    pipe = FramePipeline(engine)
    pipe.sky_max_below_horizon_deg = 12.0  # the blob's 10-12 deg rows are now within reach of the sky
    assert np.isposinf(pipe.process(rgb, K=K, camera_height=height).depth[3 * H // 4 + 2]).any()
    with pytest.raises(ValueError, match="sky_max_below_horizon_deg"):
        FramePipeline(engine, sky_max_below_horizon_deg=-1.0)


def test_sky_reaching_top_keeps_only_regions_that_reach_the_top_row():
    """8-connected regions of sky that touch row 0 stay; walled-in ones go, however large or confident."""
    from mtl_perception.pipeline import sky_reaching_top

    sky = np.zeros((20, 30), bool)
    sky[:5] = True  # the open sky
    sky[3:12, 2:4] = True  # hangs down from it (sky between two trees)
    sky[8:14, 10:20] = True  # a walled-in blob (a shaded brick wall the network calls sky)
    sky[12, 4] = True  # touches the hanging strip's last pixel only diagonally: kept (8-connected)
    out = sky_reaching_top(sky)
    assert out[:5].all() and out[3:12, 2:4].all() and out[12, 4]
    assert not out[8:14, 10:20].any() and not (out & ~sky).any()
    # one sky pixel joins two regions; a line of another class across the whole frame (a wire labelled
    # pole from edge to edge: the known limit) cuts the sky below it off
    sky2 = np.zeros((20, 30), bool)
    sky2[:8] = True
    sky2[3, 1:] = False
    assert sky_reaching_top(sky2)[4:8].all()
    sky2[3, 0] = False
    assert not sky_reaching_top(sky2)[4:8].any() and sky_reaching_top(sky2)[:3].all()
    # the price (why the test is off by default): true sky beside a tree crown that reaches the top and
    # hangs down to the frame's side is walled in too (frame edges are not open)
    sky3 = np.zeros((20, 30), bool)
    sky3[:10, :20] = True
    sky3[8:14, 24:] = True  # under the crown (columns 20-29, rows 0-7), against the right edge
    assert not sky_reaching_top(sky3)[8:14, 24:].any() and sky_reaching_top(sky3)[:10, :20].all()
    # no sky on the top row: nothing is the open sky (a camera under a canopy or a bridge)
    assert not sky_reaching_top(np.pad(np.ones((5, 5), bool), ((1, 0), (0, 0)))).any()
    assert not sky_reaching_top(np.zeros((4, 4), bool)).any()


def test_pipeline_keeps_the_network_depth_on_sky_walled_in_by_other_classes(monkeypatch):
    """A real tiny engine (``engine.infer`` patched with a known street, as above), with
    ``sky_connected_to_top``: the open sky reaches the frame's top edge and goes to +inf; a 'sky' blob
    inside the building (real frames: the shaded brick wall of a building whose top is in view, KITTI raw
    drive, ``docs/sim2real.md`` section 59) keeps the network's depth, with or without a camera height,
    above the horizon so the horizon test cannot be what keeps it. Off (the default; the node's dynamic
    parameter switched at run time): +inf, as before."""
    pytest.importorskip("torch")
    from tiny_models import one_hot_logits, tiny_letterbox_engine

    from mtl_perception.geometry import default_intrinsics
    from mtl_perception.pipeline import FramePipeline

    engine = tiny_letterbox_engine()
    h, w = engine.input_size
    H, W = 2 * h, 2 * w
    K = default_intrinsics(H, W, 70.0)
    labels = np.full((h, w), BUILDING, np.uint8)
    labels[: h // 4] = SKY
    labels[5 * h // 8 :] = ROAD
    depth = np.full((h, w), 20.0, np.float32)
    depth[: h // 4] = 2.0
    blob = np.s_[h // 4 + 2 : h // 2 - 2, w // 8 : w // 2]  # inside the facade, above the horizon
    labels[blob] = SKY
    depth[blob] = 18.0  # the network's depth there: about right, a wall
    logits = one_hot_logits(labels, len(CLASSES))
    monkeypatch.setattr(engine, "infer", lambda batch: {"semseg": logits, "depth": depth[None, None]})
    rgb = np.zeros((H, W, 3), np.uint8)
    inner = np.s_[2 * (h // 4 + 2) + 2 : 2 * (h // 2 - 2) - 2, 2 * (w // 8) + 2 : w - 2]
    off = FramePipeline(engine, sky_beyond_range=False).process(rgb, K=K)
    for height in (None, 1.5):
        on = FramePipeline(engine, sky_connected_to_top=True).process(rgb, K=K, camera_height=height)
        assert (on.labels[inner] == SKY).all()
        assert np.isposinf(on.depth[: H // 4 - 2]).all()  # the open sky: beyond range
        assert np.isfinite(on.depth[inner]).all()
        if height is None:
            np.testing.assert_allclose(on.depth[inner], off.depth[inner], rtol=1e-6)
        anywhere = FramePipeline(engine).process(rgb, K=K, camera_height=height)  # the default
        assert np.isposinf(anywhere.depth[inner]).all()
    # switched at run time, as the node's dynamic parameter does
    pipe = FramePipeline(engine)
    pipe.sky_connected_to_top = True
    assert np.isfinite(pipe.process(rgb, K=K).depth[inner]).all()
    pipe.sky_connected_to_top = False
    assert np.isposinf(pipe.process(rgb, K=K).depth[inner]).all()
