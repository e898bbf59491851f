"""``mtl-perception build-engine``: build (or validate) the cached engine ahead of time."""

from __future__ import annotations

import argparse
import json
import time

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-engine",
        help="build the engine for a checkpoint/backend/precision ahead of time (cached by content hash)",
        description="Build the artifact the node would build on first start: the precision's ONNX export and, "
        "for TensorRT, a strongly typed engine keyed by model hash, precision, input shape, TensorRT version and "
        "GPU, written atomically with a timing cache; progress is logged at least every 5 s. An existing cache "
        "entry is validated and reused (or rebuilt with --rebuild).",
    )
    p.add_argument("--checkpoint", default=None, help="model .safetensors (default: the shipped model)")
    p.add_argument("--backend", default="tensorrt", choices=("auto", "tensorrt", "onnxruntime", "torch"))
    p.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "int8"))
    p.add_argument("--cache-dir", default=None, help="artifact cache (default: ~/.cache/mtl_perception)")
    p.add_argument("--rebuild", action="store_true", help="TensorRT: ignore a valid cached engine")
    p.add_argument("--json", action="store_true", help="print the engine description as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from mtl_perception.deploy.engine import EngineError, InferenceEngine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    options = {"rebuild": True} if args.rebuild and args.backend == "tensorrt" else {}
    t0 = time.perf_counter()
    try:
        engine = InferenceEngine.create(
            args.checkpoint, backend=args.backend, precision=args.precision, cache_dir=args.cache_dir,
            progress=True, **options,
        )  # fmt: skip
    except EngineError as exc:
        raise CLIError(
            f"{exc} (try --backend onnxruntime for the CPU, or install TensorRT 10+ on a GPU machine)"
        ) from exc
    warm = engine.warmup(2)
    desc = {**engine.describe(), "build_s": round(time.perf_counter() - t0 - warm, 3), "warmup_s": round(warm, 3)}
    print(json.dumps(desc, indent=2) if args.json else f"ready: {desc}")
    return 0
