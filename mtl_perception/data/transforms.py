"""Augmentations on the common sample dict that keep depth metric and K consistent.

Conventions (why they matter): pixel centres are at integer coordinates and ``cv2.resize`` maps
continuous coordinates as ``u' = (u + 0.5) * s - 0.5``, so K is updated with the same formula
(``cx' = (cx + 0.5) * s - 0.5``); otherwise back-projected points drift by half a pixel per
resize. ``INTER_NEAREST_EXACT`` is used for labels/depth because plain ``INTER_NEAREST`` samples
``floor(u' / s)`` (not centre-aligned) and would shift labels against the image and K.
Labels are resized nearest (class ids cannot be averaged) and depth "nearest-valid":
averaging would blend invalid zeros and fore/background depths into depths that exist nowhere.

Every random transform takes the ``np.random.Generator`` passed to ``__call__`` so a whole
pipeline is reproducible from one seed (per-worker generators are the caller's business).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import cv2
import numpy as np
import torch

__all__ = [
    "Compose",
    "HorizontalFlip",
    "Normalize",
    "PhotometricDistortion",
    "RandomScaleCrop",
    "Resize",
    "ToTensor",
    "resize_depth_nearest_valid",
    "scale_intrinsics",
    "to_tensor",
]

Sample = dict[str, Any]
IGNORE_LABEL = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _need_rng(rng: np.random.Generator | None, who: str) -> np.random.Generator:
    if rng is None:
        raise ValueError(f"{who} is random: pass a np.random.Generator (e.g. np.random.default_rng(seed))")
    return rng


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K after resizing the image by (sx, sy) with cv2's pixel-centre convention."""
    K2 = np.asarray(K, dtype=np.float64).copy()
    K2[0, 0] *= sx
    K2[0, 1] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K2[1, 2] + 0.5) * sy - 0.5
    return K2.astype(np.float32)


def resize_depth_nearest_valid(depth: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize metric depth without interpolating: nearest sample, then fill holes from valid sources.

    Upscaling is plain nearest. When downscaling, the nearest sample of a target cell may be an
    invalid 0 although the cell contains valid (e.g. sparse LiDAR) pixels; those cells take the
    closest valid depth that falls inside them, so sparse depth is not thinned out for nothing.
    Invalid (0 / non-finite) pixels never become valid except by this within-cell fill.
    """
    H, W = depth.shape
    h, w = size_hw
    d = np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)
    out = cv2.resize(d, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    if h < H or w < W:
        vy, vx = np.nonzero(d > 0)
        if vy.size:
            # target cell containing the source pixel centre (same centre convention as K)
            ty = np.minimum(((2 * vy + 1) * h) // (2 * H), h - 1)
            tx = np.minimum(((2 * vx + 1) * w) // (2 * W), w - 1)
            fill = np.full(h * w, np.inf, dtype=np.float32)
            np.minimum.at(fill, ty * w + tx, d[vy, vx])
            fill = fill.reshape(h, w)
            holes = (out <= 0) & np.isfinite(fill)
            out[holes] = fill[holes]
    return out


def _resize_sample(sample: Sample, h: int, w: int) -> tuple[Sample, float, float]:
    img = sample["image"]
    H, W = img.shape[:2]
    sx, sy = w / W, h / H
    out = dict(sample)
    out["image"] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    if sample.get("semseg") is not None:
        out["semseg"] = cv2.resize(sample["semseg"], (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    if sample.get("depth") is not None:
        out["depth"] = resize_depth_nearest_valid(sample["depth"], (h, w))
    return out, sx, sy


class Compose:
    """Apply transforms in order, threading one generator through all of them."""

    def __init__(self, transforms: Sequence[Callable[..., Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        for t in self.transforms:
            sample = t(sample, rng)
        return sample


class RandomScaleCrop:
    """Random rescale by s in ``scale_range``, pad (labels 255, depth 0) if needed, random crop.

    ``depth_mode``:
      * ``'scale_intrinsics'`` (default): depth is unchanged, K's fx, fy, cx, cy are scaled and
        the crop shifts cx, cy. Physically right: zooming an image is what a longer focal length
        does; the scene does not move, so metric distances stay valid and back-projection with
        the new K gives the same 3D points. Use it when the model or the consumer sees K.
      * ``'scale_depth'``: depth /= s (the MLoRE/InvPT convention: objects look s times bigger, so
        pretend they are s times closer). Needed for K-agnostic monocular models, which can only
        read distance from apparent size. K keeps fx, fy (the "same camera, moved closer"
        fiction) while cx, cy follow the pixels.
    """

    def __init__(
        self,
        scale_range: tuple[float, float] = (0.75, 1.5),
        crop: tuple[int, int] = (512, 1024),
        depth_mode: Literal["scale_depth", "scale_intrinsics"] = "scale_intrinsics",
    ) -> None:
        if depth_mode not in ("scale_depth", "scale_intrinsics"):
            raise ValueError(f"depth_mode must be 'scale_depth' or 'scale_intrinsics', got {depth_mode!r}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < lo <= hi, got {scale_range}")
        self.scale_range = scale_range
        self.crop = crop
        self.depth_mode = depth_mode

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = _need_rng(rng, "RandomScaleCrop")
        H, W = sample["image"].shape[:2]
        s = float(rng.uniform(*self.scale_range))
        h, w = max(1, round(H * s)), max(1, round(W * s))
        out, sx, sy = _resize_sample(sample, h, w)
        ch, cw = self.crop
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        if ph or pw:  # pad bottom/right: K is unaffected
            out["image"] = np.pad(out["image"], ((0, ph), (0, pw), (0, 0)), constant_values=0)
            if out.get("semseg") is not None:
                out["semseg"] = np.pad(out["semseg"], ((0, ph), (0, pw)), constant_values=IGNORE_LABEL)
            if out.get("depth") is not None:
                out["depth"] = np.pad(out["depth"], ((0, ph), (0, pw)), constant_values=0.0)
        y0 = int(rng.integers(0, h + ph - ch + 1))
        x0 = int(rng.integers(0, w + pw - cw + 1))
        out["image"] = np.ascontiguousarray(out["image"][y0 : y0 + ch, x0 : x0 + cw])
        for key in ("semseg", "depth"):
            if out.get(key) is not None:
                out[key] = np.ascontiguousarray(out[key][y0 : y0 + ch, x0 : x0 + cw])
        if self.depth_mode == "scale_depth" and out.get("depth") is not None:
            out["depth"] = (out["depth"] / np.float32(np.sqrt(sx * sy))).astype(np.float32)
        if sample.get("K") is not None:
            if self.depth_mode == "scale_intrinsics":
                K = scale_intrinsics(sample["K"], sx, sy)
            else:
                K = np.asarray(sample["K"], dtype=np.float32).copy()
                K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
                K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
            K[0, 2] -= x0
            K[1, 2] -= y0
            out["K"] = K
        out["scale"] = (sx, sy)
        return out


class HorizontalFlip:
    """Mirror left-right with probability p; cx -> W - 1 - cx so K still describes the image."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        if self.p < 1.0 and (self.p <= 0.0 or _need_rng(rng, "HorizontalFlip").random() >= self.p):
            return sample
        out = dict(sample)
        out["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
        for key in ("semseg", "depth"):
            if sample.get(key) is not None:
                out[key] = np.ascontiguousarray(sample[key][:, ::-1])
        if sample.get("K") is not None:
            K = np.asarray(sample["K"], dtype=np.float32).copy()
            K[0, 2] = sample["image"].shape[1] - 1 - K[0, 2]
            K[0, 1] = -K[0, 1]
            out["K"] = K
        return out


class PhotometricDistortion:
    """Brightness/contrast/saturation/hue jitter on the RGB image only (geometry untouched).

    Each effect is applied with probability 0.5, as in mmseg's PhotoMetricDistortion.
    """

    def __init__(
        self,
        brightness: float = 32.0,
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue: float = 18.0,
    ) -> None:
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = _need_rng(rng, "PhotometricDistortion")
        img = sample["image"].astype(np.float32)
        if rng.random() < 0.5:
            img += rng.uniform(-self.brightness, self.brightness)
        if rng.random() < 0.5:
            img *= rng.uniform(*self.contrast)
        img = np.clip(img, 0, 255)
        do_sat, do_hue = rng.random() < 0.5, rng.random() < 0.5
        sat, hue = rng.uniform(*self.saturation), rng.uniform(-self.hue, self.hue)
        if do_sat or do_hue:
            hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
            if do_sat:
                hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
            if do_hue:  # OpenCV 8-bit hue is in [0, 180)
                hsv[..., 0] = (hsv[..., 0] + hue) % 180
            img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
        out = dict(sample)
        out["image"] = np.clip(np.round(img), 0, 255).astype(np.uint8)
        return out


class Resize:
    """Deterministic resize to (H, W) for evaluation; K scaled per axis, depth stays metric."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        h, w = self.size
        out, sx, sy = _resize_sample(sample, h, w)
        if sample.get("K") is not None:
            out["K"] = scale_intrinsics(sample["K"], sx, sy)
        return out


class Normalize:
    """uint8 RGB -> float32 (x/255 - mean)/std; mean/std in [0, 1] units (ImageNet by default)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        out = dict(sample)
        out["image"] = ((sample["image"].astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)
        return out


def to_tensor(sample: Sample) -> Sample:
    """numpy sample -> torch: image float32 (3,H,W), semseg int64 (H,W), depth float32 (1,H,W), K float32 (3,3).

    A uint8 image (no Normalize before) is scaled to [0, 1]. Missing labels stay None.
    """
    out = dict(sample)
    img = sample["image"]
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    out["image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    if sample.get("semseg") is not None:
        out["semseg"] = torch.from_numpy(np.ascontiguousarray(sample["semseg"]).astype(np.int64))
    if sample.get("depth") is not None:
        out["depth"] = torch.from_numpy(np.ascontiguousarray(sample["depth"], dtype=np.float32)[None])
    if sample.get("K") is not None:
        out["K"] = torch.from_numpy(np.asarray(sample["K"], dtype=np.float32).copy())
    return out


class ToTensor:
    """Transform wrapper around :func:`to_tensor` for use in :class:`Compose`."""

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        return to_tensor(sample)
