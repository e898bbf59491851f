"""ONNX Runtime backend: CPU (the embedded default) or the CUDA execution provider."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.deploy.interface import EngineError


class OrtBackend:
    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: Path,
        precision: str,
        device: str,
        threads: int | None = None,
        inter_threads: int | None = None,
        io_binding: bool | None = None,
        allow_spinning: bool = False,
    ) -> None:
        import onnxruntime as ort

        self.precision, self.device, self.path = precision, device, Path(onnx_path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        if inter_threads:
            opts.inter_op_num_threads = int(inter_threads)
        # ORT's pool busy-waits after each run by default; on a few-core robot computer that spin
        # starves the node's own pre/postprocessing and DDS threads (measured: postprocess 12 ms vs
        # 1.7 ms on 2 cores), so it is off unless asked for.
        self.allow_spinning = bool(allow_spinning)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if allow_spinning else "0")
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise EngineError(
                    "ONNX Runtime has no CUDA provider here; install onnxruntime-gpu or use --backend torch"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        batch_dim = self.session.get_inputs()[0].shape[0]
        self.static_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else 0
        self.output_names = [o.name for o in self.session.get_outputs()]
        # IO binding keeps outputs on the device between runs; it only helps with a GPU.
        self.io_binding = device == "cuda" if io_binding is None else bool(io_binding)
        self.threads = opts.intra_op_num_threads

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.static_batch and x.shape[0] != self.static_batch:
            # a static-batch export (the default: fixed shapes optimise best) runs a batch image by image
            parts = [self._run(x[i : i + self.static_batch]) for i in range(0, x.shape[0], self.static_batch)]
            return {n: np.concatenate([p[n] for p in parts]) for n in self.output_names}
        return self._run(x)

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        if self.io_binding:
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, x)
            for name in self.output_names:
                binding.bind_output(name)
            self.session.run_with_iobinding(binding)
            outs = binding.copy_outputs_to_cpu()
        else:
            outs = self.session.run(self.output_names, {self.input_name: x})
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self.output_names, outs)}

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "backend": self.name,
            "precision": self.precision,
            "device": self.device,
            "onnx": str(self.path),
            "providers": self.session.get_providers(),
            "io_binding": self.io_binding,
            "threads": self.threads,
            # 0: dynamic batch dimension (one session call per batch); else the export's fixed batch
            "static_batch": self.static_batch,
            "allow_spinning": self.allow_spinning,
            "onnxruntime": ort.__version__,
        }
