"""``mtl-perception model-info``: the model card (parameters and GFLOPs, train and deploy forms)."""

from __future__ import annotations

import argparse
import json

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "model-info",
        help="parameters and GFLOPs of a model config (train and deploy forms)",
        description="Print total/backbone/decoder/head parameters and GFLOPs of a model, for the "
        "training form and the re-parameterized deploy form. FLOPs are counted by torch's "
        "FlopCounterMode (2 FLOPs per multiply-add).",
    )
    p.add_argument("--config", required=True, help="model config YAML, e.g. config/models/mlore.yaml")
    p.add_argument("--deploy", action="store_true", help="report the deploy form only")
    p.add_argument("--height", type=int, default=None, help="input height (default: config input_size)")
    p.add_argument("--width", type=int, default=None, help="input width (default: config input_size)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=run)


def model_card(config: str, height: int | None = None, width: int | None = None, forms=("train", "deploy")) -> dict:
    import torch

    from mtl_perception.model import ConfigError, build_model, deploy
    from mtl_perception.model.complexity import count_flops, count_params
    from mtl_perception.model.config import check_input_size

    try:
        model = build_model(config).eval()
    except ConfigError as exc:
        raise CLIError(str(exc)) from exc
    h = height or model.config["input_size"][0]
    w = width or model.config["input_size"][1]
    bad_size = check_input_size(model.config, h, w)
    if bad_size:
        raise CLIError(bad_size)
    torch.manual_seed(0)
    card = {
        "config": str(config),
        "name": model.config["name"],
        "decoder": model.config["decoder"]["type"],
        "official": bool(getattr(type(model.decoder), "OFFICIAL", True)),
        "backbone": model.config["backbone"]["name"],
        "channels": model.decoder.out_channels,
        "input": [h, w],
        "flops_counter": "torch.utils.flop_counter.FlopCounterMode (GFLOPs = 2 x GMACs)",
        "forms": {},
    }
    for form in forms:
        m = model if form == "train" else deploy(model)
        card["forms"][form] = {"params": count_params(m), "gflops": count_flops(m, h, w)}
    if len(forms) == 2:
        tr, dp = card["forms"]["train"], card["forms"]["deploy"]
        card["deploy_vs_train"] = {
            "gflops_ratio": dp["gflops"]["total"] / tr["gflops"]["total"],
            "params_ratio": dp["params"]["total"] / tr["params"]["total"],
        }
    return card


def _table(card: dict) -> str:
    lines = [
        f"{card['name']} ({card['decoder']}, {card['backbone']}, C={card['channels']}, "
        f"input {card['input'][0]}x{card['input'][1]})"
    ]
    lines.append(f"{'form':8} {'part':9} {'params (M)':>11} {'GFLOPs':>9}")
    for form, d in card["forms"].items():
        for part in ("backbone", "decoder", "heads", "total"):
            lines.append(f"{form:8} {part:9} {d['params'][part] / 1e6:11.2f} {d['gflops'][part]:9.2f}")
    if "deploy_vs_train" in card:
        r = card["deploy_vs_train"]
        lines.append(f"deploy/train: GFLOPs x{r['gflops_ratio']:.3f}, params x{r['params_ratio']:.3f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    forms = ("deploy",) if args.deploy else ("train", "deploy")
    card = model_card(args.config, args.height, args.width, forms)
    print(json.dumps(card, indent=2) if args.json else _table(card))
    return 0
