"""Real-frame evaluation (issue 11 item 5): loaders on ../shared/realdata, the CamVid mapping, and the
scoring conventions (pooled segmentation, per-frame depth means) on tiny arrays with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.data.realdata import (
    RealDataError,
    iter_realdata,
    list_frames,
    read_kitti_timestamps,
    stereo_depth,
)
from mtl_perception.evaluate.realdata import (
    CAMVID_CLASSES,
    CAMVID_ONE_TO_ONE,
    CAMVID_TO_CITYSCAPES_DISPLAY,
    RealDataScorer,
    cityscapes_to_camvid,
    format_tables,
    frame_depth_metrics,
    median_scale,
    write_realdata_report,
)

EXPECTED_FRAMES = {
    "cityscapes": 1,
    "cityscapes_full": 3,
    "camvid": 2,
    "kitti": 1,
    "kitti_raw_0023_sequence": 7,
    "nuscenes": 1,
    "tri_ddad": 3,
}


# ---------------------------------------------------------------------- loaders on the real files
@pytest.fixture(scope="module")
def samples():
    from conftest import SHARED

    root = SHARED / "realdata"
    if not root.is_dir():
        pytest.skip("../shared/realdata not present (fresh clone): real-data fixtures unavailable")
    return {f"{s['set']}/{s['name']}": s for s in iter_realdata(root)}


def test_every_real_frame_loads_with_the_sample_contract(samples):
    per_set: dict[str, int] = {}
    for key, s in samples.items():
        per_set[s["set"]] = per_set.get(s["set"], 0) + 1
        h, w = s["image"].shape[:2]
        assert s["image"].dtype == np.uint8 and s["image"].shape == (h, w, 3), key
        assert s["semseg"] is not None or s["depth"] is not None, key
        if s["semseg"] is not None:
            assert s["semseg"].dtype == np.uint8 and s["semseg"].shape == (h, w), key
            assert s["label_space"] in ("cityscapes", "camvid"), key
        else:
            assert s["label_space"] is None, key
        if s["depth"] is not None:
            d = s["depth"]
            assert d.dtype == np.float32 and d.shape == (h, w) and np.isfinite(d).all() and (d >= 0).all(), key
            assert 0 < (d > 0).mean() < 1, key
        if s["K"] is not None:
            assert s["K"].dtype == np.float64 and s["K"].shape == (3, 3) and s["K"][2, 2] == 1, key
            assert 0 < s["K"][0, 2] < w and 0 < s["K"][1, 2] < h, key  # principal point inside the frame
    assert per_set == EXPECTED_FRAMES
    # 3 labelled Cityscapes frames, 2 CamVid, 13 with metric depth (the table)
    assert sum(s["label_space"] == "cityscapes" for s in samples.values()) == 3
    assert sum(s["label_space"] == "camvid" for s in samples.values()) == 2
    assert sum(s["depth"] is not None for s in samples.values()) == 13


def test_real_frames_specific_conventions(samples):
    fr = samples["cityscapes/frankfurt_000000_000294"]
    assert fr["image"].shape == (128, 256, 3) and fr["K"] is None  # downscaled fixture: no intrinsics
    assert set(np.unique(fr["semseg"])) <= set(range(19)) | {255}
    assert samples["cityscapes_full/bochum_000000_000313"]["K"] is None  # README: bochum unknown
    aachen = samples["cityscapes_full/aachen_000000_000019"]
    assert aachen["K"][0, 0] == pytest.approx(2262.52) and aachen["depth"] is None
    ham = samples["cityscapes_full/hamburg_000000_046078"]
    assert ham["semseg"] is None and ham["K"][0, 0] == pytest.approx(2268.36)
    d = ham["depth"]
    assert not d[int(round(1024 * 0.78)) :].any()  # ego bonnet masked
    assert d.max() <= 80.0 and d[d > 0].min() > 1.0
    for name in ("0001TP_008550", "Seq05VD_f00540"):
        cv = samples[f"camvid/{name}"]
        assert cv["K"] is None and cv["label_space"] == "camvid"
        assert set(np.unique(cv["semseg"])) <= set(range(11)) | {255}  # 11 = void -> 255
    kitti = samples["kitti/000008"]
    assert kitti["K"][0, 0] == pytest.approx(721.5377) and kitti["image"].shape == (375, 1242, 3)
    assert 2.0 < kitti["depth"][kitti["depth"] > 0].min() and kitti["depth"].max() < 80  # uint16 / 256
    raw = samples["kitti_raw_0023_sequence/0000000003"]
    assert raw["K"][1, 2] == pytest.approx(172.854) and 0.03 < (raw["depth"] > 0).mean() < 0.06
    assert samples["tri_ddad/camera01_15569195938415230"]["image"].shape == (1216, 1936, 3)
    assert samples["nuscenes/cam_front"]["K"][0, 0] == pytest.approx(1266.4172, rel=1e-6)


def test_camera_heights_come_from_camera_files_or_the_published_rigs(samples):
    """Every frame with depth has a mounting height and says where it comes from; nothing is fitted."""
    ham = samples["cityscapes_full/hamburg_000000_046078"]
    assert ham["camera_height"] == pytest.approx(1.18) and "camera.json" in ham["height_source"]
    assert samples["kitti/000008"]["camera_height"] == pytest.approx(1.65)
    assert samples["kitti_raw_0023_sequence/0000000000"]["camera_height"] == pytest.approx(1.65)
    assert samples["nuscenes/cam_front"]["camera_height"] == pytest.approx(1.51)
    ddad = samples["tri_ddad/camera01_15569195938415230"]
    assert ddad["camera_height"] == pytest.approx(1.3548, abs=1e-4) and "calibration.json" in ddad["height_source"]
    for key, s in samples.items():
        if s["depth"] is not None:
            assert 1.0 < s["camera_height"] < 2.0 and s["height_source"], key
    assert samples["camvid/0001TP_008550"]["camera_height"] is None  # unknown rig
    assert samples["cityscapes_full/bochum_000000_000313"]["height_source"] == "unknown"


def test_kitti_timestamps(realdata_dir):
    stamps = read_kitti_timestamps(realdata_dir / "kitti_raw_0023_sequence" / "image_02_timestamps.txt")
    assert stamps[0] == 1317043079287203584  # 2011-09-26 13:17:59.287203584 (read as UTC), ns exact
    gaps = np.diff(stamps[:7]) / 1e9
    assert np.all((gaps > 0.09) & (gaps < 0.11))  # 10 Hz


def test_list_frames_errors(tmp_path, realdata_dir):
    with pytest.raises(RealDataError, match="does not exist"):
        list_frames(tmp_path / "missing")
    with pytest.raises(RealDataError, match="no real frames"):
        list_frames(tmp_path)
    with pytest.raises(RealDataError, match="unknown realdata set"):
        list_frames(realdata_dir, ["kitty"])
    assert [r.name for r in list_frames(realdata_dir, ["kitti"])] == ["000008"]


def test_stereo_depth_masks_bonnet_and_far():
    disp = np.zeros((10, 4), np.uint16)
    disp[:] = 1 + 256 * 10  # 10 px disparity -> 0.2 * 1000 / 10 = 20 m
    disp[0, 0] = 1 + 256 * 2  # 2 px -> 100 m: beyond the 80 m cap
    disp[0, 1] = 1  # zero disparity: invalid
    d = stereo_depth(disp, baseline=0.2, fx=1000.0, bonnet_fraction=0.3)
    assert d[0, 0] == 0 and d[0, 1] == 0 and d[0, 2] == pytest.approx(20.0)
    assert not d[7:].any() and (d[1:7] == pytest.approx(20.0))


# ---------------------------------------------------------------------- CamVid mapping
def test_cityscapes_to_camvid_follows_the_readme():
    cs = np.arange(19, dtype=np.uint8)
    expect = [3, 4, 1, 1, 7, 2, 6, 6, 5, 255, 0, 9, 10, 8, 8, 8, 8, 10, 10]
    assert cityscapes_to_camvid(cs).tolist() == expect
    assert cityscapes_to_camvid(np.array([255], np.uint8)).tolist() == [255]
    assert [CAMVID_CLASSES[i] for i in CAMVID_ONE_TO_ONE] == [
        "Sky",
        "Building",
        "Pole",
        "Road",
        "Pavement",
        "Tree",
        "Fence",
        "Pedestrian",
    ]
    # display LUT is the inverse on the one-to-one classes
    for cv in CAMVID_ONE_TO_ONE:
        assert cityscapes_to_camvid(CAMVID_TO_CITYSCAPES_DISPLAY[[cv]])[0] == cv


def _cam(gt, pred):
    return {"set": "camvid", "name": "x", "label_space": "camvid", "semseg": np.array(gt, np.uint8), "K": None}


def test_camvid_scoring_by_hand():
    # GT (CamVid ids): Road Road Sky Car void ; prediction (Cityscapes): road, terrain, sky, car, road
    sc = RealDataScorer()
    gt = [[3, 3, 0, 8, 255]]
    pred = np.array([[0, 9, 10, 13, 0]], np.uint8)
    rec = sc.add(_cam(gt, pred), pred, None)
    r = sc.compute()["camvid"]
    # terrain (ignored) drops pixel 2; void GT drops pixel 5: Road 1/1, Sky 1/1, Car 1/1
    assert r["miou_8"] == pytest.approx(1.0)  # over Sky and Road (Car is not one-to-one)
    assert r["miou_11"] == pytest.approx(1.0) and r["pixel_acc"] == pytest.approx(1.0)
    assert r["ignored_pixels"] == 1 and rec["semseg"]["miou"] == pytest.approx(1.0)
    # strict reading: the terrain pixel is a missed Road: Road IoU 1/2, Sky 1 -> 0.75
    assert r["miou_8_terrain_as_miss"] == pytest.approx(0.75)
    assert r["classes_8_present"] == ["Sky", "Road"]


# ---------------------------------------------------------------------- pooled vs per-frame
def _cs(name, gt):
    return {"set": "cityscapes", "name": name, "label_space": "cityscapes", "semseg": np.array(gt, np.uint8)}


def test_cityscapes_is_pooled_not_a_mean_of_frames(tmp_path):
    sc = RealDataScorer()
    # frame a: 4 px, road/road/sidewalk/sidewalk predicted all road -> road IoU 2/4, sidewalk 0/2
    a_gt, a_pred = [[0, 0, 1, 1]], np.array([[0, 0, 0, 0]], np.uint8)
    # frame b: 8 px of sidewalk, all right
    b_gt, b_pred = [[1] * 8], np.array([[1] * 8], np.uint8)
    ra = sc.add(_cs("a", a_gt), a_pred, None)
    rb = sc.add(_cs("b", b_gt), b_pred, None)
    assert ra["semseg"]["miou"] == pytest.approx(0.25) and rb["semseg"]["miou"] == pytest.approx(1.0)
    r = sc.compute()["cityscapes"]
    # pooled: road TP 2, FP 2, FN 0 -> 0.5; sidewalk TP 8, FN 2 -> 0.8; mean 0.65 (per-frame mean: 0.625)
    assert r["miou"] == pytest.approx(0.65)
    assert r["pixel_acc"] == pytest.approx(10 / 12)
    assert r["frames"] == 2 and r["classes_present"] == ["road", "sidewalk"]
    # why each IoU is what it is: road found everywhere but called on sidewalk too; sidewalk missed twice
    assert r["per_class_recall"]["road"] == pytest.approx(1.0)
    assert r["per_class_precision"]["road"] == pytest.approx(0.5)
    assert r["per_class_recall"]["sidewalk"] == pytest.approx(0.8)
    assert r["per_class_precision"]["sidewalk"] == pytest.approx(1.0)
    assert r["pixels"]["road"] == {"gt": 2, "predicted": 4} and r["pixels"]["sidewalk"] == {"gt": 10, "predicted": 8}
    assert r["per_class_recall"]["car"] is None and r["per_class_precision"]["car"] is None
    write_realdata_report(tmp_path, {"m": sc.compute()}, {"what": "test"}, grid_name=None)
    text = (tmp_path / "report.md").read_text()
    assert "| road | 2 | 50.0 % (100.0 % / 50.0 %, 4) |" in text
    assert "| sidewalk | 10 | 80.0 % (80.0 % / 100.0 %, 8) |" in text


def _dep(set_name, name, gt):
    return {"set": set_name, "name": name, "label_space": None, "semseg": None, "depth": np.array(gt, np.float32)}


def test_depth_per_frame_then_mean_by_hand():
    sc = RealDataScorer(max_depth=80.0)
    # frame 1: GT 10, 10, invalid 0, beyond the cap 90; pred 11, 15 -> AbsRel (0.1 + 0.5) / 2, d1 1/2
    r1 = sc.add(_dep("a", "f1", [[10, 10, 0, 90]]), None, np.array([[11, 15, 3, 90]], np.float32))
    # frame 2 (4 px): exact
    r2 = sc.add(_dep("b", "f2", [[20, 20, 20, 20]]), None, np.full((1, 4), 20, np.float32))
    # frame 3 (set b): one NaN prediction = 0 m -> AbsRel (1 + 0) / 2, d1 1/2
    r3 = sc.add(_dep("b", "f3", [[5, 5]]), None, np.array([[np.nan, 5]], np.float32))
    assert r1["depth"]["abs_rel"] == pytest.approx(0.3) and r1["depth"]["delta1"] == pytest.approx(0.5)
    assert r1["depth"]["n_valid"] == 2
    # median scaling: 10 / 13 -> 8.46, 11.54: AbsRel 2/13 each, both within 1.25
    assert r1["depth"]["median_scale"] == pytest.approx(10 / 13)
    assert r1["depth"]["abs_rel_median_scaled"] == pytest.approx(3 / 13 - 1 / 13)
    assert r1["depth"]["delta1_median_scaled"] == pytest.approx(1.0)
    assert r2["depth"]["abs_rel"] == 0 and r3["depth"]["abs_rel"] == pytest.approx(0.5)
    # median over the positive predictions only (5) -> scale 1
    assert r3["depth"]["median_scale"] == pytest.approx(1.0)
    d = sc.compute()["depth"]
    assert d["frames"] == 3
    assert d["abs_rel"] == pytest.approx((0.3 + 0 + 0.5) / 3)  # each frame weighs the same
    assert d["delta1"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert d["abs_rel_median_scaled"] == pytest.approx((2 / 13 + 0 + 0.5) / 3)
    assert d["per_set"]["a"]["abs_rel"] == pytest.approx(0.3) and d["per_set"]["b"]["frames"] == 2
    assert d["per_set"]["b"]["abs_rel"] == pytest.approx(0.25)
    assert d["per_set_mean"]["abs_rel"] == pytest.approx((0.3 + 0.25) / 2)
    # all pixels pooled: (0.1 + 0.5 + 0 + 1) / 8
    assert d["pixel_pooled"]["abs_rel"] == pytest.approx(1.6 / 8) and d["pixel_pooled"]["n_valid"] == 8


def test_depth_error_by_predicted_class_by_hand(tmp_path):
    """Depth errors pooled by the class the network predicted at each GT pixel (building id 2, car 13)."""
    sc = RealDataScorer(max_depth=80.0)
    labels = np.array([[2, 2, 13, 13, 2]], np.uint8)
    # building: GT 10, 20 -> pred 20, 40 (ratio 2, AbsRel 1); car: GT 5 -> 5 and 10 -> 5 (AbsRel 0, 0.5);
    # the last pixel has no GT and is left out
    gt = [[10, 20, 5, 10, 0]]
    pred = np.array([[20, 40, 5, 5, 7]], np.float32)
    sc.add(_dep("kitti", "k", gt), labels, pred)
    sc.add(_dep("nuscenes", "n", [[8.0]]), np.array([[13]], np.uint8), np.array([[np.inf]], np.float32))
    res = sc.compute()
    by = res["depth"]["by_predicted_class"]
    assert set(by) == {"building", "car"}
    assert by["building"]["pixels"] == 2 and by["building"]["abs_rel"] == pytest.approx(1.0)
    assert by["building"]["ratio"] == pytest.approx(2.0)
    # car: 5/5, 5/10 and sky (+inf -> max_depth 80) on GT 8: AbsRel (0 + 0.5 + 9) / 3
    assert by["car"]["pixels"] == 3 and by["car"]["abs_rel"] == pytest.approx(9.5 / 3)
    assert by["car"]["ratio"] == pytest.approx((1 * 0.5 * 10) ** (1 / 3))
    assert by["building"]["share"] == pytest.approx(0.4)
    per_set = res["depth"]["by_predicted_class_per_set"]
    assert list(per_set) == ["kitti", "nuscenes"] and set(per_set["nuscenes"]) == {"car"}
    assert per_set["kitti"]["car"]["pixels"] == 2 and per_set["kitti"]["car"]["abs_rel"] == pytest.approx(0.25)
    assert per_set["nuscenes"]["car"]["ratio"] == pytest.approx(10.0)
    write_realdata_report(tmp_path, {"m": res}, {"what": "test"}, grid_name=None)
    text = (tmp_path / "report.md").read_text()
    assert "## Depth error by predicted class" in text and "| car | 60.0 % / 3.167 / 1.71 |" in text
    # then per set: KITTI's own car pixels (AbsRel 0.25, ratio sqrt(0.5)) and the nuScenes sky pixel
    kitti = text.split("kitti:")[1].split("nuscenes:")[0]
    assert "| car | 50.0 % / 0.250 / 0.71 |" in kitti and "| building | 50.0 % / 1.000 / 2.00 |" in kitti
    assert "| car | 100.0 % / 9.000 / 10.00 |" in text.split("nuscenes:")[1]


def test_median_scale_and_frame_metrics_edge_cases():
    assert np.isnan(median_scale(np.ones((2, 2)), np.zeros((2, 2))))  # no valid GT
    m = frame_depth_metrics(np.ones((2, 2), np.float32), np.zeros((2, 2), np.float32))
    assert m["n_valid"] == 0 and np.isnan(m["abs_rel"]) and np.isnan(m["abs_rel_median_scaled"])


def test_tables_name_every_headline_metric():
    sc = RealDataScorer()
    sc.add(_cs("a", [[0, 1]]), np.array([[0, 1]], np.uint8), None)
    sc.add(_cam([[3]], None), np.array([[0]], np.uint8), None)
    sc.add(_dep("kitti", "k", [[10.0]]), None, np.array([[12.5]], np.float32))
    res = sc.compute()
    text = format_tables({"old": res, "new": res}, per_frame=True)
    for needle in (
        "| metric | old | new |",
        "Cityscapes mIoU, pooled over 1 frames",
        "CamVid mIoU, 8 one-to-one classes",
        "Depth AbsRel, metric (mean of 1 frames) | 0.250 | 0.250 |",
        "| kitti | 1 |",
        "| cityscapes/a | no |",
    ):
        assert needle in text, needle
