"""Tiny model configs for fast tests (a 4-block, 64-dim ViT at 64x128 input)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY_BACKBONE = {"name": "vit_small_patch16_224", "kwargs": {"depth": 4, "embed_dim": 64, "num_heads": 2}}


def tiny_config(decoder: str = "mlore", channels: int = 32, **decoder_overrides) -> dict:
    """The shipped config for ``decoder`` shrunk to test size (same decoder keys)."""
    cfg = yaml.safe_load((ROOT / "config" / "models" / f"{decoder}.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["input_size"] = [64, 128]
    cfg["backbone"] = dict(TINY_BACKBONE)
    cfg["decoder"]["channels"] = channels
    if decoder == "mlore":
        cfg["decoder"]["rank_range"] = [4, 16]
        cfg["decoder"]["specific_rank"] = 8
    cfg["decoder"].update(decoder_overrides)
    return cfg


def tiny_train_config(**recipe) -> dict:
    """A validated train recipe for two steps of the tiny baseline on in-memory frames (the caller
    passes the dataset to ``Trainer``); ``recipe`` adds or overrides keys."""
    from mtl_perception.train import load_train_config

    base = {
        "model": tiny_config("baseline"),
        "data": {"train": {"type": "memory"}, "num_workers": 0},
        "steps": 2,
        "batch_size": 2,
        "checkpoint_every": 100,
        "log_every": 1,
    }
    return load_train_config({**base, **recipe})


def randomize_bn_(model) -> None:
    """Non-trivial BatchNorm statistics/affine so BN folding is actually exercised."""
    import torch

    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def standardize_depth_head_(model, x) -> None:
    """Rescale the random depth head so its logits are ~N(0, 1) on ``x``.

    A randomly initialised head gives near-constant logits, hence a depth map with a std of
    millimetres, on which "error relative to the output's std" only measures float32 rounding
    of the absolute value. Standardised logits give depth maps that span metres, as a trained
    model does; the weights stay random.
    """
    import torch

    out = model.heads["depth"].out
    captured = {}
    handle = out.register_forward_hook(lambda m, i, o: captured.__setitem__("y", o.detach()))
    with torch.no_grad():
        model.eval()(x)
        handle.remove()
        mean, std = captured["y"].mean(), captured["y"].std()
        out.weight.div_(std)
        out.bias.sub_(mean).div_(std)


TINY_CNN_BACKBONE = {"name": "efficientnet_lite0", "pretrained": None, "freeze_bn": False, "drop_path_rate": 0.0}


def tiny_cnn_config(decoder: str = "mlore", channels: int = 16, **decoder_overrides) -> dict:
    """The shipped EfficientNet-Lite0 config for ``decoder`` at test size (random weights, 64x128,
    letterboxing and canonical-camera depth as shipped)."""
    cfg = yaml.safe_load((ROOT / "config" / "models" / f"{decoder}_lite0.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    cfg["input_size"] = [64, 128]
    cfg["backbone"] = dict(TINY_CNN_BACKBONE)
    cfg["decoder"]["channels"] = channels
    cfg["head"] = {"channels": 16}
    if decoder == "mlore":
        cfg["decoder"]["rank_range"] = [4, 8]
        cfg["decoder"]["specific_rank"] = 4
    cfg["decoder"].update(decoder_overrides)
    return cfg


def tiny_letterbox_engine(decoder: str = "mlore"):
    """A real torch engine of :func:`tiny_cnn_config` (seed 0): letterboxing, canonical-camera depth,
    for tests that patch ``engine.infer`` with a known street and check everything after the network."""
    import tempfile

    import torch

    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.model import build_model, save_checkpoint

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ck = save_checkpoint(build_model(tiny_cnn_config(decoder)), Path(tmp) / "m.safetensors")
        return InferenceEngine.create(ck, backend="torch", device="cpu", threads=1)


def one_hot_logits(labels, num_classes: int):
    """(1, K, H, W) float32 logits whose argmax is ``labels`` (5 for the label, -5 elsewhere)."""
    import numpy as np

    logits = np.full((1, num_classes, *labels.shape), -5.0, np.float32)
    np.put_along_axis(logits, labels[None, None].astype(np.int64), 5.0, axis=1)
    return logits
