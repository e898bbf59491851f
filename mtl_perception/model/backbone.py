"""ViT backbone (any timm ViT) returning 4 evenly spaced block outputs at 1/16 resolution.

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

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from mtl_perception.model.errors import ConfigError


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
        if not name.startswith(("vit_", "deit_", "eva")):
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
