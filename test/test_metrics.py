"""Metric conventions against hand-computed examples (MLoRE/InvPT eval code, Maninis delta_m)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtl_perception.evaluate.metrics import DepthMeter, SegMeter, delta_m


def test_confusion_matrix_and_ious_by_hand() -> None:
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])  # last two pixels are ignored
    m = SegMeter(num_classes=4)
    m.update(pred, gt)
    r = m.compute()
    expected = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(r["confusion"], expected)
    # IoU: c0 = 1/(2+2-1)=1/3, c1 = 2/(2+3-2)=2/3, c2 = 1/(2+1-1)=1/2, c3 absent everywhere
    assert r["per_class_iou"][:3] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(r["per_class_iou"][3])
    assert r["miou_all"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2 + 0) / 4)  # papers: absent counts 0
    assert r["miou_present"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert r["pixel_acc"] == pytest.approx(4 / 6)
    assert r["mean_acc"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    # recall = TP / GT pixels, precision = TP / predicted pixels (c0: predicted twice, right once)
    assert r["gt_pixels"][:3] == [2, 2, 2] and r["pred_pixels"] == [2, 3, 1, 0]
    assert r["per_class_recall"][:3] == pytest.approx([1 / 2, 1, 1 / 2])
    assert r["per_class_precision"][:3] == pytest.approx([1 / 2, 2 / 3, 1])
    assert math.isnan(r["per_class_recall"][3]) and math.isnan(r["per_class_precision"][3])


def test_seg_accumulates_over_dataset_and_accepts_torch() -> None:
    a = SegMeter(num_classes=3)
    gt1, pr1 = np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])
    gt2, pr2 = np.array([1, 2]), np.array([1, 2])
    a.update(torch.from_numpy(pr1), torch.from_numpy(gt1))
    a.update(pr2, gt2)
    b = SegMeter(num_classes=3)
    b.update(np.concatenate([pr1, pr2]), np.concatenate([gt1, gt2]))
    np.testing.assert_array_equal(a.compute()["confusion"], b.compute()["confusion"])
    # class 1: tp 1, fn 1 -> 1/2 ; class 0: tp 3, fp 1 -> 3/4 ; class 2: 1
    assert a.compute()["miou_all"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)


def test_seg_predicted_but_absent_in_gt_and_out_of_range_pred() -> None:
    m = SegMeter(num_classes=3)
    m.update(np.array([2, 2, 255]), np.array([0, 0, 0]))
    r = m.compute()
    # class 2 predicted but not in GT: IoU 0; 'present' means present in GT, so only class 0 counts.
    assert r["per_class_iou"][2] == 0.0
    assert r["per_class_iou"][0] == 0.0  # pred 255 on a GT pixel is a miss, not ignored
    assert r["miou_present"] == 0.0
    assert math.isnan(r["per_class_iou"][1])
    assert r["confusion"].sum() == 2  # the out-of-range prediction is tracked as FN outside the matrix
    with pytest.raises(ValueError):
        m.update(np.array([0]), np.array([7]))


def test_depth_pixel_pooled_rmse_differs_from_mean_of_per_image() -> None:
    # image A: 1 valid pixel with error 4; image B: 3 valid pixels with error 0 (one invalid pixel).
    gt_a, pr_a = np.array([10.0]), np.array([14.0])
    gt_b, pr_b = np.array([5.0, 5.0, 5.0, 0.0]), np.array([5.0, 5.0, 5.0, 3.0])
    m = DepthMeter()
    m.update(pr_a, gt_a)
    m.update(torch.tensor(pr_b), torch.tensor(gt_b))
    r = m.compute()
    assert r["n_valid"] == 4
    assert r["rmse"] == pytest.approx(math.sqrt(16 / 4))  # 2.0 pooled
    # Per image: A has RMSE 4, B has RMSE 0 -> mean 2; pooled is also 2 here, so use a case
    # where the images have equal pixel counts but unequal errors:
    m2 = DepthMeter()
    m2.update(np.array([14.0, 5.0]), np.array([10.0, 5.0]))
    m2.update(np.array([5.0, 5.0]), np.array([5.0, 5.0]))
    pooled = m2.compute()["rmse"]  # sqrt(16/4) = 2
    per_image = (math.sqrt(16 / 2) + 0.0) / 2  # (2.828 + 0) / 2 = 1.414
    assert pooled == pytest.approx(2.0)
    assert per_image == pytest.approx(math.sqrt(2))
    assert abs(pooled - per_image) > 0.5
    assert r["abs_rel"] == pytest.approx(0.4 / 4)
    assert r["mae"] == pytest.approx(1.0)
    assert r["delta1"] == pytest.approx(3 / 4)  # 14/10 = 1.4 fails delta1, passes delta2
    assert r["delta2"] == pytest.approx(1.0)


def test_depth_validity_clamp_and_bins() -> None:
    m = DepthMeter(max_depth=80.0)
    gt = np.array([0.0, np.nan, 90.0, 80.0, 2.0, 12.0])
    pr = np.array([1.0, 1.0, 1.0, 1.0, -1.0, 13.0])
    m.update(pr, gt)
    r = m.compute()
    assert r["n_valid"] == 2  # 0, nan, >= max excluded
    assert r["rmse"] == pytest.approx(math.sqrt(((1e-9 - 2.0) ** 2 + 1.0) / 2))
    assert np.isfinite(r["rmse_log"]) and np.isfinite(r["silog"])
    assert len(r["bin_edges"]) == 17 and r["bin_edges"][-1] == 80.0
    assert r["bin_count"][0] == 1 and r["bin_count"][2] == 1
    assert r["bin_abs_err"][2] == pytest.approx(1.0)
    assert r["bin_abs_rel"][2] == pytest.approx(1 / 12)
    assert math.isnan(r["bin_abs_err"][5])


def test_silog_zero_for_global_scale_error() -> None:
    m = DepthMeter()
    gt = np.array([2.0, 5.0, 10.0, 40.0])
    m.update(gt * 1.3, gt)
    r = m.compute()
    assert r["silog"] == pytest.approx(0.0, abs=1e-5)
    assert r["rmse_log"] == pytest.approx(math.log(1.3))


def test_delta_m_sign_conventions() -> None:
    lib = {"miou": False, "rmse": True}
    stl = {"miou": 50.0, "rmse": 4.0}
    # mIoU +10 % (better), rmse -25 % (better) -> both positive: (10 + 25) / 2
    assert delta_m({"miou": 55.0, "rmse": 3.0}, stl, lib) == pytest.approx(17.5)
    # both worse -> negative
    assert delta_m({"miou": 45.0, "rmse": 5.0}, stl, lib) == pytest.approx((-10 - 25) / 2)
    assert delta_m(stl, stl, lib) == 0.0
    with pytest.raises(ValueError):
        delta_m({"miou": 1.0}, stl, lib)
