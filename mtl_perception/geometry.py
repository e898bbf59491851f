"""Camera geometry shared by training, deployment and the node: aspect-kept letterboxing and
the canonical camera for metric depth. No rclpy, no torch.

Letterbox: a frame is scaled by ONE factor ``s = min(net_h / H, net_w / W)`` (so fx and fy
scale alike and nothing is stretched) and padded symmetrically to the network input. Network
products are cropped back to the content window and resized to the frame, so they stay
pixel-aligned with the camera image. Resizing follows OpenCV's pixel-centre convention
(``u' = (u + 0.5) * s - 0.5``), the same as ``data.transforms.scale_intrinsics``.

Canonical camera (Metric3D, Yin et al., ICCV 2023): the network predicts depth as if its input
had been taken with focal length ``f_c`` pixels; metric depth = prediction * fx_net / f_c, with
fx_net the focal length of the frame as fed to the network (after letterboxing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

RESIZE_MODES = ("letterbox", "stretch")
DEFAULT_HFOV_DEG = 70.0  # without intrinsics: a typical automotive front camera (documented default)


def default_intrinsics(height: int, width: int, hfov_deg: float = DEFAULT_HFOV_DEG) -> np.ndarray:
    """Pinhole K (float64 3x3) for a frame of ``height x width`` with the given horizontal field of
    view, square pixels and the principal point at the image centre."""
    if not 1.0 < hfov_deg < 179.0:
        raise ValueError(f"hfov_deg must be in (1, 179), got {hfov_deg}")
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K (float64 3x3) after resizing the image by (sx, sy) with cv2's pixel-centre convention
    (``u' = (u + 0.5) * s - 0.5``, so back-projected points do not drift by half a pixel)."""
    K2 = np.asarray(K, np.float64).reshape(3, 3).copy()
    K2[0, 0] *= sx
    K2[0, 1] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K2[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K2[1, 2] + 0.5) * sy - 0.5
    return K2


def check_intrinsics(K: np.ndarray | None) -> np.ndarray | None:
    """``K`` as a float64 3x3 array if it is a usable pinhole matrix (finite, fx, fy > 0), else None."""
    if K is None:
        return None
    try:
        K = np.asarray(K, np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        return None
    return K


@dataclass(frozen=True)
class Letterbox:
    """How one frame size maps into the network input (and back)."""

    frame_hw: tuple[int, int]
    net_hw: tuple[int, int]
    scale_x: float  # content width / frame width
    scale_y: float  # content height / frame height (equal to scale_x up to rounding for letterbox)
    content_hw: tuple[int, int]
    pad_top: int
    pad_left: int

    @classmethod
    def fit(cls, frame_hw: tuple[int, int], net_hw: tuple[int, int], mode: str = "letterbox") -> Letterbox:
        H, W = int(frame_hw[0]), int(frame_hw[1])
        h, w = int(net_hw[0]), int(net_hw[1])
        if min(H, W, h, w) < 1:
            raise ValueError(f"frame {frame_hw} and network {net_hw} sizes must be positive")
        if mode == "stretch":
            return cls((H, W), (h, w), w / W, h / H, (h, w), 0, 0)
        if mode != "letterbox":
            raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
        s = min(h / H, w / W)
        ch, cw = min(h, max(1, round(H * s))), min(w, max(1, round(W * s)))
        # the scale actually applied per axis (cv2 resizes to integer sizes)
        return cls((H, W), (h, w), cw / W, ch / H, (ch, cw), (h - ch) // 2, (w - cw) // 2)

    @property
    def is_identity(self) -> bool:
        return self.frame_hw == self.net_hw

    def network_K(self, K: np.ndarray) -> np.ndarray:
        """Intrinsics of the network input for a frame with intrinsics ``K``."""
        K2 = scale_intrinsics(K, self.scale_x, self.scale_y)
        K2[0, 2] += self.pad_left
        K2[1, 2] += self.pad_top
        return K2

    def network_focal(self, K: np.ndarray) -> float:
        """fx of the network input (what the canonical-camera conversion uses)."""
        return float(np.asarray(K, np.float64).reshape(3, 3)[0, 0] * self.scale_x)

    def resize_into(self, image: np.ndarray, out: np.ndarray, pad_value: float | int = 0) -> np.ndarray:
        """Resize ``image`` (frame size) into the content window of ``out`` (network size) and fill the
        pads with ``pad_value``. ``out`` has the network size and the image's dtype/channels."""
        ch, cw = self.content_hw
        t, left = self.pad_top, self.pad_left
        if self.pad_top or self.pad_left or (ch, cw) != self.net_hw:
            out[:t] = pad_value
            out[t + ch :] = pad_value
            out[t : t + ch, :left] = pad_value
            out[t : t + ch, left + cw :] = pad_value
        window = out[t : t + ch, left : left + cw]
        if image.shape[:2] == (ch, cw):
            window[...] = image
        else:
            shrink = image.shape[0] > ch or image.shape[1] > cw
            interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            window[...] = cv2.resize(image, (cw, ch), interpolation=interp).reshape(window.shape)
        return out

    def content(self, grid: np.ndarray) -> np.ndarray:
        """The content window of a product at network resolution ((H, W), (C, H, W) logits or an
        (H, W, C) image as filled by ``resize_into``) or, for a product on a coarser grid ((h, w) or
        (C, h, w)), the same window scaled to that grid."""
        h, w = self.net_hw
        # 3-D: channels first (logits) unless the leading axes are the network size (an HxWxC image)
        channels_last = grid.ndim == 3 and grid.shape[:2] == (h, w) and grid.shape[1:] != (h, w)
        if channels_last:
            t, left = self.pad_top, self.pad_left
            return grid[t : t + self.content_hw[0], left : left + self.content_hw[1]]
        gh, gw = grid.shape[-2:] if grid.ndim == 3 else grid.shape[:2]
        if (gh, gw) == (h, w):
            t, left = self.pad_top, self.pad_left
            sl = (slice(t, t + self.content_hw[0]), slice(left, left + self.content_hw[1]))
        else:
            fy, fx = gh / h, gw / w
            y0, x0 = round(self.pad_top * fy), round(self.pad_left * fx)
            y1 = max(y0 + 1, round((self.pad_top + self.content_hw[0]) * fy))
            x1 = max(x0 + 1, round((self.pad_left + self.content_hw[1]) * fx))
            sl = (slice(y0, y1), slice(x0, x1))
        return grid[(..., *sl)] if grid.ndim == 3 else grid[sl]


def canonical_depth_scale(fx_net: float, canonical_focal: float | None) -> float:
    """Factor from the network's canonical depth to metres: fx_net / f_c (1 without a canonical camera)."""
    if not canonical_focal:
        return 1.0
    return float(fx_net) / float(canonical_focal)
