"""``mtl-perception bench-decoders``: every decoder variant, train form vs deploy form, one run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from mtl_perception.atomic_io import atomic_write_text
from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench-decoders",
        help="time every decoder variant, train form vs deploy form (JSON)",
        description="Build every registered decoder variant from config/models/<name>.yaml, and "
        "time the whole model and the decoder alone in the training form and the deploy form "
        "(eval mode, no grad). Prints JSON with latencies, GFLOPs, params and deploy/train ratios.",
    )
    p.add_argument("--config-dir", default=None, help="folder of model YAMLs (default: the package's config/models)")
    p.add_argument("--variants", nargs="*", default=None, help="subset of decoders (default: all registered)")
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.set_defaults(func=run)


def _time(fn, warmup: int, iters: int, sync) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {"p50_ms": statistics.median(samples), "min_ms": samples[0], "max_ms": samples[-1]}


def run(args: argparse.Namespace) -> int:
    import torch

    from mtl_perception.model import build_model, deploy, list_decoders
    from mtl_perception.model.complexity import count_flops, count_params
    from mtl_perception.paths import package_share_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError("--device cuda requested but CUDA is not available; use --device cpu")
    config_dir = Path(args.config_dir) if args.config_dir else package_share_dir() / "config" / "models"
    variants = args.variants or list_decoders()
    unknown = set(variants) - set(list_decoders())
    if unknown:
        raise CLIError(f"unknown decoder(s) {sorted(unknown)}; registered: {list_decoders()}")
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x = torch.randn(args.batch, 3, args.height, args.width, device=dev)
    results = []
    for name in variants:
        path = config_dir / f"{name}.yaml"
        if not path.is_file():
            raise CLIError(f"no config for decoder {name!r} at {path}; pass --config-dir")
        torch.manual_seed(0)
        model = build_model(path).eval().to(dev)
        row = {"decoder": name, "official": bool(getattr(type(model.decoder), "OFFICIAL", True))}
        for form in ("train", "deploy"):
            m = model if form == "train" else deploy(model, fuse_bn=True)  # as the torch backend runs it
            with torch.no_grad():
                feats = m.backbone(x)
                whole = _time(lambda m=m: m(x), args.warmup, args.iters, sync)
                dec = _time(lambda m=m, f=feats: m.decoder(f), args.warmup, args.iters, sync)
            row[form] = {
                "model": whole,
                "decoder_only": dec,
                "gflops": count_flops(m, args.height, args.width, args.batch),
                "params": count_params(m),
            }
        tr, dp = row["train"], row["deploy"]
        row["deploy_speedup_model"] = tr["model"]["p50_ms"] / dp["model"]["p50_ms"]
        row["deploy_speedup_decoder"] = tr["decoder_only"]["p50_ms"] / dp["decoder_only"]["p50_ms"]
        row["deploy_gflops_ratio"] = dp["gflops"]["total"] / tr["gflops"]["total"]
        results.append(row)
        del model
    base = next((r for r in results if r["decoder"] == "baseline"), None)
    if base:
        for r in results:
            r["vs_baseline"] = {
                "gflops_deploy": r["deploy"]["gflops"]["total"] / base["deploy"]["gflops"]["total"],
                "params_train": r["train"]["params"]["total"] / base["train"]["params"]["total"],
                "latency_deploy": r["deploy"]["model"]["p50_ms"] / base["deploy"]["model"]["p50_ms"],
            }
    report = {
        "benchmark": "bench-decoders",
        "input": [args.batch, 3, args.height, args.width],
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
        "warmup": args.warmup,
        "iters": args.iters,
        "results": results,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0
