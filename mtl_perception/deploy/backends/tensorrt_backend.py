"""TensorRT backend (TensorRT 10 / 11 Python API). Cannot run on the development machines
(no TensorRT, no GPU): written against the documented API, kept small, and tested where
``tensorrt`` imports (``test/test_tensorrt.py`` skips with that reason elsewhere).

- Strongly typed networks (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``) built from the
  precision's ONNX: fp16 = a float16 graph, int8 = a Q/DQ graph. No deprecated builder
  precision flags or INT8 calibrators.
- Engine cache keyed by model hash, precision, input shape, TensorRT version and GPU (name +
  compute capability); a JSON sidecar records the key. On load the sidecar and the engine's
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
    model_hash: str, precision: str, input_shape: tuple[int, ...], trt_version: str, gpu: dict[str, Any]
) -> dict[str, Any]:
    key = {
        "model_hash": model_hash,
        "precision": precision,
        "input_shape": list(input_shape),
        "tensorrt": trt_version,
        **gpu,
    }
    key["id"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return key


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
) -> bytes:
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
    _atomic_write(
        engine_path.with_suffix(".json"), json.dumps({**key, "build_s": time.monotonic() - t0}, indent=2).encode()
    )
    log.info("TensorRT engine built in %.1f s: %s", time.monotonic() - t0, engine_path)
    return data


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def sidecar_matches(engine_path: Path, key: dict[str, Any]) -> tuple[bool, str]:
    side = engine_path.with_suffix(".json")
    if not engine_path.is_file() or not side.is_file():
        return False, "no cached engine"
    try:
        saved = json.loads(side.read_text())
    except json.JSONDecodeError:
        return False, "engine sidecar unreadable"
    for field in ("model_hash", "precision", "input_shape", "tensorrt", "gpu", "compute_capability"):
        if saved.get(field) != key[field]:
            return False, f"cached engine was built for {field}={saved.get(field)!r}, need {key[field]!r}"
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
        **_: Any,
    ) -> None:
        import torch

        trt = _trt()
        self.precision, self.device = precision, "cuda"
        gpu = gpu_identity()
        h, w = info.input_size
        self.key = engine_key(info.model_hash, precision, (1, 3, h, w), trt.__version__, gpu)
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
            elif not self._io_matches((1, 3, h, w)):
                why, self.engine = "cached engine I/O shapes do not match the model", None
        if self.engine is None:
            log.info("building TensorRT engine (%s): %s", precision, why)
            data = build_engine(Path(onnx_path), precision, self.key, self.engine_path, timing, workspace_gb)
            self.engine = self.runtime.deserialize_cuda_engine(data)
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.buffers: dict[str, torch.Tensor] = {}
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            dtype = dtypes.get(self.engine.get_tensor_dtype(name), torch.float32)
            self.buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
            (self.inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(name)

    def _io_matches(self, input_shape: tuple[int, ...]) -> bool:
        trt = _trt()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        return (
            len(ins) == 1
            and tuple(self.engine.get_tensor_shape(ins[0])) == tuple(input_shape)
            and {"semseg", "depth"} <= set(names)
        )

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        if x.shape[0] != 1:
            return {
                k: np.concatenate(v) for k, v in _stack([self.run(x[i : i + 1]) for i in range(x.shape[0])]).items()
            }
        inp = self.buffers[self.inputs[0]]
        with torch.cuda.stream(self.stream):
            inp.copy_(torch.from_numpy(x).to(inp.dtype), non_blocking=False)
            self.context.execute_async_v3(self.stream.cuda_stream)
            outs = {n: self.buffers[n].float().cpu().numpy() for n in self.outputs}
        self.stream.synchronize()
        return outs

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "precision": self.precision,
            "device": self.device,
            "engine": str(self.engine_path),
            **{k: self.key[k] for k in ("tensorrt", "gpu", "compute_capability")},
        }


def _stack(parts: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    return {k: [p[k] for p in parts] for k in parts[0]}
