"""rclpy message builders on top of ``mtl_perception.imaging`` (Image, CameraInfo, PointCloud2).

``data`` is always assigned as ``bytes``: the generated setter validates a numpy array element by
element (~250 ms for a 720p frame) but copies bytes in ~2 ms. The point cloud goes through
``sensor_msgs_py.point_cloud2.create_cloud`` when a ROS install provides it, else through an
equivalent numpy packer (same fields, offsets and bytes; compared in test_ros_conversions.py).
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from mtl_perception.imaging import (
    CLOUD_FIELDS,
    image_fields,
    image_fields_no_data,
    scale_camera_info,
    semantic_cloud,
)
from mtl_perception.pipeline import array_owner

try:  # a real ROS install
    from sensor_msgs_py import point_cloud2 as _pc2
except ImportError:  # PyPI wheels: no sensor_msgs_py
    _pc2 = None


def image_msg(array: np.ndarray, encoding: str, header: Header) -> Image:
    return Image(header=header, **image_fields(array, encoding))


class ImageMessagePool:
    """Builds Image messages whose ``data`` reuses one ``array.array`` per output (key).

    ``publish()`` serialises synchronously, so once it returns a buffer can take the next frame.
    Filling a warm buffer costs ~0.3 ms for a 720p 32FC1 image; ``tobytes()`` plus the setter's
    copy into a fresh ``array.array`` cost ~6 ms in the node (two 3.7 MB allocations, page faults).
    Only for messages that are published and dropped: a message kept by the caller would change
    under it with the next frame.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, array.array] = {}

    def image(self, key: str, pixels: np.ndarray, encoding: str, header: Header) -> Image:
        fields = image_fields_no_data(pixels, encoding)
        # a product the pipeline resized into a message array (pipeline.message_array) is used as is
        buf = array_owner(pixels)
        if buf is None:
            src = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
            buf = self._buffers.get(key)
            if buf is None or len(buf) != src.size:
                buf = array.array("B", bytes(src.size))
                self._buffers[key] = buf
            np.frombuffer(buf, np.uint8)[:] = src
        msg = Image(header=header, **fields)
        if hasattr(msg, "_data"):  # rosidl's storage behind the `data` property: no copy, no check
            msg._data = buf
        else:
            msg.data = buf
        return msg


def cloud_fields() -> list[PointField]:
    return [PointField(name=n, offset=o, datatype=t, count=c) for n, o, t, c in CLOUD_FIELDS]


def cloud_msg(points: np.ndarray, header: Header, use_sensor_msgs_py: bool | None = None) -> PointCloud2:
    """Unorganised (height 1), dense PointCloud2 from a structured array with ``CLOUD_DTYPE``."""
    if use_sensor_msgs_py is None:
        use_sensor_msgs_py = _pc2 is not None
    if use_sensor_msgs_py:
        if _pc2 is None:
            raise ImportError("sensor_msgs_py is not installed (it comes with a ROS install)")
        msg = _pc2.create_cloud(header, cloud_fields(), points)
        msg.is_dense = True  # invalid depth was skipped
        return msg
    n = int(points.shape[0])
    return PointCloud2(
        header=header,
        height=1,
        width=n,
        fields=cloud_fields(),
        is_bigendian=False,
        point_step=points.dtype.itemsize,
        row_step=points.dtype.itemsize * n,
        data=points.tobytes(),
        is_dense=True,
    )


def semantic_cloud_msg(
    depth: np.ndarray,
    labels: np.ndarray,
    colors: np.ndarray | None,
    k: Any,
    stride: int,
    header: Header,
    uncertainty: np.ndarray | None = None,
    max_uncertainty: float = 0.0,
) -> PointCloud2:
    """``uncertainty``/``max_uncertainty``: drop points whose depth uncertainty (m) exceeds the bound (0 = off)."""
    points, _ = semantic_cloud(depth, labels, colors, k, stride, uncertainty, max_uncertainty)
    return cloud_msg(points, header)


def camera_info_for(info: CameraInfo, size_hw: tuple[int, int], header: Header) -> CameraInfo:
    """``info`` (of the input image) rescaled to ``size_hw`` (the products' size), with ``header``.

    Distortion coefficients act on normalised coordinates, so they are unchanged by a resize;
    the ROI is scaled like the image.
    """
    src = (int(info.height), int(info.width))
    out = CameraInfo(
        header=header,
        height=int(size_hw[0]),
        width=int(size_hw[1]),
        distortion_model=info.distortion_model,
        d=list(info.d),
        r=info.r,
        binning_x=info.binning_x,
        binning_y=info.binning_y,
    )
    if src == tuple(size_hw):
        out.k, out.p, out.roi = info.k, info.p, info.roi
        return out
    k, p = scale_camera_info(info.k, info.p, src, size_hw)
    out.k = k.reshape(-1)
    out.p = p.reshape(-1)
    sy, sx = size_hw[0] / src[0], size_hw[1] / src[1]
    roi = info.roi
    out.roi.x_offset = round(roi.x_offset * sx)
    out.roi.y_offset = round(roi.y_offset * sy)
    out.roi.width = round(roi.width * sx)
    out.roi.height = round(roi.height * sy)
    out.roi.do_rectify = roi.do_rectify
    return out
