"""``mtl-perception node-grid --out grid.png``: what RViz would show for one frame, from the live node.

Starts ``perception_node``, publishes one synthetic driving frame (with its camera_info) like a
camera driver, receives ~/semantic_color, ~/depth and ~/points over DDS and writes a 2x2 PNG:
input | semantic colour / depth (colourised, metres) | point cloud seen from above.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtl_perception.atomic_io import atomic_imwrite
from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    from mtl_perception.cli.bench_node import add_node_args

    p = sub.add_parser(
        "node-grid",
        help="PNG grid of one frame's outputs received from a live perception node",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_node_args(p)
    p.set_defaults(width=640, height=360)
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--seed", type=int, default=7, help="synthetic street")
    p.add_argument("--blend", type=float, default=0.0, help="color_blend of ~/semantic_color")
    p.add_argument("--stride", type=int, default=2, help="point_stride of ~/points")
    p.add_argument("--bev-range", type=float, default=40.0, help="bird's-eye view: metres forward")
    p.set_defaults(func=run)


def bird_eye(points: np.ndarray, size: int, forward_m: float) -> np.ndarray:
    """Top view (x right, z forward up the image) of a CLOUD_DTYPE array, coloured by its rgb field."""
    img = np.full((size, size, 3), 30, np.uint8)
    for r in range(10, int(forward_m) + 1, 10):  # range rings every 10 m
        cv2.circle(img, (size // 2, size - 1), int(r / forward_m * (size - 1)), (70, 70, 70), 1)
    if len(points):
        scale = (size - 1) / forward_m
        u = np.round(size / 2 + points["x"] * scale).astype(int)
        v = np.round(size - 1 - points["z"] * scale).astype(int)
        ok = (u >= 0) & (u < size) & (v >= 0) & (v < size)
        rgb = np.asarray(points["rgb"], np.float32).view(np.uint32)[ok]
        col = np.stack([(rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255], axis=1).astype(np.uint8)
        order = np.argsort(-points["z"][ok])  # far first, near on top
        img[v[ok][order], u[ok][order]] = col[order]
    return img


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(img).copy()
    cv2.rectangle(out, (0, 0), (min(out.shape[1], 12 + 11 * len(text)), 26), (0, 0, 0), -1)
    cv2.putText(out, text, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def run(args: argparse.Namespace) -> int:

    from mtl_perception.cli.bench_node import start
    from mtl_perception.data.synthetic import render_frame
    from mtl_perception.imaging import CLOUD_DTYPE
    from mtl_perception.ros import harness as H
    from mtl_perception.ros.shutdown import teardown_on_error
    from mtl_perception.visualize import colorize_depth

    frame = render_frame(args.seed, args.height, args.width)
    live, node, _ = start(args, {"color_blend": args.blend, "point_stride": args.stride})
    got: dict[str, Any] = {}
    try:
        with teardown_on_error(node):  # kept for exit_process on success
            rec, cam = H.attach(node, ("semantic_color", "depth", "points"), reliable=True)
            rec.callbacks.append(lambda topic, _ns, msg: got.__setitem__(topic, msg))
            header = cam.header()
            info = H.camera_info_message(args.height, args.width, header)
            info.k = [float(v) for v in frame.K.reshape(-1)]
            info.p = [
                float(frame.K[0, 0]),
                0.0,
                float(frame.K[0, 2]),
                0.0,
                0.0,
                float(frame.K[1, 1]),
                float(frame.K[1, 2]),
                0.0,
                0.0,
                0.0,
                1.0,
                0.0,
            ]
            for _ in range(3):  # camera_info first so the node has intrinsics for ~/points
                cam.info.publish(info)
                H.spin_until(node, lambda: False, 0.1)
            image = H.image_message(frame.image, "rgb8", header)
            for _ in range(20):  # the camera is best effort: resend (same stamp) until the outputs are back
                cam.image.publish(image)
                if H.spin_until(node, lambda: len(got) == 3, 3.0):
                    break
            if len(got) != 3:
                raise CLIError(f"only {sorted(got)} arrived from the node within 60 s (see {live.log_path})")
    finally:
        live.stop()
    color = got["semantic_color"]
    color_img = np.frombuffer(bytes(color.data), np.uint8).reshape(color.height, color.width, 3)
    d = got["depth"]
    depth = np.frombuffer(bytes(d.data), np.float32).reshape(d.height, d.width)
    pts = got["points"]
    cloud = np.frombuffer(bytes(pts.data), CLOUD_DTYPE)
    h, w = args.height, args.width
    tiles = [
        _label(frame.image, "input (rgb8)"),
        _label(cv2.resize(color_img, (w, h), interpolation=cv2.INTER_NEAREST), "~/semantic_color"),
        _label(
            cv2.resize(colorize_depth(depth), (w, h), interpolation=cv2.INTER_NEAREST),
            f"~/depth (32FC1, {np.nanmin(depth):.1f}-{np.nanmax(depth):.1f} m)",
        ),
        _label(cv2.resize(bird_eye(cloud, h, args.bev_range), (w, h)), f"~/points from above ({len(cloud)} pts)"),
    ]
    grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_imwrite(out, cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(
        f"wrote {out} ({grid.shape[1]}x{grid.shape[0]}): frame {header.stamp.sec}.{header.stamp.nanosec:09d}, "
        f"{len(cloud)} points"
    )
    return 0
