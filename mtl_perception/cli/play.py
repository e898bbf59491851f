"""``mtl-perception play``: publish a rosbag2 through rclpy (raw CDR, paced by the bag) with /clock."""

from __future__ import annotations

import argparse
import json
import sys

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "play",
        help="publish a rosbag2's topics live through rclpy (like `ros2 bag play`), with /clock",
        description="Publish a bag's messages as the recorded CDR bytes, paced by the bag's timestamps divided by "
        "--rate, and /clock (rosgraph_msgs/Clock) for use_sim_time nodes with --clock. Works with the rclpy PyPI "
        "wheels (no `ros2 bag`). Set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for large images on every participant.",
    )
    p.add_argument("--bag", required=True, help="rosbag2 directory (or a single .mcap / .db3 file)")
    p.add_argument("--rate", type=float, default=1.0, help="playback rate factor (default 1.0)")
    p.add_argument("--clock", action="store_true", help="publish /clock from the bag's time")
    p.add_argument("--clock-hz", type=float, default=100.0, help="/clock publish rate (default 100 Hz)")
    p.add_argument("--topics", nargs="+", default=None, help="only these topics (default: all)")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish topic FROM as TO")
    p.add_argument("--loop", action="store_true", help="play again from the start until Ctrl-C")
    p.add_argument("--qos-depth", type=int, default=10, help="reliable keep-last depth of the publishers")
    p.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds until every topic has a subscriber before playing",
    )
    p.add_argument("--delay", type=float, default=0.0, help="seconds to wait before playing (discovery)")
    p.add_argument("--json", action="store_true", help="print the playback statistics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0 or args.clock_hz <= 0:
        raise CLIError("--rate and --clock-hz must be > 0")
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        raise CLIError(
            f"rclpy is not importable ({exc}); install the ROS 2 wheels (`make setup`) or source ROS"
        ) from exc
    from mtl_perception.data.bags import BagError
    from mtl_perception.ros.player import PlayOptions, parse_remaps, play_bag

    try:
        opts = PlayOptions(
            rate=args.rate,
            clock=args.clock,
            clock_hz=args.clock_hz,
            topics=args.topics,
            remap=parse_remaps(args.remap),
            loop=args.loop,
            qos_depth=args.qos_depth,
            wait_for_subscribers=args.wait_for_subscribers,
            start_delay=args.delay,
        )
        stats = play_bag(args.bag, opts)
    except (BagError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    if stats["errors"] and not stats["total"]:  # a salvaged bag that still held nothing: bad input, not a partial play
        raise CLIError(f"--bag {args.bag}: no message could be read ({stats['errors'][0]}); pass an intact bag")
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(
            f"published {stats['total']} messages in {stats['wall_s']:.2f} s (bag {stats['bag_s']:.2f} s, "
            f"rate {stats['achieved_rate']}); clock msgs {stats['clock_msgs']}"
        )
        for t, why in stats["skipped_topics"].items():
            print(f"skipped {t}: {why}", file=sys.stderr)
    for e in stats["errors"][:5]:
        print(f"warning: {e}", file=sys.stderr)
    return 1 if stats["errors"] else 0
