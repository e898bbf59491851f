"""The per-pixel semantic products computed inside the exported graph, next to the logits.

Class ids (argmax) and confidence (softmax probability of that class at the checkpoint's calibrated
temperature) are reductions over the class axis of the (N, K, h, w) logits: on the host they cost
the node ~2.6 ms per 720p frame (a pass per class over the grid, 19 classes), inside the graph they
run on the accelerator with the network (TensorRT, CUDA) or in ONNX Runtime's threads. The logits
stay an output (evaluation and ``calibrate`` read them), so the fold and the parity tests are
untouched; ``FramePipeline`` uses these outputs when the graph has them and computes the same on the
host otherwise (a torch engine, or an ONNX file exported before they existed).

Both are float32 (N, 1, h, w): class ids as floats are exact (K <= 255 << 2^24, and << 2^11 for a
float16 graph) and keep every backend on its float-only output path (TensorRT buffers, ONNX Runtime
casts). Ties go to the lower class id, as in ``postprocess.labels_from_logits`` (ONNX ArgMax and
torch.argmax take the first maximum).
"""

from __future__ import annotations

import torch
from torch import nn

from mtl_perception.deploy.postprocess import GRAPH_CONFIDENCE as CONFIDENCE
from mtl_perception.deploy.postprocess import GRAPH_LABELS as LABELS

OUTPUTS = (LABELS, CONFIDENCE)


class GraphProducts(nn.Module):
    """Wraps a deploy-form model: its outputs in order, then ``LABELS`` and ``CONFIDENCE``."""

    def __init__(self, model: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model = model
        self.inv_temperature = 1.0 / float(temperature)
        self.output_names = list(getattr(model, "output_names", ("semseg", "depth"))) + list(OUTPUTS)
        self.config = model.config

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = dict(self.model(x))
        logits = out["semseg"]
        best, labels = logits.max(dim=1, keepdim=True)
        # max-logit trick as on the host: p_max = 1 / sum_k exp((l_k - l_max) / T), in [1/K, 1]
        total = torch.exp((logits - best) * self.inv_temperature).sum(dim=1, keepdim=True)
        out[LABELS] = labels.to(logits.dtype)
        out[CONFIDENCE] = torch.clamp(1.0 / total, max=1.0)
        return out
