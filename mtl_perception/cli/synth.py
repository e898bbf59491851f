"""``mtl-perception synth``: render synthetic street scenes to a dataset folder or a ROS 2 bag.

Why: there is no downloadable dataset here, so training data, demo bags and test fixtures are all
rendered by :mod:`mtl_perception.data.synthetic` (exact depth and Cityscapes train ids).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mtl_perception.atomic_io import atomic_imwrite
from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="render procedural street scenes (RGB + train ids + metric depth) to a dataset or bag",
        description="Render driving sequences of procedural streets with exact labels. With --out, write a "
        "PNG dataset folder (images/, semantic/, depth/ uint16 m*256, frames.jsonl, dataset.json); with "
        "--bag, write a ROS 2 bag with /camera/image_raw, /camera/camera_info, /camera/gt/semantic and "
        "/camera/gt/depth. Output is deterministic per --seed.",
    )
    dst = p.add_mutually_exclusive_group(required=True)
    dst.add_argument("--out", help="dataset folder to create")
    dst.add_argument("--bag", help="bag path to create (must not exist)")
    p.add_argument("--frames", type=int, required=True, help="number of frames")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("--height", type=int, default=256, help="image height (default 256)")
    p.add_argument("--width", type=int, default=512, help="image width (default 512)")
    p.add_argument("--fps", type=float, default=10.0, help="dataset frame rate in Hz (default 10)")
    p.add_argument("--rate", type=float, default=None, help="bag publish rate in Hz (default: --fps)")
    p.add_argument("--speed", type=float, default=8.0, help="camera speed in m/s (default 8)")
    p.add_argument("--sequence-length", type=int, default=50, help="frames per sequence (new street each; default 50)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    p.add_argument(
        "--randomization",
        choices=("full", "basic"),
        default="full",
        help="full: domain-randomised look and camera for sim-to-real (default); basic: the narrow "
        "generator-1.0 distribution (same streets), for ablations",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="render sequences in this many processes (--out only; same folder byte for byte; default 1)",
    )
    p.add_argument(
        "--look",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="set one field of every street's domain-randomised look (--out, 'full' only; repeatable), e.g. "
        "crown_clearance=true for the rendered test set SYN8000, or a look option that is off by default "
        "(near_foliage=0.7); recorded in dataset.json as look_overrides",
    )
    p.add_argument("--preview", help="also write a PNG grid (image | semantic | depth) of a few frames")
    p.add_argument("--json", action="store_true", help="print a JSON summary for machines")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> None:
    if args.frames < 1:
        raise CLIError(f"--frames must be >= 1, got {args.frames}")
    if args.look:
        from mtl_perception.data.synthetic.scene import parse_look_overrides

        if args.bag:
            raise CLIError("--look applies to --out datasets; render the bag without it")
        if args.randomization != "full":
            raise CLIError("--look needs --randomization full ('basic' draws no look)")
        try:
            args.look_overrides = parse_look_overrides(args.look)
        except ValueError as exc:
            raise CLIError(f"--look: {exc}") from exc
    if args.height < 8 or args.width < 8:
        raise CLIError(f"--height/--width must be >= 8, got {args.height}x{args.width}")
    if args.fps <= 0 or (args.rate is not None and args.rate <= 0):
        raise CLIError("--fps/--rate must be > 0 (frames per second)")
    if args.speed < 0:
        raise CLIError(f"--speed must be >= 0 m/s, got {args.speed}")
    if args.sequence_length < 1:
        raise CLIError(f"--sequence-length must be >= 1, got {args.sequence_length}")
    if args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.bag and args.workers != 1:
        raise CLIError("--workers renders dataset folders (--out) only; a bag is written in stream order")
    if args.bag and Path(args.bag).exists():
        raise CLIError(f"bag {args.bag} already exists; choose another --bag path or delete it first")
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CLIError(f"--out {args.out} is a file, not a folder; choose a new --out folder")
    if args.out and (Path(args.out) / "dataset.json").exists():
        raise CLIError(f"{args.out} already contains a dataset; choose a new --out folder or delete it first")


def write_preview(
    path: str | Path,
    seed: int,
    height: int,
    width: int,
    n: int = 4,
    fps: float = 10.0,
    randomization: str = "full",
) -> Path:
    """Grid of ``n`` frames from ``n`` derived seeds: image | semantic colours | depth colours."""
    import numpy as np

    from mtl_perception.data.synthetic import render_sequence
    from mtl_perception.data.synthetic_io import derive_seed
    from mtl_perception.visualize import colorize_depth, colorize_labels

    rows = []
    for j in range(n):
        fr = next(render_sequence(derive_seed(seed, j), 1, height, width, fps=fps, randomization=randomization))
        rows.append(np.concatenate([fr.image, colorize_labels(fr.semantic), colorize_depth(fr.depth)], 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return atomic_imwrite(path, np.concatenate(rows, 0)[..., ::-1])
    except OSError as exc:
        raise CLIError(f"cannot write preview {path}; use a .png path in a writable folder") from exc


def run(args: argparse.Namespace) -> int:
    _check(args)
    from tqdm import tqdm

    from mtl_perception.data.synthetic_io import write_bag, write_dataset

    bar = tqdm(total=args.frames, unit="frame", disable=args.no_progress or args.json, desc="synth")
    t0 = time.perf_counter()
    try:
        if args.out:
            write_dataset(
                args.out,
                args.seed,
                args.frames,
                args.height,
                args.width,
                fps=args.fps,
                speed=args.speed,
                sequence_length=args.sequence_length,
                progress=bar.update,
                randomization=args.randomization,
                workers=args.workers,
                look=getattr(args, "look_overrides", None),
            )
            target = args.out
        else:
            write_bag(
                args.bag,
                args.seed,
                args.frames,
                args.height,
                args.width,
                rate_hz=args.rate or args.fps,
                storage=args.storage,
                speed=args.speed,
                progress=bar.update,
                randomization=args.randomization,
            )
            target = args.bag
    except FileExistsError as exc:
        raise CLIError(str(exc)) from exc
    except OSError as exc:
        raise CLIError(f"cannot write {args.out or args.bag}: {exc.strerror or exc}; check the path") from exc
    finally:
        bar.close()
    secs = time.perf_counter() - t0
    summary = {
        "kind": "dataset" if args.out else "bag",
        "path": str(target),
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "seed": args.seed,
        "randomization": args.randomization,
        **({"look_overrides": args.look_overrides} if getattr(args, "look_overrides", None) else {}),
        "seconds": round(secs, 3),
        "frames_per_s": round(args.frames / secs, 2) if secs > 0 else None,
    }
    if args.bag:
        summary["storage"] = args.storage
    if args.preview:
        prev = write_preview(args.preview, args.seed, args.height, args.width, randomization=args.randomization)
        summary["preview"] = str(prev)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {args.frames} frames to {target} in {secs:.1f} s ({summary['frames_per_s']} frames/s)")
    return 0
