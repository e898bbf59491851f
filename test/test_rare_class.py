"""Rare-class sampling: the class draw, the frames it picks, the crops that show the class, the
resumable stream and the trainer's record."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from ddp_worker import StripesDataset
from tiny_models import tiny_config, tiny_train_config

from mtl_perception.data import transforms as T
from mtl_perception.model.errors import ConfigError
from mtl_perception.train import Trainer, load_train_config
from mtl_perception.train.data import AugmentedDataset, ResumableShardedSampler, build_transform
from mtl_perception.train.rare_class import RareClassSampler, class_pixel_counts, validate_rare_class_sampling


def _toy_counts() -> np.ndarray:
    """100 frames: class 0 everywhere, class 1 in 20 frames, class 2 in 3, class 3 below
    min_pixels in one, class 4 nowhere."""
    counts = np.zeros((100, 5), np.int64)
    counts[:, 0] = 1000
    counts[10:30, 1] = 200
    counts[[5, 50, 95], 2] = 100
    counts[7, 3] = 10
    return counts


def test_rarer_classes_are_drawn_more_often_and_only_from_frames_that_show_them():
    counts = _toy_counts()
    rare = RareClassSampler(counts, temperature=0.01, min_pixels=64)
    f = counts.sum(0) / counts.sum()
    expected = np.exp((1 - f[:3]) / 0.01 - (1 - f[:3]).max() / 0.01)
    assert np.allclose(rare.probability[:3], expected / expected.sum())
    assert rare.probability[3] == 0 and rare.probability[4] == 0  # too few pixels / never shown
    assert rare.probability[2] > rare.probability[1] > rare.probability[0]
    rng = np.random.default_rng(0)
    draws = [rare.draw(rng) for _ in range(2000)]
    for frame, c in draws:
        assert counts[frame, c] >= 64
    got = np.bincount([c for _, c in draws], minlength=5) / len(draws)
    assert np.allclose(got, rare.probability, atol=0.04)
    assert {frame for frame, c in draws if c == 2} == {5, 50, 95}
    summary = rare.summary(["a", "b", "c", "d", "e"])
    assert summary["c"]["frames"] == 3 and summary["d"]["frames"] == 0
    with pytest.raises(ValueError, match="min_pixels"):
        RareClassSampler(counts, min_pixels=10**6)
    only = RareClassSampler(counts, temperature=0.01, min_pixels=64, classes=[0, 1, 3])
    assert only.probability[2] == 0 and only.probability[1] > only.probability[0] > 0  # 3: too few pixels
    with pytest.raises(ValueError, match=r"classes \[3\]"):
        RareClassSampler(counts, min_pixels=64, classes=[3])


def _blob_sample() -> dict:
    """A 200x400 frame: class 0 everywhere but a 10x10 blob of class 7 in the bottom-right corner;
    the image is a coordinate ramp so a crop's place can be read back from its pixels."""
    h, w = 200, 400
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([yy % 256, xx % 256, (xx // 256) * 100], -1).astype(np.uint8)
    semseg = np.zeros((h, w), np.uint8)
    semseg[180:190, 380:390] = 7
    K = np.array([[300.0, 0, 200.0], [0, 300.0, 100.0], [0, 0, 1]], np.float32)
    return {"image": image, "semseg": semseg, "depth": np.full((h, w), 10.0, np.float32), "K": K}


def test_focused_crops_always_show_the_class_and_stay_aligned_with_K():
    crop = T.RandomScaleCrop(scale_range=(1.0, 1.0), crop=(64, 96))
    base = _blob_sample()
    focused = dict(base, **{T.FOCUS_CLASS: 7})
    shown_plain = 0
    for seed in range(40):
        out = crop(dict(focused), np.random.default_rng(seed))
        assert (out["semseg"] == 7).any()
        # K's principal point moved by exactly the crop offset: the pixels are the original's there
        x0 = int(round(base["K"][0, 2] - out["K"][0, 2]))
        y0 = int(round(base["K"][1, 2] - out["K"][1, 2]))
        assert np.array_equal(out["image"], base["image"][y0 : y0 + 64, x0 : x0 + 96])
        shown_plain += int((crop(dict(base), np.random.default_rng(seed))["semseg"] == 7).any())
    assert shown_plain < 10  # a 10x10 blob in a 200x400 frame: uniform crops mostly miss it
    # without the key the crop draws exactly as before the feature existed
    a = crop(dict(base), np.random.default_rng(3))
    b = crop(dict(base, **{T.FOCUS_CLASS: -1}), np.random.default_rng(3))
    assert np.array_equal(a["image"], b["image"])
    # a focus class the frame does not show falls back to a uniform crop
    assert crop(dict(base, **{T.FOCUS_CLASS: 5}), np.random.default_rng(3))["image"].shape == (64, 96, 3)
    box = T.RandomAspectLetterbox((64, 128), p=1.0, zoom_range=(0.3, 0.3))
    for seed in range(20):
        assert (box(dict(focused), np.random.default_rng(seed))["semseg"] == 7).any()


def test_the_sampler_mixes_the_fraction_and_resumes_exactly():
    counts = _toy_counts()
    rare = RareClassSampler(counts, temperature=0.01, min_pixels=64, fraction=0.5)

    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    items = take(ResumableShardedSampler(100, seed=3, rare=rare), 400)
    focused = [it for it in items if it[2] >= 0]
    assert 0.4 < len(focused) / len(items) < 0.6
    assert all(counts[i, c] >= 64 for i, _, c in focused)
    assert take(ResumableShardedSampler(100, seed=3, start=137, rare=rare), 50) == items[137:187]
    plain = take(ResumableShardedSampler(100, seed=3), 400)
    assert all(len(it) == 2 for it in plain)  # off: the stream of before, item for item
    assert all(it[:2] == p for it, p in zip(items, plain, strict=True) if it[2] < 0)
    # the dataset wrapper hands the class to the transform
    ds = AugmentedDataset(
        [_blob_sample()], build_transform({"scale_range": [1.0, 1.0]}, (64, 96)), [0.5] * 3, [0.5] * 3
    )
    assert all((ds[(0, seed, 7)]["semseg"] == 7).any() for seed in range(10))


def test_recipe_validation():
    assert load_train_config({"model": tiny_config("baseline")})["rare_class_sampling"] is None
    cfg = load_train_config({"model": tiny_config("baseline")}, ["rare_class_sampling={fraction: 0.25}"])
    assert cfg["rare_class_sampling"] == {"temperature": 0.01, "fraction": 0.25, "min_pixels": 64, "classes": None}
    named = validate_rare_class_sampling({"classes": ["rider", "person", 18, "rider"]})
    assert named["classes"] == [11, 12, 18]
    bad_specs = ("{fraction: 1.5}", "{temperature: 0}", "{min_pixels: 0.5}", "{mode: dacs}", "[1]")
    for bad in (*bad_specs, "{classes: [unicycle]}", "{classes: []}", "{classes: [-1]}"):
        with pytest.raises(ConfigError, match="rare_class_sampling"):
            load_train_config({"model": tiny_config("baseline")}, [f"rare_class_sampling={bad}"])
    assert validate_rare_class_sampling(False) is None


class _StripesWithARareBlob(StripesDataset):
    """The striped frames (classes 0-2), and a 12x12 blob of class 4 in frame 2 only."""

    def __getitem__(self, i: int) -> dict:
        sample = super().__getitem__(i)
        if i == 2:
            sample["semseg"][20:32, 50:62] = 4
        return sample


def test_the_trainer_draws_rare_classes_and_records_them(tmp_path):
    """A real Trainer: the census it takes, the class probabilities it records, a run that trains."""
    torch.set_num_threads(1)
    data = _StripesWithARareBlob(n=6)
    classes = tiny_config("baseline")["tasks"]["semseg"]["num_classes"]
    assert np.array_equal(class_pixel_counts(data, classes)[2, :5].nonzero()[0], [0, 1, 2, 4])
    cfg = tiny_train_config(rare_class_sampling={"fraction": 1.0, "min_pixels": 100})
    transform = build_transform({"scale_range": [1.0, 1.0]}, (32, 64))
    trainer = Trainer(cfg, tmp_path / "rcs", data, transform, device="cpu")
    try:
        drawn = list(itertools.islice(iter(trainer.loader.sampler), 30))
        assert all(item[0] == 2 and item[2] == 4 for item in drawn)  # fraction 1: the blob's frame and class
        trainer.train(progress=False)
    finally:
        trainer.close()
    recorded = json.loads((tmp_path / "rcs" / "config.json").read_text())["rare_class_sampling"]
    assert recorded["fraction"] == 1.0 and recorded["task"] == "semseg"
    by_class = list(recorded["census"].values())  # named by the 19 Cityscapes classes, in id order
    assert list(recorded["census"])[4] == "fence"
    assert by_class[4]["frames"] == 1  # 144 pixels in frame 2 only
    assert by_class[4]["probability"] == max(v["probability"] for v in by_class)
    assert (tmp_path / "rcs" / "model.safetensors").is_file()
