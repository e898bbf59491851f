"""``mtl-perception resize-input``: a checkpoint rebuilt for another network input size."""

from __future__ import annotations

import argparse
import json

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "resize-input",
        help="rebuild a checkpoint for another network input size (fewer pixels: faster)",
        description="Write a copy of a checkpoint whose network input is HEIGHT x WIDTH. Only the tensors defined "
        "on the input's grid change (the MLoRE routers' position weights, a ViT's position embedding), resampled "
        "as the model already does when it runs at another size, so the outputs are the original's at that size; "
        "export, engines and the node then run at the new size. The calibrated temperature is dropped: run "
        "`mtl-perception calibrate` on the result. Example: `mtl-perception resize-input --checkpoint "
        "model.safetensors --height 224 --width 448 --out model_224.safetensors`.",
    )
    p.add_argument("--checkpoint", required=True, help="training-form .safetensors checkpoint")
    p.add_argument("--height", type=int, required=True, help="new input height (a multiple of the backbone stride)")
    p.add_argument("--width", type=int, required=True, help="new input width (a multiple of the backbone stride)")
    p.add_argument("--out", required=True, help="where to write the new checkpoint")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from mtl_perception.model.checkpoint import load_checkpoint, save_checkpoint, tensors_sha256
    from mtl_perception.model.errors import CheckpointError
    from mtl_perception.model.retarget import retarget_input_size
    from mtl_perception.train.soup import STALE_METADATA

    try:
        model = load_checkpoint(args.checkpoint)
        new, resampled = retarget_input_size(model, args.height, args.width)
    except CheckpointError as exc:
        raise CLIError(str(exc)) from exc
    meta = dict(model.checkpoint_metadata)
    old_size = list(model.config["input_size"])
    # recomputed by save_checkpoint, or fitted to the old size's outputs
    for key in ("format", "config", "config_sha256", "dtype", *STALE_METADATA):
        meta.pop(key, None)
    meta["resized_from"] = json.dumps(
        {"input_size": old_size, "tensors_sha256": tensors_sha256(args.checkpoint), "resampled": resampled}
    )
    dtype = torch.float16 if model.checkpoint_metadata.get("dtype") == "float16" else torch.float32
    save_checkpoint(new, args.out, extra_metadata=meta, dtype=dtype)
    summary = {
        "out": str(args.out),
        "input_size": [args.height, args.width],
        "from_input_size": old_size,
        "resampled": resampled,
        "dropped_metadata": [k for k in STALE_METADATA if k in model.checkpoint_metadata],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {args.out}: input {args.height}x{args.width} (was {old_size[0]}x{old_size[1]}), "
            f"{len(resampled)} grid-bound tensor(s) resampled"
        )
        if summary["dropped_metadata"]:
            print(f"  dropped {', '.join(summary['dropped_metadata'])}: run `mtl-perception calibrate` on the result")
    return 0
