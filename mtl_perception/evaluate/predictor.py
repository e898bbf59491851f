"""Frame-level prediction at the input's resolution: what eval, the report and the node share.

``Predictor.predict(image uint8 HxWx3 RGB) -> Prediction(labels uint8 HxW, depth float32 HxW m)``:
resize to the model's input size, normalise, run, upsample logits (bilinear) and depth
(bilinear) back to the frame's resolution, argmax. The torch implementation here is the
reference; deployment backends (ONNX Runtime, TensorRT) implement the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Prediction:
    labels: np.ndarray  # uint8 (H, W) class ids
    depth: np.ndarray  # float32 (H, W) metres
    confidence: np.ndarray | None = None  # float32 (H, W) max softmax probability


class TorchPredictor:
    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.input_size = tuple(model.config["input_size"])  # (H, W)
        norm = model.config["normalization"]
        self.mean = np.asarray(norm["mean"], np.float32) * 255.0
        self.std = np.asarray(norm["std"], np.float32) * 255.0

    def preprocess(self, images: list[np.ndarray]) -> torch.Tensor:
        h, w = self.input_size
        batch = np.stack(
            [
                cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA if im.shape[0] > h else cv2.INTER_LINEAR)
                for im in images
            ]
        ).astype(np.float32)
        batch = (batch - self.mean) / self.std
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(self.device)

    @torch.no_grad()
    def predict_batch(self, images: list[np.ndarray]) -> list[Prediction]:
        out = self.model(self.preprocess(images))
        preds = []
        for i, im in enumerate(images):
            size = im.shape[:2]
            logits = F.interpolate(out["semseg"][i : i + 1].float(), size=size, mode="bilinear", align_corners=False)
            prob, labels = torch.softmax(logits, dim=1).max(dim=1)
            depth = F.interpolate(out["depth"][i : i + 1].float(), size=size, mode="bilinear", align_corners=False)
            preds.append(
                Prediction(
                    labels=labels[0].to(torch.uint8).cpu().numpy(),
                    depth=depth[0, 0].cpu().numpy().astype(np.float32),
                    confidence=prob[0].cpu().numpy().astype(np.float32),
                )
            )
        return preds

    def predict(self, image: np.ndarray) -> Prediction:
        return self.predict_batch([image])[0]
