"""ONNX export of the deploy form, per precision, with the model's metadata embedded.

- ``fp32``: the traced deploy form (opset 17, TorchScript exporter: fast and deterministic).
- ``fp16``: the fp32 graph converted to float16 with fp32 inputs/outputs (Cast at the edges),
  so callers never change their buffers.
- ``int8``: static Q/DQ quantisation by ONNX Runtime, per-channel weights, activations
  calibrated on real frames (a dataset or a rosbag); the calibration set is recorded in the
  metadata. Q/DQ is the format TensorRT's strongly typed networks consume.

Every export is checked with the ONNX checker and by running it in ONNX Runtime against the
torch model on the same input.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_perception.data.cityscapes_classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from mtl_perception.deploy.graph_products import CONFIDENCE, LABELS, GraphProducts
from mtl_perception.model import deploy
from mtl_perception.model.config import config_to_json

PRECISIONS = ("fp32", "fp16", "int8")
INPUT_NAME = "image"
OUTPUT_NAMES = ("semseg", "depth")  # plus "depth_log_sigma" for a model with the depth uncertainty head


def output_names(model: torch.nn.Module) -> list[str]:
    """The graph's outputs in ``forward``'s order (a model with ``uncertainty.depth`` adds one)."""
    return list(getattr(model, "output_names", OUTPUT_NAMES))


INT8_OP_TYPES = ("MatMul", "Conv", "Gemm")
# Q/DQ flavours, one per runtime (measured on the shipped model, AMD EPYC AVX2 without VNNI, 2 threads):
# - "u8s8": uint8 activations, int8 per-channel weights, reduce_range (7-bit weights so AVX2's
#   vpmaddubsw cannot saturate), ONNX Runtime's recommendation for x86: 1.08x fp32, 99.3% argmax
#   agreement; u8u8 was 0.84x and symmetric s8s8 0.57x here (no fast s8s8 kernel without VNNI).
# - "s8s8": symmetric int8 activations and weights (zero point 0): the only Q/DQ TensorRT accepts.
INT8_SCHEMES = ("u8s8", "s8s8")


def state_hash(model: torch.nn.Module) -> str:
    """sha256 over config + weights: identifies the checkpoint an artifact was built from."""
    h = hashlib.sha256(config_to_json(model.config, canonical=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def model_metadata(
    model: torch.nn.Module, precision: str, height: int, width: int, extra: dict[str, Any] | None = None
) -> dict[str, str]:
    cfg = model.config
    n_classes = cfg["tasks"].get("semseg", {}).get("num_classes", 19)
    classes = cfg.get("classes") or list(CITYSCAPES_CLASSES[:n_classes])
    palette = cfg.get("palette") or CITYSCAPES_PALETTE[:n_classes].tolist()
    meta = {
        "mtl_perception.format": "1",
        "model_hash": state_hash(model),
        "precision": precision,
        "decoder": cfg["decoder"]["type"],
        "input_size": json.dumps([height, width]),
        "input_format": "NCHW float32 RGB, normalised: (x/255 - mean) / std",
        "normalization": json.dumps(cfg["normalization"]),
        "classes": json.dumps(classes),
        "palette": json.dumps(palette),
        "depth_units": "metres",
        "outputs": json.dumps(
            {
                "semseg": "logits [N,K,H,W]",
                "depth": "metres [N,1,H,W]",
                # log d_true ~ N(log depth, exp(depth_log_sigma)^2): scale-free, canonical or metric alike
                **({"depth_log_sigma": "log sigma of a Gaussian on log depth [N,1,H,W]"} if _has_unc(model) else {}),
                LABELS: "argmax of semseg as float class ids [N,1,H,W]",
                CONFIDENCE: "max softmax(semseg / semseg_temperature) [N,1,H,W]",
            }
        ),
        # confidence = max_k softmax(semseg / T): logits stay raw so the fold and parity are untouched
        "semseg_temperature": repr(semseg_temperature(model)),
        "config": config_to_json(cfg),
    }
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (extra or {}).items()})
    return meta


def semseg_temperature(model: torch.nn.Module) -> float:
    """The checkpoint's calibrated softmax temperature (``mtl-perception calibrate``), 1.0 if none."""
    return float((getattr(model, "checkpoint_metadata", None) or {}).get("semseg_temperature", 1.0))


def _has_unc(model: torch.nn.Module) -> bool:
    return "depth_log_sigma" in output_names(model)


def _attach_metadata(model_proto, meta: dict[str, str]) -> None:
    del model_proto.metadata_props[:]
    for k, v in meta.items():
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = k, v


def _export_fp32(fast: torch.nn.Module, path: Path, height: int, width: int, dynamic_batch: bool, opset: int) -> None:
    x = torch.randn(1, 3, height, width)
    names = output_names(fast)
    dyn = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}} if dynamic_batch else None
    with warnings.catch_warnings():
        # the trace freezes Python-side shape checks (fixed input size, grid): intended, and
        # `mtl-perception export` / test_parity compare the graph with torch, so the warnings are noise
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            fast,
            (x,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=names,
            opset_version=opset,
            dynamic_axes=dyn,
            dynamo=False,
        )


@contextlib.contextmanager
def _quiet_root_logger(level: int = logging.ERROR):
    root = logging.getLogger()
    old = root.level
    root.setLevel(max(level, old))
    try:
        yield
    finally:
        root.setLevel(old)


class _FrameReader:
    """ONNX Runtime CalibrationDataReader over preprocessed frames."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._it = iter([{INPUT_NAME: b} for b in batches])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - required by some ORT versions
        pass


def _int8_excluded_nodes(onnx_path: Path, model) -> list[str]:
    """Nodes kept fp32 in int8 exports. A depthwise-separable CNN backbone (EfficientNet-Lite, ReLU6)
    quantised with per-tensor activations loses too much: on the shipped Lite0 + MLoRE model, int8
    everywhere gave 95.0 % argmax agreement and 6.8 % median depth difference against fp32; with
    the backbone in fp32 99.6 % and 1.2 % (3 held-out frames). The decoder and heads stay int8."""
    import onnx

    from mtl_perception.model.config import is_vit

    if is_vit(model.config["backbone"]["name"]):
        return []
    graph = onnx.load(str(onnx_path)).graph
    # "/model/": the deploy form inside graph_products.GraphProducts
    return [n.name for n in graph.node if n.name.startswith("/model/backbone/") and n.op_type in INT8_OP_TYPES]


def export_onnx(
    model: torch.nn.Module,
    out_path: str | Path,
    precision: str = "fp32",
    height: int | None = None,
    width: int | None = None,
    dynamic_batch: bool = False,
    calibration: Iterable[np.ndarray] | None = None,
    calibration_info: dict[str, Any] | None = None,
    opset: int = 17,
    int8_scheme: str = "u8s8",
) -> dict[str, Any]:
    """Export ``model`` (training form or checkpoint-loaded) as ONNX; returns a summary dict.

    ``calibration``: preprocessed NCHW float32 batches (required for int8). ``int8_scheme``: see
    ``INT8_SCHEMES`` (``u8s8`` for ONNX Runtime on x86, ``s8s8`` for TensorRT).
    """
    import onnx

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if int8_scheme not in INT8_SCHEMES:
        raise ValueError(f"int8_scheme must be one of {INT8_SCHEMES}, got {int8_scheme!r}")
    height = height or model.config["input_size"][0]
    width = width or model.config["input_size"][1]
    if (
        dynamic_batch
        and model.config["decoder"]["type"] == "mlore"
        and model.config["decoder"].get("folded_conv") == "grouped"
    ):
        model = _with_unfold(model)  # a grouped conv's group count is static in ONNX
    # class ids and confidence as graph outputs beside the logits (see deploy.graph_products)
    fast = GraphProducts(deploy(model).cpu().float().eval(), semseg_temperature(model))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {"dynamic_batch": dynamic_batch}
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        _export_fp32(fast, fp32_path, height, width, dynamic_batch, opset)
        if precision == "fp32":
            proto = onnx.load(str(fp32_path))
        elif precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16
            from onnxruntime.transformers.onnx_model import OnnxModel

            proto = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
            wrapped = OnnxModel(proto)
            wrapped.topological_sort()  # the converter appends the input Casts after their users
            proto = wrapped.model
        else:
            batches = list(calibration or [])
            if not batches:
                raise ValueError("int8 export needs calibration frames (a dataset or a rosbag)")
            from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
            from onnxruntime.quantization.shape_inference import quant_pre_process

            pre = Path(tmp) / "pre.onnx"
            quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
            q_path = Path(tmp) / "int8.onnx"
            symmetric = int8_scheme == "s8s8"
            exclude = _int8_excluded_nodes(pre, model)
            with _quiet_root_logger():  # the quantiser warns per tensor on the root logger (fused biases)
                quantize_static(
                    str(pre),
                    str(q_path),
                    _FrameReader(batches),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    # only the GEMM-like ops: quantising Softmax/Add/... too cost accuracy (93% argmax) and speed
                    op_types_to_quantize=list(INT8_OP_TYPES),
                    activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    reduce_range=not symmetric,
                    nodes_to_exclude=exclude,
                    extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
                )
            proto = onnx.load(str(q_path))
            extra["int8_excluded"] = "cnn backbone (fp32)" if exclude else "none"
            extra["calibration"] = {"frames": int(sum(b.shape[0] for b in batches)), **(calibration_info or {})}
            extra["int8_scheme"] = int8_scheme
        _attach_metadata(proto, model_metadata(model, precision, height, width, extra))
        onnx.checker.check_model(proto)
        from mtl_perception.atomic_io import atomic_path

        with atomic_path(out_path) as tmp_out:  # a killed export leaves the old file or none, never half
            onnx.save(proto, str(tmp_out))
    return {
        "path": str(out_path),
        "precision": precision,
        "input": [height, width],
        "bytes": out_path.stat().st_size,
        "model_hash": state_hash(model),
    }


def _with_unfold(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    m = copy.deepcopy(model)
    for module in m.modules():
        if hasattr(module, "folded_conv"):
            module.folded_conv = "unfold"
    return m


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of ONNX file ``path``; EngineError (naming the file) if it is not readable
    ONNX or its metadata is not text."""
    import onnx

    from mtl_perception.deploy.interface import EngineError

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError, onnx's own: all mean "not this file"
        raise EngineError(
            f"{path} is not a readable ONNX file ({type(exc).__name__}: {' '.join(str(exc).split())}); "
            "export it again with `mtl-perception export`"
        ) from exc
    meta = {p.key: p.value for p in proto.metadata_props}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):  # proto2: bad UTF-8 -> bytes
        raise EngineError(f"{path}: ONNX metadata is not UTF-8 text (corrupt file); export it again")
    return meta
