"""Loaders for the real camera frames of ``../shared/realdata`` (evaluation only, never training).

Every frame becomes the common sample dict, with two extra keys (``set``, ``label_space``)::

    image        uint8 HxWx3 RGB
    semseg       uint8 HxW labels (255 = ignore) or None
    depth        float32 HxW metres, 0 = invalid, or None
    K            float64 3x3 (from the folder's ``*_intrinsics.json``) or None when unknown
    name         frame name (file stem without suffixes)
    set          folder it came from (one of :data:`SETS`)
    label_space  "cityscapes" (19 train ids) | "camvid" (SegNet's 11 classes, 11 = void -> 255) | None
    camera_height  metres of the camera above the road, or None when unknown; ``height_source``
                 says where it comes from (:data:`CAMERA_HEIGHTS`, a camera file beside the frame)

Why a separate module from ``data.loaders``: these folders each use their own layout (a flat mix
of files per set, sparse LiDAR as uint16 PNG or npz, Cityscapes disparity needing a bonnet mask)
and are fixtures, not datasets; the scoring that goes with them is in ``evaluate.realdata``.
Loading is lazy (:func:`iter_realdata` yields one frame at a time): full-size Cityscapes frames
are 2048x1024. No rclpy, no torch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtl_perception.data.loaders import disparity_to_depth

__all__ = [
    "BONNET_FRACTION",
    "CAMERA_HEIGHTS",
    "DEFAULT_REALDATA",
    "MAX_DEPTH",
    "SETS",
    "FrameRef",
    "RealDataError",
    "iter_realdata",
    "list_frames",
    "load_frame",
    "load_intrinsics",
    "read_kitti_timestamps",
]

#: where the fixtures live relative to the repository root (and the default of ``eval --realdata``)
DEFAULT_REALDATA = Path("../shared/realdata")
#: folder names, in the order frames are listed
SETS: tuple[str, ...] = (
    "cityscapes",
    "cityscapes_full",
    "camvid",
    "kitti",
    "kitti_raw_0023_sequence",
    "nuscenes",
    "tri_ddad",
)
#: Cityscapes SGM disparity is noise on the ego bonnet: the bottom 22 % of rows are masked (README)
BONNET_FRACTION = 0.22
#: stereo depth beyond this is masked (README: "cap depth at 80 m"; disparity < 6 px is unreliable)
MAX_DEPTH = 80.0
CAMVID_VOID = 11

#: camera heights above the road for sets whose files do not carry one, with their source. Used
#: like intrinsics: sensor metadata a vehicle has, never fitted to the ground truth. (Cityscapes
#: reads ``extrinsic.z`` of the frame's camera file; tri_ddad reads CAMERA_01's translation z from
#: its calibration.json; frames of other sets have no height.)
_KITTI_RIG = (1.65, "KITTI sensor setup: colour cameras 1.65 m above the ground (Geiger et al., IJRR 2013)")
CAMERA_HEIGHTS: dict[str, tuple[float, str]] = {
    "kitti": _KITTI_RIG,
    "kitti_raw_0023_sequence": _KITTI_RIG,
    "nuscenes": (1.51, "nuScenes v1.0 CAM_FRONT calibrated_sensor translation z of the n015 log (1.51 m)"),
}


class RealDataError(ValueError):
    """The realdata folder or one of its files is missing or unreadable; ``str()`` is one line."""


@dataclass(frozen=True)
class FrameRef:
    """One real frame on disk, not yet read (``list_frames`` is cheap; ``load_frame`` reads)."""

    set: str
    name: str
    image: Path
    loader: str  # key of _READERS


# ---------------------------------------------------------------------- file readers
def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise RealDataError(f"cannot read image {path} (expected a readable png/jpg)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_raw(path: Path, dtype: type, what: str) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise RealDataError(f"cannot read {what} {path}")
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype != dtype:
        raise RealDataError(f"{what} {path} is {arr.dtype}, expected {np.dtype(dtype).name}")
    return arr


def _uint16_depth(path: Path) -> np.ndarray:
    """KITTI depth convention: metres = value / 256, 0 = no return."""
    return (_read_raw(path, np.uint16, "depth PNG").astype(np.float32) / np.float32(256.0)).astype(np.float32)


def load_intrinsics(path: str | Path) -> np.ndarray:
    """``*_intrinsics.json`` (fx, fy, cx, cy in pixels) -> float64 3x3 K."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
        return np.array([[d["fx"], 0.0, d["cx"]], [0.0, d["fy"], d["cy"]], [0.0, 0.0, 1.0]], np.float64)
    except FileNotFoundError as exc:
        raise RealDataError(f"intrinsics file {path} is missing") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise RealDataError(f"intrinsics file {path} is not JSON with fx, fy, cx, cy ({exc})") from exc


def _optional_K(folder: Path, name: str) -> np.ndarray | None:
    p = folder / f"{name}_intrinsics.json"
    return load_intrinsics(p) if p.is_file() else None


def _check_shape(sample: dict[str, Any], key: str, path: Path) -> None:
    arr = sample[key]
    if arr is not None and arr.shape[:2] != sample["image"].shape[:2]:
        raise RealDataError(f"{path} is {arr.shape[1]}x{arr.shape[0]} but its image is not; the files do not match")


def stereo_depth(
    disparity: np.ndarray,
    baseline: float,
    fx: float,
    bonnet_fraction: float = BONNET_FRACTION,
    max_depth: float = MAX_DEPTH,
) -> np.ndarray:
    """Cityscapes disparity PNG -> metres with the README's masks: 0 on the bottom ``bonnet_fraction``
    of rows (ego bonnet) and beyond ``max_depth``. Sky cannot be told from disparity alone; the
    far cap removes most of it (SGM sky disparities are tiny, i.e. far)."""
    depth = disparity_to_depth(disparity, baseline, fx)
    h = depth.shape[0]
    depth[int(round(h * (1.0 - bonnet_fraction))) :] = 0.0
    depth[depth > max_depth] = 0.0
    return depth


# ---------------------------------------------------------------------- per-set readers
def _camera_height(ref: FrameRef) -> tuple[float | None, str]:
    """(metres above the road, source) of a frame's camera; (None, reason) when unknown."""
    folder = ref.image.parent
    if ref.set in CAMERA_HEIGHTS:
        return CAMERA_HEIGHTS[ref.set]
    cam = folder / f"{ref.name}_camera.json"
    if cam.is_file():
        try:
            return float(json.loads(cam.read_text())["extrinsic"]["z"]), f"extrinsic.z of {cam.name}"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RealDataError(f"camera file {cam} has no extrinsic.z ({exc})") from exc
    calib = folder / "calibration.json"
    if ref.set == "tri_ddad" and calib.is_file():
        try:
            d = json.loads(calib.read_text())
            z = float(d["extrinsics"][d["names"].index("CAMERA_01")]["translation"]["z"])
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise RealDataError(f"{calib} has no CAMERA_01 extrinsic translation z ({exc})") from exc
        # DGP extrinsics are relative to the vehicle frame; this fixture's is its LiDAR's (identity)
        return z, "CAMERA_01 translation z of calibration.json (relative to the fixture's vehicle/LiDAR frame)"
    return None, "unknown"


def _sample(ref: FrameRef, image: np.ndarray, semseg=None, depth=None, K=None, label_space=None) -> dict[str, Any]:
    height, height_source = _camera_height(ref)
    return {
        "image": image,
        "semseg": semseg,
        "depth": depth,
        "K": K,
        "name": ref.name,
        "set": ref.set,
        "label_space": label_space,
        "camera_height": height,
        "height_source": height_source,
    }


def _read_cityscapes(ref: FrameRef) -> dict[str, Any]:
    folder = ref.image.parent
    image = _read_rgb(ref.image)
    lab_path = folder / f"{ref.name}_gtFine_labelTrainIds.png"
    semseg = _read_raw(lab_path, np.uint8, "train-id label") if lab_path.is_file() else None
    depth = None
    disp_path = folder / f"{ref.name}_disparity.png"
    if disp_path.is_file():
        cam_path = folder / f"{ref.name}_camera.json"
        try:
            cam = json.loads(cam_path.read_text())
            baseline, fx = float(cam["extrinsic"]["baseline"]), float(cam["intrinsic"]["fx"])
        except (OSError, ValueError, KeyError) as exc:
            raise RealDataError(f"disparity {disp_path} needs its camera file {cam_path} ({exc})") from exc
        depth = stereo_depth(_read_raw(disp_path, np.uint16, "disparity PNG"), baseline, fx)
    s = _sample(ref, image, semseg, depth, _optional_K(folder, ref.name), "cityscapes" if semseg is not None else None)
    _check_shape(s, "semseg", lab_path)
    _check_shape(s, "depth", disp_path)
    return s


def _read_camvid(ref: FrameRef) -> dict[str, Any]:
    lab_path = ref.image.parent / f"{ref.name}_label.png"
    labels = _read_raw(lab_path, np.uint8, "CamVid label").copy()
    labels[labels >= CAMVID_VOID] = 255  # 11 = void
    s = _sample(ref, _read_rgb(ref.image), labels, None, None, "camvid")
    _check_shape(s, "semseg", lab_path)
    return s


def _read_png_depth(ref: FrameRef) -> dict[str, Any]:
    folder = ref.image.parent
    dep_path = folder / f"{ref.name}_depth.png"
    s = _sample(ref, _read_rgb(ref.image), None, _uint16_depth(dep_path), _optional_K(folder, ref.name))
    _check_shape(s, "depth", dep_path)
    return s


def _read_velodyne(ref: FrameRef) -> dict[str, Any]:
    folder = ref.image.parent
    npz = folder / f"{ref.name}_velodyne_depth.npz"
    try:
        with np.load(npz) as z:
            depth = np.asarray(z["velodyne_depth"], np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise RealDataError(f"cannot read LiDAR depth {npz} (npz with key velodyne_depth): {exc}") from exc
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.float32(0.0)).astype(np.float32)
    s = _sample(ref, _read_rgb(ref.image), None, depth, _optional_K(folder, ref.name))
    _check_shape(s, "depth", npz)
    return s


_READERS: dict[str, Callable[[FrameRef], dict[str, Any]]] = {
    "cityscapes": _read_cityscapes,
    "camvid": _read_camvid,
    "png_depth": _read_png_depth,
    "velodyne": _read_velodyne,
}


# ---------------------------------------------------------------------- listing
def _stems(folder: Path, pattern: str, suffix: str) -> list[tuple[str, Path]]:
    return [(p.name[: -len(suffix)], p) for p in sorted(folder.glob(pattern))]


def _refs_for(root: Path, set_name: str) -> list[FrameRef]:
    folder = root / set_name
    if set_name in ("cityscapes", "cityscapes_full"):
        items = _stems(folder, "*_leftImg8bit.png", "_leftImg8bit.png")
        return [FrameRef(set_name, n, p, "cityscapes") for n, p in items]
    if set_name == "camvid":
        items = [(p.stem, p) for p in sorted(folder.glob("*.png")) if not p.stem.endswith("_label")]
        return [FrameRef(set_name, n, p, "camvid") for n, p in items]
    if set_name == "kitti_raw_0023_sequence":
        items = [(p.stem, p) for p in sorted(folder.glob("*.png")) if p.stem.isdigit()]
        return [FrameRef(set_name, n, p, "velodyne") for n, p in items]
    # kitti, nuscenes, tri_ddad: <name>.png|jpg beside <name>_depth.png
    items = [
        (p.stem, p)
        for p in sorted(folder.iterdir())
        if p.suffix in (".png", ".jpg") and not p.stem.endswith("_depth") and (folder / f"{p.stem}_depth.png").is_file()
    ]
    return [FrameRef(set_name, n, p, "png_depth") for n, p in items]


def list_frames(root: str | Path, sets: Sequence[str] | None = None) -> list[FrameRef]:
    """The frames of ``root`` (folders of :data:`SETS` that exist; ``sets`` restricts them).

    Raises :class:`RealDataError` when ``root`` is missing, a requested set is unknown or absent,
    or no frame is found."""
    root = Path(root)
    if not root.is_dir():
        raise RealDataError(
            f"realdata folder {root} does not exist; pass the folder holding cityscapes/, kitti/, ... "
            f"(default {DEFAULT_REALDATA} relative to the working directory)"
        )
    wanted = list(sets) if sets else [s for s in SETS if (root / s).is_dir()]
    unknown = [s for s in wanted if s not in SETS]
    if unknown:
        raise RealDataError(f"unknown realdata set(s) {unknown}; choose from {', '.join(SETS)}")
    missing = [s for s in wanted if not (root / s).is_dir()]
    if missing:
        raise RealDataError(
            f"set(s) {missing} not found in {root}; present: {[s for s in SETS if (root / s).is_dir()]}"
        )
    refs = [r for s in wanted for r in _refs_for(root, s)]
    if not refs:
        raise RealDataError(f"no real frames found in {root} (expected folders {', '.join(SETS)})")
    return refs


def load_frame(ref: FrameRef) -> dict[str, Any]:
    """Read one frame into the sample dict (see the module docstring)."""
    return _READERS[ref.loader](ref)


def iter_realdata(root: str | Path, sets: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """Sample dicts of every frame of ``root`` (lazily, one at a time)."""
    for ref in list_frames(root, sets):
        yield load_frame(ref)


def read_kitti_timestamps(path: str | Path) -> list[int]:
    """KITTI raw ``*_timestamps.txt`` (``2011-09-26 13:17:59.287203584`` per line) -> ns since the epoch.

    KITTI stores local wall-clock times without a zone; they are read as UTC (only differences
    matter for replay). Nanoseconds are kept exactly (datetime holds microseconds only)."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        line = line.strip()
        if not line:
            continue
        try:
            day, _, frac = line.partition(".")
            base = datetime.strptime(day, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            ns = int((frac + "000000000")[:9]) if frac else 0
        except ValueError as exc:
            raise RealDataError(f"{path} line {i + 1}: {line!r} is not 'YYYY-MM-DD HH:MM:SS.fffffffff'") from exc
        out.append(int(base.timestamp()) * 1_000_000_000 + ns)
    return out
