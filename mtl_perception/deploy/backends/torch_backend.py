"""torch backend: the deploy form on CPU or CUDA in fp32 / fp16 / bf16, optional CUDA graphs
and ``torch.compile``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend:
    name = "torch"

    def __init__(
        self,
        checkpoint: Path,
        precision: str,
        device: str,
        threads: int | None = None,
        cuda_graphs: bool = False,
        compile: bool = False,
        train_form: bool = False,
    ) -> None:
        from mtl_perception.model import deploy, load_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self.precision, self.device = precision, device
        self.dtype = DTYPES[precision]
        model = load_checkpoint(checkpoint)
        self.form = "train" if train_form else "deploy"
        model = model.eval() if train_form else deploy(model, fuse_bn=True)  # fewer kernels in eager torch
        self.model = model.to(device=device, dtype=self.dtype)
        self.compiled = compile
        self._fn = torch.compile(self.model) if compile else self.model
        self.cuda_graphs = bool(cuda_graphs and device.startswith("cuda"))
        self._graph = None
        self._static_in: torch.Tensor | None = None
        self._static_out: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def _capture(self, x: torch.Tensor) -> None:
        self._static_in = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                self._fn(self._static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = self._fn(self._static_in)

    @torch.no_grad()
    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        t = torch.from_numpy(x).to(self.device, non_blocking=True).to(self.dtype)
        if self.cuda_graphs:
            if self._graph is None or self._static_in.shape != t.shape:
                self._capture(t)
            self._static_in.copy_(t)
            self._graph.replay()
            out = self._static_out
        else:
            out = self._fn(t)
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "precision": self.precision,
            "device": self.device,
            "form": self.form,
            "cuda_graphs": self.cuda_graphs,
            "compile": self.compiled,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
