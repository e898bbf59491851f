"""``mtl-perception realdata-bag``: the real KITTI drive of ../shared/realdata as a rosbag2 for ``replay-eval``.

Why: every bag so far is synthetic; this one is a real camera with real LiDAR depth, in the same
topics as ``synth --bag`` so ``replay-eval --bag`` scores metric depth against the LiDAR unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mtl_perception.cli import CLIError

# = data.realdata.DEFAULT_REALDATA (not imported: building the parser must stay light for --help)
DEFAULT_REALDATA = "../shared/realdata"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "realdata-bag",
        help="write the real KITTI drive (realdata/kitti_raw_0023_sequence) as a rosbag2 with LiDAR depth GT",
        description="Write the 7 frames of KITTI raw 2011_09_26_drive_0023 (left colour camera, 10 Hz) as a "
        "rosbag2: /camera/image_raw (Image rgb8), /camera/camera_info (CameraInfo from the frames' intrinsics) "
        "and /camera/gt/depth (Image 32FC1 metres from the LiDAR sweep, NaN = no return), stamped with the "
        "camera's timestamps; the layout of `synth --bag`, so `replay-eval --bag` scores metric depth against "
        "the LiDAR. The bag holds copies of licensed frames: --out must lie outside this repository.",
    )
    p.add_argument("--out", required=True, help="bag directory to create (must not exist; outside the repository)")
    p.add_argument(
        "--realdata",
        default=DEFAULT_REALDATA,
        metavar="DIR",
        help="folder holding kitti_raw_0023_sequence/ (default ../shared/realdata relative to the working directory)",
    )
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    p.add_argument("--json", action="store_true", help="print a JSON summary for machines")
    p.set_defaults(func=run)


def _inside_repository(path: Path) -> Path | None:
    """The source checkout ``path`` would land in (a git work tree holding this package), else None."""
    from mtl_perception.paths import SOURCE_ROOT

    if not (SOURCE_ROOT / ".git").exists():
        return None
    try:
        path.resolve().relative_to(SOURCE_ROOT.resolve())
    except ValueError:
        return None
    return SOURCE_ROOT


def run(args: argparse.Namespace) -> int:
    from mtl_perception.data.realdata import RealDataError
    from mtl_perception.data.realdata_bag import write_kitti_raw_bag

    out = Path(args.out)
    if out.exists():
        raise CLIError(f"--out {out} already exists; choose another path or delete it first")
    repo = _inside_repository(out)
    if repo is not None:
        raise CLIError(
            f"--out {out} is inside the repository {repo}; the real frames must not be copied into it "
            "(their licences forbid redistribution): write the bag elsewhere, e.g. --out /tmp/kitti_0023_bag"
        )
    try:
        summary = write_kitti_raw_bag(args.realdata, out, storage=args.storage)
    except RealDataError as exc:
        raise CLIError(f"--realdata: {exc}") from exc
    except OSError as exc:
        raise CLIError(f"cannot write {out}: {exc.strerror or exc}; check the path") from exc
    if args.json:
        print(json.dumps(summary))
    else:
        span = (summary["end_ns"] - summary["start_ns"]) / 1e9
        print(
            f"wrote {summary['frames']} real KITTI frames ({span:.2f} s of driving) to {out} ({args.storage}); "
            f"evaluate with: mtl-perception replay-eval --bag {out}"
        )
    return 0
