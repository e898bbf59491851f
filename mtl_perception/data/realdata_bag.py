"""A rosbag2 of the real KITTI drive in ``realdata/kitti_raw_0023_sequence`` (7 frames at 10 Hz).

Same topics and encodings as ``mtl-perception synth --bag`` (``data.synthetic_io.write_bag``) so
``replay-eval`` and ``play`` take it unchanged; only the semantic topic is absent (KITTI raw has
no labels)::

    /camera/image_raw    sensor_msgs/msg/Image rgb8 (image_02, rectified, 1242x375)
    /camera/camera_info  sensor_msgs/msg/CameraInfo (K from *_intrinsics.json, P = [K | 0], no distortion)
    /camera/gt/depth     sensor_msgs/msg/Image 32FC1 metres, NaN where the LiDAR sweep has no return

Header stamps (and bag times) are the camera's own, from ``image_02_timestamps.txt``. The bag
holds copies of the real frames: write it outside the repository (their licences forbid
redistribution); the CLI refuses a path inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mtl_perception.data.realdata import FrameRef, RealDataError, list_frames, load_frame, read_kitti_timestamps

KITTI_RAW_SET = "kitti_raw_0023_sequence"
FRAME_ID = "camera_optical_frame"  # as the synthetic bags
TOPICS = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/camera/gt/depth": "sensor_msgs/msg/Image",
}


def write_kitti_raw_bag(
    realdata: str | Path,
    path: str | Path,
    storage: str = "mcap",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write the KITTI raw frames of ``realdata`` as a bag at ``path`` (must not exist); returns a summary."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"unknown bag storage {storage!r}; use 'mcap' or 'sqlite3'")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"bag {path} already exists; choose another --out path or delete it first")
    refs = list_frames(realdata, [KITTI_RAW_SET])
    stamps_file = Path(realdata) / KITTI_RAW_SET / "image_02_timestamps.txt"
    if not stamps_file.is_file():
        raise RealDataError(f"{stamps_file} is missing: the frames' stamps come from it")
    stamps = read_kitti_timestamps(stamps_file)
    for ref in refs:
        if int(ref.name) >= len(stamps):
            raise RealDataError(f"frame {ref.name} has no line in {stamps_file} ({len(stamps)} lines)")

    ts = get_typestore(Stores.ROS2_KILTED)
    written: list[int] = []
    try:
        _write(Writer(path, version=9, storage_plugin=plugins[storage]), ts, refs, stamps, written, progress)
    except BaseException:
        import shutil

        shutil.rmtree(path, ignore_errors=True)  # no half-written bag left behind
        raise
    return {
        "path": str(path),
        "storage": storage,
        "frames": len(written),
        "topics": list(TOPICS),
        "start_ns": written[0],
        "end_ns": written[-1],
        "source": str(Path(realdata) / KITTI_RAW_SET),
    }


def _write(
    writer: Any,
    ts: Any,
    refs: list[FrameRef],
    stamps: list[int],
    written: list[int],
    progress: Callable[[int], None] | None,
) -> None:
    Image = ts.types["sensor_msgs/msg/Image"]
    CameraInfo = ts.types["sensor_msgs/msg/CameraInfo"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    ROI = ts.types["sensor_msgs/msg/RegionOfInterest"]

    def image(header: Any, arr: np.ndarray, encoding: str) -> Any:
        h, w = arr.shape[:2]
        data = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
        return Image(header, h, w, encoding, 0, data.size // h, data)

    with writer:
        conns = {t: writer.add_connection(t, m, typestore=ts) for t, m in TOPICS.items()}
        for ref in refs:
            s = load_frame(ref)
            if s["K"] is None:
                raise RealDataError(f"{ref.image.parent}/{ref.name}_intrinsics.json is missing")
            stamp = stamps[int(ref.name)]
            header = Header(Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), FRAME_ID)
            h, w = s["image"].shape[:2]
            K = np.asarray(s["K"], np.float64)
            P = np.zeros((3, 4))
            P[:, :3] = K
            info = CameraInfo(
                header, h, w, "plumb_bob", np.zeros(5), K.reshape(-1), np.eye(3).reshape(-1), P.reshape(-1), 0, 0,
                ROI(0, 0, 0, 0, False),
            )  # fmt: skip
            # 0 = no LiDAR return -> NaN (REP 118), as the synthetic bags store invalid depth
            depth = np.where(s["depth"] > 0, s["depth"], np.float32(np.nan)).astype("<f4")
            msgs = {
                "/camera/image_raw": image(header, s["image"], "rgb8"),
                "/camera/camera_info": info,
                "/camera/gt/depth": image(header, depth, "32FC1"),
            }
            for topic, msg in msgs.items():
                writer.write(conns[topic], stamp, ts.serialize_cdr(msg, TOPICS[topic]))
            written.append(stamp)
            if progress is not None:
                progress(1)
