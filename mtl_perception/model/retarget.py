"""A checkpoint rebuilt for another network input size (``mtl-perception resize-input``).

Every weight of these networks is size-free except the ones defined on the input's grid: the MLoRE
routers' position weights (one per cell of the 1/16 grid) and a ViT's absolute position embedding
(one per patch). A model run at another size already resamples them on every forward pass
(``MLoReRouter.position_weights``: bilinear, total weight kept; timm's ``dynamic_img_size``:
``resample_abs_pos_embed``); this stores the resampled tensors under a config whose ``input_size``
is the new one, so the exported graph, the engine cache and the node's ``input_size`` check all name
the size that runs. The network's outputs at the new size are the ones the original gives at that
size (``test/test_retarget.py``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from mtl_perception.model.config import check_input_size
from mtl_perception.model.errors import CheckpointError


def retarget_input_size(model: nn.Module, height: int, width: int) -> tuple[nn.Module, list[str]]:
    """A new training-form model for ``height`` x ``width`` with ``model``'s weights; the names of the
    tensors that were resampled to the new grid. Raises ``CheckpointError`` for a size the backbone
    cannot take or a size-bound tensor this module does not know how to resample."""
    from mtl_perception.model import build_model
    from mtl_perception.model.decoders.mlore import MLoReRouter

    if getattr(model, "deployed", False):
        raise CheckpointError("retarget the training-form model (load_checkpoint), not the output of deploy()")
    bad = check_input_size(model.config, height, width)
    if bad:
        raise CheckpointError(bad)
    cfg: dict[str, Any] = copy.deepcopy(model.config)
    cfg["input_size"] = [int(height), int(width)]
    new = build_model(cfg, load_pretrained=False)
    own, original = new.state_dict(), model.state_dict()
    state = {k: v.detach().clone() for k, v in original.items()}
    resampled = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, MLoReRouter):
                key = f"{name}.pos_weight"
                gh, gw = new.get_submodule(name).grid
                state[key] = module.position_weights(gh, gw).detach().clone()
        pos = "backbone.vit.pos_embed"
        if pos in state and pos in own and state[pos].shape != own[pos].shape:
            from timm.layers import resample_abs_pos_embed

            vit = new.backbone.vit
            n_prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
            # as timm's dynamic_img_size does on every forward at another size
            state[pos] = resample_abs_pos_embed(
                state[pos],
                new_size=vit.patch_embed.grid_size,
                old_size=model.backbone.vit.patch_embed.grid_size,
                num_prefix_tokens=n_prefix,
            )
    for key, tensor in state.items():
        if key not in own:
            raise CheckpointError(f"tensor {key!r} has no place in the model rebuilt at {height}x{width}")
        if tensor.shape != own[key].shape:
            raise CheckpointError(
                f"tensor {key!r} is bound to the input grid ({tuple(tensor.shape)} -> {tuple(own[key].shape)}) and "
                "this version cannot resample it; run the model at its own input size"
            )
        if not torch.equal(tensor, original[key]):
            resampled.append(key)
    new.load_state_dict(state)
    return new.eval(), resampled
