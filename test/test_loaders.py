"""Loaders: tmp_path fixtures for each on-disk convention, plus the real ../shared/realdata frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtl_perception.data.loaders import (
    CITYSCAPES_ID_TO_TRAINID,
    CityscapesDataset,
    KittiDepthDataset,
    NYUv2Dataset,
    build_dataset,
    disparity_to_depth,
    label_ids_to_train_ids,
    read_kitti_P2,
)

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
needs_real = pytest.mark.skipif(
    not REALDATA.is_dir(), reason="../shared/realdata not present (fresh clone): real-data fixtures unavailable"
)


def _write_rgb(path: Path, h: int = 8, w: int = 12) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return img


def _cityscapes_tree(root: Path) -> dict:
    city, stem = "aachen", "aachen_000000_000019"
    img = _write_rgb(root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
    ids = np.zeros((8, 12), np.uint8)
    ids[:2] = 7  # road -> 0
    ids[2:4] = 26  # car -> 13
    ids[4, :] = 33  # bicycle -> 18
    ids[5, :] = 4  # static -> 255
    ids[6, :] = 23  # sky -> 10
    gt = root / "gtFine" / "val" / city
    gt.mkdir(parents=True)
    cv2.imwrite(str(gt / f"{stem}_gtFine_labelIds.png"), ids)
    disp = np.zeros((8, 12), np.uint16)
    disp[:, :6] = 1 + 256 * 20  # d = 20 px
    disp[:, 6:9] = 1  # d = 0: infinitely far -> invalid
    (root / "disparity" / "val" / city).mkdir(parents=True)
    cv2.imwrite(str(root / "disparity" / "val" / city / f"{stem}_disparity.png"), disp)
    cam = {
        "extrinsic": {"baseline": 0.209313},
        "intrinsic": {"fx": 2262.52, "fy": 2265.30, "u0": 1096.98, "v0": 513.137},
    }
    (root / "camera" / "val" / city).mkdir(parents=True)
    (root / "camera" / "val" / city / f"{stem}_camera.json").write_text(json.dumps(cam))
    return {"img": img, "ids": ids}


def test_cityscapes_label_ids_only_and_disparity_depth(tmp_path: Path) -> None:
    fx = _cityscapes_tree(tmp_path)
    ds = CityscapesDataset(tmp_path, split="val", with_depth=True)
    assert len(ds) == 1
    s = ds[0]
    np.testing.assert_array_equal(s["image"], fx["img"])
    assert s["semseg"].dtype == np.uint8
    assert (s["semseg"][:2] == 0).all() and (s["semseg"][2:4] == 13).all() and (s["semseg"][4] == 18).all()
    assert (s["semseg"][5] == 255).all() and (s["semseg"][6] == 10).all() and (s["semseg"][7] == 255).all()
    assert s["depth"].dtype == np.float32
    np.testing.assert_allclose(s["depth"][:, :6], 0.209313 * 2262.52 / 20.0, rtol=1e-5)
    assert (s["depth"][:, 6:] == 0).all()
    assert s["K"][0, 0] == pytest.approx(2262.52) and s["K"][1, 2] == pytest.approx(513.137)
    assert s["name"] == "aachen_000000_000019"
    # without depth: still returns K from camera json, depth None
    assert CityscapesDataset(tmp_path)[0]["depth"] is None


def test_cityscapes_table_and_errors(tmp_path: Path) -> None:
    lut = CITYSCAPES_ID_TO_TRAINID
    assert [int(lut[i]) for i in (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)] == list(
        range(19)
    )
    assert all(lut[i] == 255 for i in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255))
    assert disparity_to_depth(np.array([[0, 1, 257]], np.uint16), 0.5, 100.0).tolist() == [[0.0, 0.0, 50.0]]
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        CityscapesDataset(tmp_path)
    _write_rgb(tmp_path / "x_leftImg8bit.png")
    with pytest.raises(FileNotFoundError, match="labelTrainIds"):
        CityscapesDataset(tmp_path)[0]
    cv2.imwrite(str(tmp_path / "x_gtFine_labelTrainIds.png"), np.zeros((8, 12), np.uint8))
    assert CityscapesDataset(tmp_path)[0]["semseg"].shape == (8, 12)  # flat folder layout
    with pytest.raises(FileNotFoundError, match="camera"):
        CityscapesDataset(tmp_path, with_depth=True)[0]


def test_kitti_uint16_over_256_and_calib(tmp_path: Path) -> None:
    _write_rgb(tmp_path / "000001.png")
    raw = np.array([[0, 256, 512 + 128], [65535, 0, 1]] * 4, np.uint16)[:, [0, 1, 2] * 4]
    cv2.imwrite(str(tmp_path / "000001_depth.png"), raw)
    (tmp_path / "calib.txt").write_text(
        "P0: " + " ".join(["0"] * 12) + "\nP2: 700 0 600 45 0 710 170 0.2 0 0 1 0.003\n"
    )
    ds = KittiDepthDataset(tmp_path, calib=tmp_path / "calib.txt")
    s = ds[0]
    np.testing.assert_allclose(s["depth"], raw.astype(np.float32) / 256.0)
    assert s["depth"].dtype == np.float32 and s["semseg"] is None
    np.testing.assert_allclose(s["K"], [[700, 0, 600], [0, 710, 170], [0, 0, 1]])
    pairs = KittiDepthDataset([(tmp_path / "000001.png", tmp_path / "000001_depth.png")])
    assert pairs[0]["K"] is None and len(pairs) == 1
    cv2.imwrite(str(tmp_path / "bad_depth.png"), np.zeros((8, 12), np.uint8))
    with pytest.raises(ValueError, match="16-bit"):
        KittiDepthDataset([(tmp_path / "000001.png", tmp_path / "bad_depth.png")])[0]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        KittiDepthDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="pairs"):
        KittiDepthDataset(tmp_path / "empty")
    (tmp_path / "short.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match="12 numbers"):
        read_kitti_P2(tmp_path / "short.txt")


def test_nyu_millimetres(tmp_path: Path) -> None:
    img = np.full((8, 12, 3), 100, np.uint8)
    cv2.imwrite(str(tmp_path / "a.jpg"), img)
    mm = np.zeros((8, 12), np.uint16)
    mm[2:, :] = 2500
    cv2.imwrite(str(tmp_path / "a_depth_mm.png"), mm)
    s = NYUv2Dataset(tmp_path)[0]
    assert s["image"].shape == (8, 12, 3)
    assert (s["depth"][:2] == 0).all()
    np.testing.assert_allclose(s["depth"][2:], 2.5)


def test_build_dataset(tmp_path: Path) -> None:
    _cityscapes_tree(tmp_path)
    assert len(build_dataset({"type": "cityscapes", "root": str(tmp_path)})) == 1
    assert len(build_dataset(f"cityscapes:{tmp_path}")) == 1
    with pytest.raises(ValueError, match="unknown dataset type"):
        build_dataset({"type": "coco", "root": "x"})
    with pytest.raises(ValueError, match="root"):
        build_dataset({"type": "kitti"})
    with pytest.raises(ValueError, match="synthetic"):
        build_dataset({"type": "synthetic", "root": str(tmp_path)})  # not a synthetic folder


@needs_real
def test_real_cityscapes_trainids_match_our_mapping() -> None:
    d = REALDATA / "cityscapes"
    stem = "frankfurt_000000_000294_gtFine_"
    train = cv2.imread(str(d / f"{stem}labelTrainIds.png"), cv2.IMREAD_UNCHANGED)
    ids = cv2.imread(str(d / f"{stem}labelIds.png"), cv2.IMREAD_UNCHANGED)
    mapped = label_ids_to_train_ids(ids)
    # The fixture's two label PNGs were downscaled to 256x128 independently, so ~0.2 % of pixels
    # (all on class boundaries) disagree. Exact agreement is required everywhere else, and every
    # disagreement must be explained by a label of a 1-pixel neighbour.
    edge = np.zeros(train.shape, bool)
    for a in (train, mapped):
        dy, dx = a[1:] != a[:-1], a[:, 1:] != a[:, :-1]
        edge[1:] |= dy
        edge[:-1] |= dy
        edge[:, 1:] |= dx
        edge[:, :-1] |= dx
    np.testing.assert_array_equal(mapped[~edge], train[~edge])
    assert (mapped == train).mean() > 0.995
    padded = np.pad(train, 1, constant_values=254)
    near = np.zeros(train.shape, bool)
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            near |= padded[1 + oy : 1 + oy + train.shape[0], 1 + ox : 1 + ox + train.shape[1]] == mapped
    assert near.all()
    s = CityscapesDataset(d)[0]  # flat folder; uses the trainIds file when present
    np.testing.assert_array_equal(s["semseg"], train)
    assert s["image"].shape == (128, 256, 3) and s["K"] is None


@needs_real
def test_real_kitti_depth_range_and_P2() -> None:
    d = REALDATA / "kitti"
    s = KittiDepthDataset(d, calib=d / "000008_P2_and_more.txt")[0]
    assert s["image"].shape == (375, 1242, 3) and s["depth"].shape == (375, 1242)
    v = s["depth"][s["depth"] > 0]
    assert v.size > 5000
    assert 1.0 <= v.min() and v.max() <= 80.0
    assert s["K"][0, 0] == pytest.approx(721.5377) and s["K"][1, 2] == pytest.approx(172.854)


@needs_real
def test_real_nyu_depth_range() -> None:
    s = NYUv2Dataset(REALDATA / "nyu")[0]
    assert s["image"].shape == (120, 160, 3)
    v = s["depth"][s["depth"] > 0]
    assert v.size > 0.5 * s["depth"].size
    assert 0.5 <= v.min() and v.max() <= 10.0
