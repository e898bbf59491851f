"""``mtl-perception eval``: accuracy of a checkpoint on a dataset, through the node's pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtl_perception.cli import CLIError
from mtl_perception.cli.pipeline_args import add_pipeline_arguments, pipeline_options

DATA_TYPES = ("auto", "synthetic", "cityscapes", "kitti", "nyu")
# = data.realdata.DEFAULT_REALDATA (not imported here: building the parser must stay light for --help)
DEFAULT_REALDATA = "../shared/realdata"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="mIoU / depth metrics of a checkpoint on a dataset, with a markdown report",
        description="Run a checkpoint over a dataset exactly as the ROS node does (same preprocessing, "
        "InferenceEngine and postprocessing at the frame's resolution) and report mIoU (both the papers' "
        "convention and the mean over classes present), per-class IoU, pixel accuracy, the expected calibration "
        "error of the semantic confidence (ECE, 15 bins, at the checkpoint's temperature), depth RMSE / AbsRel / "
        "delta<1.25 on valid pixels, the depth interval coverage of a model with the uncertainty head (ground truth "
        "inside the predicted 1-/2-sigma intervals of its Gaussian on log depth; ideal 68.3 / 95.4 %), "
        "and optionally the multi-task gain Delta_m against single-task models. "
        "With --realdata: the same pipeline on the real frames of ../shared/realdata (issue 11 table).",
    )
    p.add_argument("--checkpoint", default=None, help="model .safetensors (default: the shipped model)")
    p.add_argument("--data", default=None, help="dataset folder (synthetic dataset, Cityscapes root, ...)")
    p.add_argument(
        "--realdata",
        nargs="?",
        const=DEFAULT_REALDATA,
        default=None,
        metavar="DIR",
        help="instead of --data: the real camera frames of DIR (default ../shared/realdata relative to the "
        "working directory): Cityscapes mIoU / pixel accuracy pooled over its 3 labelled frames, CamVid 8- and "
        "11-class mIoU, per-frame depth AbsRel / delta<1.25 vs LiDAR and stereo (raw and median-scaled, mean "
        "over frames); --report adds report.md, metrics.json and grid.png of every frame",
    )
    p.add_argument(
        "--sets",
        default=None,
        help="with --realdata: comma-separated subset of its folders (cityscapes, cityscapes_full, camvid, kitti, "
        "kitti_raw_0023_sequence, nuscenes, tri_ddad)",
    )
    p.add_argument(
        "--compare",
        default=None,
        metavar="CKPT",
        help="with --realdata: also run this checkpoint on the same frames; it gets a column in the table and "
        "classes/depth columns in the picture grid (e.g. the old shipped model vs a new one), and a paired "
        "bootstrap over the frames gives each headline difference a 95 %% interval (how sure a move is); "
        "depth_abs_rel_set_mean weighs every real set alike (frames resampled within their set)",
    )
    p.add_argument(
        "--compare-defaults",
        action="store_true",
        help="with --compare: run the --compare model with the node's default post-processing instead of this "
        "run's flags, so one checkpoint given twice scores a post-processing option against the defaults, paired",
    )
    p.add_argument(
        "--grid", default=None, metavar="PNG", help="with --realdata: write the picture grid here (.png or .jpg)"
    )
    p.add_argument("--data-type", default="auto", choices=DATA_TYPES)
    p.add_argument("--split", default="val", help="split for datasets that have them (Cityscapes)")
    p.add_argument("--backend", default="torch", choices=("auto", "torch", "onnxruntime", "tensorrt"))
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "int8"))
    p.add_argument("--max-depth", type=float, default=80.0, help="depth cap in metres for metrics (default 80)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N frames")
    p.add_argument(
        "--single-task",
        nargs="*",
        default=[],
        metavar="TASK=CKPT",
        help="single-task checkpoints for Delta_m, e.g. semseg=runs/stl_seg/model.safetensors",
    )
    p.add_argument(
        "--no-camera-height",
        dest="camera_height",
        action="store_false",
        help="score depth from the intrinsics alone: do not give the pipeline the frames' known camera "
        "heights (rendered frames' poses; --realdata: camera files and published rigs), which rescale depth "
        "so the fitted road plane lies that far below the camera (the node's camera_height)",
    )
    add_pipeline_arguments(p)
    p.add_argument("--report", default=None, help="write report.md, metrics.json and plots here")
    p.add_argument("--cache-dir", default=None, help="artifact cache (ONNX/engines)")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    p.set_defaults(func=run)


def open_dataset(path: str, data_type: str = "auto", split: str = "val"):
    root = Path(path)
    if not root.exists():
        raise CLIError(
            f"--data {root} does not exist; render one with `mtl-perception synth --out {root} --frames 200`"
        )
    if data_type == "auto":
        if (root / "dataset.json").is_file():
            data_type = "synthetic"
        elif (root / "leftImg8bit").is_dir():
            data_type = "cityscapes"
        else:
            raise CLIError(f"cannot tell the dataset type of {root}; pass --data-type synthetic|cityscapes|kitti|nyu")
    from mtl_perception.train.data import build_dataset_from_spec

    spec = {"type": data_type, "root": str(root)}
    if data_type == "cityscapes":
        spec["split"] = split
    try:
        return build_dataset_from_spec(spec)
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from exc


def _evaluate(checkpoint, args, dataset, progress=True):
    from mtl_perception.deploy.engine import EngineError, InferenceEngine
    from mtl_perception.evaluate.runner import evaluate_engine

    try:
        engine = InferenceEngine.create(
            checkpoint, backend=args.backend, precision=args.precision, cache_dir=args.cache_dir
        )
    except EngineError as exc:
        raise CLIError(str(exc)) from exc
    options = pipeline_options(args)
    results, samples = evaluate_engine(
        engine,
        dataset,
        num_classes=len(engine.info.classes),
        max_depth=args.max_depth,
        limit=args.limit,
        progress=progress and sys.stderr.isatty(),
        camera_height=getattr(args, "camera_height", True),
        options=options,
    )
    results["meta"] = {
        "checkpoint": str(engine.info.extra.get("checkpoint")),
        "decoder": engine.info.decoder,
        **{k: v for k, v in engine.describe().items() if k in ("backend", "precision", "device")},
        "camera_height": getattr(args, "camera_height", True),
        **options.as_dict(),
    }
    return results, samples, engine


def run(args: argparse.Namespace) -> int:
    from mtl_perception.evaluate.metrics import delta_m
    from mtl_perception.evaluate.report import write_report

    if args.realdata is not None:
        if args.data is not None:
            raise CLIError("pass either --data DIR or --realdata [DIR], not both")
        from mtl_perception.cli.eval_realdata import run_realdata

        return run_realdata(args)
    if args.data is None:
        raise CLIError("nothing to evaluate: pass --data DIR (a dataset) or --realdata [DIR] (real camera frames)")
    used = [f"--{k.replace('_', '-')}" for k in ("sets", "compare", "compare_defaults", "grid") if getattr(args, k)]
    if used:
        raise CLIError(f"{', '.join(used)} apply to --realdata only; drop them or evaluate with --realdata")
    dataset = open_dataset(args.data, args.data_type, args.split)
    results, samples, engine = _evaluate(args.checkpoint, args, dataset)
    results["meta"]["data"] = str(args.data)
    if args.single_task:
        stl: dict[str, float] = {}
        for item in args.single_task:
            task, _, ckpt = item.partition("=")
            if task not in ("semseg", "depth") or not ckpt:
                raise CLIError(f"--single-task expects semseg=CKPT or depth=CKPT, got {item!r}")
            r, _, _ = _evaluate(ckpt, args, dataset, progress=False)
            if task == "semseg":
                stl["miou"] = r["semseg"]["miou_present"]
            else:
                stl["rmse"] = r["depth"]["rmse"]
        mtl = {"miou": results["semseg"]["miou_present"], "rmse": results["depth"]["rmse"]}
        mtl = {k: v for k, v in mtl.items() if k in stl}
        results["delta_m"] = {
            "percent": delta_m(mtl, stl, {"miou": False, "rmse": True}),
            "multi_task": mtl,
            "single_task": stl,
        }
    if args.report:
        report = write_report(args.report, results, samples, list(engine.info.classes), f"Evaluation: {args.data}")
        results["meta"]["report"] = str(report)
    if args.json:
        slim = json.loads(json.dumps(results, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        slim.get("semseg", {}).pop("confusion", None)
        print(json.dumps(slim, indent=2))
    else:
        seg, dep = results.get("semseg", {}), results.get("depth", {})
        if seg:
            print(
                f"mIoU (classes present) {100 * seg['miou_present']:.2f}  mIoU (all 19) {100 * seg['miou_all']:.2f}  "
                f"pixel acc {100 * seg['pixel_acc']:.2f}"
            )
        if dep:
            print(f"depth RMSE {dep['rmse']:.3f} m  AbsRel {dep['abs_rel']:.4f}  delta<1.25 {100 * dep['delta1']:.2f}")
        cal = results.get("calibration")
        if cal:
            print(
                f"semantic confidence ECE ({cal['bins']} bins) {100 * cal['ece']:.2f} %  mean confidence "
                f"{100 * cal['mean_confidence']:.1f} %  temperature {cal['temperature']:.4g}"
            )
        cov = results.get("depth_uncertainty")
        if cov:
            from mtl_perception.evaluate.uncertainty import format_coverage

            print(format_coverage(cov))
        if args.report:
            print(f"report: {results['meta']['report']}")
    return 0
