"""``mtl-perception calibrate``: fit the semantic confidence's temperature and store it in a checkpoint."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit the temperature of the semantic confidence on held-out synthetic frames, write it to a checkpoint",
        description="Temperature scaling (Guo et al. 2017) of the semantic confidence (softmax probability of the "
        "predicted class, published as ~/semantic/confidence): run held-out SYNTHETIC frames through the "
        "engine, keep the logits of every --pixel-stride-th labelled pixel (the grid pixel the products' nearest "
        "resize assigns to it), fit one T > 0 minimising the negative log-likelihood (golden-section search on "
        "log T; NLL is convex in 1/T) and write a copy of the checkpoint whose metadata holds "
        "semseg_temperature=T (the tensor bytes are copied verbatim: weights bit-identical, checked by a tensor "
        "hash). Reports NLL and ECE (15 equal-width confidence bins, pooled over the sampled pixels) before "
        "(T=1) and after. Render the frames with e.g. `mtl-perception synth --out V --frames 150 --seed 6000 "
        "--sequence-length 20 --fps 2` (a seed the model was not trained on); never fit on real frames "
        "(../shared/realdata is for evaluation: `mtl-perception eval --realdata` reports ECE there).",
    )
    p.add_argument("--checkpoint", default=None, help="model .safetensors (default: the shipped model)")
    p.add_argument("--data", required=True, help="held-out synthetic dataset folder (with dataset.json)")
    p.add_argument("--frames", type=int, default=200, help="use at most the first N frames (default 200)")
    p.add_argument(
        "--pixel-stride",
        type=int,
        default=4,
        help="keep every N-th row and column of labelled pixels (default 4: 8,192 per 256x512 frame)",
    )
    p.add_argument("--out", default=None, help="write the calibrated checkpoint here (may equal --checkpoint)")
    p.add_argument("--backend", default="torch", choices=("auto", "torch", "onnxruntime", "tensorrt"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "int8"))
    p.add_argument("--cache-dir", default=None, help="artifact cache (ONNX/engines)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _training_seed(meta: dict[str, str]) -> int | None:
    """Seed of the checkpoint's synthetic training set, if its metadata records one."""
    try:
        train = json.loads(meta.get("train_config", "{}"))["data"]["train"]
        return int(train["generate"]["seed"])
    except (KeyError, TypeError, ValueError):
        return None


def _open_synthetic(path: str, checkpoint_meta: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    root = Path(path)
    info_file = root / "dataset.json"
    if not info_file.is_file():
        target = "DIR" if root.exists() else root  # never suggest rendering into an existing folder
        raise CLIError(
            f"--data {root}: not a synthetic dataset (no dataset.json). Temperature is fitted on held-out synthetic "
            f"frames only: render some with `mtl-perception synth --out {target} --frames 150 --seed 6000 "
            "--sequence-length 20 --fps 2`; real frames are for `eval --realdata`"
        )
    try:
        info = json.loads(info_file.read_text())
    except ValueError as exc:  # not JSON, or not UTF-8
        info = exc
    if not isinstance(info, dict):
        raise CLIError(
            f"--data {root}: {info_file.name} is not a dataset description ({info}); render the dataset again "
            f"with `mtl-perception synth --out NEW_FOLDER`"
        )
    seed = info.get("seed")
    trained = _training_seed(checkpoint_meta)
    if seed is not None and trained is not None and int(seed) == trained:
        raise CLIError(
            f"--data {root} was rendered with seed {seed}, the seed of this model's training set: not held out; "
            "render frames with another seed (e.g. --seed 6000)"
        )
    from mtl_perception.cli.eval import open_dataset

    return open_dataset(str(root), "synthetic"), {"seed": seed, "generator_version": info.get("generator_version")}


def run(args: argparse.Namespace) -> int:
    from mtl_perception.deploy import artifacts
    from mtl_perception.deploy.engine import EngineError, InferenceEngine
    from mtl_perception.evaluate.calibration import ECE_BINS, collect_logits, ece_from_logits, fit_temperature, nll
    from mtl_perception.model import CheckpointError, read_metadata
    from mtl_perception.model.checkpoint import rewrite_metadata, tensors_sha256

    if args.frames < 1:
        raise CLIError(f"--frames must be >= 1, got {args.frames}")
    if args.pixel_stride < 1:
        raise CLIError(f"--pixel-stride must be >= 1, got {args.pixel_stride}")
    t0 = time.perf_counter()
    try:
        ckpt = artifacts.resolve_checkpoint(args.checkpoint)
        meta = read_metadata(ckpt)
        engine = InferenceEngine.create(ckpt, backend=args.backend, precision=args.precision, cache_dir=args.cache_dir)
    except (EngineError, CheckpointError) as exc:
        raise CLIError(str(exc)) from exc
    dataset, data_info = _open_synthetic(args.data, meta)
    logits, labels, frames = collect_logits(engine, dataset, limit=args.frames, pixel_stride=args.pixel_stride)
    if labels.size == 0:
        raise CLIError(f"--data {args.data}: no frame with labelled pixels")
    t_infer = time.perf_counter() - t0
    temperature = fit_temperature(logits, labels)
    before, after = ece_from_logits(logits, labels, 1.0, ECE_BINS), ece_from_logits(logits, labels, temperature)
    nll_before, nll_after = nll(logits, labels, 1.0), nll(logits, labels, temperature)
    result: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "data": str(args.data),
        "data_seed": data_info["seed"],
        "frames": frames,
        "pixels": int(labels.size),
        "pixel_stride": args.pixel_stride,
        "backend": engine.describe().get("backend"),
        "precision": args.precision,
        "temperature_in_checkpoint": engine.info.semseg_temperature,
        "temperature": round(temperature, 6),
        "nll_before": nll_before,
        "nll_after": nll_after,
        "ece_bins": ECE_BINS,
        "ece_before": before["ece"],
        "ece_after": after["ece"],
        "accuracy": before["accuracy"],
        "mean_confidence_before": before["mean_confidence"],
        "mean_confidence_after": after["mean_confidence"],
        "seconds": {"inference": round(t_infer, 2), "fit": round(time.perf_counter() - t0 - t_infer, 2)},
    }
    if args.out:
        record = {k: result[k] for k in ("data_seed", "frames", "pixels", "pixel_stride", "ece_bins")}
        record.update({k: round(result[k], 6) for k in ("nll_before", "nll_after", "ece_before", "ece_after")})
        record.update(method="temperature scaling, NLL, golden-section on log T", data=Path(args.data).name)
        src_hash = tensors_sha256(ckpt)  # before writing: --out may be --checkpoint itself
        try:
            out = rewrite_metadata(
                ckpt,
                args.out,
                {artifacts.TEMPERATURE_KEY: f"{temperature:.6g}", "semseg_calibration": json.dumps(record)},
            )
        except OSError as exc:
            raise CLIError(f"cannot write --out {args.out}: {exc.strerror or exc}") from exc
        out_hash = tensors_sha256(out)
        result.update(out=str(out), tensors_sha256=out_hash, tensors_identical=src_hash == out_hash)
        if src_hash != out_hash:  # cannot happen (bytes copied verbatim): refuse to leave a changed model
            out.unlink()
            raise CLIError(f"tensor hash changed while rewriting {out}; nothing written")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{frames} frames, {result['pixels']:,} labelled pixels (stride {args.pixel_stride}), pixel accuracy "
        f"{100 * result['accuracy']:.1f} %"
    )
    print(f"temperature {temperature:.4f}")
    print(f"NLL {nll_before:.4f} -> {nll_after:.4f}")
    print(f"ECE ({ECE_BINS} bins) {100 * before['ece']:.2f} % -> {100 * after['ece']:.2f} %")
    if args.out:
        same = result["tensors_identical"]
        print(f"wrote {result['out']} (semseg_temperature={temperature:.6g}; tensors identical: {same})")
    return 0
