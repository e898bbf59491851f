"""``InferenceEngine``: one interface over torch, ONNX Runtime and TensorRT backends.

The ROS node, ``eval``, ``bench`` and ``replay-eval`` all run frames through this class, so
every number a CLI measures is the node's number. ``infer`` takes uint8 HxWx3 RGB frames
(any size; stretched or letterboxed into the model's input, ``info.resize``) or an already
normalised NCHW float32 batch, and returns raw network outputs on the network grid:
``{"semseg": (N,K,h,w) logits, "depth": (N,1,h,w)}`` as float32 numpy; depth is metres for a
legacy model and canonical-camera depth when ``info.canonical_focal`` is set.
``pipeline.FramePipeline`` maps them to a frame (letterbox crop, metres from the frame's K).

Backend choice (``backend="auto"``): TensorRT if importable and a GPU is present, else
ONNX Runtime with the CUDA provider, else torch on CUDA, else ONNX Runtime on the CPU, among
those that can run the requested precision. The choice and the reason are logged and kept in
``describe()``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

# EngineError, ModelInfo and Backend live in ``interface`` (a leaf module the backends import
# without importing this one) and preprocess_frames in ``preprocess``; imported here, where
# every caller has always found them.
from mtl_perception.deploy.interface import Backend, EngineError, ModelInfo
from mtl_perception.deploy.preprocess import preprocess_frames
from mtl_perception.geometry import Letterbox

log = logging.getLogger("mtl_perception.engine")

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except ImportError:
        return []


def tensorrt_usable() -> tuple[bool, str]:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return False, f"tensorrt not importable ({exc.__class__.__name__})"
    if not cuda_available():
        return False, "tensorrt imports but no CUDA device is visible"
    return True, "tensorrt importable and a CUDA device is present"


def backend_supports(backend: str, precision: str, device: str) -> tuple[bool, str]:
    """Can ``backend`` run ``precision`` on ``device`` ('cpu' or 'cuda')? With the reason."""
    if backend == "tensorrt":
        if device != "cuda":
            return False, "TensorRT needs a CUDA GPU"
        return (precision in ("fp32", "fp16", "int8"), "TensorRT runs fp32, fp16 and int8 (Q/DQ)")
    if backend == "onnxruntime":
        if device == "cpu":
            return (
                precision in ("fp32", "int8"),
                "ONNX Runtime on the CPU runs fp32 and int8; use --precision fp32|int8 or a GPU for fp16",
            )
        return (precision in ("fp32", "fp16", "int8"), "ONNX Runtime CUDA runs fp32, fp16 and int8")
    if backend == "torch":
        if device == "cpu":
            return (precision in ("fp32", "bf16"), "torch on the CPU runs fp32 and bf16; fp16 needs CUDA")
        return (
            precision in ("fp32", "fp16", "bf16"),
            "torch on CUDA runs fp32, fp16 and bf16; int8 needs onnxruntime or tensorrt",
        )
    return False, f"unknown backend {backend!r}"


def choose_backend(precision: str, device: str | None = None) -> tuple[str, str, str]:
    """(backend, device, reason) for ``backend=auto``."""
    has_cuda = cuda_available() if device in (None, "cuda") else False
    candidates: list[tuple[str, str, str]] = []
    ok, why = tensorrt_usable()
    if ok and has_cuda:
        candidates.append(("tensorrt", "cuda", why))
    if has_cuda and "CUDAExecutionProvider" in ort_providers():
        candidates.append(("onnxruntime", "cuda", "ONNX Runtime CUDA provider available"))
    if has_cuda:
        candidates.append(("torch", "cuda", "torch CUDA available"))
    if device in (None, "cpu") or not has_cuda:
        candidates.append(("onnxruntime", "cpu", "no GPU backend usable: ONNX Runtime on the CPU"))
        candidates.append(("torch", "cpu", "torch on the CPU"))
    tried = []
    for name, dev, why in candidates:
        ok, reason = backend_supports(name, precision, dev)
        if ok:
            skipped = f" (skipped: {'; '.join(tried)})" if tried else ""
            return name, dev, why + skipped
        tried.append(f"{name}/{dev}: {reason}")
    raise EngineError(f"no available backend can run precision {precision!r}: " + "; ".join(tried))


class InferenceEngine:
    def __init__(self, backend: Backend, info: ModelInfo, selection_reason: str = "", max_batch: int = 1) -> None:
        self.backend = backend
        self.info = info
        self.selection_reason = selection_reason
        # frames per inference call the engine was built for (a multi-camera node batches up to this)
        self.max_batch = max_batch

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        checkpoint: str | Path | None = None,
        backend: str = "auto",
        precision: str = "fp32",
        device: str | None = None,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        calibration: Any = None,
        progress: bool = False,
        max_batch: int = 1,
        **options: Any,
    ) -> InferenceEngine:
        """Build an engine for a checkpoint (default: the shipped model).

        ``max_batch``: most frames per ``infer`` call in one backend run. Above 1, ONNX Runtime and
        TensorRT use the dynamic-batch export (TensorRT: optimisation profile 1 / max_batch /
        max_batch); at 1 the static export, which optimises best for a single camera. torch batches
        natively. Larger batches still run, split into chunks of ``max_batch`` where the artifact needs it.
        """
        from mtl_perception.deploy import artifacts

        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise EngineError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        dynamic = max_batch > 1
        if backend not in BACKENDS:
            raise EngineError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if precision not in PRECISIONS:
            raise EngineError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        ckpt = artifacts.resolve_checkpoint(checkpoint)
        if backend == "auto":
            backend, dev, reason = choose_backend(precision, device)
        else:
            dev = device or ("cuda" if cuda_available() and backend != "onnxruntime" else "cpu")
            if (
                backend == "onnxruntime"
                and device is None
                and cuda_available()
                and "CUDAExecutionProvider" in ort_providers()
            ):
                dev = "cuda"
            ok, why = backend_supports(backend, precision, dev)
            if not ok:
                raise EngineError(f"backend {backend} on {dev} cannot run precision {precision}: {why}")
            reason = f"requested backend {backend} on {dev}"
        log.info("engine: backend=%s device=%s precision=%s (%s)", backend, dev, precision, reason)
        info = artifacts.model_info(ckpt)
        if backend == "torch":
            from mtl_perception.deploy.backends.torch_backend import TorchBackend

            impl: Backend = TorchBackend(ckpt, precision, dev, threads=threads, **options)
        elif backend == "onnxruntime":
            from mtl_perception.deploy.backends.ort_backend import OrtBackend

            onnx_path = artifacts.onnx_artifact(
                ckpt, precision, info.input_size, cache_dir, calibration, progress, dynamic_batch=dynamic
            )
            impl = OrtBackend(onnx_path, precision, dev, threads=threads, **options)
        else:
            from mtl_perception.deploy.backends.tensorrt_backend import TensorRTBackend

            # TensorRT only takes symmetric (zero-point 0) int8 Q/DQ
            onnx_path = artifacts.onnx_artifact(
                ckpt,
                precision,
                info.input_size,
                cache_dir,
                calibration,
                progress,
                dynamic_batch=dynamic,
                int8_scheme="s8s8",
            )
            impl = TensorRTBackend(
                onnx_path, precision, info, cache_dir=artifacts.cache_root(cache_dir), max_batch=max_batch, **options
            )
        return cls(impl, info, reason, max_batch=max_batch)

    # ------------------------------------------------------------------ interface
    @property
    def input_size(self) -> tuple[int, int]:
        return self.info.input_size

    def preprocess(self, images: np.ndarray | list[np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """uint8 RGB frame(s) (H,W,3) or (N,H,W,3) -> normalised NCHW float32 at the input size
        (into ``out``, e.g. one slot of a batch, when given)."""
        return preprocess_frames(images, self.info.input_size, self.info.mean, self.info.std, self.info.resize, out=out)

    def letterbox(self, frame_hw: tuple[int, int]) -> Letterbox:
        """How a frame of ``frame_hw`` maps into the network input (what ``preprocess`` does)."""
        return Letterbox.fit(frame_hw, self.info.input_size, self.info.resize)

    def infer(self, batch: np.ndarray | list[np.ndarray]) -> dict[str, np.ndarray]:
        """Raw outputs on the network grid; accepts uint8 frames or a normalised NCHW batch."""
        if isinstance(batch, np.ndarray) and batch.ndim == 4 and batch.dtype == np.float32 and batch.shape[1] == 3:
            if tuple(batch.shape[2:]) != self.info.input_size:
                raise ValueError(f"NCHW input must be {self.info.input_size}, got {batch.shape[2:]}")
            x = np.ascontiguousarray(batch)
        else:
            x = self.preprocess(batch)
        return self.backend.run(x)

    def warmup(self, iterations: int = 3) -> float:
        """Run a few dummy frames (allocations, autotuning, CUDA graphs); returns seconds taken."""
        t0 = time.perf_counter()
        x = np.zeros((1, 3, *self.info.input_size), np.float32)
        for _ in range(iterations):
            self.backend.run(x)
        return time.perf_counter() - t0

    def describe(self) -> dict[str, Any]:
        return {
            **self.backend.describe(),
            "input_size": list(self.info.input_size),
            "decoder": self.info.decoder,
            "model_hash": self.info.model_hash,
            "classes": len(self.info.classes),
            "max_batch": self.max_batch,
            "selection_reason": self.selection_reason,
            "pid": os.getpid(),
        }
