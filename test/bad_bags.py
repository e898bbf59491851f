"""Bad-bag corpus for robustness tests: each function writes one broken rosbag2 under ``root`` and
returns its path. Built from tiny synthetic drives (64x128) with ``rosbags``; no ROS needed.

Cases: truncated storage file (mcap, sqlite3), corrupt / wrong metadata.yaml, no metadata and no
storage, unknown message type, empty image topic, images with a broken ``step``, corrupt CDR
messages, and a ``ros2 bag``-talker-like bag without any image topic.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np

from mtl_perception.data.synthetic_io import write_bag

H, W = 64, 128
T0 = 1_700_000_000_000_000_000


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def good_bag(root: Path, name: str = "good", storage: str = "mcap", frames: int = 6) -> Path:
    path = root / name
    write_bag(path, seed=5, n_frames=frames, height=H, width=W, storage=storage)
    return path


def truncated(root: Path, storage: str = "mcap", keep: float = 0.6) -> Path:
    """A bag whose storage file was cut (recorder killed, copy interrupted).

    mcap: 10 noise frames of 256x512, so the file has several 1 MiB chunks and the complete ones
    survive the cut. sqlite3: an 8-frame synthetic drive with ground truth (rows of large images
    live in overflow pages that a cut scatters, so small rows show the recovery better)."""
    path = root / f"truncated_{storage}"
    if storage == "sqlite3":
        write_bag(path, seed=5, n_frames=8, height=H, width=W, storage="sqlite3")
    else:
        ts = _store()
        with _writer(path, storage) as w:
            c = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
            for i in range(10):
                msg, stamp = _image(ts, i, h=256, w=512)
                w.write(c, stamp, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    f = _storage_file(path)
    data = f.read_bytes()
    f.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt_metadata(root: Path) -> Path:
    """metadata.yaml is not YAML (the storage file is intact)."""
    path = good_bag(root, "corrupt_metadata")
    (path / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: [unclosed\n\x00garbage")
    return path


def wrong_metadata(root: Path) -> Path:
    """metadata.yaml parses but names a storage file that does not exist and an unsupported version."""
    path = good_bag(root, "wrong_metadata")
    meta = path / "metadata.yaml"
    text = meta.read_text().replace(_storage_file(path).name, "missing_0.mcap")
    meta.write_text(text)
    return path


def metadata_only(root: Path) -> Path:
    """A directory with a metadata.yaml whose storage file is gone: nothing can be recovered."""
    path = good_bag(root, "metadata_only")
    _storage_file(path).unlink()
    return path


def not_a_bag(root: Path) -> Path:
    path = root / "not_a_bag"
    path.mkdir()
    (path / "notes.txt").write_text("hello")
    return path


def _writer(path: Path, storage: str = "mcap"):
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    return Writer(path, version=9, storage_plugin=plugin)


def _store():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _image(ts, i: int, step: int | None = None, nbytes: int | None = None, encoding: str = "rgb8", h=H, w=W):
    Image, Header, Time = (
        ts.types[k] for k in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time")
    )
    stamp = T0 + i * 100_000_000
    header = Header(Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), "camera")
    step = w * 3 if step is None else step
    rng = np.random.default_rng(i)
    data = rng.integers(0, 255, size=(nbytes if nbytes is not None else step * h), dtype=np.uint8)
    return Image(header, h, w, encoding, 0, step, data), stamp


def unknown_type(root: Path, storage: str = "sqlite3") -> Path:
    """Good images plus a topic of a custom type whose definition is not stored in the bag."""
    from rosbags.typesys import get_types_from_msg

    path = root / f"unknown_type_{storage}"
    ts = _store()
    ts.register(get_types_from_msg("int32 a\nstring b", "mtl_test/msg/Weird"))
    Weird = ts.types["mtl_test/msg/Weird"]
    with _writer(path, storage) as w:
        cimg = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        cw = w.add_connection("/weird", "mtl_test/msg/Weird", typestore=ts)
        for i in range(4):
            msg, stamp = _image(ts, i)
            w.write(cimg, stamp, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            w.write(cw, stamp, ts.serialize_cdr(Weird(i, "x"), "mtl_test/msg/Weird"))
    if storage == "sqlite3":  # drop the stored definition, as a bag recorded before Iron would have
        con = sqlite3.connect(_storage_file(path))
        con.execute(
            "UPDATE message_definitions SET encoded_message_definition='', encoding='ros2msg' WHERE topic_type=?",
            ("mtl_test/msg/Weird",),
        )
        con.commit()
        con.close()
    return path


def empty_image_topic(root: Path) -> Path:
    """An image topic declared in the bag with zero messages (camera never published)."""
    path = root / "empty_topic"
    ts = _store()
    with _writer(path) as w:
        w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        cs = w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        String = ts.types["std_msgs/msg/String"]
        for i in range(3):
            w.write(cs, T0 + i, ts.serialize_cdr(String("hi"), "std_msgs/msg/String"))
    return path


def broken_step(root: Path) -> Path:
    """6 images: #1 step < width*3, #3 data shorter than step*height, #4 unsupported encoding; rest fine."""
    path = root / "broken_step"
    ts = _store()
    with _writer(path) as w:
        c = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        for i in range(6):
            kw = {1: {"step": W * 3 - 5}, 3: {"nbytes": W * 3 * H // 2}, 4: {"encoding": "weird42"}}.get(i, {})
            msg, stamp = _image(ts, i, **kw)
            w.write(c, stamp, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    return path


def corrupt_messages(root: Path) -> Path:
    """5 images, #2 has garbage CDR bytes (bit rot), #3 is cut short."""
    path = root / "corrupt_messages"
    ts = _store()
    with _writer(path) as w:
        c = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        for i in range(5):
            msg, stamp = _image(ts, i)
            raw = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            if i == 2:
                raw = b"\x00\x01\x00\x00" + b"\xff" * 40
            elif i == 3:
                raw = raw[:100]
            w.write(c, stamp, raw)
    return path


def talker_like(root: Path, storage: str = "sqlite3") -> Path:
    """What `ros2 bag record` of the demo talker gives: std_msgs/String and rosout, no image."""
    path = root / f"talker_{storage}"
    ts = _store()
    String = ts.types["std_msgs/msg/String"]
    with _writer(path, storage) as w:
        c = w.add_connection("/topic", "std_msgs/msg/String", typestore=ts)
        w.add_connection("/rosout", "rcl_interfaces/msg/Log", typestore=ts)
        for i in range(10):
            w.write(c, T0 + i * 500_000_000, ts.serialize_cdr(String(f"Hello World: {i}"), "std_msgs/msg/String"))
    return path


def copy_of(src: Path, root: Path) -> Path:
    dst = root / src.name
    shutil.copytree(src, dst)
    return dst


ALL = {
    "truncated_mcap": lambda r: truncated(r, "mcap"),
    "truncated_sqlite3": lambda r: truncated(r, "sqlite3"),
    "corrupt_metadata": corrupt_metadata,
    "wrong_metadata": wrong_metadata,
    "metadata_only": metadata_only,
    "not_a_bag": not_a_bag,
    "unknown_type": unknown_type,
    "empty_image_topic": empty_image_topic,
    "broken_step": broken_step,
    "corrupt_messages": corrupt_messages,
    "talker_like": talker_like,
}
