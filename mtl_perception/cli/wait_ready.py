"""``mtl-perception wait-ready``: exit 0 once a node has subscribed to a topic (a launch readiness gate)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "wait-ready",
        help="wait until a node has subscribed to a topic (readiness gate for launch files)",
        description="Poll the ROS graph until --node has a subscription on --topic, then print one JSON line "
        "({ready, waited_s, requirements}) and exit 0; after --timeout seconds print the same JSON with ready "
        "false, one error line on stderr and exit 2. The perception node subscribes to its image topic only once "
        "its engine is built, so `--topic /camera/image_raw --node /perception_node` means 'ready for frames'. "
        "--topic and --node repeat: one --node applies to every --topic, several pair with the topics in order; "
        "without --node any subscriber counts. bag_replay.launch.py starts the player when this exits 0.",
    )
    p.add_argument("--topic", action="append", required=True, help="fully qualified topic name (repeatable)")
    p.add_argument(
        "--node", action="append", default=None, help="fully qualified node name, e.g. /perception_node (repeatable)"
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait before failing (default 120)")
    p.add_argument("--poll", type=float, default=0.1, help="graph poll period in seconds (default 0.1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.timeout < 0 or args.poll <= 0:
        raise CLIError("--timeout must be >= 0 and --poll > 0")
    from mtl_perception.ros.ready import not_ready_message, pair_requirements, wait_ready

    try:
        reqs = pair_requirements(args.topic, args.node)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        raise CLIError(
            f"rclpy is not importable ({exc}); install the ROS 2 wheels (`make setup`) or source ROS"
        ) from exc
    try:
        result = wait_ready(reqs, args.timeout, args.poll, destroy=False)
    except KeyboardInterrupt:  # the launch stopping: no result, no teardown
        print("mtl-perception wait-ready: interrupted", file=sys.stderr, flush=True)
        os._exit(130)
    print(json.dumps(result), flush=True)
    code = 0
    if not result["ready"]:
        print(f"mtl-perception wait-ready: error: {not_ready_message(result, args.timeout)}", file=sys.stderr)
        code = 2
    # a launch waits for this exit: end now, without the ROS teardown (a Fast DDS participant
    # deletion was seen to block for minutes); the OS releases the sockets and memory
    sys.stderr.flush()
    os._exit(code)
