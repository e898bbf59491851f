"""The paired bootstrap over real frames (evaluate/paired.py): it reproduces the scorer's figures on the
full set, is centred and tight where the models agree, sure where one is better on every frame, and
refuses models scored on different frames."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.evaluate.paired import format_paired, paired_bootstrap
from mtl_perception.evaluate.realdata import RealDataScorer


def _frames(seed: int = 0):
    """3 Cityscapes-labelled, 2 CamVid-labelled and 6 depth frames of random content."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(3):
        gt = rng.integers(0, 6, (8, 12)).astype(np.uint8)
        gt[0, :3] = 255  # some ignored pixels
        out.append({"set": "cityscapes", "name": f"cs{i}", "label_space": "cityscapes", "semseg": gt, "K": None})
    for i in range(2):
        gt = rng.choice([0, 1, 3, 4, 255], (8, 12)).astype(np.uint8)  # Sky, Building, Road, Pavement, void
        out.append({"set": "camvid", "name": f"cv{i}", "label_space": "camvid", "semseg": gt, "K": None})
    for i in range(6):
        gt = rng.uniform(2, 60, (6, 10)).astype(np.float32)
        gt[0, 0] = 0  # invalid GT
        depth_set = "kitti" if i < 4 else "nuscenes"
        out.append({"set": depth_set, "name": f"d{i}", "label_space": None, "semseg": None, "depth": gt, "K": None})
    return out


def _score(frames, seg_noise: float, depth_error: float, seed: int) -> RealDataScorer:
    """A model that relabels ``seg_noise`` of the pixels at random and scales depth by 1 + ``depth_error``
    (signs varying per pixel)."""
    rng = np.random.default_rng(seed)
    sc = RealDataScorer()
    for f in frames:
        labels = depth = None
        if f["semseg"] is not None:
            gt = f["semseg"]
            # a Cityscapes-id prediction: CamVid frames are scored through cityscapes_to_camvid
            base = gt if f["label_space"] == "cityscapes" else np.choose(np.minimum(gt, 4), [10, 2, 0, 0, 1])
            labels = np.where(rng.random(gt.shape) < seg_noise, rng.integers(0, 6, gt.shape), base)
            labels = np.where(gt == 255, 0, labels).astype(np.uint8)
        if f.get("depth") is not None:
            sign = rng.choice([-1.0, 1.0], f["depth"].shape)
            depth = (f["depth"] * (1 + depth_error * sign)).astype(np.float32)
        sc.add(f, labels, depth)
    return sc


def test_full_set_figures_are_the_scorers_and_differences_are_new_minus_old():
    frames = _frames()
    new, old = _score(frames, 0.1, 0.05, 1), _score(frames, 0.3, 0.2, 2)
    p = paired_bootstrap(new, old, resamples=500)
    m = p["metrics"]
    for tag, sc in (("new", new), ("old", old)):
        r = sc.compute()
        assert m["cityscapes_miou"][tag] == pytest.approx(r["cityscapes"]["miou"])
        assert m["cityscapes_pixel_acc"][tag] == pytest.approx(r["cityscapes"]["pixel_acc"])
        assert m["camvid_8_miou"][tag] == pytest.approx(r["camvid"]["miou_8"])
        assert m["depth_abs_rel"][tag] == pytest.approx(r["depth"]["abs_rel"])
        assert m["depth_delta1"][tag] == pytest.approx(r["depth"]["delta1"])
        assert m["depth_abs_rel_pooled"][tag] == pytest.approx(r["depth"]["pixel_pooled"]["abs_rel"])
        assert m["depth_delta1_pooled"][tag] == pytest.approx(r["depth"]["pixel_pooled"]["delta1"])
        assert m["depth_abs_rel_set_mean"][tag] == pytest.approx(r["depth"]["per_set_mean"]["abs_rel"])
    assert [m[k]["frames"] for k in ("cityscapes_miou", "camvid_8_miou", "depth_abs_rel")] == [3, 2, 6]
    for v in m.values():
        assert v["difference"] == pytest.approx(v["new"] - v["old"])
        assert v["ci95"][0] <= v["ci95"][1]
    # the new model is better on every frame: sure on depth, and better on the pooled semantics
    assert m["depth_abs_rel"]["p_new_better"] == 1.0 and m["depth_abs_rel"]["ci95"][1] < 0
    assert m["depth_delta1"]["difference"] > 0 and m["cityscapes_miou"]["difference"] > 0
    assert m["cityscapes_miou"]["p_new_better"] > 0.9
    text = format_paired(p, "new", "old")
    assert "| depth_abs_rel | 6 |" in text and "95 % interval" in text


def test_the_same_model_twice_is_a_tie_and_the_draw_is_seeded():
    frames = _frames(1)
    a, b = _score(frames, 0.2, 0.1, 3), _score(frames, 0.2, 0.1, 3)
    p = paired_bootstrap(a, b, resamples=300, seed=5)
    for v in p["metrics"].values():
        assert v["difference"] == 0 and v["ci95"] == [0.0, 0.0] and v["p_new_better"] == 0.5
    c = _score(frames, 0.25, 0.12, 4)
    assert paired_bootstrap(a, c, resamples=300, seed=5) == paired_bootstrap(a, c, resamples=300, seed=5)
    assert paired_bootstrap(a, c, resamples=300, seed=5) != paired_bootstrap(a, c, resamples=300, seed=6)


def test_models_scored_on_other_frames_are_refused():
    a = _score(_frames(0), 0.1, 0.1, 1)
    b = _score(_frames(0)[:-1], 0.1, 0.1, 1)
    with pytest.raises(ValueError, match="different frames"):
        paired_bootstrap(a, b)
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap(a, a, resamples=0)


def test_one_large_frame_decides_the_pooled_figure_but_not_the_set_mean():
    """The real depth sets' shape: one stereo frame with most of the valid pixels (its own set) and
    small LiDAR frames. A model worse on that frame only is worse pooled, better on the set mean."""
    rng = np.random.default_rng(7)

    def frame(set_name: str, name: str, shape: tuple[int, int]) -> dict:
        depth = rng.uniform(2, 60, shape).astype(np.float32)
        return {"set": set_name, "name": name, "label_space": None, "semseg": None, "depth": depth, "K": None}

    frames = [frame("stereo", "big", (60, 80))]
    for s, n in (("lidar_a", 3), ("lidar_b", 2), ("lidar_c", 4)):
        frames += [frame(s, f"{s}{i}", (5, 8)) for i in range(n)]

    def model(big_error: float, small_error: float) -> RealDataScorer:
        sc = RealDataScorer()
        for f in frames:
            e = big_error if f["name"] == "big" else small_error
            sc.add(f, None, (f["depth"] * (1 + e)).astype(np.float32))
        return sc

    m = paired_bootstrap(model(0.12, 0.10), model(0.10, 0.30), resamples=400)["metrics"]
    assert m["depth_abs_rel_pooled"]["difference"] > 0  # worse where the pixels are
    s = m["depth_abs_rel_set_mean"]
    assert s["difference"] == pytest.approx((0.12 + 3 * 0.10) / 4 - (0.10 + 3 * 0.30) / 4, abs=1e-5)
    # every set is in every resample: better on three of four sets by 0.2 each, worse on one by 0.02
    assert s["p_new_better"] == 1.0 and s["ci95"][0] == pytest.approx(s["ci95"][1], abs=1e-5)
