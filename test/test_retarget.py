"""``mtl-perception resize-input`` (model/retarget.py): a checkpoint rebuilt for another input size."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tiny_models import randomize_bn_, tiny_config

from mtl_perception.model import build_model, load_checkpoint, save_checkpoint
from mtl_perception.model.errors import CheckpointError
from mtl_perception.model.retarget import retarget_input_size


def _model(decoder: str = "mlore", **cfg_over):
    torch.manual_seed(0)
    cfg = tiny_config(decoder)
    cfg.update(cfg_over)
    model = build_model(cfg, load_pretrained=False)
    randomize_bn_(model)
    return model.eval()


@pytest.mark.parametrize("decoder", ["mlore", "baseline"])
def test_outputs_are_the_originals_at_the_new_size(decoder):
    """The rebuilt model at 48x96 gives what the original gives when run at 48x96 (the ViT's position
    embedding and the MLoRE routers' position weights resampled once instead of on every forward)."""
    model = _model(decoder)
    new, resampled = retarget_input_size(model, 48, 96)
    assert new.config["input_size"] == [48, 96] and model.config["input_size"] == [64, 128]
    assert "backbone.vit.pos_embed" in resampled
    routers = [k for k in resampled if k.endswith(".pos_weight")]
    assert (len(routers) > 0) == (decoder == "mlore")
    assert all(new.state_dict()[k].numel() == 3 * 6 for k in routers)  # the 1/16 grid of 48x96
    # every other tensor is the original's, bit for bit
    for k, t in new.state_dict().items():
        if k not in resampled:
            assert torch.equal(t, model.state_dict()[k]), k
    x = torch.randn(2, 3, 48, 96)
    with torch.no_grad():
        want, got = model(x), new(x)
    assert set(want) == set(got)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-5)
    # and the original's own size still maps back exactly: no drift in a round trip to the same size
    same, none = retarget_input_size(model, 64, 128)
    assert none == []


def test_sizes_the_backbone_cannot_take_are_errors():
    model = _model()
    with pytest.raises(CheckpointError, match="multiples of 16"):
        retarget_input_size(model, 40, 96)
    with pytest.raises(CheckpointError, match="multiples of 16"):
        retarget_input_size(model, 0, 96)


def test_cli_writes_a_loadable_checkpoint_with_provenance(tmp_path):
    src = save_checkpoint(
        _model(), tmp_path / "m.safetensors", extra_metadata={"semseg_temperature": "0.9", "step": "7"}
    )
    out = tmp_path / "m48.safetensors"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mtl_perception.cli",
            "resize-input",
            "--checkpoint",
            str(src),
            "--height",
            "48",
            "--width",
            "96",
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert summary["input_size"] == [48, 96] and summary["from_input_size"] == [64, 128]
    assert summary["dropped_metadata"] == ["semseg_temperature"]
    loaded = load_checkpoint(out)
    assert loaded.input_size == (48, 96)
    meta = loaded.checkpoint_metadata
    assert "semseg_temperature" not in meta and meta["step"] == "7"
    prov = json.loads(meta["resized_from"])
    assert prov["input_size"] == [64, 128] and len(prov["tensors_sha256"]) == 64
    assert prov["resampled"] == summary["resampled"] and "backbone.vit.pos_embed" in prov["resampled"]
