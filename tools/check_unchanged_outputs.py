"""Did a head-only run (config/train/uncertainty_head.yaml) leave a model's outputs untouched?

    python tools/check_unchanged_outputs.py OLD.safetensors NEW.safetensors [SYNTHETIC_DIR] [--frames 4]

Checks (exit 0 only if all hold): every tensor of OLD is in NEW with the same dtype and bytes; the
semantic logits and depth of NEW are bit-identical to OLD's on frames of SYNTHETIC_DIR (default: a
few rendered held-out frames) with the torch backend (fp32) and ONNX Runtime (fp32); NEW has
``depth_log_sigma``. Prints a JSON summary (the median predicted sigma included).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("data", nargs="?", default=None, help="synthetic dataset folder (default: render 4 frames)")
    ap.add_argument("--frames", type=int, default=4)
    args = ap.parse_args()

    from safetensors import safe_open

    from mtl_perception.deploy.engine import InferenceEngine

    report: dict = {}
    with safe_open(args.old, "pt") as a, safe_open(args.new, "pt") as b:
        ka, kb = set(a.keys()), set(b.keys())
        differing = [
            k
            for k in sorted(ka & kb)
            if a.get_tensor(k).dtype != b.get_tensor(k).dtype or not bool((a.get_tensor(k) == b.get_tensor(k)).all())
        ]
        report["tensors"] = {
            "old": len(ka),
            "missing_in_new": sorted(ka - kb),
            "differing": differing,
            "new_only_modules": sorted({k.split(".")[0] for k in kb - ka}),
        }
    if args.data:
        from mtl_perception.data.synthetic_io import SyntheticDataset

        ds = SyntheticDataset(args.data)
        idx = np.linspace(0, len(ds) - 1, args.frames).round().astype(int)
        frames = [ds[int(i)]["image"] for i in idx]
    else:
        from mtl_perception.deploy.artifacts import synthetic_calibration_frames

        frames = synthetic_calibration_frames(args.frames, (256, 512), seed=4242)
    ok = not report["tensors"]["missing_in_new"] and not differing
    for backend in ("torch", "onnxruntime"):
        old = InferenceEngine.create(args.old, backend=backend, precision="fp32", device="cpu")
        new = InferenceEngine.create(args.new, backend=backend, precision="fp32", device="cpu")
        r: dict = {"semseg_bit_identical": True, "depth_bit_identical": True, "sigma": []}
        for f in frames:
            o, n = old.infer([f]), new.infer([f])
            for k in ("semseg", "depth"):
                r[f"{k}_bit_identical"] &= bool(np.array_equal(o[k], n[k]))
            r["has_depth_log_sigma"] = "depth_log_sigma" in n
            if "depth_log_sigma" in n:
                r["sigma"].append(float(np.median(np.exp(n["depth_log_sigma"]))))
        r["median_sigma_log_depth"] = float(np.median(r.pop("sigma"))) if r.get("has_depth_log_sigma") else None
        ok &= r["semseg_bit_identical"] and r["depth_bit_identical"] and r["has_depth_log_sigma"]
        report[backend] = r
    report["ok"] = bool(ok)
    print(json.dumps(report, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
