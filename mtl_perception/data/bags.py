"""Read-only access to rosbag2 bags (sqlite3 and mcap, metadata v4-v9) without ROS, via ``rosbags``.

What this adds over ``rosbags.rosbag2.Reader``:

* **Errors a user can act on**, one line each (:class:`BagError` and subclasses): not a bag,
  unreadable metadata, truncated or corrupt storage file, unknown message type, missing or
  empty topic, no image topic (listing the topics that exist).
* **Partial results**: a storage file that breaks mid-way (truncated, corrupt chunk) ends
  iteration of that file with an entry in :attr:`Bag.errors`; the messages read before it are
  kept. A message whose CDR does not deserialize is yielded with ``error`` set, and iteration
  goes on. A bag whose ``metadata.yaml`` is missing or corrupt is read from its storage file
  directly (with a warning) instead of being refused.
* **Types**: definitions stored in the bag (rosbag2 >= Iron, mcap schemas) are registered in a
  per-bag typestore and win; types without a stored definition, or whose stored definition does
  not decode the data (the ``ros2 bag`` test bags store truncated ones), fall back to rosbags'
  built-in typestore of the bag's distro (``ros_distro`` in metadata v8+, else the latest).
* Iteration by topic that does not depend on QoS metadata: rosbags 0.11.9 matches a storage
  connection to its metadata connection by comparing the offered QoS, which differ between
  metadata.yaml and the storage file of bags recorded by ``ros2 bag`` (Foxy-era durations), so
  ``Reader.messages()`` yields nothing from them. Here topic + type decide.
* Topic discovery (:func:`find_image_topic`, :func:`find_gt_topics`) and header-stamp matching
  of ground truth to images (:func:`match_by_stamp`).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("mtl_perception.bags")

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
STORAGE_SUFFIXES = (".mcap", ".db3")
#: topic-name fragments that mark ground truth / derived images, never the camera input
GT_NAME_HINTS = ("gt/", "/gt", "ground_truth", "groundtruth", "semantic", "label", "depth", "mask", "seg")
SEMANTIC_GT_HINTS = ("gt/semantic", "gt/semseg", "gt/labels", "gt/label", "ground_truth/semantic", "gt/segmentation")
DEPTH_GT_HINTS = ("gt/depth", "ground_truth/depth", "depth_gt", "gt_depth")
#: camera topic names, best first (image_pipeline conventions)
PREFERRED_IMAGE_NAMES = ("image_rect_color", "image_raw", "image_color", "image_rect", "image")


class BagError(Exception):
    """A bag cannot be used as asked; ``str()`` is one actionable line."""


class NotABagError(BagError):
    """The path is not a rosbag2 directory or storage file."""


class BagCorruptError(BagError):
    """The bag's metadata or storage cannot be read at all."""


class TopicError(BagError):
    """A requested topic is missing, empty or of the wrong type, or no image topic exists."""


class UnknownTypeError(BagError):
    """A message type has neither a stored definition nor a built-in one."""


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int
    has_definition: bool

    def describe(self) -> str:
        return f"{self.name} ({self.msgtype}, {self.count} msgs)"


@dataclass
class BagMessage:
    """One message: ``msg`` is the deserialized message (None when ``error`` is set)."""

    topic: str
    msgtype: str
    timestamp: int  # bag (receive) time, ns
    raw: bytes
    msg: Any = None
    error: str | None = None
    index: int = 0  # position in the iteration

    @property
    def stamp_ns(self) -> int | None:
        return header_stamp_ns(self.msg)


def header_stamp_ns(msg: Any) -> int | None:
    """``header.stamp`` in ns of a message (rosbags or rclpy), None if it has no header."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None
    return int(stamp.sec) * 1_000_000_000 + int(getattr(stamp, "nanosec", 0))


def _distro_store(distro: str | None):
    from rosbags.typesys import Stores, get_typestore

    key = f"ROS2_{(distro or '').upper()}"
    store = Stores.__members__.get(key, Stores.LATEST)
    return get_typestore(store), store.value


def _check_reader(reader: Any) -> None:
    """rosbags takes metadata.yaml's fields as they are: one of a wrong type (a float distro, a dict
    count) would fail far from its cause. Raise here so the bag is read as a wrong-metadata bag."""
    distro = reader.ros_distro
    if distro is not None and not isinstance(distro, str):
        raise TypeError(f"metadata.yaml: ros_distro {distro!r} is not a name")
    for value in (reader.message_count, reader.start_time, reader.end_time, reader.duration):
        int(value)
    for part in (reader, getattr(reader, "storage", None)):
        files = getattr(part, "files", None) or []
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise TypeError(f"metadata.yaml: files {files!r} is not a list of mappings")
    for c in reader.connections:
        if not isinstance(c.topic, str) or not isinstance(c.msgtype, str):
            raise TypeError(f"metadata.yaml: topic {c.topic!r} / type {c.msgtype!r} are not names")
        int(c.msgcount)


def _parse_msgdef(msgtype: str, fmt: Any, text: str) -> dict[str, Any]:
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    if fmt == MessageDefinitionFormat.MSG:
        return dict(get_types_from_msg(text, msgtype))
    if fmt == MessageDefinitionFormat.IDL:
        sep = "=" * 80 + "\n"
        types: dict[str, Any] = {}
        if text.startswith(f"{sep}IDL: "):
            for part in text.split(sep)[1:]:
                types.update(get_types_from_idl(part.split("\n", 1)[1]))
        else:
            types.update(get_types_from_idl(text))
        return types
    return {}


def _storage_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in STORAGE_SUFFIXES and p.is_file())


class Bag:
    """An open rosbag2 bag. Use as a context manager, or call :meth:`close`.

    ``errors`` collects storage failures (data lost), ``message_errors`` undecodable messages;
    ``warnings`` collects recoveries (metadata fallback, definition fallback, count mismatch).
    """

    def __init__(self, path: str | Path) -> None:
        from rosbags.rosbag2 import Reader, ReaderError

        self.path = Path(path)
        self.errors: list[str] = []  # storage-level: truncated/corrupt files (later messages lost)
        self.message_errors: list[str] = []  # per message: undecodable CDR, unknown type
        self.warnings: list[str] = []
        self.metadata_version: int | None = None
        if not self.path.exists():
            raise NotABagError(f"bag {self.path} does not exist; pass a bag directory or a .mcap/.db3 file")
        target = self.path
        if self.path.is_dir():
            if not (self.path / "metadata.yaml").is_file():
                files = _storage_files(self.path)
                if len(files) != 1:
                    what = "no .mcap/.db3 file" if not files else f"{len(files)} storage files"
                    raise NotABagError(
                        f"{self.path} is not a rosbag2 bag: no metadata.yaml and {what} "
                        "(pass a bag directory, or one .mcap/.db3 file)"
                    )
                self.warnings.append(f"{self.path}/metadata.yaml missing; reading {files[0].name} directly")
                target = files[0]
        elif self.path.suffix not in STORAGE_SUFFIXES:
            raise NotABagError(
                f"{self.path} is not a rosbag2 bag (expected a directory with metadata.yaml, a .mcap or a .db3 file)"
            )
        self._tmp: Path | None = None
        try:
            self._reader = self._open(Reader, target)
        except ReaderError as exc:
            self._reader, target = self._salvage(Reader, target, exc)
        self.target = target
        self.storage_id = self._storage_id()
        self._base_store, self.typestore_name = _distro_store(self.ros_distro)
        self._stored_store = None
        self._prefer: dict[str, str] = {}  # msgtype -> "stored" | "base"
        self._register_stored_definitions()

    @staticmethod
    def _open(reader_cls: Any, target: Path) -> Any:
        reader = reader_cls(target)
        try:
            reader.open()
            _check_reader(reader)
        except Exception as exc:
            if getattr(reader, "is_open", False):
                try:
                    for part in (reader, getattr(reader, "storage", None)):
                        if isinstance(getattr(part, "files", None), str):
                            part.files = []  # rosbags' close() clears it: a wrong-type value must not fail there
                    reader.close()
                except Exception:
                    pass
            from rosbags.rosbag2 import ReaderError

            if isinstance(exc, ReaderError):
                raise
            raise ReaderError(f"{exc.__class__.__name__}: {exc}") from exc
        return reader

    def _salvage(self, reader_cls: Any, target: Path, exc: Exception) -> tuple[Any, Path]:
        """The bag does not open as it is: read its storage file directly (metadata.yaml wrong or
        corrupt), else a repaired temporary copy of it (truncated file). The bag is never modified."""
        from rosbags.rosbag2 import ReaderError

        files = _storage_files(target) if target.is_dir() else [target]
        if len(files) != 1:
            raise BagCorruptError(f"cannot read bag {self.path}: {_one_line(exc)}") from exc
        file = files[0]
        tried = [_one_line(exc)]
        if file != target:
            try:
                reader = self._open(reader_cls, file)
                self.warnings.append(f"bag metadata unusable ({tried[0]}); read {file.name} directly")
                return reader, file
            except ReaderError as exc2:
                tried.append(_one_line(exc2))
        import tempfile

        self._tmp = Path(tempfile.mkdtemp(prefix="mtl_bag_salvage_"))
        repaired = _repair_copy(file, self._tmp)
        if repaired is not None:
            try:
                reader = self._open(reader_cls, repaired)
            except ReaderError as exc3:
                tried.append(_one_line(exc3))
            else:
                self.errors.append(
                    f"{file.name} is truncated or corrupt ({tried[-1]}); reading the intact part only, "
                    "later messages are lost"
                )
                return reader, repaired
        self._cleanup()
        raise BagCorruptError(f"cannot read bag {self.path}: {'; '.join(dict.fromkeys(tried))}") from exc

    def _cleanup(self) -> None:
        if self._tmp is not None:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # ------------------------------------------------------------------ metadata
    def _storage_id(self) -> str:
        self.expected_count: int | None = None
        meta_path = (self.path if self.path.is_dir() else self.path.parent) / "metadata.yaml"
        if meta_path.is_file():
            try:  # best effort: already validated by rosbags, or unusable and bypassed
                from ruamel.yaml import YAML

                meta = YAML(typ="safe").load(meta_path.read_text())["rosbag2_bagfile_information"]
                self.metadata_version = int(meta.get("version", 0)) or None
                self.expected_count = int(meta["message_count"])
                if self.target.is_dir():
                    return str(meta.get("storage_identifier", "?"))
            except Exception:
                pass
        return "mcap" if self.target.suffix == ".mcap" else "sqlite3"

    @property
    def ros_distro(self) -> str | None:
        return self._reader.ros_distro

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time)

    @property
    def duration_s(self) -> float:
        return max(0, self._reader.duration) / 1e9

    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    @property
    def topics(self) -> dict[str, TopicInfo]:
        out: dict[str, TopicInfo] = {}
        for c in self._reader.connections:
            prev = out.get(c.topic)
            has_def = bool(c.msgdef.data)
            if prev is None:
                out[c.topic] = TopicInfo(c.topic, c.msgtype, int(c.msgcount), has_def)
            else:
                out[c.topic] = TopicInfo(c.topic, prev.msgtype, prev.count + int(c.msgcount), prev.has_definition)
        return dict(sorted(out.items()))

    def describe_topics(self) -> str:
        topics = self.topics.values()
        return ", ".join(t.describe() for t in topics) if topics else "(none)"

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "storage": self.storage_id,
            "metadata_version": self.metadata_version,
            "ros_distro": self.ros_distro,
            "typestore": self.typestore_name,
            "duration_s": round(self.duration_s, 6),
            "message_count": self.message_count,
            "metadata_message_count": self.expected_count,
            "topics": {t.name: {"type": t.msgtype, "count": t.count} for t in self.topics.values()},
        }

    def require_topic(self, topic: str, types: Sequence[str] | None = None, what: str = "topic") -> TopicInfo:
        info = self.topics.get(topic)
        if info is None:
            raise TopicError(f"{what} {topic} is not in bag {self.path}; topics: {self.describe_topics()}")
        if types and info.msgtype not in types:
            raise TopicError(f"{what} {topic} has type {info.msgtype}, expected {' or '.join(types)}")
        if info.count == 0:
            raise TopicError(f"{what} {topic} has no messages in bag {self.path} (empty topic)")
        return info

    # ------------------------------------------------------------------ types
    def _register_stored_definitions(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        store = get_typestore(Stores.EMPTY)
        seen: set[str] = set()
        for c in self._reader.connections:
            if c.msgtype in seen or not c.msgdef.data:
                continue
            seen.add(c.msgtype)
            try:
                store.register(_parse_msgdef(c.msgtype, c.msgdef.format, c.msgdef.data))
                store.get_msgdef(c.msgtype)  # all dependencies resolvable
                self._prefer[c.msgtype] = "stored"
            except Exception as exc:  # broken/incomplete stored definition: use the built-in one
                self.warnings.append(f"stored definition of {c.msgtype} unusable ({_one_line(exc)}); using built-in")
        self._stored_store = store

    def known_type(self, msgtype: str) -> bool:
        return self._prefer.get(msgtype) == "stored" or msgtype in self._base_store.fielddefs

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        """CDR bytes -> message; stored definition first, built-in fallback (sticky per type)."""
        order = ["stored", "base"] if self._prefer.get(msgtype) == "stored" else ["base"]
        if msgtype not in self._base_store.fielddefs:
            order = [o for o in order if o != "base"]
        if not order:
            raise UnknownTypeError(
                f"unknown message type {msgtype}: no definition stored in the bag and not a standard ROS 2 type "
                f"in rosbags' {self.typestore_name} store"
            )
        last: Exception | None = None
        for which in order:
            store = self._stored_store if which == "stored" else self._base_store
            try:
                msg = store.deserialize_cdr(raw, msgtype)
            except Exception as exc:
                last = exc
                continue
            if which == "base" and self._prefer.get(msgtype) == "stored":
                self._prefer[msgtype] = "base"
                self.warnings.append(f"stored definition of {msgtype} does not decode the data; using built-in")
            return msg
        raise ValueError(f"corrupt {msgtype} message: {_one_line(last)}")

    # ------------------------------------------------------------------ iteration
    def raw_messages(self, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """(topic, msgtype, bag timestamp ns, CDR bytes) in storage order; storage failures end the
        affected file with an entry in :attr:`errors` (messages read so far are kept)."""
        wanted = set(topics) if topics is not None else None
        storage = self._reader.storage
        subs = getattr(storage, "storages", None)
        compressed = getattr(getattr(storage, "metadata", None), "compression_mode", None) == "message"
        parts = list(zip(subs, self._file_names())) if subs is not None else [(storage, self.target.name)]
        for sub, name in parts:
            conns = [c for c in sub.connections if wanted is None or c.topic in wanted]
            if not conns:
                continue
            it = sub.messages(conns)
            n = 0
            while True:
                try:
                    conn, t, data = next(it)
                except StopIteration:
                    break
                except Exception as exc:
                    self.errors.append(
                        f"{name}: storage read failed after {n} messages ({_one_line(exc)}); "
                        "file truncated or corrupt, later messages lost"
                    )
                    break
                n += 1
                if compressed:
                    from rosbags.rosbag2.reader import zstd  # same codec rosbags uses

                    try:
                        data = zstd.decompress(data)
                    except Exception as exc:
                        self.errors.append(f"{name}: message {n} on {conn.topic} does not decompress ({exc})")
                        continue
                yield conn.topic, conn.msgtype, int(t), bytes(data)

    def _file_names(self) -> list[str]:
        files = getattr(self._reader.storage, "files", None) or []
        names = [Path(f.get("path", "?")).name for f in files] if files else []
        subs = self._reader.storage.storages
        if len(names) != len(subs):
            names = [str(getattr(s, "path", f"file {i}")) for i, s in enumerate(subs)]
            names = [Path(n).name for n in names]
        return names

    def messages(self, topics: Iterable[str] | None = None, deserialize: bool = True) -> Iterator[BagMessage]:
        """Messages of ``topics`` (all when None); undecodable ones come with ``error`` set."""
        for i, (topic, msgtype, t, raw) in enumerate(self.raw_messages(topics)):
            m = BagMessage(topic, msgtype, t, raw, index=i)
            if deserialize:
                try:
                    m.msg = self.deserialize(raw, msgtype)
                except (ValueError, BagError) as exc:
                    m.error = f"{topic} message {i} at t={t}: {exc}"
                    self.message_errors.append(m.error)
            yield m

    def close(self) -> None:
        if getattr(self, "_reader", None) is not None and self._reader.is_open:
            self._reader.close()
        self._cleanup()

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_MCAP_MAGIC = b"\x89MCAP0\r\n"


def _repair_copy(file: Path, tmp: Path) -> Path | None:
    """A copy of a truncated storage file that ``rosbags`` can open, or None if not repairable.

    mcap: keep the complete top-level records and append an empty-summary footer (rosbags then
    scans the data section). sqlite3: cut to whole pages and fix the page count in the header
    (rows on lost pages stay unreadable; reading stops there).
    """
    import struct

    size = file.stat().st_size
    out = tmp / file.name
    if file.suffix == ".mcap":
        with file.open("rb") as f:
            if f.read(8) != _MCAP_MAGIC:
                return None
            pos = 8
            while pos + 9 <= size:
                f.seek(pos)
                op, length = struct.unpack("<BQ", f.read(9))
                if op in (0x02, 0x0F) or pos + 9 + length > size:  # footer / data end / cut record
                    break
                pos += 9 + length
            f.seek(0)
            with out.open("wb") as g:
                remaining = pos
                while remaining:
                    chunk = f.read(min(remaining, 1 << 24))
                    g.write(chunk)
                    remaining -= len(chunk)
                g.write(struct.pack("<BQQQI", 0x02, 20, 0, 0, 0) + _MCAP_MAGIC)
        return out
    if file.suffix == ".db3":
        return _repair_sqlite(file, tmp)
    return None


def _repair_sqlite(file: Path, tmp: Path) -> Path | None:
    """Copy the readable rows of a truncated rosbag2 sqlite3 file into a fresh database."""
    import sqlite3
    import struct

    size = file.stat().st_size
    with file.open("rb") as f:
        header = bytearray(f.read(100))
        if not header.startswith(b"SQLite format 3\x00"):
            return None
        page = struct.unpack(">H", header[16:18])[0]
        page = 65536 if page == 1 else page
        if page < 512 or page & (page - 1):  # a corrupt header: not a power of two in 512..65536
            return None
        pages = size // page
        if pages == 0:
            return None
        f.seek(0)
        data = bytearray(f.read(pages * page))
    data[28:32] = struct.pack(">I", pages)  # in-header page count = pages actually present
    fixed = tmp / f"pages_{file.name}"
    fixed.write_bytes(bytes(data))
    out = tmp / file.name
    src = sqlite3.connect(f"file:{fixed}?immutable=1", uri=True)
    dst = sqlite3.connect(out)
    try:
        tables = src.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
        for _type, name, sql in tables:
            if not name.startswith("sqlite_"):
                dst.execute(sql)
        for kind, name, _sql in tables:
            if kind != "table" or name.startswith("sqlite_"):
                continue
            try:
                for row in src.execute(f'SELECT * FROM "{name}" ORDER BY rowid'):  # noqa: S608 (names from the file)
                    dst.execute(f'INSERT INTO "{name}" VALUES ({",".join("?" * len(row))})', row)  # noqa: S608
            except (sqlite3.DatabaseError, UnicodeDecodeError):  # a corrupt TEXT cell fails to decode
                pass  # the rows after the cut are lost; keep what was read
        dst.commit()
    except (sqlite3.DatabaseError, UnicodeDecodeError):
        return None
    finally:
        src.close()
        dst.close()
        fixed.unlink(missing_ok=True)
    return out


def open_bag(path: str | Path) -> Bag:
    """Open a bag directory or a single .mcap/.db3 file read-only (raises :class:`BagError`)."""
    return Bag(path)


def _one_line(exc: object) -> str:
    text = str(exc).strip().replace("\n", " ")
    return re.sub(r"\s+", " ", text)[:300] or exc.__class__.__name__


# ---------------------------------------------------------------------- topic discovery
def _is_gt_name(name: str) -> bool:
    low = name.lower()
    return any(h in low for h in GT_NAME_HINTS)


def _image_score(info: TopicInfo) -> tuple:
    parts = [p for p in info.name.lower().split("/") if p]
    last = parts[-1] if parts else ""
    if last == "compressed" and len(parts) > 1:
        last = parts[-2]
    try:
        rank = len(PREFERRED_IMAGE_NAMES) - PREFERRED_IMAGE_NAMES.index(last)
    except ValueError:
        rank = 1 if "image" in info.name.lower() else 0
    return (info.count > 0, rank, info.msgtype == IMAGE_TYPE, info.count)


def image_topics(bag: Bag) -> list[TopicInfo]:
    """Camera image topics (Image/CompressedImage, not ground truth), best first."""
    cands = [t for t in bag.topics.values() if t.msgtype in IMAGE_TYPES and not _is_gt_name(t.name)]
    return sorted(cands, key=lambda t: (tuple(-int(x) for x in _image_score(t)), t.name))


def find_image_topic(bag: Bag, requested: str | None = None) -> list[str]:
    """Image topics to evaluate: ``requested`` (a topic, comma-separated topics, or ``all``) or the best
    auto-detected one. Raises :class:`TopicError` naming the topics that exist."""
    if requested and requested != "all":
        names = [t.strip() for t in requested.split(",") if t.strip()]
        for name in names:
            bag.require_topic(name, IMAGE_TYPES, "image topic")
        return names
    cands = [t for t in image_topics(bag) if t.count > 0]
    if not cands:
        empty = [t.name for t in image_topics(bag)]
        hint = f" (image topics {', '.join(empty)} have no messages)" if empty else ""
        raise TopicError(
            f"no image topic (sensor_msgs/msg/Image or CompressedImage) with messages in bag {bag.path}{hint}; "
            f"topics: {bag.describe_topics()}"
        )
    if requested == "all":
        return [t.name for t in cands]
    if len(cands) > 1:
        bag.warnings.append(
            f"several image topics ({', '.join(t.name for t in cands)}); using {cands[0].name} "
            "(choose with --image-topic T, or --image-topic all)"
        )
    return [cands[0].name]


def find_gt_topics(bag: Bag, semantic: str | None = None, depth: str | None = None) -> tuple[str | None, str | None]:
    """(semantic GT topic, depth GT topic): explicit names are validated; ``none`` disables; else by name."""

    def pick(explicit: str | None, hints: Sequence[str], what: str) -> str | None:
        if explicit is not None:
            if explicit.lower() in ("", "none", "off"):
                return None
            bag.require_topic(explicit, (IMAGE_TYPE,), what)
            return explicit
        for t in bag.topics.values():
            if t.msgtype == IMAGE_TYPE and t.count > 0 and any(h in t.name.lower() for h in hints):
                return t.name
        return None

    return (
        pick(semantic, SEMANTIC_GT_HINTS, "semantic ground-truth topic"),
        pick(depth, DEPTH_GT_HINTS, "depth ground-truth topic"),
    )


def find_camera_info_topics(
    bag: Bag, image_topics: Sequence[str], requested: str | None = None
) -> dict[str, str | None]:
    """The CameraInfo topic of each image topic (None: none found, depth then assumes the model's
    default field of view).

    ``requested``: a topic (validated, used for every image topic) or ``none``. Otherwise the
    image_transport convention: ``/ns/image_raw`` and ``/ns/image/compressed`` have their
    ``/ns/camera_info``; failing that, a bag with exactly one CameraInfo topic and one image topic
    pairs the two."""
    if requested is not None:
        if requested.lower() in ("", "none", "off"):
            return dict.fromkeys(image_topics)
        bag.require_topic(requested, (CAMERA_INFO_TYPE,), "camera_info topic")
        return dict.fromkeys(image_topics, requested)
    infos = [t.name for t in bag.topics.values() if t.msgtype == CAMERA_INFO_TYPE and t.count > 0]
    out: dict[str, str | None] = {}
    for topic in image_topics:
        base = topic.rstrip("/")
        if base.endswith("/compressed"):  # image_transport: /ns/image/compressed is /ns/image
            base = base[: -len("/compressed")]
        sibling = base.rsplit("/", 1)[0] + "/camera_info"
        out[topic] = sibling if sibling in infos else None
    if len(image_topics) == 1 and out[image_topics[0]] is None and len(infos) == 1:
        out[image_topics[0]] = infos[0]
    return out


# ---------------------------------------------------------------------- ground-truth images
_GT_DTYPES = {"mono8": "u1", "8UC1": "u1", "16UC1": "u2", "mono16": "u2", "32FC1": "f4", "64FC1": "f8"}


def gt_image_to_array(msg: Any) -> np.ndarray:
    """Single-channel ground-truth Image -> (H, W) array (uint8 labels or float32 depth in metres).

    mono8/8UC1 stay uint8 class ids; 32FC1 is metres (NaN invalid, REP 118); 16UC1/mono16 depth is
    millimetres (REP 118), 0 = invalid. Honours ``step`` padding and ``is_bigendian``.
    """
    enc = str(msg.encoding)
    if enc not in _GT_DTYPES:
        raise ValueError(f"ground-truth encoding {enc!r} unsupported (mono8, 16UC1, 32FC1, 64FC1)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dt = np.dtype(_GT_DTYPES[enc]).newbyteorder(">" if msg.is_bigendian else "<")
    row = w * dt.itemsize
    buf = np.frombuffer(memoryview(msg.data).cast("B") if not isinstance(msg.data, np.ndarray) else msg.data, np.uint8)
    if h <= 0 or w <= 0 or step < row or buf.size < step * (h - 1) + row:
        raise ValueError(f"ground-truth image {w}x{h} {enc} with step {step} and {buf.size} bytes is inconsistent")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, row), strides=(step, 1))
    arr = np.ascontiguousarray(rows).view(dt).reshape(h, w)
    if dt.kind == "u" and dt.itemsize == 1:
        return arr
    if dt.kind == "u":  # millimetres, 0 invalid
        out = arr.astype(np.float32) / 1000.0
        out[arr == 0] = np.nan
        return out
    return arr.astype(np.float32)


# ---------------------------------------------------------------------- stamp matching
@dataclass
class MatchStats:
    primary: int = 0
    matched: dict[str, int] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)
    max_offset_ms: dict[str, float] = field(default_factory=dict)


def match_by_stamp(
    messages: Iterable[BagMessage],
    primary: Sequence[str],
    secondary: Sequence[str],
    tolerance_ns: int,
    max_pending: int = 32,
    stats: MatchStats | None = None,
) -> Iterator[tuple[BagMessage, dict[str, BagMessage | None]]]:
    """Pair each ``primary`` message with the nearest-by-``header.stamp`` message of every ``secondary``
    topic within ``tolerance_ns``; streams in bag order with bounded buffers.

    A primary message is released once every secondary topic has a match, or has shown a stamp past
    the primary's stamp + tolerance (topics are assumed mostly time-ordered), or ``max_pending``
    primaries are waiting, or the bag ends. Primaries with an error or no stamp are released at once
    with no matches. Order of release = order in the bag.
    """
    stats = stats if stats is not None else MatchStats()
    prim, sec = set(primary), list(secondary)
    buffers: dict[str, deque[tuple[int, BagMessage]]] = {t: deque(maxlen=max(4, 2 * max_pending)) for t in sec}
    newest: dict[str, int] = {}
    pending: deque[BagMessage] = deque()

    def best(topic: str, stamp: int) -> BagMessage | None:
        found, off = None, None
        for s, m in buffers[topic]:
            d = abs(s - stamp)
            if d <= tolerance_ns and (off is None or d < off):
                found, off = m, d
        return found

    def ready(m: BagMessage) -> bool:
        s = m.stamp_ns
        return all(best(t, s) is not None or newest.get(t, -(1 << 62)) > s + tolerance_ns for t in sec)

    def release(m: BagMessage) -> tuple[BagMessage, dict[str, BagMessage | None]]:
        stats.primary += 1
        s = m.stamp_ns
        out: dict[str, BagMessage | None] = {}
        for t in sec:
            g = best(t, s) if s is not None and m.error is None else None
            out[t] = g
            key = "matched" if g is not None else "unmatched"
            getattr(stats, key)[t] = getattr(stats, key).get(t, 0) + 1
            if g is not None:
                off = abs(g.stamp_ns - s) / 1e6
                stats.max_offset_ms[t] = max(stats.max_offset_ms.get(t, 0.0), off)
        return m, out

    for m in messages:
        if m.topic in prim:
            if m.error is not None or m.stamp_ns is None:
                while pending:  # keep bag order
                    yield release(pending.popleft())
                yield release(m)
                continue
            pending.append(m)
        elif m.topic in buffers and m.error is None and m.stamp_ns is not None:
            buffers[m.topic].append((m.stamp_ns, m))
            newest[m.topic] = max(newest.get(m.topic, m.stamp_ns), m.stamp_ns)
        while pending and (ready(pending[0]) or len(pending) > max_pending):
            yield release(pending.popleft())
    while pending:
        yield release(pending.popleft())
