"""Write synthetic street frames to disk (PNG dataset folder or ROS 2 bag) and read the folder back.

Why two formats: the PNG folder is what training reads (random access, no ROS needed); the bag
is what the ROS 2 nodes are tested and demoed with (same topics and stamps as a real camera,
plus ground-truth topics). Both are produced from :func:`render_sequence`, so they are
deterministic per seed.

Dataset folder layout::

    out_dir/dataset.json        format version, classes, palette, size, seeds, generator version
    out_dir/frames.jsonl        one JSON object per frame (index, stamp_ns, fx, fy, cx, cy, pose, ...)
    out_dir/images/000000.png   RGB
    out_dir/semantic/000000.png uint8 Cityscapes train ids (255 = ignore)
    out_dir/depth/000000.png    uint16, metres * 256, 0 = invalid (KITTI convention)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtl_perception.atomic_io import atomic_dir, atomic_write_json
from mtl_perception.data.synthetic import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    GENERATOR_VERSION,
    RANDOMIZATIONS,
    render_sequence,
)

__all__ = [
    "DATASET_FORMAT_VERSION",
    "DEPTH_SCALE",
    "SyntheticDataset",
    "derive_seed",
    "write_bag",
    "write_dataset",
]

DATASET_FORMAT_VERSION = 1
#: uint16 depth PNG: value = round(metres * DEPTH_SCALE); 0 = invalid (KITTI convention).
DEPTH_SCALE = 256.0
#: Bags start at this fixed wall time so two runs with the same arguments are byte-identical.
BAG_START_NS = 1_700_000_000_000_000_000
FRAME_ID = "camera_optical_frame"


def derive_seed(seed: int, sequence: int) -> int:
    """Seed of sequence ``sequence`` of a dataset made from ``seed`` (distinct streets per sequence)."""
    return int(np.random.SeedSequence([int(seed), int(sequence)]).generate_state(1)[0])


def encode_depth_png(depth: np.ndarray) -> np.ndarray:
    """float32 metres -> uint16 KITTI depth (metres*256, 0 invalid; valid pixels never become 0)."""
    valid = np.isfinite(depth) & (depth > 0)
    d = np.where(valid, np.round(np.where(valid, depth, 0) * DEPTH_SCALE), 0)
    d = np.clip(d, 0, 65535)
    d[valid] = np.maximum(d[valid], 1)
    return d.astype(np.uint16)


def write_dataset(
    out_dir: str | Path,
    seed: int,
    n_frames: int,
    height: int = 256,
    width: int = 512,
    fps: float = 10.0,
    speed: float = 8.0,
    sequence_length: int = 50,
    progress: Callable[[int], None] | None = None,
    randomization: str = "full",
    workers: int = 1,
    look: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Render ``n_frames`` frames into a dataset folder; returns the ``dataset.json`` content.

    Frames are split into sequences of ``sequence_length`` frames, each from its own derived seed,
    so a dataset has scene variety while keeping temporal continuity inside a sequence. Stamps
    increase monotonically over the whole dataset (1 s gap between sequences). Refuses to write
    into a folder that already holds a dataset. ``randomization`` (``"full"`` or ``"basic"``, see
    :meth:`SceneConfig.from_seed`) is recorded in ``dataset.json``. ``workers`` > 1 renders sequences
    in that many processes; the folder is the same byte for byte. ``look``: fields of every street's
    :class:`Look` to set (``scene.parse_look_overrides``; "full" only), recorded in ``dataset.json`` as
    ``look_overrides``.
    """
    if n_frames < 1 or sequence_length < 1 or height < 1 or width < 1 or fps <= 0 or speed < 0 or workers < 1:
        raise ValueError(
            "write_dataset: need n_frames, sequence_length, height, width, workers >= 1, fps > 0, speed >= 0"
        )
    if randomization not in RANDOMIZATIONS:
        raise ValueError(f"write_dataset: randomization must be one of {RANDOMIZATIONS}, got {randomization!r}")
    look = dict(look or {})
    if look and randomization != "full":
        raise ValueError("write_dataset: look overrides need randomization 'full' ('basic' draws no look)")
    final = Path(out_dir)
    if (final / "dataset.json").exists() or (final / "frames.jsonl").exists():
        raise FileExistsError(f"{final} already contains a dataset; choose a new --out folder or delete it first")
    if final.is_dir() and any(final.iterdir()):
        raise FileExistsError(
            f"{final} is not empty but holds no dataset.json; choose a new --out folder or delete it first"
        )
    # Crash safety: the folder is rendered in a hidden staging directory next to it and renamed into
    # place when whole (dataset.json written last), so --out is either absent or a complete dataset; a
    # killed run's staging directory is removed by the next run.
    with atomic_dir(final) as out:
        meta = _write_dataset_files(
            out, seed, n_frames, height, width, fps, speed, sequence_length, progress, randomization, workers, look
        )
    return meta


def _sequence_plan(seed: int, n_frames: int, sequence_length: int) -> list[tuple[int, int, int, int]]:
    """(sequence number, derived seed, first dataset index, frames) of every sequence, in order."""
    plan, done, j = [], 0, 0
    while done < n_frames:
        n = min(sequence_length, n_frames - done)
        plan.append((j, derive_seed(seed, j), done, n))
        done += n
        j += 1
    return plan


def _write_sequence(
    out: Path,
    job: tuple[int, int, int, int],
    height: int,
    width: int,
    fps: float,
    speed: float,
    sequence_length: int,
    randomization: str,
    look: Mapping[str, Any] | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Render one sequence, write its PNGs and return its ``frames.jsonl`` records (in order)."""
    j, s, first, n = job
    period_ns = round(1e9 / fps)
    records = []
    frames = render_sequence(s, n, height, width, fps=fps, speed=speed, randomization=randomization, look=look)
    for k, fr in enumerate(frames):
        idx = first + k
        name = f"{idx:06d}.png"
        for sub, arr in (("images", fr.image[..., ::-1]), ("semantic", fr.semantic)):
            if not cv2.imwrite(str(out / sub / name), arr):
                raise OSError(f"cannot write {out / sub / name}")
        if not cv2.imwrite(str(out / "depth" / name), encode_depth_png(fr.depth)):
            raise OSError(f"cannot write {out / 'depth' / name}")
        stamp = fr.stamp_ns + j * (sequence_length * period_ns + 1_000_000_000)
        records.append(
            {
                "index": idx,
                "file": name,
                "stamp_ns": int(stamp),
                "fx": float(fr.K[0, 0]),
                "fy": float(fr.K[1, 1]),
                "cx": float(fr.K[0, 2]),
                "cy": float(fr.K[1, 2]),
                "pose": [[float(v) for v in row] for row in fr.pose],
                "seed": s,
                "sequence": j,
                "frame_in_sequence": fr.index,
            }
        )
        if progress is not None:
            progress(1)
    return records


def _write_sequence_job(args: tuple) -> list[dict[str, Any]]:
    # a worker process renders one sequence alone: one thread each, or N workers oversubscribe the cores
    cv2.setNumThreads(1)
    return _write_sequence(*args)


def _write_dataset_files(
    out: Path,
    seed: int,
    n_frames: int,
    height: int,
    width: int,
    fps: float,
    speed: float,
    sequence_length: int,
    progress: Callable[[int], None] | None,
    randomization: str,
    workers: int = 1,
    look: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    for sub in ("images", "semantic", "depth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    plan = _sequence_plan(seed, n_frames, sequence_length)
    common = (height, width, fps, speed, sequence_length, randomization, look)
    with open(out / "frames.jsonl", "w") as fh:
        if workers <= 1 or len(plan) == 1:
            for job in plan:
                for rec in _write_sequence(out, job, *common, progress):
                    fh.write(json.dumps(rec) + "\n")
        else:
            # Sequences are independent (own derived seed, own file indices), so worker processes render
            # them in any order and the records are written in dataset order: the folder is byte-identical
            # to a one-process render. "spawn": the caller (the trainer) may hold torch's thread pools.
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(min(workers, len(plan))) as pool:
                jobs = [(out, job, *common) for job in plan]
                for records in pool.imap(_write_sequence_job, jobs):
                    for rec in records:
                        fh.write(json.dumps(rec) + "\n")
                    if progress is not None:
                        for _ in records:
                            progress(1)
    seeds = [s for _, s, _, _ in plan]
    meta = {
        "format": "mtl_perception.synthetic",
        "format_version": DATASET_FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "randomization": randomization,
        **({"look_overrides": look} if look else {}),
        "num_frames": n_frames,
        "height": height,
        "width": width,
        "fps": fps,
        "speed": speed,
        "sequence_length": sequence_length,
        "seed": int(seed),
        "sequence_seeds": seeds,
        "classes": list(CITYSCAPES_CLASSES),
        "palette": CITYSCAPES_PALETTE.tolist(),
        "ignore_index": 255,
        "depth_png": {"dtype": "uint16", "scale": DEPTH_SCALE, "invalid": 0, "unit": "m"},
        "world_frame": "x left, y up, z forward along the road; pose = camera-to-world (optical frame)",
    }
    atomic_write_json(out / "dataset.json", meta, fsync=False, indent=2)  # atomic_dir fsyncs everything
    return meta


class SyntheticDataset:
    """Random-access reader of a folder written by :func:`write_dataset`.

    ``ds[i]`` returns ``dict(image=uint8 HxWx3 RGB, semseg=uint8 HxW, depth=float32 HxW metres
    (0 = invalid), K=float32 3x3, stamp_ns=int)``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file() or not (self.root / "frames.jsonl").is_file():
            raise ValueError(
                f"{self.root} is not a synthetic dataset (missing dataset.json or frames.jsonl); "
                f"create one with `mtl-perception synth --out {self.root} --frames N`"
            )
        try:
            self.meta = json.loads(meta_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{meta_path} is not valid JSON ({exc}); the dataset is corrupt: regenerate it with "
                f"`mtl-perception synth --out DIR --frames N`"
            ) from exc
        if not isinstance(self.meta, dict) or self.meta.get("format") != "mtl_perception.synthetic":
            raise ValueError(f"{meta_path} is not a mtl_perception synthetic dataset description; regenerate it")
        if int(self.meta.get("format_version", 0)) > DATASET_FORMAT_VERSION:
            raise ValueError(
                f"{meta_path} has format_version {self.meta['format_version']} > {DATASET_FORMAT_VERSION}; "
                "update mtl_perception to read it"
            )
        try:
            with open(self.root / "frames.jsonl") as fh:
                self.frames = [json.loads(line) for line in fh if line.strip()]
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"{self.root / 'frames.jsonl'} is not valid JSON lines ({exc}); the dataset is incomplete or "
                "corrupt: regenerate it"
            ) from exc
        expected = self.meta.get("num_frames")
        if expected is not None and len(self.frames) != int(expected):
            raise ValueError(
                f"{self.root} lists {len(self.frames)} frames in frames.jsonl but dataset.json says {expected}; "
                "the dataset is incomplete: regenerate it"
            )

    def __len__(self) -> int:
        return len(self.frames)

    def _read(self, sub: str, name: str, flags: int) -> np.ndarray:
        path = self.root / sub / name
        img = cv2.imread(str(path), flags)
        if img is None:
            raise ValueError(f"cannot read {path}; the dataset is incomplete, regenerate it")
        return img

    def _name(self, i: int) -> str:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        rec = self.frames[i]
        return rec.get("file", f"{rec['index']:06d}.png")

    def semseg(self, i: int) -> np.ndarray:
        """Frame i's labels alone (a class census need not decode images and depth)."""
        return self._read("semantic", self._name(i), cv2.IMREAD_UNCHANGED).astype(np.uint8, copy=False)

    def __getitem__(self, i: int) -> dict[str, Any]:
        name = self._name(i)
        rec = self.frames[i]
        image = self._read("images", name, cv2.IMREAD_COLOR)[..., ::-1].copy()
        sem = self._read("semantic", name, cv2.IMREAD_UNCHANGED)
        d16 = self._read("depth", name, cv2.IMREAD_UNCHANGED)
        K = np.array([[rec["fx"], 0, rec["cx"]], [0, rec["fy"], rec["cy"]], [0, 0, 1]], np.float32)
        return {
            "image": image,
            "semseg": sem.astype(np.uint8, copy=False),
            "depth": d16.astype(np.float32) / np.float32(DEPTH_SCALE),
            "K": K,
            "stamp_ns": int(rec["stamp_ns"]),
            # camera-to-world pose, world y up with the road at y = 0: the camera's height above it
            "camera_height": float(rec["pose"][1][3]) if "pose" in rec else None,
        }


def write_bag(
    path: str | Path,
    seed: int,
    n_frames: int,
    height: int = 256,
    width: int = 512,
    rate_hz: float = 10.0,
    storage: str = "mcap",
    speed: float = 8.0,
    start_ns: int = BAG_START_NS,
    progress: Callable[[int], None] | None = None,
    randomization: str = "full",
) -> dict[str, Any]:
    """Record a rendered drive as a ROS 2 bag (what a camera driver plus ground truth would publish).

    Topics, all with the same ``header.stamp`` per frame (``start_ns + i / rate_hz``), which is also
    the bag timestamp, and frame id ``camera_optical_frame``:

    * ``/camera/image_raw``    sensor_msgs/msg/Image rgb8
    * ``/camera/camera_info``  sensor_msgs/msg/CameraInfo (plumb_bob, zero distortion)
    * ``/camera/gt/semantic``  sensor_msgs/msg/Image mono8 (Cityscapes train ids, 255 ignore)
    * ``/camera/gt/depth``     sensor_msgs/msg/Image 32FC1 metres, NaN where invalid (REP 118)
    """
    from rosbags.rosbag2 import StoragePlugin

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"unknown bag storage {storage!r}; use 'mcap' or 'sqlite3'")
    if n_frames < 1 or rate_hz <= 0:
        raise ValueError("write_bag: need n_frames >= 1 and rate_hz > 0")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"bag {path} already exists; choose another --bag path or delete it first")
    # Crash safety: recorded into a hidden staging directory and renamed to ``path`` once the writer has
    # closed (metadata.yaml, mcap summary / sqlite3 commit written), so ``path`` is a whole bag or absent
    with atomic_dir(path, create=False) as staging:
        return _write_bag_files(
            staging,
            path,
            seed,
            n_frames,
            height,
            width,
            rate_hz,
            plugins[storage],
            storage,
            speed,
            start_ns,
            progress,
            randomization,
        )


def _write_bag_files(
    path: Path,
    final: Path,
    seed: int,
    n_frames: int,
    height: int,
    width: int,
    rate_hz: float,
    plugin: Any,
    storage: str,
    speed: float,
    start_ns: int,
    progress: Callable[[int], None] | None,
    randomization: str,
) -> dict[str, Any]:
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Image = ts.types["sensor_msgs/msg/Image"]
    CameraInfo = ts.types["sensor_msgs/msg/CameraInfo"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    ROI = ts.types["sensor_msgs/msg/RegionOfInterest"]

    def image(header, arr: np.ndarray, encoding: str, step: int):
        data = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
        return Image(header, height, width, encoding, 0, step, data)

    period = 1e9 / rate_hz
    first = last = None
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        topics = {
            "/camera/image_raw": "sensor_msgs/msg/Image",
            "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
            "/camera/gt/semantic": "sensor_msgs/msg/Image",
            "/camera/gt/depth": "sensor_msgs/msg/Image",
        }
        conns = {t: writer.add_connection(t, m, typestore=ts) for t, m in topics.items()}
        frames = render_sequence(seed, n_frames, height, width, fps=rate_hz, speed=speed, randomization=randomization)
        for fr in frames:
            stamp = int(start_ns + round(fr.index * period))
            first = stamp if first is None else first
            last = stamp
            header = Header(Time(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000), FRAME_ID)
            K = fr.K.astype(np.float64)
            P = np.zeros((3, 4))
            P[:, :3] = K
            info = CameraInfo(
                header,
                height,
                width,
                "plumb_bob",
                np.zeros(5),
                K.reshape(-1),
                np.eye(3).reshape(-1),
                P.reshape(-1),
                0,
                0,
                ROI(0, 0, 0, 0, False),
            )
            depth = np.where(fr.depth > 0, fr.depth, np.float32(np.nan)).astype("<f4")
            msgs = {
                "/camera/image_raw": (image(header, fr.image, "rgb8", width * 3), "sensor_msgs/msg/Image"),
                "/camera/camera_info": (info, "sensor_msgs/msg/CameraInfo"),
                "/camera/gt/semantic": (image(header, fr.semantic, "mono8", width), "sensor_msgs/msg/Image"),
                "/camera/gt/depth": (image(header, depth, "32FC1", width * 4), "sensor_msgs/msg/Image"),
            }
            for topic, (msg, mtype) in msgs.items():
                writer.write(conns[topic], stamp, ts.serialize_cdr(msg, mtype))
            if progress is not None:
                progress(1)
    return {
        "path": str(final),
        "storage": storage,
        "frames": n_frames,
        "topics": list(topics),
        "start_ns": first,
        "end_ns": last,
        "rate_hz": rate_hz,
        "seed": int(seed),
        "randomization": randomization,
    }
