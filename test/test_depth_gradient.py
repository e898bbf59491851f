"""Log-depth gradient matching: the recipe section, the loss's invariances, what it trains, and a real
Trainer that logs and records it."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from ddp_worker import StripesDataset, identity
from tiny_models import tiny_config

from mtl_perception.model.errors import ConfigError
from mtl_perception.train import Trainer, load_train_config
from mtl_perception.train.depth_gradient import log_depth_gradient_loss, validate_depth_gradient_loss


@pytest.mark.parametrize(
    "value, message",
    [
        ("yes", "must be a mapping"),
        ({"weight": 0}, "weight must be a number > 0"),
        ({"weight": True}, "weight must be a number > 0"),
        ({"scales": 0}, "scales must be an integer in 1..6"),
        ({"scales": 2.0}, "scales must be an integer in 1..6"),
        ({"levels": 2}, "unknown key"),
    ],
)
def test_recipe_errors_name_the_problem(value, message):
    with pytest.raises(ConfigError, match=message):
        validate_depth_gradient_loss(value)


def test_recipe_defaults_and_off():
    assert validate_depth_gradient_loss(None) is None
    assert validate_depth_gradient_loss({}) == {"weight": 0.5, "scales": 4}
    cfg = load_train_config({"model": tiny_config("baseline"), "depth_gradient_loss": {"weight": 1}})
    assert cfg["depth_gradient_loss"] == {"weight": 1.0, "scales": 4}
    assert load_train_config({"model": tiny_config("baseline")})["depth_gradient_loss"] is None


def _scene(seed: int = 0) -> torch.Tensor:
    """(2,1,32,48) depths: a ramp with a near box in front, 0 (invalid, like sky) in the top rows."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.linspace(40.0, 3.0, 32).view(1, 1, 32, 1).expand(2, 1, 32, 48).clone()
    rows[:, :, 10:20, 15:30] = 6.0 + torch.rand(2, 1, 10, 15, generator=g)
    rows[:, :, :4] = 0.0
    return rows


def test_zero_for_any_scale_and_blind_to_invalid_pixels():
    target = _scene()
    assert float(log_depth_gradient_loss(target * 2.7, target)) < 1e-6
    assert float(log_depth_gradient_loss(target * 0.4, target, scales=1)) < 1e-6
    # what the prediction says where the target is invalid does not matter
    pred = target * 2.7
    pred[:, :, :4] = torch.rand(2, 1, 4, 48) * 100 + 0.5
    assert float(log_depth_gradient_loss(pred, target)) < 1e-6
    # a wrong shape is seen: the box flattened into the ramp behind it
    flat = target.clone()
    flat[:, :, 10:20, 15:30] = target[:, :, 10:20, 14:15]
    assert float(log_depth_gradient_loss(flat, target)) > 0.01
    with pytest.raises(ValueError, match="one shape"):
        log_depth_gradient_loss(target[:, :, :16], target)


def test_it_trains_shape_up_to_one_scale():
    """A free log-depth field fitted with the gradient term alone: it takes the target's shape (the
    log ratio to the target becomes one constant) and nothing pins its scale."""
    target = _scene(1)
    valid = target > 0
    log_pred = torch.zeros_like(target, requires_grad=True)
    opt = torch.optim.Adam([log_pred], lr=0.05)
    spread = []
    for _ in range(400):
        opt.zero_grad()
        loss = log_depth_gradient_loss(log_pred.exp(), target, scales=3)
        loss.backward()
        opt.step()
        with torch.no_grad():
            ratio = (log_pred - torch.log(target.clamp_min(1e-6)))[valid]
            spread.append(float(ratio.std()))
    assert spread[-1] < 0.2 * spread[0]
    with torch.no_grad():
        scale = float((log_pred - torch.log(target.clamp_min(1e-6)))[valid].mean().exp())
    assert not 0.95 < scale < 1.05  # shape learned; the metric scale is the per-pixel loss's job


def test_trainer_logs_and_records_the_term(tmp_path):
    """A real Trainer with the term: it is logged per step (weighted) and recorded with the run's
    config; a run without it logs no such part."""
    torch.set_num_threads(2)
    data = StripesDataset(n=4)
    logs = {}
    for name, spec in (("shaped", {"weight": 2.0, "scales": 2}), ("plain", None)):
        cfg = load_train_config(
            {
                "model": tiny_config("baseline"),
                "data": {"train": {"type": "memory"}, "num_workers": 0},
                "steps": 3,
                "batch_size": 2,
                "optim": {"lr": 0.003},
                "schedule": {"type": "constant", "warmup_steps": 0},
                "checkpoint_every": 100,
                "log_every": 1,
                "depth_gradient_loss": spec,
            }
        )
        trainer = Trainer(cfg, tmp_path / name, data, identity, device="cpu")
        try:
            trainer.train(progress=False)
        finally:
            trainer.close()
        logs[name] = [json.loads(r["parts_json"]) for r in csv.DictReader(open(tmp_path / name / "train_log.csv"))]
    assert len(logs["shaped"]) == 3
    assert all(p["depth_gradient"] > 0 for p in logs["shaped"])
    assert all("depth_gradient" not in p for p in logs["plain"])
    recorded = json.loads((tmp_path / "shaped" / "config.json").read_text())["train"]["depth_gradient_loss"]
    assert recorded == {"weight": 2.0, "scales": 2}
