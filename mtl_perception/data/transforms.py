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

from mtl_perception import geometry

__all__ = [
    "FOCUS_CLASS",
    "Compose",
    "HorizontalFlip",
    "RandomAspectLetterbox",
    "SensorEffects",
    "Normalize",
    "PhotometricDistortion",
    "RandomConvolution",
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
    """K (float32) after resizing the image by (sx, sy) with cv2's pixel-centre convention
    (``geometry.scale_intrinsics``, which the deployment letterbox uses too)."""
    return geometry.scale_intrinsics(K, sx, sy).astype(np.float32)


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


#: Sample key set by rare-class sampling (``train/rare_class.py``): the class the window must show.
FOCUS_CLASS = "focus_class"


def _window_origin(
    rng: np.random.Generator, sample: Sample, labels: np.ndarray | None, win_hw: tuple[int, int], hw: tuple[int, int]
) -> tuple[int, int]:
    """Top-left corner of a ``win_hw`` window in an ``hw`` image, uniform over the image; with a
    ``focus_class`` in the sample (and pixels of it in ``labels``): uniform over the windows that
    contain one pixel of that class drawn at random (DAFormer's rare-class crops, Hoyer et al. 2022).
    The plain path draws exactly as before, so recipes without rare-class sampling are unchanged."""
    (wh, ww), (H, W) = win_hw, hw
    focus = sample.get(FOCUS_CLASS)
    if focus is not None and focus >= 0 and labels is not None:
        ys, xs = np.nonzero(labels == focus)
        if len(ys):
            k = int(rng.integers(len(ys)))
            py, px = int(ys[k]), int(xs[k])
            y0 = int(rng.integers(max(0, py - wh + 1), min(py, H - wh) + 1))
            x0 = int(rng.integers(max(0, px - ww + 1), min(px, W - ww) + 1))
            return y0, x0
    return int(rng.integers(0, H - wh + 1)), int(rng.integers(0, W - ww + 1))


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
    """Random rescale by s in ``scale_range``, pad (labels 255, depth 0) if needed, random crop (one
    that shows the sample's ``focus_class`` when it names one: rare-class sampling).

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
        y0, x0 = _window_origin(rng, sample, out.get("semseg"), (ch, cw), (h + ph, w + pw))
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


class RandomConvolution:
    """Random-convolution texture scrambling after RandConv (Xu et al., "Robust and Generalizable
    Visual Representation Learning via Random Convolutions", ICLR 2021): with probability ``p`` the
    image is filtered by a freshly drawn random k x k kernel (k from ``kernel_sizes``, normal weights
    of variance 1 / k^2) and blended with the original by a uniform weight.

    Unlike the paper's 3->3 convolution, only the luminance is filtered and the change is added to every
    channel: the rendered colours are drawn from real ranges and transfer (sky, vegetation), while
    texture is what the procedural materials lack, so only texture is scrambled. The filtered luminance
    is brought back to the input's mean and spread, so the exposure stays. Photometric only: labels,
    depth and K are untouched.

    ``keep_polarity``: a kernel whose weights sum below zero inverts the image's low frequencies (after
    the spread is restored, a bright sky turns darker than a shaded wall). With ``keep_polarity`` such a
    kernel is negated, so bright regions stay bright and only texture is scrambled. The random draws are
    the same either way: a run with it differs from one without only in the images whose kernel sum was
    negative."""

    def __init__(self, p: float = 0.5, kernel_sizes: Sequence[int] = (3, 5, 7), keep_polarity: bool = False) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomConvolution p must be in [0, 1], got {p}")
        if not kernel_sizes or any(int(k) < 3 or int(k) % 2 == 0 for k in kernel_sizes):
            raise ValueError(f"RandomConvolution kernel_sizes must be odd and >= 3, got {list(kernel_sizes)}")
        self.p = float(p)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.keep_polarity = bool(keep_polarity)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = _need_rng(rng, "RandomConvolution")
        if rng.random() >= self.p:
            return sample
        k = int(rng.choice(self.kernel_sizes))
        kernel = rng.normal(0.0, 1.0 / k, size=(k, k)).astype(np.float32)
        if self.keep_polarity and float(kernel.sum()) < 0.0:
            kernel = -kernel
        alpha = np.float32(rng.uniform(0.0, 1.0))
        img = sample["image"].astype(np.float32)
        luma = img @ np.array([0.299, 0.587, 0.114], np.float32)
        filtered = cv2.filter2D(luma, -1, kernel, borderType=cv2.BORDER_REFLECT_101)
        filtered = (filtered - filtered.mean()) * (luma.std() / max(float(filtered.std()), 1e-6)) + luma.mean()
        # the luminance change is added to every channel: local colour (chroma) stays, texture does not
        out = img + ((1.0 - alpha) * (filtered - luma))[..., None]
        res = dict(sample)
        res["image"] = np.clip(np.round(out), 0, 255).astype(np.uint8)
        return res


class RandomAspectLetterbox:
    """With probability ``p``: cut a window of a random aspect ratio (``aspect_range``, W/H) and zoom
    (``zoom_range``: window size relative to the largest window of that aspect) at a random place,
    then letterbox it into ``size`` exactly as deployment does (``geometry.Letterbox``: one scale
    factor, symmetric pads). Teaches the network the pads and the apparent sizes of cameras whose
    aspect differs from the training renders (KITTI 3.3:1, 16:10, 4:3). K follows exactly.

    Pads: image ``pad_rgb`` (the normalisation mean, i.e. 0 after normalising, as in deployment),
    labels 255 (ignored), depth 0 (invalid). Otherwise (probability 1 - p) the sample is untouched.
    """

    def __init__(
        self,
        size: tuple[int, int],
        p: float = 0.3,
        aspect_range: tuple[float, float] = (1.25, 3.4),
        zoom_range: tuple[float, float] = (0.7, 1.0),
        pad_rgb: Sequence[float] = (127.5, 127.5, 127.5),
    ) -> None:
        self.size, self.p = tuple(size), float(p)
        self.aspect_range, self.zoom_range = aspect_range, zoom_range
        self.pad_rgb = np.asarray(pad_rgb, np.float32)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        from mtl_perception.geometry import Letterbox

        rng = _need_rng(rng, "RandomAspectLetterbox")
        if self.p <= 0 or rng.random() >= self.p:
            return sample
        H, W = sample["image"].shape[:2]
        aspect = float(np.exp(rng.uniform(*np.log(self.aspect_range))))
        wh, ww = (H, H * aspect) if aspect < W / H else (W / aspect, W)
        zoom = float(rng.uniform(*self.zoom_range))
        wh, ww = max(8, int(round(wh * zoom))), max(8, int(round(ww * zoom)))
        y0, x0 = _window_origin(rng, sample, sample.get("semseg"), (wh, ww), (H, W))
        box = Letterbox.fit((wh, ww), self.size)
        out = dict(sample)
        img = np.empty((*self.size, 3), np.uint8)
        out["image"] = box.resize_into(sample["image"][y0 : y0 + wh, x0 : x0 + ww], img, np.round(self.pad_rgb))
        ch, cw = box.content_hw
        t, left = box.pad_top, box.pad_left
        if sample.get("semseg") is not None:
            lab = np.full(self.size, IGNORE_LABEL, np.uint8)
            win = sample["semseg"][y0 : y0 + wh, x0 : x0 + ww]
            lab[t : t + ch, left : left + cw] = cv2.resize(win, (cw, ch), interpolation=cv2.INTER_NEAREST_EXACT)
            out["semseg"] = lab
        if sample.get("depth") is not None:
            dep = np.zeros(self.size, np.float32)
            win = sample["depth"][y0 : y0 + wh, x0 : x0 + ww]
            dep[t : t + ch, left : left + cw] = resize_depth_nearest_valid(win, (ch, cw))
            out["depth"] = dep
        if sample.get("K") is not None:
            K = np.asarray(sample["K"], np.float64).copy()
            K[0, 2] -= x0
            K[1, 2] -= y0
            out["K"] = box.network_K(K).astype(np.float32)
        return out


class SensorEffects:
    """Camera and ISP effects real frames have and renders lack, each with its own probability:
    exposure/gamma, white balance, vignetting, defocus or motion blur, shot + read noise, JPEG
    re-compression. Photometric only: geometry, labels, depth and K are untouched."""

    def __init__(self, strength: float = 1.0) -> None:
        self.k = float(strength)

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = _need_rng(rng, "SensorEffects")
        img = sample["image"].astype(np.float32) / 255.0
        h, w = img.shape[:2]
        if rng.random() < 0.5:  # exposure and gamma (auto-exposure and tone curves differ per camera)
            img = np.clip(img * float(np.exp(rng.normal(0, 0.3 * self.k))), 0, 1) ** float(
                np.exp(rng.normal(0, 0.2 * self.k))
            )
        if rng.random() < 0.5:  # white balance: per-channel gains
            img = img * np.exp(rng.normal(0, 0.08 * self.k, size=3)).astype(np.float32)
        if rng.random() < 0.3:  # vignetting: cos^4-like radial falloff
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (w / 2)) ** 2
            img = img * (1 - float(rng.uniform(0.1, 0.45)) * self.k * r2)[..., None]
        if rng.random() < 0.3:  # defocus or horizontal motion blur
            if rng.random() < 0.5:
                img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.4, 1.4)))
            else:
                n = int(rng.integers(3, 8))
                kernel = np.zeros((n, n), np.float32)
                kernel[n // 2] = 1.0 / n
                img = cv2.filter2D(img, -1, kernel)
        if rng.random() < 0.5:  # shot noise (signal-dependent) + read noise
            sigma = np.sqrt(np.clip(img, 0, 1) * float(rng.uniform(0, 0.004)) + float(rng.uniform(0, 0.0004)))
            img = img + rng.standard_normal(img.shape).astype(np.float32) * sigma * self.k
        out = dict(sample)
        u8 = np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)
        if rng.random() < 0.4:  # JPEG re-compression artefacts (most real datasets ship JPEGs)
            ok, enc = cv2.imencode(".jpg", u8[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 95))])
            if ok:
                u8 = np.ascontiguousarray(cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1])
        out["image"] = u8
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
