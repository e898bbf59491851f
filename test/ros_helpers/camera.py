"""Camera process for the integration tests: publishes a scenario, writes what it sent as JSON.

    python test/ros_helpers/camera.py --scenario headers --out sent.json [--count N] [--rate HZ]
        [--warmup-file W [--warmup-without-info]]

Scenarios: headers (rgb8, a distinct frame_id per frame), encodings (one frame per encoding and
padding), bad (malformed input between good frames), burst (as fast as possible, then 3 paced frames),
intrinsics (the same picture with no camera_info, fx, 2 fx, a camera_info of twice the size, an
unusable K, then fx again).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import rclpy

from mtl_perception.ros import harness as H
from mtl_perception.ros.shutdown import exit_process, keep_until_exit

H_, W_ = 96, 160  # small frames: the tests are about the node, not the network


def _spin_sleep(node, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=max(0.0, min(0.02, end - time.monotonic())))


#: frame_id of the handshake frames; the checker leaves their outputs out
WARMUP_FRAME_ID = "warmup"


def _warm_up(node, cam, done: Path, with_info: bool = True, timeout: float = 30.0) -> None:
    """Send a frame every 0.25 s until the checker has received the node's answer on every output
    (it then writes ``done``). DDS matches each side on its own: a reader or writer can match its peer
    seconds after the peer matched it, and a fixed settle time lost the first frames of a fresh-clone
    run; these scenarios check every frame. ``with_info=False``: no camera_info (the intrinsics
    scenario starts with a frame that never had one)."""
    frame = H.pattern_frame(H_, W_, seed=1)
    deadline = time.monotonic() + timeout
    while not done.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the checker never saw every output of a warm-up frame in {timeout:.0f} s")
        h = cam.header(frame_id=WARMUP_FRAME_ID)
        if with_info:
            cam.info.publish(H.camera_info_message(H_, W_, h))
        cam.image.publish(H.image_message(frame, "rgb8", h))
        _spin_sleep(node, 0.25)
    _spin_sleep(node, 0.5)  # answers to the last warm-up frames may still be on their way


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True, choices=("headers", "encodings", "bad", "burst", "intrinsics"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--rate", type=float, default=4.0)
    ap.add_argument("--warmup-file", default="", help="send warm-up frames until the checker writes this file")
    ap.add_argument("--warmup-without-info", action="store_true", help="warm-up frames without camera_info")
    ap.add_argument("--image", default="/camera/image")
    ap.add_argument("--camera-info", default="/camera/camera_info")
    args = ap.parse_args()

    rclpy.init()
    node = rclpy.create_node("test_camera")
    cam = H.Camera(node, args.image, args.camera_info)
    cam.wait_for_subscriber()
    if args.warmup_file:
        _warm_up(node, cam, Path(args.warmup_file), with_info=not args.warmup_without_info)
    sent: list[dict] = []
    period = 1.0 / args.rate if args.rate > 0 else 0.0

    def send(msg, label: str, info_hw: tuple[int, int] | None = None, pace: bool = True) -> None:
        if info_hw is not None:
            cam.info.publish(H.camera_info_message(*info_hw, msg.header))
        cam.image.publish(msg)
        sent.append({"stamp_ns": H.stamp_ns(msg.header.stamp), "frame_id": msg.header.frame_id, "label": label})
        if pace and period:
            _spin_sleep(node, period)

    colour = H.pattern_frame(H_, W_, seed=1)
    gray = H.pattern_frame(H_, W_, seed=2, gray=True)
    if args.scenario == "headers":
        for i in range(args.count):
            h = cam.header(frame_id=f"camera_optical_frame_{i}")
            send(H.image_message(colour, "rgb8", h), "rgb8", (H_, W_))
    elif args.scenario == "encodings":
        plan = [(colour, e, pad, f"colour/{e}/pad{pad}") for e in ("rgb8", "bgr8", "rgba8", "bgra8") for pad in (0, 8)]
        plan += [
            (gray, "rgb8", 0, "gray/rgb8/pad0"),
            (gray, "mono8", 0, "gray/mono8/pad0"),
            (gray, "mono8", 5, "gray/mono8/pad5"),
        ]
        plan += [(colour, e, 4, f"colour/{e}/pad4") for e in ("bayer_rggb8", "bayer_grbg8", "yuv422", "yuyv")]
        for img, enc, pad, label in plan:
            send(H.image_message(H.encode_rgb(img, enc), enc, cam.header(), pad=pad), label, (H_, W_))
    elif args.scenario == "bad":
        good = lambda: H.image_message(colour, "rgb8", cam.header())  # noqa: E731
        send(good(), "good", (H_, W_))
        m = good()
        m.encoding = "32FC1"
        send(m, "bad/encoding")
        m = good()
        m.data = bytes(m.data)[: len(m.data) // 2]
        send(m, "bad/truncated")
        m = good()
        m.step = W_ * 3 - 1
        send(m, "bad/step")
        m = good()
        m.height, m.width, m.step, m.data = 0, 0, 0, b""
        send(m, "bad/zero")
        m = good()
        m.encoding = "nonsense"
        send(m, "bad/unknown_encoding")
        send(good(), "good", (H_, W_))
        newer = good()
        older = H.image_message(colour, "rgb8", cam.header(ns=H.stamp_ns(newer.header.stamp) - 20_000_000))
        send(newer, "good")
        send(older, "bad/out_of_order")
        send(good(), "bad/camera_info_size", (H_ * 2, W_ * 2))
        big = H.pattern_frame(H_ * 2, W_ * 2, seed=3)
        send(H.image_message(big, "rgb8", cam.header()), "resolution_change", (H_ * 2, W_ * 2))
        send(good(), "resolution_back", (H_, W_))
        send(good(), "good_last", (H_, W_))
    elif args.scenario == "burst":
        # small frames: this is about the node's policy; large best-effort samples are often lost in transport
        big = H.pattern_frame(H_, W_, seed=4)
        for i in range(args.count):
            h = cam.header()
            send(H.image_message(big, "rgb8", h), f"burst/{i}", (H_, W_), pace=bool(period))
            rclpy.spin_once(node, timeout_sec=0)
        _spin_sleep(node, 0.5)  # the node catches up; then frames at a rate it can follow
        for i in range(3):
            send(H.image_message(big, "rgb8", cam.header()), f"after/{i}", (H_, W_), pace=False)
            _spin_sleep(node, 0.25)
    elif args.scenario == "intrinsics":
        # camera_info goes out a moment before its image: the two topics are separate readers in the
        # node, and the frame must be processed with the camera_info meant for it
        def with_info(info, label: str) -> None:
            if info is not None:
                for _ in range(2):  # best effort: twice
                    cam.info.publish(info)
                _spin_sleep(node, 0.3)
            send(H.image_message(colour, "rgb8", cam.header()), label)

        def info(h: int, w: int, focal_ratio: float):
            return H.camera_info_message(h, w, cam.header(), focal_ratio=focal_ratio)

        with_info(None, "none")
        with_info(info(H_, W_, 0.8), "fx")
        with_info(info(H_, W_, 1.6), "2fx")
        with_info(info(2 * H_, 2 * W_, 0.8), "scaled")  # same fx once scaled to the image
        bad = info(H_, W_, 0.8)
        bad.k = [0.0] * 9  # what an uncalibrated driver publishes
        with_info(bad, "invalid/0")
        for i in range(1, 3):
            with_info(None, f"invalid/{i}")
        with_info(info(H_, W_, 0.8), "fx_again")
    _spin_sleep(node, 0.5)  # let the last samples leave before the participant goes away
    Path(args.out).write_text(json.dumps(sent))
    keep_until_exit(node)  # left for exit_process: deleting it can hang while the node is up (teardown_on_error)
    print(f"camera: sent {len(sent)} frames", file=sys.stderr)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    exit_process(main())
