"""Ground-contact depth (mtl_perception.ground_contact) and its place in FramePipeline."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.data.synthetic import CITYSCAPES_CLASSES
from mtl_perception.ground_contact import GroundContact, class_lookup

CLASSES = list(CITYSCAPES_CLASSES)
ROAD, SIDEWALK, BUILDING, SKY, PERSON, CAR = (
    CLASSES.index(n) for n in ("road", "sidewalk", "building", "sky", "person", "car")
)
H, W = 120, 200
HORIZON = 40


def street() -> tuple[np.ndarray, np.ndarray]:
    """Road below the horizon with flat-ground depth (camera 1.5 m, f = 200 px), building above."""
    labels = np.full((H, W), BUILDING, np.uint8)
    labels[HORIZON + 1 :] = ROAD
    v = np.arange(H, dtype=np.float32)[:, None] - HORIZON
    ground = np.where(v > 0, 1.5 * 200 / np.maximum(v, 1e-3), 80.0)
    depth = np.broadcast_to(ground, (H, W)).astype(np.float32).copy()
    return labels, depth


def prior() -> GroundContact:
    gc = GroundContact.for_classes(CLASSES)
    assert gc is not None
    return gc


def test_object_columns_take_the_depth_of_the_ground_below_them():
    labels, depth = street()
    # a car standing on the road at rows 60-89, its network depth a ramp continuing the road (too far)
    labels[60:90, 80:130] = CAR
    depth[60:90, 80:130] = np.linspace(40.0, 12.0, 30, dtype=np.float32)[:, None]
    out = prior()(labels, depth)
    contact = depth[90:92, 80:130].mean(0)  # the two road rows below its lowest row (89)
    np.testing.assert_allclose(out[60:90, 80:130], np.broadcast_to(contact, (30, 50)), rtol=1e-6)
    # nothing else changes, and the input is not modified in place
    keep = labels != CAR
    np.testing.assert_array_equal(out[keep], depth[keep])
    assert depth[60, 100] == pytest.approx(40.0)


def test_columns_without_contact_are_interpolated_between_contact_columns():
    labels, depth = street()
    depth[:, 100:] *= 0.5  # the ground is nearer on the right: the contact depth changes along the car
    labels[50:80, 40:160] = CAR
    depth[50:80, 40:160] = 99.0
    # something that is not ground (a low wall) hides the car's base in columns 60-79: no contact there
    labels[80:84, 60:80] = BUILDING
    # a person in front of the car: car and person touch, so they are one region; the person's columns
    # get the contact below the person (row 84), the car's own base is hidden there
    labels[70:85, 120:130] = PERSON
    out = prior()(labels, depth)
    below = lambda x, y: float(depth[y + 1 : y + 3, x].mean())  # noqa: E731
    assert out[60, 50] == pytest.approx(below(50, 79)) and out[60, 150] == pytest.approx(below(150, 79))
    np.testing.assert_allclose(out[75, 125], below(125, 84), rtol=1e-6)
    # hidden columns: linear between the contacts of columns 59 and 80
    expect = np.interp(70, [59, 80], [below(59, 79), below(80, 79)])
    assert out[65, 70] == pytest.approx(expect, rel=1e-5)
    assert np.isfinite(out).all() and (out[50:80, 40:160] < 99.0).all()


def test_regions_without_ground_contact_are_kept():
    labels, depth = street()
    # cut by the frame's bottom edge: no ground below it
    labels[100:, 20:60] = CAR
    depth[100:, 20:60] = 33.0
    # standing on a building (e.g. a sign on a facade): not ground
    labels[10:30, 150:170] = PERSON
    depth[10:30, 150:170] = 44.0
    # a few pixels only: below the minimum area
    labels[70:72, 100:102] = CAR
    depth[70:72, 100:102] = 55.0
    out = prior()(labels, depth)
    np.testing.assert_array_equal(out, depth)


def test_columns_cut_by_the_frame_bottom_keep_their_depth():
    """One region of parked cars: the far ones stand on the road, the nearest is cut by the frame's
    bottom edge. Contacts exist (the far cars), but the cut columns are nearer than any ground in
    view: they keep the network's depth instead of an interpolated far contact."""
    labels, depth = street()
    labels[60:80, 100:180] = CAR  # far cars, base on the road at row 79
    depth[60:80, 100:180] = 50.0
    labels[70:, 40:110] = CAR  # the near car, touching the far ones and cut by the bottom edge
    depth[70:, 40:110] = 4.0
    out = prior()(labels, depth)
    below = depth[80:82, 150].mean()
    assert out[65, 150] == pytest.approx(below)  # far cars: their contact
    np.testing.assert_array_equal(out[70:, 40:100], depth[70:, 40:100])  # cut columns: unchanged
    # columns 100-109: the near car reaches the bottom there too, so the region's cut columns win
    np.testing.assert_array_equal(out[70:, 100:110], depth[70:, 100:110])


def test_nan_ground_depth_is_not_a_contact_and_shapes_are_checked():
    labels, depth = street()
    labels[60:90, 80:130] = CAR
    depth[60:90, 80:130] = 50.0
    depth[90:, :] = np.nan  # invalid depth below: no contact anywhere
    out = prior()(labels, depth)
    np.testing.assert_array_equal(out[60:90, 80:130], depth[60:90, 80:130])
    with pytest.raises(ValueError, match="same"):
        prior()(labels, depth[:-1])


def test_label_sets_without_road_or_standing_classes_get_no_prior():
    assert GroundContact.for_classes(["sky", "building"]) is None
    assert GroundContact.for_classes(["road", "sky"]) is None
    lut = class_lookup(["Road", "car"], ["road"])
    assert lut is not None and lut[0] and not lut[1]


def test_pipeline_applies_it_on_the_grid_and_can_turn_it_off(monkeypatch):
    """FramePipeline with and without the prior on a real (tiny, letterboxing, canonical-depth) engine
    whose network output is replaced by a known street (``engine.infer`` patched: a random tiny
    network would put its classes anywhere). Everything after the network is the node's real path:
    crop to the content window, metres through K, the prior on the grid, resize to the frame."""
    pytest.importorskip("torch")
    from tiny_models import one_hot_logits, tiny_letterbox_engine

    from mtl_perception.geometry import default_intrinsics
    from mtl_perception.pipeline import FramePipeline

    engine = tiny_letterbox_engine()
    h, w = engine.input_size
    labels = np.full((h, w), BUILDING, np.uint8)
    labels[h // 2 :] = ROAD
    v = np.arange(h, dtype=np.float32)[:, None] - h // 2 + 1
    depth = np.broadcast_to(np.where(v > 0, 300.0 / np.maximum(v, 1), 80.0), (h, w)).astype(np.float32).copy()
    car = np.s_[h // 2 - 4 : h // 2 + 6, w // 3 : w // 2]
    labels[car] = CAR
    depth[car] = 70.0  # far too far for where it stands
    logits = one_hot_logits(labels, len(CLASSES))
    monkeypatch.setattr(engine, "infer", lambda batch: {"semseg": logits, "depth": depth[None, None]})

    rgb = np.zeros((h, w, 3), np.uint8)  # the network's own size and aspect: no letterbox pads
    K = default_intrinsics(h, w, 70.0)
    on = FramePipeline(engine).process(rgb, K=K)
    off = FramePipeline(engine, ground_contact=False).process(rgb, K=K)
    np.testing.assert_array_equal(on.labels, off.labels)
    assert on.depth.shape == off.depth.shape == (h, w)
    others = on.labels != CAR
    np.testing.assert_array_equal(on.depth[others], off.depth[others])
    # the car now stands at the depth of the road just below it, in metres like the rest
    below = off.depth[h // 2 + 6 : h // 2 + 8, w // 3 : w // 2].mean(0)
    np.testing.assert_allclose(on.depth[car], np.broadcast_to(below, on.depth[car].shape), rtol=1e-5)
    assert off.depth[car].min() > 1.5 * on.depth[car].max()
