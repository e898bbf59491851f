"""sensor_msgs image <-> numpy, camera_info scaling and intrinsics, semantic point clouds, without rclpy.

Everything here is duck-typed on message *fields* (``height``, ``width``, ``encoding``, ``step``,
``is_bigendian``, ``data``), so the same code decodes rclpy messages in the node and ``rosbags``
messages in offline replay evaluation: one decoder, one set of pixels.

Why not ``rosbags-image`` or a hand-rolled ``reshape``: both ignore ``step`` row padding (a
1-pixel-wide padded row is common with some drivers and GPU encoders) and 16-bit PNGs. Why
``bytes`` for outgoing ``data``: the generated rclpy setter validates a numpy array element by
element (~250 ms per 720p rgb8 frame) but takes ``bytes`` in ~2 ms.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """An image message cannot be decoded; the message says what is wrong and how to fix it.

    ``reason`` is a short stable key (encoding, empty, step, truncated, odd_width, compressed,
    cv_bridge) for counting and log throttling.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


#: channels, bytes per channel
_LAYOUT: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "mono8": (1, 1),
    "8UC1": (1, 1),
    "8UC3": (3, 1),
    "mono16": (1, 2),
    "bayer_rggb8": (1, 1),
    "bayer_bggr8": (1, 1),
    "bayer_gbrg8": (1, 1),
    "bayer_grbg8": (1, 1),
    "yuv422": (2, 1),
    "uyvy": (2, 1),
    "yuv422_yuy2": (2, 1),
    "yuyv": (2, 1),
}

#: Encodings ``image_to_rgb`` decodes (``8UC3`` is treated as bgr8, like cv_bridge / OpenCV).
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUT)

# OpenCV names Bayer patterns by the 2x2 block starting at pixel (1, 1), ROS by the one at (0, 0):
# ROS rggb == OpenCV BG (the same mapping cv_bridge uses).
_CVT: dict[str, int] = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "8UC3": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}


def _as_u8(data: Any) -> np.ndarray:
    """Flat uint8 view of a message's ``data`` (bytes, array.array, list, numpy) without copying."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.flags.c_contiguous else np.ascontiguousarray(data).view(np.uint8)
    try:
        return np.frombuffer(data, np.uint8)
    except TypeError:  # a list of ints (e.g. a message built by hand)
        return np.asarray(data, np.uint8)


def _rows(height: int, width: int, encoding: str, step: int, data: Any) -> np.ndarray:
    """(H, W, C) view (C = channels x bytes) honouring ``step``; validates sizes."""
    if encoding not in _LAYOUT:
        raise ImageDecodeError(
            f"unsupported encoding {encoding!r}; publish one of {', '.join(SUPPORTED_ENCODINGS)} "
            "(or put an image_proc / format-converter node in front)",
            "encoding",
        )
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"empty image ({width}x{height}); the publisher must fill height and width", "empty")
    channels, nbytes = _LAYOUT[encoding]
    row = width * channels * nbytes
    if step < row:
        raise ImageDecodeError(
            f"step {step} < width*bytes_per_pixel = {row} for {width}x{height} {encoding}; "
            "set step to the row length in bytes (>= width * bytes per pixel)",
            "step",
        )
    buf = _as_u8(data)
    need = step * (height - 1) + row  # the last row's padding is optional in practice
    if buf.size < need:
        raise ImageDecodeError(
            f"data has {buf.size} bytes but {width}x{height} {encoding} with step {step} needs "
            f"{step * height}; the message is truncated",
            "truncated",
        )
    if buf.size >= step * height:
        grid = buf[: step * height].reshape(height, step)
    else:  # unpadded last row: strided view over what is there
        grid = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1), writeable=False)
    return grid[:, :row].reshape(height, width, channels * nbytes)


def image_to_rgb(height: int, width: int, encoding: str, step: int, is_bigendian: int | bool, data: Any) -> np.ndarray:
    """Decode raw ``sensor_msgs/Image`` fields to (H, W, 3) uint8 RGB.

    rgb8 is a zero-copy view of ``data`` (row padding skipped through strides); other
    encodings are converted with OpenCV (the conversions cv_bridge uses). mono16 is scaled to
    8 bits by 1/256 like cv_bridge. Raises ImageDecodeError for anything malformed.
    """
    height, width, step = int(height), int(width), int(step)
    px = _rows(height, width, encoding, step, data)
    if encoding == "rgb8":
        return px
    if encoding == "mono16":
        dt = np.dtype(">u2" if is_bigendian else "<u2")
        mono = np.ascontiguousarray(px).view(dt)[..., 0]
        mono8 = np.clip(np.rint(mono.astype(np.float32) / 256.0), 0, 255).astype(np.uint8)
        return cv2.cvtColor(mono8, cv2.COLOR_GRAY2RGB)
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and width % 2:
        raise ImageDecodeError(
            f"{encoding} needs an even width, got {width}; crop or pad the image to an even width", "odd_width"
        )
    src = px[..., 0] if px.shape[2] == 1 else px
    if not src.flags.c_contiguous:  # padded rows: OpenCV handles row strides, but be explicit
        src = np.ascontiguousarray(src)
    return cv2.cvtColor(src, _CVT[encoding])


_BRIDGE: Any = None


def _cv_bridge() -> Any:
    """A cached ``cv_bridge.CvBridge`` or None (not installed, or MTL_PERCEPTION_NO_CV_BRIDGE=1)."""
    global _BRIDGE
    if os.environ.get("MTL_PERCEPTION_NO_CV_BRIDGE") == "1":
        return None
    if _BRIDGE is None:
        try:
            from cv_bridge import CvBridge

            _BRIDGE = CvBridge()
        except Exception:  # ImportError, or a cv_bridge built against another numpy
            _BRIDGE = False
    return _BRIDGE or None


def image_msg_to_rgb(msg: Any, use_cv_bridge: bool | None = None) -> np.ndarray:
    """``sensor_msgs/Image`` -> (H, W, 3) uint8 RGB.

    Uses cv_bridge when it imports (a real ROS install; ``use_cv_bridge=None``) after the same
    validation as the numpy path, so both fail the same way; otherwise ``image_to_rgb``.
    """
    fields = (msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian, msg.data)
    bridge = _cv_bridge() if use_cv_bridge in (None, True) else None
    if use_cv_bridge and bridge is None:
        raise ImageDecodeError(
            "cv_bridge requested but not importable; source a ROS install that provides it", "cv_bridge"
        )
    if bridge is None or msg.encoding not in _LAYOUT:
        return image_to_rgb(*fields)
    _rows(int(msg.height), int(msg.width), msg.encoding, int(msg.step), msg.data)  # same errors as numpy path
    try:
        return np.asarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    except Exception as exc:  # cv_bridge's own errors: report like ours
        raise ImageDecodeError(f"cv_bridge could not convert {msg.encoding}: {exc}", "cv_bridge") from exc


def compressed_msg_to_rgb(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg / png) -> (H, W, 3) uint8 RGB."""
    fmt = str(getattr(msg, "format", "") or "").lower()
    if "compresseddepth" in fmt:
        raise ImageDecodeError(
            f"format {msg.format!r} is a compressed depth image, not a camera image; subscribe to the colour topic",
            "compressed",
        )
    buf = _as_u8(msg.data)
    if buf.size == 0:
        raise ImageDecodeError("CompressedImage has no data; the publisher sent an empty frame", "empty")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageDecodeError(
            f"CompressedImage ({msg.format or 'no format'}, {buf.size} bytes) is not a decodable jpeg/png; "
            "check the publisher's image_transport compressed settings",
            "compressed",
        )
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


#: Encodings ``image_fields`` produces: dtype, channels.
_OUT: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}


def image_fields_no_data(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` for ``array`` except ``data`` (validated shape and dtype)."""
    if encoding not in _OUT:
        raise ValueError(f"image_fields: encoding must be one of {sorted(_OUT)}, got {encoding!r}")
    dtype, channels = _OUT[encoding]
    a = np.asarray(array)
    if a.dtype != dtype:
        raise ValueError(f"image_fields: {encoding} needs dtype {dtype}, got {a.dtype}")
    if (channels == 1 and a.ndim != 2) or (channels > 1 and (a.ndim != 3 or a.shape[2] != channels)):
        shape = f"(H, W, {channels})" if channels > 1 else "(H, W)"
        raise ValueError(f"image_fields: {encoding} needs shape {shape}, got {a.shape}")
    h, w = a.shape[:2]
    return {
        "height": int(h),
        "width": int(w),
        "encoding": encoding,
        "is_bigendian": int(sys.byteorder == "big" and dtype.itemsize > 1),
        "step": int(w * channels * dtype.itemsize),
    }


def image_fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` for ``array`` (data as ``bytes``, native byte order).

    ``msg = Image(header=h, **image_fields(a, "32FC1"))``; ``bytes`` because the rclpy setter
    takes it ~100x faster than a numpy array.
    """
    fields = image_fields_no_data(array, encoding)
    fields["data"] = np.ascontiguousarray(array).tobytes()
    return fields


def scale_camera_info(
    k: Any, p: Any, src_hw: tuple[int, int], dst_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics K (3x3) and projection P (3x4) of a ``src_hw`` image resized to ``dst_hw``.

    Convention: pixel centres sit at integer coordinates (OpenCV, CameraInfo K/P), so the
    image spans [-0.5, W - 0.5]; a resize by s maps x -> (x + 0.5) * s - 0.5, which is how
    ``cv2.resize`` samples. Hence fx' = s fx, cx' = (cx + 0.5) s - 0.5 and P's Tx/Ty scale with
    fx/fy. (image_proc's ResizeNode uses cx' = s cx, half a pixel off for s != 1.)
    """
    sy = dst_hw[0] / float(src_hw[0])
    sx = dst_hw[1] / float(src_hw[1])
    k = np.array(k, np.float64).reshape(3, 3).copy()
    p = np.array(p, np.float64).reshape(3, 4).copy()
    for m in (k, p):
        m[0, 0] *= sx
        m[0, 1] *= sx  # skew
        m[0, 2] = (m[0, 2] + 0.5) * sx - 0.5
        m[1, 1] *= sy
        m[1, 2] = (m[1, 2] + 0.5) * sy - 0.5
    p[0, 3] *= sx
    p[1, 3] *= sy
    return k, p


#: ``frame_intrinsics`` reasons: the CameraInfo's K as is, rescaled to the image, or no usable K.
#: (The same strings as replay-eval's per-frame intrinsics counts.)
INTRINSICS_EXACT, INTRINSICS_SCALED = "camera_info", "camera_info_scaled"
INTRINSICS_NONE, INTRINSICS_INVALID = "no_camera_info", "invalid_camera_info"


def frame_intrinsics(info: Any, image_hw: tuple[int, int]) -> tuple[np.ndarray | None, str]:
    """(K of the image as float64 3x3 or None, reason) from a ``sensor_msgs/CameraInfo`` (rclpy or
    rosbags message; duck-typed on ``k``, ``height``, ``width``). The node's policy:

    ``INTRINSICS_EXACT``: the CameraInfo is for this image size. ``INTRINSICS_SCALED``: it is for
    another size and K is rescaled to the image per axis (``scale_camera_info``): the best guess for
    metric depth, but callers still treat it as a mismatch (count, warn, build no published
    camera_info from it). ``INTRINSICS_NONE``: no CameraInfo. ``INTRINSICS_INVALID``: K is not a
    usable pinhole matrix (zero, non-finite or a non-positive focal length, as an uncalibrated
    driver publishes) or the CameraInfo has no size. K is None for the last two: the caller falls
    back to the model's default field of view.
    """
    if info is None:
        return None, INTRINSICS_NONE
    try:
        k = np.asarray(info.k, np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        return None, INTRINSICS_INVALID
    if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
        return None, INTRINSICS_INVALID
    src = (int(info.height), int(info.width))
    dst = (int(image_hw[0]), int(image_hw[1]))
    if src == dst:
        return k.copy(), INTRINSICS_EXACT
    if min(src) <= 0:
        return None, INTRINSICS_INVALID
    k_img, _ = scale_camera_info(k, np.zeros((3, 4)), src, dst)
    if not np.isfinite(k_img).all() or k_img[0, 0] <= 0 or k_img[1, 1] <= 0:  # under/overflow of an extreme K
        return None, INTRINSICS_INVALID
    return k_img, INTRINSICS_SCALED


# PointField datatypes (sensor_msgs/PointField constants).
_FLOAT32, _UINT32 = 7, 6
#: (name, offset, datatype, count) of the semantic cloud, for sensor_msgs/PointField.
CLOUD_FIELDS: tuple[tuple[str, int, int, int], ...] = (
    ("x", 0, _FLOAT32, 1),
    ("y", 4, _FLOAT32, 1),
    ("z", 8, _FLOAT32, 1),
    ("rgb", 12, _FLOAT32, 1),
    ("label", 16, _UINT32, 1),
)
CLOUD_DTYPE = np.dtype(
    {
        "names": [f[0] for f in CLOUD_FIELDS],
        "formats": ["<f4", "<f4", "<f4", "<f4", "<u4"],
        "offsets": [f[1] for f in CLOUD_FIELDS],
        "itemsize": 20,
    }
)


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> float32 whose bits are 0x00RRGGBB (the PCL/RViz ``rgb`` field)."""
    c = colors.astype(np.uint32)
    return ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).view(np.float32)


def semantic_cloud(
    depth: np.ndarray,
    labels: np.ndarray,
    colors: np.ndarray | None,
    k: Any,
    stride: int = 1,
    uncertainty: np.ndarray | None = None,
    max_uncertainty: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Back-project every ``stride``-th pixel with valid depth to a structured point array.

    Points are in the camera's optical frame (REP 103: x right, y down, z forward), metres.
    Invalid depth (NaN, inf, <= 0) is skipped, so the cloud is dense. Returns
    ``(points with CLOUD_DTYPE, point_step in bytes)``; ``colors=None`` leaves rgb black.
    ``uncertainty`` (HxW metres, ``FrameResult.depth_uncertainty``) with ``max_uncertainty > 0``: points
    whose uncertainty exceeds the bound are left out too (tested on the strided grid only: cheap).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    depth = np.asarray(depth)
    if depth.ndim != 2 or labels.shape != depth.shape:
        raise ValueError(f"depth {depth.shape} and labels {labels.shape} must be the same HxW")
    k = np.asarray(k, np.float64).reshape(3, 3)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    if fx <= 0 or fy <= 0:
        raise ValueError(f"camera matrix has non-positive focal length (fx={fx}, fy={fy})")
    z = np.asarray(depth[::stride, ::stride], np.float32)
    rows, cols = z.shape
    # one (rows, cols, 5) 4-byte grid filled plane by plane, then a single gather of the valid
    # pixels: ~3x faster than per-field writes into a structured array (node budget at 720p)
    grid = np.empty((rows, cols, 5), np.float32)
    rx = ((np.arange(cols) * stride - cx) / fx).astype(np.float32)
    ry = ((np.arange(rows) * stride - cy) / fy).astype(np.float32)
    np.multiply(rx[None, :], z, out=grid[..., 0])
    np.multiply(ry[:, None], z, out=grid[..., 1])
    grid[..., 2] = z
    as_u32 = grid.view(np.uint32)
    as_u32[..., 3] = pack_rgb(colors[::stride, ::stride]).view(np.uint32) if colors is not None else 0
    as_u32[..., 4] = labels[::stride, ::stride]
    valid = np.isfinite(z) & (z > 0)
    if uncertainty is not None and max_uncertainty > 0:
        valid &= np.asarray(uncertainty)[::stride, ::stride] <= np.float32(max_uncertainty)
    out = np.ascontiguousarray(grid[valid]).view(CLOUD_DTYPE).reshape(-1)
    return out, CLOUD_DTYPE.itemsize
