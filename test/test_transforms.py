"""Transforms keep depth metric and K consistent, never invent valid depth, and are seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtl_perception.data.transforms import (
    Compose,
    HorizontalFlip,
    Normalize,
    PhotometricDistortion,
    RandomScaleCrop,
    Resize,
    ToTensor,
    resize_depth_nearest_valid,
)

H, W = 40, 60


def _sample(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(2.0, 50.0, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < 0.3] = 0.0  # sparse, LiDAR-like
    K = np.array([[50.0, 0.0, 29.5], [0.0, 52.0, 19.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    return {
        "image": rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
        "semseg": rng.integers(0, 19, (H, W)).astype(np.uint8),
        "depth": depth,
        "K": K,
        "name": "t",
    }


def _backproject(K: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
    pix = np.stack([u, v, np.ones_like(u)], -1).astype(np.float64)
    return (pix @ np.linalg.inv(K.astype(np.float64)).T) * z[..., None]


def _zoom(mode: str, seed: int = 3) -> tuple[dict, dict]:
    s = _sample()
    t = RandomScaleCrop(scale_range=(2.0, 2.0), crop=(32, 48), depth_mode=mode)  # 40x60 -> 80x120, no ties
    return s, t(s, np.random.default_rng(seed))


def test_scale_intrinsics_zoom_preserves_3d_points() -> None:
    s, o = _zoom("scale_intrinsics")
    assert o["depth"].shape == (32, 48) and o["image"].shape == (32, 48, 3)
    v2, u2 = np.mgrid[0:32, 0:48]
    z2 = o["depth"].astype(np.float64)
    valid = z2 > 0
    P = _backproject(o["K"], u2, v2, z2)[valid]
    # project the 3D points with the ORIGINAL K: they land where the zoom came from
    uvw = P @ s["K"].astype(np.float64).T
    u, v = uvw[:, 0] / uvw[:, 2], uvw[:, 1] / uvw[:, 2]
    x0 = (s["K"][0, 2] + 0.5) * 2.0 - 0.5 - o["K"][0, 2]  # crop offset recovered from K
    y0 = (s["K"][1, 2] + 0.5) * 2.0 - 0.5 - o["K"][1, 2]
    assert x0 == pytest.approx(round(x0), abs=1e-4) and y0 == pytest.approx(round(y0), abs=1e-4)
    np.testing.assert_allclose(u, (u2[valid] + round(x0) + 0.5) / 2.0 - 0.5, atol=1e-3)
    np.testing.assert_allclose(v, (v2[valid] + round(y0) + 0.5) / 2.0 - 0.5, atol=1e-3)
    # same metric depth as the source pixel it was sampled from (nearest, centre-aligned)
    src = s["depth"][np.floor(v + 0.5).astype(int), np.floor(u + 0.5).astype(int)]
    np.testing.assert_allclose(z2[valid], src, rtol=1e-6)
    np.testing.assert_allclose(o["K"][:2, :2].diagonal(), s["K"][:2, :2].diagonal() * 2.0, rtol=1e-6)


def test_scale_depth_divides_depth_by_s() -> None:
    s, o_i = _zoom("scale_intrinsics")
    _, o_d = _zoom("scale_depth")
    np.testing.assert_allclose(o_d["depth"], o_i["depth"] / 2.0, rtol=1e-6)
    np.testing.assert_array_equal(o_d["semseg"], o_i["semseg"])
    np.testing.assert_allclose(o_d["K"][[0, 1], [0, 1]], s["K"][[0, 1], [0, 1]])  # focal kept
    np.testing.assert_allclose(o_d["K"][:2, 2], o_i["K"][:2, 2])  # principal point follows pixels


@pytest.mark.parametrize("scale", [(0.5, 0.5), (0.75, 1.5), (1.3, 1.3)])
def test_invalid_depth_never_becomes_valid_and_no_invented_values(scale: tuple[float, float]) -> None:
    s = _sample(1)
    t = RandomScaleCrop(scale_range=scale, crop=(36, 56))
    for seed in range(5):
        o = t(s, np.random.default_rng(seed))
        d = o["depth"]
        assert set(np.unique(d[d > 0])).issubset(set(np.unique(s["depth"][s["depth"] > 0])))
        lab = o["semseg"]
        assert set(np.unique(lab)).issubset(set(np.unique(s["semseg"])) | {255})
        if scale[1] < 0.9:  # downscaled below crop: padding is ignore / invalid
            assert (lab[-2:] == 255).all() and (d[-2:] == 0).all()
    # upscaling: the valid mask is exactly the nearest-resized source mask
    up = resize_depth_nearest_valid(s["depth"], (80, 120))
    np.testing.assert_array_equal(up > 0, np.repeat(np.repeat(s["depth"] > 0, 2, 0), 2, 1))
    all_invalid = resize_depth_nearest_valid(np.zeros((H, W), np.float32), (13, 17))
    assert not all_invalid.any()


def test_downscale_keeps_sparse_points() -> None:
    d = np.zeros((40, 40), np.float32)
    d[1, 1] = 7.0  # nearest sampling at 1/4 would miss this single LiDAR return
    d[2, 3] = 5.0
    out = resize_depth_nearest_valid(d, (10, 10))
    assert out[0, 0] == 5.0 and (out > 0).sum() == 1  # closest depth wins within the cell


def test_flip_twice_is_identity_and_flips_cx() -> None:
    s = _sample()
    f = HorizontalFlip(p=1.0)
    once = f(s)
    assert once["K"][0, 2] == pytest.approx(W - 1 - s["K"][0, 2])
    np.testing.assert_array_equal(once["depth"][:, 0], s["depth"][:, -1])
    twice = f(once)
    for k in ("image", "semseg", "depth", "K"):
        np.testing.assert_array_equal(twice[k], s[k])
    # back-projection of a flipped pixel mirrors X
    P0 = _backproject(s["K"], np.array([10.0]), np.array([5.0]), np.array([8.0]))
    P1 = _backproject(once["K"], np.array([W - 1 - 10.0]), np.array([5.0]), np.array([8.0]))
    np.testing.assert_allclose(P1, P0 * np.array([-1, 1, 1]), atol=1e-5)
    assert HorizontalFlip(p=0.0)(s) is s


def test_resize_keeps_K_consistent() -> None:
    s = _sample()
    o = Resize((20, 30))(s)
    np.testing.assert_allclose(o["K"][0], [25.0, 0.0, 14.5], rtol=1e-6)
    np.testing.assert_allclose(o["K"][1], [0.0, 26.0, 9.25], rtol=1e-6)
    assert o["semseg"].dtype == np.uint8 and o["depth"].dtype == np.float32


def test_photometric_only_touches_rgb_and_is_seeded() -> None:
    s = _sample()
    a = PhotometricDistortion()(s, np.random.default_rng(5))
    b = PhotometricDistortion()(s, np.random.default_rng(5))
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image"].dtype == np.uint8
    for k in ("semseg", "depth", "K"):
        assert a[k] is s[k]
    with pytest.raises(ValueError, match="Generator"):
        PhotometricDistortion()(s)


def test_compose_to_tensor_and_determinism() -> None:
    pipe = Compose(
        [RandomScaleCrop((0.75, 1.5), (32, 48)), HorizontalFlip(0.5), PhotometricDistortion(), Normalize(), ToTensor()]
    )
    a = pipe(_sample(), np.random.default_rng(11))
    b = pipe(_sample(), np.random.default_rng(11))
    assert a["image"].dtype == torch.float32 and a["image"].shape == (3, 32, 48)
    assert a["semseg"].dtype == torch.int64 and a["semseg"].shape == (32, 48)
    assert a["depth"].dtype == torch.float32 and a["depth"].shape == (1, 32, 48)
    assert a["K"].shape == (3, 3)
    for k in ("image", "semseg", "depth", "K"):
        assert torch.equal(a[k], b[k])
    no_labels = ToTensor()({"image": np.zeros((4, 5, 3), np.uint8), "semseg": None, "depth": None, "K": None})
    assert no_labels["semseg"] is None and no_labels["image"].shape == (3, 4, 5)
