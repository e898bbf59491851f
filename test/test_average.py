"""``mtl-perception average`` (train/soup.py): the weighted mean of checkpoints of one model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from tiny_models import tiny_config

from mtl_perception.model import build_model, load_checkpoint, save_checkpoint
from mtl_perception.model.errors import CheckpointError
from mtl_perception.train.soup import average_checkpoints


def _ckpt(path, seed, channels=32, **meta):
    torch.manual_seed(seed)
    model = build_model(tiny_config("mlore", channels=channels))
    for m in model.modules():  # give the BatchNorm buffers distinct values too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.num_batches_tracked.fill_(seed)
    return save_checkpoint(model, path, extra_metadata=meta)


def _tensors(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_weighted_mean_of_every_float_tensor_with_provenance(tmp_path):
    a = _ckpt(tmp_path / "a.safetensors", 1, step="700", semseg_temperature="0.9")
    b = _ckpt(tmp_path / "b.safetensors", 2, step="2400")
    out = tmp_path / "soup.safetensors"
    summary = average_checkpoints([a, b], out, [0.25, 0.75])
    ta, _ = _tensors(a)
    tb, _ = _tensors(b)
    to, meta = _tensors(out)
    assert set(to) == set(ta)
    floats = [k for k in ta if ta[k].is_floating_point()]
    assert summary["averaged_tensors"] == len(floats) > 50
    for k, t in to.items():
        if t.is_floating_point():
            torch.testing.assert_close(t, 0.25 * ta[k] + 0.75 * tb[k], rtol=1e-6, atol=1e-6)
            assert not torch.equal(t, ta[k]) or torch.equal(ta[k], tb[k])
        else:
            assert torch.equal(t, ta[k])  # integer buffers are the first's
    sources = json.loads(meta["averaged_from"])
    assert [s["weight"] for s in sources] == [0.25, 0.75] and [s["step"] for s in sources] == ["700", "2400"]
    assert all(len(s["sha256"]) == 64 for s in sources)
    assert "semseg_temperature" not in meta and summary["dropped_metadata"] == ["semseg_temperature"]
    model = load_checkpoint(out)  # a loadable checkpoint of the first's architecture
    assert model.config == load_checkpoint(a).config


def test_mismatched_models_and_bad_weights_are_clear_errors(tmp_path):
    a = _ckpt(tmp_path / "a.safetensors", 1)
    other = _ckpt(tmp_path / "wide.safetensors", 1, channels=48)
    with pytest.raises(CheckpointError, match="not the same architecture"):
        average_checkpoints([a, other], tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="sum to 1"):
        average_checkpoints([a, a], tmp_path / "x.safetensors", [0.7, 0.7])
    with pytest.raises(CheckpointError, match="one weight per checkpoint"):
        average_checkpoints([a, a], tmp_path / "x.safetensors", [1.0])
    with pytest.raises(CheckpointError, match="not found"):
        average_checkpoints([a, tmp_path / "nope.safetensors"], tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_cli_writes_the_soup_and_fails_in_one_line(tmp_path):
    a = _ckpt(tmp_path / "a.safetensors", 1)
    b = _ckpt(tmp_path / "b.safetensors", 2)
    out = tmp_path / "soup.safetensors"
    cli = [sys.executable, "-m", "mtl_perception.cli", "average"]
    res = subprocess.run([*cli, str(a), str(b), "--out", str(out), "--json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["out"] == str(out) and out.is_file()
    res = subprocess.run(
        [*cli, str(a), str(b), "--weights", "0.7", "0.7", "--out", str(out)], capture_output=True, text=True
    )
    assert res.returncode == 2 and "sum to 1" in res.stderr and len(res.stderr.strip().splitlines()) == 1
