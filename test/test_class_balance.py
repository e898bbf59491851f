"""Class-balanced semantic loss: the weights, the label census, the loss, the recipe and the trainer."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ddp_worker import StripesDataset, identity
from tiny_models import tiny_config, tiny_train_config

from mtl_perception.model.checkpoint import read_metadata
from mtl_perception.model.errors import ConfigError
from mtl_perception.model.tasks import build_tasks
from mtl_perception.train import Trainer, load_train_config
from mtl_perception.train.class_balance import balanced_weights, label_frequencies, validate_class_balance


def test_weights_rise_as_classes_get_rarer_and_keep_a_mean_of_one():
    freq = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    w = balanced_weights(freq, power=0.5, max_weight=100.0, min_weight=0.01)
    assert np.all(np.diff(w[:4]) > 0)  # rarer -> heavier
    assert float((freq * w).sum()) == pytest.approx(1.0)  # a pixel's average weight stays 1
    assert w[1] / w[0] == pytest.approx(np.sqrt(0.5 / 0.3))  # inverse square root
    assert w[4] == 1.0  # never seen: never a target; 1 for the record
    full = balanced_weights(freq, power=1.0, max_weight=100.0, min_weight=0.01)
    assert full[3] / full[0] == pytest.approx(10.0)
    assert np.allclose(balanced_weights(freq, power=0.0), [1, 1, 1, 1, 1])
    clipped = balanced_weights(np.array([0.999, 0.001]), power=1.0, max_weight=10.0, min_weight=0.6)
    assert clipped.tolist() == [0.6, 10.0]  # 0.5005 and 500 before clipping


def test_label_census_counts_sampled_frames_and_skips_ignored_ids():
    class Frames:
        def __init__(self) -> None:
            self.read: list[int] = []

        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> dict:
            self.read.append(i)
            labels = np.full((2, 5), i % 2, np.uint8)  # even frames all class 0, odd frames all class 1
            labels[0, 0] = 255  # ignore
            labels[1, 0] = 7  # beyond num_classes: not counted
            return {"semseg": labels}

    frames = Frames()
    freq = label_frequencies(frames, num_classes=3, frames=4)
    assert frames.read == [0, 3, 6, 9]  # spread from the first frame to the last
    assert freq.tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert label_frequencies(Frames(), 3, frames=100).sum() == pytest.approx(1.0)  # more than it has: all


def test_weighted_semseg_loss_is_the_weight_normalised_mean():
    spec = build_tasks({"semseg": {"num_classes": 3}})["semseg"]
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0, :] = 255
    plain = spec.loss(logits, target)
    assert torch.allclose(spec.loss(logits, target, class_weight=torch.ones(3)), plain)
    w = torch.tensor([0.5, 1.0, 8.0])
    nll = F.cross_entropy(logits, target.clamp_max(2), reduction="none")
    valid = target != 255
    wy = w[target.clamp_max(2)] * valid
    expected = (wy * nll).sum() / wy.sum()
    assert torch.allclose(spec.loss(logits, target, class_weight=w), expected)
    assert not torch.allclose(expected, plain)


@pytest.mark.parametrize(
    "value, message",
    [
        ("3", "must be a mapping"),
        ("{pow: 1}", "unknown key"),
        ("{max_weight: 0.5}", "min_weight <= 1 <= max_weight"),
        ("{power: -1}", "power must be a number >= 0"),
        ("{frames: 0}", "frames must be a positive integer"),
        ("{weights: [1, -1]}", "numbers > 0"),
        ("{weights: [1, 2], power: 1}", "not both"),
    ],
)
def test_recipe_errors_name_the_problem(value, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config({"model": tiny_config("baseline")}, [f"class_balance={value}"])


def test_recipe_defaults_and_off():
    assert load_train_config({"model": tiny_config("baseline")})["class_balance"] is None
    cfg = load_train_config({"model": tiny_config("baseline")}, ["class_balance={power: 1.0}"])
    assert cfg["class_balance"] == {"power": 1.0, "max_weight": 10.0, "min_weight": 0.1, "frames": 200}
    assert validate_class_balance({"weights": [1, 2.5]}) == {"weights": [1.0, 2.5]}


def test_trainer_weights_the_semantic_loss_by_the_training_sets_frequencies(tmp_path):
    """A real Trainer on the striped frames: the census it takes, the weights it records in
    config.json and passes to the loss, and a loss different from the plain run's."""
    torch.set_num_threads(1)
    data = StripesDataset(n=6)
    classes = tiny_config("baseline")["tasks"]["semseg"]["num_classes"]
    trainer = Trainer(tiny_train_config(class_balance={"power": 0.5}), tmp_path / "cb", data, identity, device="cpu")
    try:
        expected = balanced_weights(label_frequencies(data, classes, 200))
        got = trainer.class_balance["semseg"]
        assert np.allclose(got["weights"], expected, atol=1e-4)
        assert sum(f > 0 for f in got["frequency"]) == 3  # the stripes' three classes
        assert torch.allclose(trainer.class_weights["semseg"], torch.tensor(got["weights"]))
        trainer.train(progress=False)
    finally:
        trainer.close()
    recorded = json.loads((tmp_path / "cb" / "config.json").read_text())["class_balance"]
    assert recorded["semseg"]["weights"] == got["weights"]
    # and in the checkpoint, for `logit-adjust` and `average`
    assert json.loads(read_metadata(tmp_path / "cb" / "model.safetensors")["class_balance"]) == recorded

    plain = Trainer(tiny_train_config(class_balance=None), tmp_path / "plain", data, identity, device="cpu")
    try:
        assert plain.class_weights == {}
        plain.train(progress=False)
    finally:
        plain.close()
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["class_balance"] is None
    assert "class_balance" not in read_metadata(tmp_path / "plain" / "model.safetensors")
    seg = [
        json.loads(next(csv.DictReader(open(tmp_path / d / "train_log.csv")))["parts_json"])["semseg"]
        for d in ("cb", "plain")
    ]
    assert seg[0] != pytest.approx(seg[1], rel=1e-4)  # same weights and batch at step 1, other loss


def test_explicit_weights_must_match_the_class_count(tmp_path):
    with pytest.raises(ConfigError, match="has 2 entries but task 'semseg' has"):
        cfg = tiny_train_config(class_balance={"weights": [1, 2]})
        Trainer(cfg, tmp_path / "x", StripesDataset(n=2), identity, device="cpu")
