"""Checkpoint resolution and the content-addressed artifact cache (ONNX files, engines).

Artifacts are keyed by the sha256 of the checkpoint file, the precision and the input size,
so a node starts fast the second time and never serves an artifact built from another
checkpoint. Writes are atomic (temp file + rename): a killed build leaves no half artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from mtl_perception.deploy.interface import EngineError, ModelInfo
from mtl_perception.deploy.preprocess import preprocess_frames
from mtl_perception.geometry import DEFAULT_HFOV_DEG

log = logging.getLogger("mtl_perception.artifacts")

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: the shipped model of each decoder where it is not ``<decoder>_lite0``: mlore ships on EfficientNet-Lite2
#: at 224x448 (docs/sim2real.md, sections 30-31); ``mlore_lite0`` stays as the donor the other decoders'
#: recipes start from
SHIPPED_MODELS: dict[str, str] = {"mlore": "mlore_lite2"}
DEFAULT_CHECKPOINT = ASSETS / "models" / f"{SHIPPED_MODELS['mlore']}.safetensors"
TRAIN_HINT = "mtl-perception train --config config/train/mlore_lite2.yaml --out runs/mlore_lite2"
TEMPERATURE_KEY = "semseg_temperature"  # checkpoint metadata written by `mtl-perception calibrate`
CALIBRATION_SEED = 90210  # synthetic calibration drive, distinct from training and test seeds


def shipped_model_name(decoder: str | None = None) -> str:
    """The file stem of the shipped model of ``decoder`` (default ``mlore``): ``mlore_lite2``, ``moe_lite0``, ..."""
    decoder = decoder or "mlore"
    return SHIPPED_MODELS.get(decoder, f"{decoder}_lite0")


def shipped_checkpoint_path(decoder: str | None = None) -> Path:
    """Where the shipped model of ``decoder`` (default ``mlore``) lives, present or not."""
    return ASSETS / "models" / f"{shipped_model_name(decoder)}.safetensors"


def train_hint(decoder: str | None = None) -> str:
    """The command that trains the shipped recipe for ``decoder`` (same data and schedule as mlore)."""
    decoder = decoder or "mlore"
    if decoder == "mlore":
        return TRAIN_HINT
    return (
        "mtl-perception train --config config/train/decoder_lite0_warmstart.yaml "
        f"--set model=../models/{decoder}_lite0.yaml --out runs/{decoder}_lite0"
    )


def shipped_checkpoint(decoder: str | None = None) -> Path:
    """The shipped model of ``decoder``; FileNotFoundError naming the command that trains it."""
    path = shipped_checkpoint_path(decoder)
    if not path.is_file():
        raise FileNotFoundError(
            f"no shipped model for decoder {decoder or 'mlore'} ({path} missing): train it with "
            f"`{train_hint(decoder)}` and copy runs/{shipped_model_name(decoder)}/model.safetensors to {path}, "
            "or pass a checkpoint path"
        )
    return path


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file():
            raise EngineError(
                f"no --checkpoint given and the shipped model {DEFAULT_CHECKPOINT} is missing; "
                f"train one with `{TRAIN_HINT}` or pass --checkpoint PATH"
            )
        return DEFAULT_CHECKPOINT
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise EngineError(f"checkpoint {path} not found; pass an existing .safetensors file (or train: `{TRAIN_HINT}`)")
    return path


def cache_root(cache_dir: str | Path | None = None, create: bool = True) -> Path:
    """``cache_dir``, else ``$MTL_PERCEPTION_CACHE``, else ``~/.cache/mtl_perception``; made unless not ``create``."""
    root = Path(cache_dir or os.environ.get("MTL_PERCEPTION_CACHE", Path.home() / ".cache" / "mtl_perception"))
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


@lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_hash(path: Path) -> str:
    st = path.stat()
    return _file_sha256(str(path.resolve()), st.st_mtime_ns, st.st_size)


def model_info(ckpt: Path) -> ModelInfo:
    from mtl_perception.data.cityscapes_classes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
    from mtl_perception.model import CheckpointError, read_metadata

    try:
        meta = read_metadata(ckpt)
    except CheckpointError as exc:
        raise EngineError(str(exc)) from exc
    cfg = json.loads(meta["config"])
    temperature = semseg_temperature(meta, ckpt)
    n = cfg["tasks"].get("semseg", {}).get("num_classes", 19)
    camera = cfg.get("camera") or {}  # absent in checkpoints from before camera-aware depth
    return ModelInfo(
        input_size=tuple(cfg["input_size"]),
        mean=list(cfg["normalization"]["mean"]),
        std=list(cfg["normalization"]["std"]),
        classes=list(cfg.get("classes") or CITYSCAPES_CLASSES[:n]),
        palette=[list(map(int, c)) for c in (cfg.get("palette") or CITYSCAPES_PALETTE[:n].tolist())],
        decoder=cfg["decoder"]["type"],
        model_hash=checkpoint_hash(ckpt),
        max_depth=float(cfg["tasks"].get("depth", {}).get("max_depth", 120.0)),
        extra={"config": cfg, "checkpoint": str(ckpt)},
        resize=camera.get("resize", "stretch"),
        canonical_focal=camera.get("canonical_focal"),
        default_hfov_deg=float(camera.get("default_hfov_deg", DEFAULT_HFOV_DEG)),
        semseg_temperature=temperature,
    )


def semseg_temperature(meta: dict[str, str], ckpt: Path | str = "checkpoint") -> float:
    """The calibrated softmax temperature in checkpoint metadata; 1.0 for checkpoints without one."""
    raw = meta.get(TEMPERATURE_KEY)
    if raw is None:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise EngineError(
            f"{ckpt}: metadata {TEMPERATURE_KEY}={raw!r} is not a positive number; refit it with "
            f"`mtl-perception calibrate --checkpoint {ckpt} --data DIR --out OUT`"
        )
    return value


def synthetic_calibration_frames(n: int, size: tuple[int, int], seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """Frames from a seeded synthetic drive (default seed: calibration, never used for training or tests)."""
    from mtl_perception.data.synthetic import render_sequence

    return [f.image for f in render_sequence(seed, n, size[0], size[1], fps=2.0)]


def onnx_artifact(
    ckpt: Path,
    precision: str,
    size: tuple[int, int],
    cache_dir: str | Path | None = None,
    calibration: Iterable[np.ndarray] | None = None,
    progress: bool = False,
    dynamic_batch: bool = False,
    int8_scheme: str = "u8s8",
) -> Path:
    """Path of the cached ONNX export for (checkpoint, precision, size); exported if missing.

    ``dynamic_batch``: a symbolic batch dimension (its own artifact) so one session call runs a
    multi-camera batch; static exports (the default) optimise best for one frame.

    int8 comes in two Q/DQ flavours (``export.INT8_SCHEMES``): ``u8s8`` for ONNX Runtime on x86,
    ``s8s8`` (symmetric) for TensorRT; each is its own artifact.
    """
    from mtl_perception.deploy.cache import mark_used
    from mtl_perception.deploy.export import export_onnx, read_metadata
    from mtl_perception.deploy.postprocess import GRAPH_LABELS
    from mtl_perception.model import load_checkpoint

    h, w = size
    flavour = f"{precision}-{int8_scheme}" if precision == "int8" else precision
    key = f"{checkpoint_hash(ckpt)[:16]}_{flavour}_{h}x{w}{'_dyn' if dynamic_batch else ''}"
    path = cache_root(cache_dir) / "onnx" / f"{key}.onnx"
    if path.is_file():
        try:
            meta = read_metadata(path)
            if (
                meta.get("precision") == precision
                and (precision != "int8" or meta.get("int8_scheme") == int8_scheme)
                and meta.get("dynamic_batch", "false") == json.dumps(dynamic_batch)
                # exported before the graph computed class ids + confidence: export again
                and GRAPH_LABELS in json.loads(meta.get("outputs", "{}"))
            ):
                mark_used(path)  # `mtl-perception cache prune` removes the least recently used first
                return path
        except Exception as exc:  # unreadable/corrupt: rebuild
            log.warning("cached artifact %s unreadable (%s); rebuilding", path, exc)
    log.info("exporting %s ONNX for %s to %s (first use; cached afterwards)", precision, ckpt.name, path)
    model = load_checkpoint(ckpt)
    batches, cal_info = None, None
    if precision == "int8":
        frames = list(calibration) if calibration is not None else synthetic_calibration_frames(32, size)
        norm = model.config["normalization"]
        resize = (model.config.get("camera") or {}).get("resize", "stretch")
        batches = [preprocess_frames([f], size, norm["mean"], norm["std"], resize) for f in frames]
        cal_info = {
            "source": "synthetic" if calibration is None else "user",
            "seed": CALIBRATION_SEED if calibration is None else None,
        }
    export_onnx(
        model,
        path,
        precision,
        h,
        w,
        dynamic_batch=dynamic_batch,
        calibration=batches,
        calibration_info=cal_info,
        int8_scheme=int8_scheme,
    )
    return path
