"""Training: schedule, a two-process DDP run (gloo, CPU), checkpoints and exact resume."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mtl_perception.train import lr_multiplier

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # torchrun's rendezvous leaves a torchelastic_* folder in TMPDIR: keep it beside the run's outputs
    env["TMPDIR"] = str(Path(args[0]).parent)
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            str(WORKER),
            *args,
        ]
    else:
        cmd = [sys.executable, str(WORKER), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def test_lr_schedule_warmup_then_decay():
    sched = {"type": "poly", "power": 0.9, "warmup_steps": 10, "warmup_ratio": 0.1}
    assert lr_multiplier(0, 100, sched) == pytest.approx(0.1)
    assert lr_multiplier(5, 100, sched) == pytest.approx(0.55)
    assert lr_multiplier(10, 100, sched) == pytest.approx(1.0)
    assert lr_multiplier(100, 100, sched) == pytest.approx(0.0)
    cos = {"type": "cosine", "warmup_steps": 0}
    assert lr_multiplier(50, 100, cos) == pytest.approx(0.5)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_two_process_ddp_and_resume_are_exact(tmp_path):
    """2 gloo processes train 4 steps straight, and 2 + resume 2; the weights must agree."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    res = _run([str(straight), "4"], nproc=2)
    assert "DONE 4 2" in res.stdout
    _run([str(resumed), "2"], nproc=2)
    assert (resumed / "checkpoints" / "step_0000002.state.pt").is_file()
    res = _run([str(resumed), "4", "--resume"], nproc=2)
    assert "DONE 4 2" in res.stdout
    a, b = _weights(straight / "model.safetensors"), _weights(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-6, worst
    # The run actually trained: weights moved from the initial checkpoint-free start.
    first = _weights(resumed / "checkpoints" / "step_0000002.safetensors")
    assert any(not torch.equal(first[k], b[k]) for k in b)
    rows = list(csv.DictReader(open(resumed / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["loss"]) > 0 for r in rows)


def test_single_process_loss_decreases(tmp_path):
    _run([str(tmp_path), "12", "--checkpoint-every", "100"])
    rows = list(csv.DictReader(open(tmp_path / "train_log.csv")))
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    cmd = [sys.executable, str(WORKER), str(tmp_path), "2", "--resume"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "no checkpoint under" in res.stderr


def _donor_and_model(tmp_path, decoder: str):
    """A tiny mlore donor saved as a checkpoint, and a differently initialised tiny ``decoder`` model
    with a copy of its own starting tensors: (donor, checkpoint, model, before)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_models import tiny_config

    from mtl_perception.model import build_model, save_checkpoint

    torch.manual_seed(0)
    donor = build_model(tiny_config("mlore"))
    ckpt = save_checkpoint(donor, tmp_path / "mlore.safetensors")
    torch.manual_seed(1)
    model = build_model(tiny_config(decoder))
    return donor, ckpt, model, {k: v.clone() for k, v in model.state_dict().items()}


def test_warm_start_copies_matching_tensors_only(tmp_path):
    """init_from: every tensor of the same name and shape comes from the checkpoint (the backbone
    of a trained mlore model into a baseline model); the rest keeps its initialisation."""
    from mtl_perception.model.errors import CheckpointError
    from mtl_perception.train.trainer import warm_start

    donor, ckpt, model, before = _donor_and_model(tmp_path, "baseline")
    info = warm_start(model, ckpt)
    own, src = model.state_dict(), donor.state_dict()
    copied = [k for k in own if k in src and src[k].shape == own[k].shape]
    assert info["tensors_copied"] == len(copied) > 0 and 0 < info["fraction_of_values"] < 1
    assert all(torch.equal(own[k], src[k]) for k in copied)
    kept = [k for k in own if k not in src]
    assert kept and all(torch.equal(own[k], before[k]) for k in kept)
    assert any(k.startswith("backbone.") for k in copied)
    with pytest.raises(CheckpointError, match="not found"):
        warm_start(model, tmp_path / "missing.safetensors")


def test_warm_start_exclude_keeps_the_models_own_backbone(tmp_path):
    """init_exclude: [backbone.] copies the donor's decoder and heads but none of its backbone,
    even where shapes match (a trained decoder on a fresh ImageNet backbone, docs section 27);
    the recipe refuses a malformed list or one without init_from, in one line."""
    from mtl_perception.model.errors import ConfigError
    from mtl_perception.train.config import load_train_config
    from mtl_perception.train.trainer import warm_start

    donor, ckpt, model, before = _donor_and_model(tmp_path, "mlore")
    info = warm_start(model, ckpt, exclude=["backbone."])
    own, src = model.state_dict(), donor.state_dict()
    backbone = [k for k in own if k.startswith("backbone.")]
    rest = [k for k in own if not k.startswith("backbone.")]
    assert backbone and rest and info["excluded"] == len(backbone)
    assert all(torch.equal(own[k], before[k]) for k in backbone)
    assert any(not torch.equal(before[k], src[k]) for k in backbone if before[k].is_floating_point())
    assert all(torch.equal(own[k], src[k]) for k in rest)
    assert info["tensors_copied"] == len(rest)

    base = {"model": "../models/mlore.yaml", "data": {"train": {"type": "synthetic", "root": "x"}}, "steps": 2}
    cfg = load_train_config({**base, "init_from": str(ckpt), "init_exclude": ["backbone."]})
    assert cfg["init_exclude"] == ["backbone."]
    with pytest.raises(ConfigError, match="init_exclude must be a list"):
        load_train_config({**base, "init_from": str(ckpt), "init_exclude": "backbone."})
    with pytest.raises(ConfigError, match="give init_from"):
        load_train_config({**base, "init_exclude": ["backbone."]})


def test_crop_size_must_suit_the_backbone_stride():
    """A crop that is not a multiple of the backbone's stride is refused when the recipe loads, naming the
    key and a size that works (it used to stop the run at its first forward pass with a tensor-size
    mismatch in the decoder: docs/sim2real.md, section 32); every shipped recipe passes."""
    from pathlib import Path

    from mtl_perception.model.errors import ConfigError
    from mtl_perception.train.config import load_train_config

    root = Path(__file__).resolve().parents[1]
    models = root / "config" / "models"
    data = {"train": {"type": "synthetic", "root": "x"}}
    cnn = {"model": str(models / "mlore_lite0.yaml"), "data": data, "steps": 2}
    vit = {**cnn, "model": str(models / "mlore.yaml")}
    with pytest.raises(ConfigError, match=r"crop_size .*multiples of 32.*\[224, 336\] \(e.g. \[224, 320\]\)"):
        load_train_config({**cnn, "data": {**cnn["data"], "augment": {"crop_size": [224, 336]}}})
    with pytest.raises(ConfigError, match="crop_size"):
        load_train_config({**cnn, "data": {**cnn["data"], "augment": {"crop_size": [224]}}})
    assert load_train_config({**cnn, "data": {**cnn["data"], "augment": {"crop_size": [224, 352]}}})
    assert load_train_config({**vit, "data": {**vit["data"], "augment": {"crop_size": [224, 336]}}})  # 16 | 336
    recipes = sorted((root / "config" / "train").glob("*.yaml"))
    assert len(recipes) > 5
    for recipe in recipes:
        if recipe.name in ("ablation.yaml", "sim2real_ablation.yaml"):  # ablation plans, not train recipes
            continue
        load_train_config(recipe)


def test_init_seed_gives_runs_of_other_seeds_the_same_start(tmp_path):
    """init_seed draws the tensors init_from does not provide: two runs with seeds 0 and 1 and one
    init_seed start bit-identical (a soup of them is one basin), and everything drawn after the start
    follows seed; with seed alone those tensors differ (docs/sim2real.md section 57: the soup of two such
    runs was broken). A non-integer is refused."""
    from ddp_worker import StripesDataset, identity
    from tiny_models import tiny_config

    from mtl_perception.model.errors import ConfigError
    from mtl_perception.train import Trainer, load_train_config

    _, ckpt, _, _ = _donor_and_model(tmp_path, "mlore")  # a trained mlore model: the donor of the backbone

    def start(seed: int, init_seed: int | None) -> dict[str, torch.Tensor]:
        cfg = load_train_config(
            {
                "model": tiny_config("baseline"),  # its decoder is not in the donor: drawn at random
                "init_from": str(ckpt),
                "data": {"train": {"type": "memory"}, "num_workers": 0},
                "steps": 1,
                "seed": seed,
                "init_seed": init_seed,
            }
        )
        trainer = Trainer(cfg, tmp_path / f"run_{seed}_{init_seed}", StripesDataset(4), identity, device="cpu")
        try:
            assert torch.initial_seed() == seed  # every draw after the start follows seed, whatever init_seed
            return {k: v.clone() for k, v in trainer.model.state_dict().items()}
        finally:
            trainer.close()

    a, b = start(0, 7), start(1, 7)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c, d = start(0, None), start(1, None)
    drawn = [k for k in c if c[k].is_floating_point() and not torch.equal(c[k], d[k])]
    assert drawn and not any(k.startswith("backbone.") for k in drawn), drawn  # the donor's backbone in both
    e = start(0, 0)  # init_seed defaults to seed
    assert all(torch.equal(c[k], e[k]) for k in c)
    with pytest.raises(ConfigError, match="init_seed must be an integer"):
        load_train_config({"model": tiny_config("baseline"), "data": {"train": {"type": "memory"}}, "init_seed": "0"})
