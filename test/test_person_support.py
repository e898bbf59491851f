"""People need something to stand on: ``PersonSupport`` relabels person regions with nothing below their
feet, keeps people on the ground, on two-wheelers, behind nearer occluders and cut by the frame's bottom;
the pipeline option ``people_need_support`` applies it before everything that reads the labels."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.data.synthetic import CITYSCAPES_CLASSES
from mtl_perception.person_support import PersonSupport

CLASSES = list(CITYSCAPES_CLASSES)
ROAD, SIDEWALK, BUILDING, POLE = (CLASSES.index(c) for c in ("road", "sidewalk", "building", "pole"))
SKY, PERSON, RIDER, CAR, BICYCLE = (CLASSES.index(c) for c in ("sky", "person", "rider", "car", "bicycle"))
H, W = 100, 200


def street() -> tuple[np.ndarray, np.ndarray]:
    """Sky above, a facade 20 m away, a sidewalk and road below row 60 (nearer towards the bottom)."""
    labels = np.full((H, W), BUILDING, np.uint8)
    labels[:20] = SKY
    labels[60:75] = SIDEWALK
    labels[75:] = ROAD
    depth = np.full((H, W), 20.0, np.float32)
    depth[60:] = np.linspace(19.0, 4.0, H - 60, dtype=np.float32)[:, None]
    return labels, depth


def test_a_person_on_a_facade_takes_the_facade_and_one_on_the_sidewalk_stays():
    labels, depth = street()
    labels[30:45, 20:26] = PERSON  # floats on the facade, facade below at its depth
    labels[45:62, 100:106] = PERSON  # feet on the sidewalk
    depth[45:62, 100:106] = 18.5
    before = labels.copy()
    test = PersonSupport.for_classes(CLASSES)
    res = test(labels, depth)
    np.testing.assert_array_equal(labels, before)  # the input is never written
    assert res.regions == 2 and res.removed == 1
    assert (res.labels[30:45, 20:26] == BUILDING).all()
    assert (res.labels[45:62, 100:106] == PERSON).all()
    assert res.relabelled.sum() == 15 * 6 and res.relabelled[30:45, 20:26].all()
    # everything else as it was
    keep = ~res.relabelled
    np.testing.assert_array_equal(res.labels[keep], labels[keep])


def test_occluders_two_wheelers_and_the_frame_bottom_support_a_person():
    labels, depth = street()
    # behind a parked car: the car below the torso is nearer (8 m against 15 m)
    labels[40:55, 30:36] = PERSON
    depth[40:55, 30:36] = 15.0
    labels[55:70, 26:40] = CAR
    depth[55:70, 26:40] = 8.0
    # a rider on a bicycle, both at 12 m
    labels[40:52, 60:66] = RIDER
    labels[52:64, 58:68] = BICYCLE
    depth[40:64, 58:68] = 12.0
    # a person cut by the frame's bottom (the ego camera's nearest pedestrian)
    labels[70:, 150:160] = PERSON
    depth[70:, 150:160] = 3.0
    res = PersonSupport.for_classes(CLASSES)(labels, depth)
    assert res.regions == 3 and res.removed == 0 and res.relabelled is None
    assert res.labels is labels or np.array_equal(res.labels, labels)


def test_a_person_on_a_car_body_at_the_cars_depth_becomes_car():
    labels, depth = street()
    labels[55:75, 40:80] = CAR
    depth[55:75, 40:80] = 10.0
    labels[58:64, 50:54] = PERSON  # a phantom on the car's door, at the car's depth
    depth[58:64, 50:54] = 10.0
    res = PersonSupport.for_classes(CLASSES)(labels, depth)
    assert res.removed == 1 and (res.labels[58:64, 50:54] == CAR).all()


def test_sky_below_is_not_an_occluder_whatever_its_depth():
    """The network's depth on sky was never trained and can read 1 m: sky below a person is no support."""
    labels, depth = street()
    labels[5:15, 40:46] = PERSON
    depth[5:15, 40:46] = 30.0
    depth[:20] = 1.0  # the untrained sky, nearer than the 'person'
    res = PersonSupport.for_classes(CLASSES)(labels, depth)
    assert res.removed == 1 and (res.labels[5:15, 40:46] == SKY).all()


@pytest.mark.parametrize("on_pole, removed", [(4, 0), (5, 0), (6, 1)])
def test_half_the_columns_decide(on_pole, removed):
    """A person 10 columns wide whose feet are on the sidewalk, with a pole's base (at the person's
    depth: no occluder) under ``on_pole`` of its columns: supported while at least half are."""
    labels, depth = street()
    labels[45:62, 120:130] = PERSON
    depth[45:62, 120:130] = 18.5
    labels[62:66, 120 : 120 + on_pole] = POLE
    depth[62:66, 120 : 120 + on_pole] = 18.5
    res = PersonSupport.for_classes(CLASSES)(labels, depth)
    assert res.removed == removed
    assert ((res.labels[45:62, 120:130] == PERSON).all()) == (removed == 0)


def test_refusals_and_label_sets_without_people():
    assert PersonSupport.for_classes(["road", "car"]) is None
    assert PersonSupport.for_classes(["person", "car"]) is None  # nothing to stand on
    test = PersonSupport.for_classes(CLASSES)
    with pytest.raises(ValueError, match="same"):
        test(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.float32))
    labels, depth = street()
    res = test(labels, depth)
    assert res.regions == 0 and res.relabelled is None


def test_the_pipeline_option_relabels_before_the_products_and_zeroes_their_confidence(monkeypatch):
    """A real tiny letterboxing engine whose network output is replaced by a known street (``engine.infer``
    patched: a random tiny network puts its classes anywhere). Option off: the phantom stays person;
    on: it is building in the labels at the frame's size, with confidence 0, and the rest is unchanged."""
    pytest.importorskip("torch")
    from tiny_models import one_hot_logits, tiny_letterbox_engine

    from mtl_perception.geometry import default_intrinsics
    from mtl_perception.pipeline import FramePipeline, PipelineOptions

    engine = tiny_letterbox_engine()
    h, w = engine.input_size
    labels = np.full((h, w), BUILDING, np.uint8)
    labels[: h // 5] = SKY
    labels[h // 2 :] = ROAD
    labels[h // 4 : h // 4 + 6, w // 4 : w // 4 + 3] = PERSON  # on the facade
    labels[h // 2 - 6 : h // 2, w // 2 : w // 2 + 3] = PERSON  # on the road
    depth = np.full((h, w), 20.0, np.float32)
    depth[h // 2 :] = np.linspace(19.0, 4.0, h - h // 2, dtype=np.float32)[:, None]
    logits = one_hot_logits(labels, len(CLASSES))
    monkeypatch.setattr(engine, "infer", lambda batch: {"semseg": logits, "depth": depth[None, None]})
    H, W = 2 * h, 2 * w
    rgb = np.zeros((H, W, 3), np.uint8)
    K = default_intrinsics(H, W, 70.0)
    off = FramePipeline(engine).process(rgb, K=K, confidence=True)
    on = FramePipeline.from_options(engine, PipelineOptions(people_need_support=True)).process(
        rgb, K=K, confidence=True
    )
    phantom = np.s_[2 * (h // 4) : 2 * (h // 4 + 6), 2 * (w // 4) : 2 * (w // 4 + 3)]
    walker = np.s_[2 * (h // 2 - 6) : 2 * (h // 2), 2 * (w // 2) : 2 * (w // 2 + 3)]
    assert (off.labels[phantom] == PERSON).all() and (on.labels[phantom] == BUILDING).all()
    assert (on.labels[walker] == PERSON).all() and (on.grid_labels == PERSON).sum() == 18
    assert (on.confidence[phantom] == 0).all() and (off.confidence[phantom] > 0.9).all()
    rest = np.ones((H, W), bool)
    rest[phantom] = False
    np.testing.assert_array_equal(on.labels[rest], off.labels[rest])
    np.testing.assert_array_equal(on.confidence[rest], off.confidence[rest])
    # the node turns it on and off at run time
    pipe = FramePipeline(engine)
    pipe.people_need_support = True
    assert (pipe.process(rgb, K=K).labels[phantom] == BUILDING).all()
    assert pipe.options == PipelineOptions(people_need_support=True)
