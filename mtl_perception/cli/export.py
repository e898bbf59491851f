"""``mtl-perception export``: the deploy form of a checkpoint as a validated ONNX file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mtl_perception.cli import CLIError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export the re-parameterized deploy form as ONNX (fp32, fp16 or int8 Q/DQ)",
        description="Export the deploy form (MLoRE experts folded into one conv per task) with the model's "
        "metadata embedded (classes, palette, depth units, input size, normalisation, model hash). fp16: float16 "
        "graph with fp32 inputs/outputs. int8: static Q/DQ, per-channel weights, calibrated on frames from a "
        "synthetic dataset folder or a rosbag (default: seeded synthetic frames); the calibration set is recorded "
        "in the metadata. Every export is checked with the ONNX checker and run against torch fp32.",
    )
    p.add_argument("--checkpoint", default=None, help="model .safetensors (default: the shipped model)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"))
    p.add_argument(
        "--int8-scheme",
        default="u8s8",
        choices=("u8s8", "s8s8"),
        help="int8 Q/DQ flavour: u8s8 (ONNX Runtime on x86, default) or s8s8 (symmetric; what TensorRT requires)",
    )
    p.add_argument("--height", type=int, default=None, help="input height (default: the model's)")
    p.add_argument("--width", type=int, default=None, help="input width (default: the model's)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch dimension")
    p.add_argument("--calibration", default=None, help="int8: synthetic dataset folder or rosbag with images")
    p.add_argument("--calibration-frames", type=int, default=32, help="int8: number of calibration frames")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def calibration_frames(source: str | None, n: int, size: tuple[int, int]) -> tuple[list[np.ndarray], dict]:
    """uint8 RGB frames for int8 calibration from a synthetic dataset, a rosbag or the seeded renderer."""
    from mtl_perception.deploy.artifacts import CALIBRATION_SEED, synthetic_calibration_frames

    if source is None:
        return synthetic_calibration_frames(n, size), {"source": "synthetic", "seed": CALIBRATION_SEED}
    path = Path(source)
    if not path.exists():
        raise CLIError(f"--calibration {path} does not exist; pass a synthetic dataset folder or a rosbag")
    if (path / "dataset.json").is_file():
        from mtl_perception.data.synthetic_io import SyntheticDataset

        ds = SyntheticDataset(path)
        idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
        return [ds[int(i)]["image"] for i in idx], {"source": "dataset", "path": str(path), "frames": len(idx)}
    from mtl_perception.data import bags
    from mtl_perception.imaging import ImageDecodeError, compressed_msg_to_rgb, image_msg_to_rgb

    try:
        with bags.open_bag(path) as bag:
            topic = bags.find_image_topic(bag)[0]
            frames = []
            for _t, msgtype, _ts, raw in bag.raw_messages([topic]):
                msg = bag.deserialize(raw, msgtype)
                try:
                    frames.append(compressed_msg_to_rgb(msg) if "Compressed" in msgtype else image_msg_to_rgb(msg))
                except ImageDecodeError:
                    continue
                if len(frames) >= n:
                    break
    except bags.BagError as exc:
        raise CLIError(str(exc)) from exc
    if not frames:
        raise CLIError(f"no decodable image in {path} for calibration; pass another bag or a dataset folder")
    return frames, {"source": "rosbag", "path": str(path), "topic": topic, "frames": len(frames)}


def verify_against_torch(model, onnx_path: Path, size: tuple[int, int]) -> dict:
    """Run the export and the torch fp32 deploy form on one seeded frame; report the differences."""
    import onnxruntime as ort
    import torch

    from mtl_perception.deploy.artifacts import synthetic_calibration_frames
    from mtl_perception.deploy.engine import preprocess_frames
    from mtl_perception.deploy.export import semseg_temperature
    from mtl_perception.model.deploy import deploy

    norm = model.config["normalization"]
    x = preprocess_frames(synthetic_calibration_frames(1, size), size, norm["mean"], norm["std"])
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in deploy(model).float().eval()(torch.from_numpy(x)).items()}
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
    return {
        "semseg_max_abs_diff": float(np.abs(outs["semseg"] - ref["semseg"]).max()),
        "semseg_argmax_agreement": float((outs["semseg"].argmax(1) == ref["semseg"].argmax(1)).mean()),
        "depth_max_rel_diff": float((np.abs(outs["depth"] - ref["depth"]) / ref["depth"]).max()),
        # the graph's own class ids / confidence against the host functions on its own logits
        **graph_products_check(outs, semseg_temperature(model)),
    }


def graph_products_check(outs: dict[str, np.ndarray], temperature: float) -> dict[str, float]:
    """Agreement of the graph's class ids and confidence with ``postprocess`` on the graph's logits."""
    from mtl_perception.deploy.postprocess import GRAPH_CONFIDENCE, GRAPH_LABELS, labels_and_confidence

    if GRAPH_LABELS not in outs:
        return {}
    labels, conf = labels_and_confidence(np.ascontiguousarray(outs["semseg"][0], np.float32), temperature)
    return {
        "graph_labels_agreement": float((outs[GRAPH_LABELS][0, 0] == labels).mean()),
        "graph_confidence_max_abs_diff": float(np.abs(outs[GRAPH_CONFIDENCE][0, 0] - conf).max()),
    }


def run(args: argparse.Namespace) -> int:
    from mtl_perception.deploy.artifacts import resolve_checkpoint
    from mtl_perception.deploy.engine import EngineError, preprocess_frames
    from mtl_perception.deploy.export import export_onnx
    from mtl_perception.model import load_checkpoint
    from mtl_perception.model.config import check_input_size

    try:
        ckpt = resolve_checkpoint(args.checkpoint)
    except EngineError as exc:
        raise CLIError(str(exc)) from exc
    model = load_checkpoint(ckpt)
    h = args.height or model.config["input_size"][0]
    w = args.width or model.config["input_size"][1]
    bad_size = check_input_size(model.config, h, w)
    if bad_size:
        raise CLIError(bad_size)
    batches, cal_info = None, None
    if args.precision == "int8":
        frames, cal_info = calibration_frames(args.calibration, args.calibration_frames, (h, w))
        norm = model.config["normalization"]
        batches = [preprocess_frames([f], (h, w), norm["mean"], norm["std"]) for f in frames]
    summary = export_onnx(
        model, args.out, args.precision, h, w, dynamic_batch=args.dynamic, calibration=batches,
        calibration_info=cal_info, int8_scheme=args.int8_scheme,
    )  # fmt: skip
    summary["checkpoint"] = str(ckpt)
    summary["verification"] = verify_against_torch(model, Path(args.out), (h, w))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        v = summary["verification"]
        print(
            f"wrote {summary['path']} ({summary['bytes'] / 1e6:.1f} MB, {args.precision}, {h}x{w}); vs torch fp32: "
            f"max |logit diff| {v['semseg_max_abs_diff']:.2e}, "
            f"argmax agreement {100 * v['semseg_argmax_agreement']:.2f}%"
        )
    return 0
