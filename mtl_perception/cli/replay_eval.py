"""``mtl-perception replay-eval``: evaluate the node's pipeline on a rosbag2, offline, without ROS.

Exit status: 0 every frame read and processed; 1 finished with errors (truncated bag, corrupt
messages, undecodable images: the report says ``status: partial`` and lists them); 2 nothing to
evaluate or bad arguments (not a bag, no image topic, missing topic, unusable model: one-line
message on stderr, and with ``--report`` a report holding the bag's inventory and the error);
130 interrupted (partial report written).

Report directory policy: ``--report DIR`` must not exist or be empty; a non-empty directory is
refused unless ``--force`` (which replaces the report files in it). Nothing else is overwritten.

Many bags (``--bags DIR|GLOB ...``, :mod:`mtl_perception.evaluate.fleet`): one merged report plus a
per-bag table, sharded over ``torchrun`` processes / machines, resumable. Exit status over the
fleet: 0 at least one bag evaluated (partial or failed bags are listed in the per-bag table, in
``bags_partial`` / ``bags_failed`` of the JSON and the report status ``partial``: one corrupt
recording among hundreds does not fail the job, nor make torchrun report a failed worker); 2
every bag failed, no bag found, or bad arguments; with ``--strict``, 1 when any bag is partial or
failed (the single-bag meaning of 1). Under ``torchrun`` every rank exits with rank 0's status.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mtl_perception.cli import CLIError
from mtl_perception.cli.pipeline_args import add_pipeline_arguments, pipeline_options

DECODERS = ("baseline", "moe", "mlore", "taskexpert", "meco")

FLEET_HELP = """\
many bags (--bags):
  One merged report: confusion matrices, depth error sums and counts, histograms and per-frame
  latencies of every bag are added up (in sorted bag order, so the numbers do not depend on the
  number of processes), then the metrics are computed once: not averages of per-bag averages.
  Plus a per-bag table (report.md, bags.md, bags.json; "bags" in --json) with each bag's metrics,
  status and error: a bag that fails (corrupt, no image topic) is listed and the rest go on.
  Resumable: each finished bag is written atomically to REPORT/bags/<name>.json; rerunning the
  same command skips them (same model, settings and bag files) and still merges them; failed
  bags are retried; --force evaluates all again. A progress line across all bags (rank 0).
  Exit: 0 at least one bag evaluated (failed / partial bags: in the table and in bags_failed /
  bags_partial of the JSON), 2 every bag failed; --strict: 1 when any bag is partial or failed.

  Sharded with torchrun (c10d: gloo on CPU, NCCL on GPU, one GPU per local rank), bags dealt
  to ranks deterministically (largest first, to the least loaded rank):
    torchrun --nproc_per_node 2 -m mtl_perception.cli replay-eval --bags drives/ --report out/
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        -m mtl_perception.cli replay-eval --bags '/data/drives/2024-*' --report /shared/out --json
  Every machine must see the bags at the same paths; resuming a multi-machine run needs the
  report directory on a shared filesystem (rank 0 always writes every bag's record to its own).
"""


def add_model_args(p: argparse.ArgumentParser, default_backend: str = "auto") -> None:
    """--checkpoint / --decoder / --backend / --precision / --cache-dir (shared by replay-eval and soak)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--checkpoint", default=None, help="model .safetensors (default: the shipped mlore model)")
    g.add_argument(
        "--decoder",
        default=None,
        choices=DECODERS,
        help="use the shipped checkpoint of this decoder variant "
        "(mtl_perception/assets/models/: mlore_lite2, <decoder>_lite0 for the others)",
    )
    p.add_argument("--backend", default=default_backend, choices=("auto", "torch", "onnxruntime", "tensorrt"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "int8"))
    p.add_argument("--cache-dir", default=None, help="artifact cache (ONNX/engines)")


def resolve_decoder_checkpoint(decoder: str) -> Path:
    """The shipped checkpoint of a decoder variant, or a one-line error naming the train command."""
    from mtl_perception.deploy.artifacts import shipped_checkpoint

    try:
        return shipped_checkpoint(decoder)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from exc


def build_engine(args: argparse.Namespace) -> Any:
    from mtl_perception.deploy.engine import EngineError, InferenceEngine

    ckpt = resolve_decoder_checkpoint(args.decoder) if getattr(args, "decoder", None) else args.checkpoint
    try:
        return InferenceEngine.create(ckpt, backend=args.backend, precision=args.precision, cache_dir=args.cache_dir)
    except EngineError as exc:
        raise CLIError(str(exc)) from exc


def register(sub: argparse._SubParsersAction) -> None:
    import textwrap

    description = textwrap.fill(
        "Read a rosbag2 (sqlite3 or mcap, metadata v4-v9) with rosbags, run every image through the "
        "ROS node's pipeline (same conversion, preprocessing, engine and postprocessing), match ground truth by "
        "header stamp, give each frame the K of its CameraInfo (metric depth, as the node), and report "
        "segmentation/depth metrics (as `eval`), per-frame latency p50/p90/p99, predicted "
        "class histograms and depth statistics, with plots and sample PNGs. Without ground truth: everything but "
        "the accuracy metrics. Exit 0 = clean, 1 = partial (errors listed in the report), 2 = nothing evaluated. "
        "With --bags: many bags, one merged report, sharded over torchrun processes and machines (below).",
        100,
    )
    p = sub.add_parser(
        "replay-eval",
        help="run the node's pipeline over a rosbag2 (or a fleet of them, torchrun-sharded) offline: metrics vs "
        "GT, latency, histograms, report",
        description=description,
        epilog=FLEET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bag", default=None, help="rosbag2 directory (or a single .mcap / .db3 file)")
    src.add_argument(
        "--bags",
        nargs="+",
        default=None,
        metavar="DIR|GLOB",
        help="many bags: directories searched recursively for bags, globs ('drives/2024-*'), or bags; one merged "
        "report plus a per-bag table (see below; --samples is not used)",
    )
    p.add_argument(
        "--image-topic",
        default=None,
        help="camera topic (Image or CompressedImage); comma-separated list or 'all' for several "
        "(default: auto-detect, preferring image_rect_color / image_raw)",
    )
    p.add_argument("--gt-semantic-topic", default=None, help="semantic GT (mono8 train ids); 'none' to ignore")
    p.add_argument("--gt-depth-topic", default=None, help="depth GT (32FC1 m, or 16UC1 mm); 'none' to ignore")
    p.add_argument(
        "--camera-info-topic",
        default=None,
        help="CameraInfo giving each frame's K (canonical depth -> metres, as the node does); default: the image "
        "topic's sibling camera_info (/ns/image_raw -> /ns/camera_info); 'none' = the model's default field of view",
    )
    add_model_args(p)
    p.add_argument("--stamp-tolerance", type=float, default=0.005, help="GT-image header stamp tolerance, s")
    p.add_argument("--max-frames", type=int, default=None, help="evaluate at most N frames")
    p.add_argument(
        "--max-depth", "--cap", dest="max_depth", type=float, default=80.0, help="depth cap in metres for metrics"
    )
    p.add_argument(
        "--camera-height",
        type=float,
        default=0.0,
        metavar="M",
        help="the camera's height above the road in metres (the node's camera_height, e.g. 1.65 for KITTI): "
        "depth is rescaled so the fitted road plane lies that far below the camera; 0 = off (default)",
    )
    add_pipeline_arguments(p)
    p.add_argument("--samples", type=int, default=4, help="sample PNGs to write (spread over the bag)")
    p.add_argument(
        "--report",
        default=None,
        help="write report.md, metrics.json, plots and samples here (--bags: also bags.md, bags.json and "
        "bags/<name>.json, the finished bags a rerun skips)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the report files in a non-empty --report dir (--bags: evaluate every bag again)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="--bags: exit 1 when any bag is partial or failed (default: 0 as long as one bag was evaluated)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.set_defaults(func=run)


def _slim(results: dict[str, Any]) -> dict[str, Any]:
    from mtl_perception.evaluate.report import _json_default

    slim = json.loads(json.dumps(results, default=_json_default))
    slim.get("semseg", {}).pop("confusion", None)
    for k in ("bin_edges", "bin_count", "bin_abs_err", "bin_abs_rel"):
        slim.get("depth", {}).pop(k, None)
    return slim


def _fail(args: argparse.Namespace, out: Path | None, message: str, meta: dict[str, Any]) -> CLIError:
    """Write a failure report (bag inventory + error) and JSON, return the CLIError to raise."""
    from mtl_perception.evaluate.replay import ReplayAccumulator

    acc = ReplayAccumulator(class_names=[])
    acc.error("fatal", message)
    results = acc.results({**meta, "error": message}, status="failed")
    if out is not None:
        acc.write_report(out, f"Replay evaluation (failed): {args.bag}", results)
    if args.json:
        print(json.dumps(_slim(results), indent=2))
    return CLIError(message + (f" (report: {out / 'report.md'})" if out is not None else ""))


def run_fleet(args: argparse.Namespace) -> int:
    """``--bags``: many bags, one merged report (rank 0 prints and writes it)."""
    from mtl_perception.evaluate.fleet import BagSettings, FleetConfig, FleetError, run_fleet

    if args.max_frames is not None and args.max_frames < 1:
        raise CLIError("--max-frames must be >= 1")
    if args.stamp_tolerance < 0:
        raise CLIError("--stamp-tolerance must be >= 0")
    if not 0.0 <= args.camera_height <= 10.0:
        raise CLIError(f"--camera-height must be metres in [0, 10] (0 = off), got {args.camera_height}")
    ckpt = resolve_decoder_checkpoint(args.decoder) if getattr(args, "decoder", None) else args.checkpoint
    cfg = FleetConfig(
        bags=list(args.bags),
        report=args.report,
        force=args.force,
        settings=BagSettings(
            image_topic=args.image_topic,
            gt_semantic_topic=args.gt_semantic_topic,
            gt_depth_topic=args.gt_depth_topic,
            camera_info_topic=args.camera_info_topic,
            stamp_tolerance=args.stamp_tolerance,
            max_frames=args.max_frames,
            max_depth=args.max_depth,
        ),
        checkpoint=str(ckpt) if ckpt is not None else None,
        backend=args.backend,
        precision=args.precision,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        strict=args.strict,
        camera_height=args.camera_height,
        pipeline=pipeline_options(args),
    )
    try:
        results, code = run_fleet(cfg)
    except FleetError as exc:
        raise CLIError(str(exc)) from exc
    if results is None:  # not rank 0: rank 0 reports
        return code
    if args.json:
        print(json.dumps(_slim(results), indent=2))
    else:
        m = results["meta"]
        print(
            f"bags: {m['bags']} ({m['bags_ok']} ok, {m['bags_partial']} partial, {m['bags_failed']} failed, "
            f"{m['bags_resumed']} resumed), {m['world_size']} process(es), {m['wall_s']:.1f} s"
        )
        for r in results["bags"]:
            if r["status"] != "ok":
                print(f"  {r['name']}: {r['status']}: {r['error']}")
        _print_summary(results)
    if code == 2:
        report = results["meta"].get("report")
        first = next((r["error"] for r in results["bags"] if r.get("error")), None)
        raise CLIError(
            f"no bag could be evaluated ({len(results['bags'])} failed"
            + (f", first: {first}" if first else "")
            + ")"
            + (f" (report: {report})" if report else "")
        )
    return code


def run(args: argparse.Namespace) -> int:
    if getattr(args, "bags", None):
        return run_fleet(args)
    from mtl_perception.data.bags import BagError, find_camera_info_topics, find_gt_topics, find_image_topic, open_bag
    from mtl_perception.evaluate.replay import (
        ReplayAccumulator,
        ReplaySpec,
        ReportDirError,
        prepare_report_dir,
        replay_bag,
    )

    if args.max_frames is not None and args.max_frames < 1:
        raise CLIError("--max-frames must be >= 1")
    if args.stamp_tolerance < 0:
        raise CLIError("--stamp-tolerance must be >= 0")
    if not 0.0 <= args.camera_height <= 10.0:
        raise CLIError(f"--camera-height must be metres in [0, 10] (0 = off), got {args.camera_height}")
    out = None
    if args.report:
        try:
            out = prepare_report_dir(args.report, args.force)
        except ReportDirError as exc:
            raise CLIError(str(exc)) from exc
    meta: dict[str, Any] = {"bag": str(args.bag)}
    try:
        bag = open_bag(args.bag)
    except BagError as exc:
        raise _fail(args, out, str(exc), meta) from exc
    with bag:
        meta.update({"storage": bag.storage_id, "bag_metadata_version": bag.metadata_version})
        meta["bag_topics"] = ", ".join(t.describe() for t in bag.topics.values())
        try:
            image_topics = find_image_topic(bag, args.image_topic)
            gt_sem, gt_dep = find_gt_topics(bag, args.gt_semantic_topic, args.gt_depth_topic)
            camera_info = find_camera_info_topics(bag, image_topics, args.camera_info_topic)
        except BagError as exc:
            raise _fail(args, out, str(exc), meta) from exc
        try:
            engine = build_engine(args)
        except CLIError as exc:
            raise _fail(args, out, str(exc), meta) from exc
        from mtl_perception.pipeline import FramePipeline

        options = pipeline_options(args)
        pipeline = FramePipeline.from_options(
            engine, options, output_resolution="input", camera_height=args.camera_height or None
        )
        desc = engine.describe()
        meta.update(
            {
                "image_topics": ", ".join(image_topics),
                "gt_semantic_topic": gt_sem or "-",
                "gt_depth_topic": gt_dep or "-",
                "camera_info_topics": ", ".join(
                    f"{k} -> {v or '- (default field of view)'}" for k, v in camera_info.items()
                ),
                "stamp_tolerance_s": args.stamp_tolerance,
                "camera_height_m": args.camera_height,
                **options.as_dict(),
                "checkpoint": str(engine.info.extra.get("checkpoint")),
                "decoder": engine.info.decoder,
                **{k: desc[k] for k in ("backend", "precision", "device") if k in desc},
                "network_input": "x".join(map(str, engine.input_size)),
            }
        )
        total = sum(bag.topics[t].count for t in image_topics)
        if args.max_frames:
            total = min(total, args.max_frames)
        acc = ReplayAccumulator(
            class_names=list(engine.info.classes),
            palette=engine.info.palette,
            max_depth=args.max_depth,
            keep_samples=args.samples,
            sample_stride=max(1, total // max(args.samples, 1)),
        )
        acc.warnings.extend(bag.warnings)
        meta["warmup_s"] = round(engine.warmup(2), 3)
        spec = ReplaySpec(image_topics, gt_sem, gt_dep, args.stamp_tolerance, args.max_frames, camera_info=camera_info)
        from tqdm import tqdm

        bar = tqdm(total=total, desc="replay-eval", unit="frame", file=sys.stderr, disable=args.no_progress or None)
        status, code, interrupted = None, 0, False
        try:
            replay_bag(bag, pipeline, spec, acc, progress=bar.update)
        except KeyboardInterrupt:
            interrupted = True
            acc.error("interrupted", f"interrupted by the user after {acc.frames} frames")
            status, code = "interrupted", 130
        except Exception as exc:  # an unexpected failure still leaves a partial report
            acc.error("internal", f"{exc.__class__.__name__}: {exc}")
            status, code = "partial", 1
        finally:
            bar.close()
        acc.warnings.extend(w for w in bag.warnings if w not in acc.warnings)
        meta["metadata_message_count"] = bag.expected_count
    results = acc.results(meta, status=status)
    if results["status"] == "failed" and not interrupted:
        msg = "no frame could be evaluated: " + "; ".join(acc.errors[:3])
        results["meta"]["error"] = msg
    if out is not None:
        report = acc.write_report(out, f"Replay evaluation: {args.bag}", results)
        results["meta"]["report"] = str(report)
    if args.json:
        print(json.dumps(_slim(results), indent=2))
    else:
        _print_summary(results)
    if code:
        return code
    if results["status"] == "failed":
        raise CLIError(results["meta"]["error"])
    return 0 if results["status"] == "ok" else 1


def _print_summary(r: dict[str, Any]) -> None:
    lat = r.get("latency_ms", {}).get("total", {})
    line = f"{r['status']}: {r['frames']} frames"
    if lat:
        line += f", latency p50 {lat['p50']:.1f} ms p90 {lat['p90']:.1f} ms p99 {lat['p99']:.1f} ms"
    print(line)
    seg, dep = r.get("semseg"), r.get("depth")
    if seg:
        print(f"mIoU (classes present) {100 * seg['miou_present']:.2f}  pixel acc {100 * seg['pixel_acc']:.2f}")
    if dep:
        print(f"depth RMSE {dep['rmse']:.3f} m  AbsRel {dep['abs_rel']:.4f}  delta<1.25 {100 * dep['delta1']:.2f}")
    if r.get("depth_uncertainty"):
        from mtl_perception.evaluate.uncertainty import format_coverage

        print(format_coverage(r["depth_uncertainty"]))
    intr = r.get("intrinsics")
    if intr:
        print(f"intrinsics: {intr['frames_with_K']} of {r['frames']} frames with K from CameraInfo")
    for kind, n in r.get("error_counts", {}).items():
        print(f"errors: {kind} x{n}")
    if r.get("meta", {}).get("report"):
        print(f"report: {r['meta']['report']}")
