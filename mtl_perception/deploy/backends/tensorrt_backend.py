"""TensorRT backend (TensorRT 10 / 11 Python API). Cannot run on the development machines
(no TensorRT, no GPU): written against the documented API, kept small, and tested where
``tensorrt`` imports (``test/test_tensorrt.py`` skips with that reason elsewhere).

- Strongly typed networks (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``) built from the
  precision's ONNX: fp16 = a float16 graph, int8 = a Q/DQ graph. No deprecated builder
  precision flags or INT8 calibrators.
- Engine cache keyed by model hash, precision, input shape, max batch, TensorRT version and GPU
  (name + compute capability); a JSON sidecar records the key.
- ``max_batch > 1`` (one engine for several cameras): built from the dynamic-batch ONNX with one
  optimisation profile min 1 / opt max_batch / max max_batch (``profile_shapes``); each run sets
  the input shape of the batch it gets, buffers are sized for max_batch. On load the sidecar and the engine's
  I/O shapes are validated; any mismatch (or a deserialisation failure after a driver or
  TensorRT change) triggers a rebuild. Writes are atomic (temp file + rename).
- A timing cache per (GPU, TensorRT version) makes rebuilds fast.
- Build progress is logged at least every 5 s (IProgressMonitor plus a heartbeat thread), so a
  long first build is never silent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.deploy.interface import EngineError, ModelInfo

log = logging.getLogger("mtl_perception.tensorrt")
HEARTBEAT_S = 5.0


def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError(
            "TensorRT is not installed (`import tensorrt` failed); use --backend onnxruntime or torch, "
            "or install TensorRT 10+ for your CUDA version"
        ) from exc
    return trt


def gpu_identity() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        raise EngineError("TensorRT needs a CUDA GPU and none is visible; use --backend onnxruntime")
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}"}


def engine_key(
    model_hash: str,
    precision: str,
    input_shape: tuple[int, ...],
    trt_version: str,
    gpu: dict[str, Any],
    max_batch: int = 1,
) -> dict[str, Any]:
    key = {
        "model_hash": model_hash,
        "precision": precision,
        "input_shape": list(input_shape),
        "max_batch": int(max_batch),
        "tensorrt": trt_version,
        **gpu,
    }
    key["id"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return key


def profile_shapes(
    input_size: tuple[int, int], max_batch: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """(min, opt, max) NCHW shapes of the optimisation profile for ``max_batch``, or None for a
    static batch-1 engine (no profile needed). opt = max: a multi-camera node sends full batches
    whenever every camera has a frame, so that is the shape to tune kernels for."""
    if max_batch < 1:
        raise EngineError(f"max_batch must be >= 1, got {max_batch}")
    if max_batch == 1:
        return None
    h, w = input_size
    return (1, 3, h, w), (max_batch, 3, h, w), (max_batch, 3, h, w)


class _Progress:
    """Logs TensorRT build phases; subclassed from trt.IProgressMonitor at runtime."""

    @staticmethod
    def make(trt):
        class Monitor(trt.IProgressMonitor):
            def __init__(self) -> None:
                trt.IProgressMonitor.__init__(self)
                self.last = time.monotonic()
                self.current = "starting"

            def phase_start(self, phase_name, parent_phase, num_steps):
                self.current = f"{phase_name} (0/{num_steps})"
                log.info("TensorRT build: %s started (%d steps)", phase_name, num_steps)

            def step_complete(self, phase_name, step):
                self.current = f"{phase_name} (step {step + 1})"
                if time.monotonic() - self.last >= HEARTBEAT_S:
                    self.last = time.monotonic()
                    log.info("TensorRT build: %s", self.current)
                return True  # False would cancel the build

            def phase_finish(self, phase_name):
                log.info("TensorRT build: %s finished", phase_name)

        return Monitor()


def build_engine(
    onnx_path: Path,
    precision: str,
    key: dict[str, Any],
    engine_path: Path,
    timing_cache: Path,
    workspace_gb: float = 4.0,
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None,
) -> bytes:
    """Build and cache a serialized engine. ``profile``: (min, opt, max) shapes of the network's
    input for a dynamic-batch ONNX (see ``profile_shapes``); None for a static one."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if profile is not None:
        # a -1 batch dimension cannot be built without a profile covering it
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(network.get_input(0).name, *profile)
        config.add_optimization_profile(opt_profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    monitor = _Progress.make(trt)
    config.progress_monitor = monitor
    done = threading.Event()
    t0 = time.monotonic()

    def heartbeat() -> None:  # guarantees a log line every 5 s even inside long phases
        while not done.wait(HEARTBEAT_S):
            log.info(
                "TensorRT build (%s, %s) running for %.0f s: %s",
                precision,
                key["gpu"],
                time.monotonic() - t0,
                monitor.current,
            )

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        done.set()
        thread.join()
    if serialized is None:
        raise EngineError(f"TensorRT failed to build an engine from {onnx_path} ({precision}); see the log above")
    data = bytes(serialized)
    _atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    _atomic_write(engine_path, data)
    sidecar = {**key, "build_s": time.monotonic() - t0, "engine_bytes": len(data)}
    sidecar["engine_sha256"] = hashlib.sha256(data).hexdigest()
    _atomic_write(engine_path.with_suffix(".json"), json.dumps(sidecar, indent=2).encode())
    log.info("TensorRT engine built in %.1f s: %s", time.monotonic() - t0, engine_path)
    return data


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file + fsync + rename (mtl_perception.atomic_io): a killed build leaves no half engine. The
    engine is written before its sidecar, and sidecar_matches wants both, so a kill between the two
    writes means "no cached engine" and a rebuild."""
    from mtl_perception.atomic_io import atomic_write_bytes

    atomic_write_bytes(path, data)


def sidecar_matches(engine_path: Path, key: dict[str, Any]) -> tuple[bool, str]:
    side = engine_path.with_suffix(".json")
    if not engine_path.is_file() or not side.is_file():
        return False, "no cached engine"
    try:
        saved = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False, "engine sidecar unreadable"
    if not isinstance(saved, dict):
        return False, "engine sidecar unreadable"
    for field in ("model_hash", "precision", "input_shape", "max_batch", "tensorrt", "gpu", "compute_capability"):
        if saved.get(field) != key[field]:
            return False, f"cached engine was built for {field}={saved.get(field)!r}, need {key[field]!r}"
    # sidecars since the crash-safety work record the engine's size and hash: a damaged engine file
    # (disk fault, a copy cut short) is rebuilt instead of handed to TensorRT
    if "engine_bytes" in saved and engine_path.stat().st_size != saved["engine_bytes"]:
        return False, "cached engine is not the size its sidecar records (damaged file)"
    if "engine_sha256" in saved and hashlib.sha256(engine_path.read_bytes()).hexdigest() != saved["engine_sha256"]:
        return False, "cached engine does not match its sidecar's sha256 (damaged file)"
    return True, "cached engine matches"


class TensorRTBackend:
    name = "tensorrt"

    def __init__(
        self,
        onnx_path: Path,
        precision: str,
        info: ModelInfo,
        cache_dir: Path,
        device: str = "cuda",
        workspace_gb: float = 4.0,
        rebuild: bool = False,
        max_batch: int = 1,
        **_: Any,
    ) -> None:
        import torch

        trt = _trt()
        self.precision, self.device = precision, "cuda"
        self.max_batch = int(max_batch)
        gpu = gpu_identity()
        h, w = info.input_size
        profile = profile_shapes((h, w), self.max_batch)
        self.key = engine_key(info.model_hash, precision, (1, 3, h, w), trt.__version__, gpu, max_batch=self.max_batch)
        engines = Path(cache_dir) / "engines"
        self.engine_path = engines / f"{self.key['id']}.engine"
        timing = engines / f"timing_{gpu['gpu'].replace(' ', '_')}_{trt.__version__}.cache"
        ok, why = sidecar_matches(self.engine_path, self.key)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = None
        if ok and not rebuild:
            self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None:
                why = "cached engine failed to deserialize (TensorRT or driver changed)"
            elif not self._io_matches((h, w)):
                why, self.engine = "cached engine I/O shapes do not match the model", None
            else:
                from mtl_perception.deploy.cache import mark_used

                mark_used(self.engine_path, self.engine_path.with_suffix(".json"))  # LRU order for `cache prune`
        if self.engine is None:
            log.info("building TensorRT engine (%s): %s", precision, why)
            data = build_engine(
                Path(onnx_path), precision, self.key, self.engine_path, timing, workspace_gb, profile=profile
            )
            self.engine = self.runtime.deserialize_cuda_engine(data)
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.buffers: dict[str, torch.Tensor] = {}
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            # the dynamic batch dimension reads -1: buffers hold max_batch images, a smaller batch
            # uses their leading part (same address, contiguous)
            shape = tuple(self.max_batch if d < 0 else d for d in self.engine.get_tensor_shape(name))
            dtype = dtypes.get(self.engine.get_tensor_dtype(name), torch.float32)
            self.buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
            (self.inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(name)

    def _io_matches(self, input_size: tuple[int, int]) -> bool:
        trt = _trt()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(ins) != 1 or not {"semseg", "depth"} <= set(names):
            return False
        shape = tuple(self.engine.get_tensor_shape(ins[0]))
        if self.max_batch == 1:
            return shape == (1, 3, *input_size)
        if shape != (-1, 3, *input_size) or self.engine.num_optimization_profiles < 1:
            return False
        _, _, max_shape = self.engine.get_tensor_profile_shape(ins[0], 0)
        return tuple(max_shape) == (self.max_batch, 3, *input_size)

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        n = x.shape[0]
        if n > self.max_batch:  # beyond the profile: chunks of max_batch
            parts = [self.run(x[i : i + self.max_batch]) for i in range(0, n, self.max_batch)]
            return {k: np.concatenate(v) for k, v in _stack(parts).items()}
        inp = self.buffers[self.inputs[0]]
        if self.max_batch > 1 and not self.context.set_input_shape(self.inputs[0], tuple(x.shape)):
            raise EngineError(f"TensorRT rejected input shape {tuple(x.shape)} (profile max {self.max_batch})")
        with torch.cuda.stream(self.stream):
            inp[:n].copy_(torch.from_numpy(x).to(inp.dtype), non_blocking=False)
            self.context.execute_async_v3(self.stream.cuda_stream)
            outs = {name: self.buffers[name][:n].float().cpu().numpy() for name in self.outputs}
        self.stream.synchronize()
        return outs

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "precision": self.precision,
            "device": self.device,
            "engine": str(self.engine_path),
            "max_batch": self.max_batch,
            **{k: self.key[k] for k in ("tensorrt", "gpu", "compute_capability")},
        }


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    return {k: [p[k] for p in parts] for k in parts[0]}
