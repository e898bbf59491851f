"""Readers for real datasets (Cityscapes, KITTI depth, NYUv2) returning the common sample dict.

Every loader returns ``dict(image=uint8 HxWx3 RGB, semseg=uint8 HxW train ids (255 ignore) or
None, depth=float32 HxW metres (0.0 invalid) or None, K=float32 3x3 or None, name=str)`` so the
transforms, the trainer and the metrics never need to know where a sample came from. Depth is
always decoded to metres here (not in the model code) because each dataset stores it differently
(Cityscapes disparity, KITTI value/256, NYU millimetres).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "CITYSCAPES_ID_TO_TRAINID",
    "CityscapesDataset",
    "KittiDepthDataset",
    "NYUv2Dataset",
    "build_dataset",
    "disparity_to_depth",
    "label_ids_to_train_ids",
    "read_kitti_P2",
]

# Official Cityscapes table (cityscapesScripts helpers/labels.py): label id -> train id.
# Ids not listed (incl. -1 license plate) are ignored (255).
_ID_TO_TRAIN: dict[int, int] = {
    7: 0,  # road
    8: 1,  # sidewalk
    11: 2,  # building
    12: 3,  # wall
    13: 4,  # fence
    17: 5,  # pole
    19: 6,  # traffic light
    20: 7,  # traffic sign
    21: 8,  # vegetation
    22: 9,  # terrain
    23: 10,  # sky
    24: 11,  # person
    25: 12,  # rider
    26: 13,  # car
    27: 14,  # truck
    28: 15,  # bus
    31: 16,  # train
    32: 17,  # motorcycle
    33: 18,  # bicycle
}
#: 256-entry lookup table: ``lut[label_id] = train_id`` (255 for ignored ids 0-6, 9, 10, 14-16, 18, 29, 30, ...).
CITYSCAPES_ID_TO_TRAINID: np.ndarray = np.full(256, 255, dtype=np.uint8)
for _i, _t in _ID_TO_TRAIN.items():
    CITYSCAPES_ID_TO_TRAINID[_i] = _t


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a Cityscapes ``*_labelIds.png`` array to train ids (uint8, 255 ignore)."""
    return CITYSCAPES_ID_TO_TRAINID[np.asarray(label_ids).astype(np.uint8)]


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"could not read image {path} (expected a readable RGB png/jpg)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_png_raw(path: Path, what: str) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise FileNotFoundError(f"could not read {what} {path}")
    if arr.ndim == 3:  # some tools save label/depth PNGs as 3 identical channels
        arr = arr[..., 0]
    return arr


def _read_uint16_png(path: Path, what: str) -> np.ndarray:
    arr = _read_png_raw(path, what)
    if arr.dtype != np.uint16:
        raise ValueError(f"{what} {path} has dtype {arr.dtype}; expected a 16-bit PNG")
    return arr


def disparity_to_depth(disp_png: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """Cityscapes disparity PNG -> metres: d = (p - 1) / 256 for p > 0, depth = baseline * fx / d.

    p == 0 (and p == 1, i.e. d == 0, infinitely far) are invalid and become 0.0.
    """
    p = disp_png.astype(np.float64)
    d = (p - 1.0) / 256.0
    valid = (p > 0) & (d > 0)
    depth = np.zeros(p.shape, dtype=np.float32)
    depth[valid] = (baseline * fx / d[valid]).astype(np.float32)
    return depth


def _cityscapes_K(camera: dict[str, Any]) -> tuple[np.ndarray, float]:
    intr = camera["intrinsic"]
    K = np.array([[intr["fx"], 0.0, intr["u0"]], [0.0, intr["fy"], intr["v0"]], [0.0, 0.0, 1.0]], dtype=np.float32)
    return K, float(camera["extrinsic"]["baseline"])


class CityscapesDataset:
    """Cityscapes fine annotations (standard layout or a flat folder of files).

    Train ids come from ``*_gtFine_labelTrainIds.png`` when present, else from
    ``*_gtFine_labelIds.png`` through the official table (the raw download ships only labelIds;
    trainIds are produced by cityscapesScripts, which users may not have run).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        with_depth: bool = False,
        camera_dir: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.with_depth = with_depth
        if not self.root.is_dir():
            raise FileNotFoundError(f"Cityscapes root {self.root} does not exist")
        img_dir = self.root / "leftImg8bit" / split
        if img_dir.is_dir():
            self.images = sorted(img_dir.glob("*/*_leftImg8bit.png"))
            self._layout = "standard"
        else:  # flat folder, e.g. the real-data fixture
            self.images = sorted(self.root.glob("*_leftImg8bit.png"))
            self._layout = "flat"
        if not self.images:
            raise FileNotFoundError(f"no *_leftImg8bit.png found under {img_dir}/<city>/ nor directly in {self.root}")
        self.camera_dir = Path(camera_dir) if camera_dir is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def _sibling(self, img: Path, top: str, suffix: str) -> Path:
        stem = img.name[: -len("_leftImg8bit.png")]
        if self._layout == "standard":
            return self.root / top / self.split / img.parent.name / f"{stem}_{suffix}"
        return img.parent / f"{stem}_{suffix}"

    def _camera_path(self, img: Path) -> Path:
        stem = img.name[: -len("_leftImg8bit.png")]
        if self.camera_dir is not None:
            candidates = [
                self.camera_dir / self.split / img.parent.name / f"{stem}_camera.json",
                self.camera_dir / f"{stem}_camera.json",
            ]
            for c in candidates:
                if c.is_file():
                    return c
            return candidates[0]
        return self._sibling(img, "camera", "camera.json")

    def _semseg(self, img: Path) -> np.ndarray | None:
        train = self._sibling(img, "gtFine", "gtFine_labelTrainIds.png")
        if train.is_file():
            return _read_png_raw(train, "Cityscapes trainIds label").astype(np.uint8)
        ids = self._sibling(img, "gtFine", "gtFine_labelIds.png")
        if ids.is_file():
            return label_ids_to_train_ids(_read_png_raw(ids, "Cityscapes labelIds label"))
        if self.split == "test":  # the official test split has no public labels
            return None
        raise FileNotFoundError(f"no label for {img}: expected {train} or {ids}")

    def __getitem__(self, i: int) -> dict[str, Any]:
        img_path = self.images[i]
        image = _read_rgb(img_path)
        sample: dict[str, Any] = {
            "image": image,
            "semseg": self._semseg(img_path),
            "depth": None,
            "K": None,
            "name": img_path.name[: -len("_leftImg8bit.png")],
        }
        cam_path = self._camera_path(img_path)
        if cam_path.is_file():
            K, baseline = _cityscapes_K(json.loads(cam_path.read_text()))
            sample["K"] = K
        elif self.with_depth:
            raise FileNotFoundError(f"with_depth=True but camera file {cam_path} is missing")
        if self.with_depth:
            disp_path = self._sibling(img_path, "disparity", "disparity.png")
            if not disp_path.is_file():
                raise FileNotFoundError(f"with_depth=True but disparity file {disp_path} is missing")
            disp = _read_uint16_png(disp_path, "Cityscapes disparity")
            sample["depth"] = disparity_to_depth(disp, baseline, float(sample["K"][0, 0]))
        return sample


def read_kitti_P2(path: str | Path) -> np.ndarray:
    """3x3 intrinsics from a KITTI calib file: a ``P2:`` line, or a bare row of >= 12 numbers (3x4 P2)."""
    path = Path(path)
    text = path.read_text()
    nums: list[float] | None = None
    for line in text.splitlines():
        if line.strip().startswith("P2:"):
            nums = [float(x) for x in line.split(":", 1)[1].split()]
            break
    if nums is None:  # bare row of numbers, e.g. 000008_P2_and_more.txt
        tokens = re.split(r"\s+", text.strip())
        try:
            nums = [float(x) for x in tokens]
        except ValueError as exc:
            raise ValueError(f"{path}: expected a 'P2:' line or a row of numbers (3x4 P2 first)") from exc
    if len(nums) < 12:
        raise ValueError(f"{path}: P2 needs 12 numbers (3x4 projection), got {len(nums)}")
    P = np.array(nums[:12], dtype=np.float64).reshape(3, 4)
    return P[:, :3].astype(np.float32)


def _depth_uint16(path: Path, scale: float, what: str) -> np.ndarray:
    raw = _read_uint16_png(path, what)
    return (raw.astype(np.float32) / np.float32(scale)).astype(np.float32)  # 0 stays 0 = invalid


def _pairs_from_root(root: Path, depth_suffix: str) -> list[tuple[Path, Path]]:
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist")
    pairs = []
    for depth in sorted(root.rglob(f"*{depth_suffix}")):
        stem = depth.name[: -len(depth_suffix)]
        for ext in (".png", ".jpg", ".jpeg"):
            img = depth.with_name(stem + ext)
            if img.is_file():
                pairs.append((img, depth))
                break
    if not pairs:
        raise FileNotFoundError(
            f"no (image, depth) pairs under {root}: expected <name>{depth_suffix} next to <name>.png/.jpg"
        )
    return pairs


class _ImageDepthPairs:
    """(image, uint16 depth PNG) pairs with one depth scale: what KITTI and NYUv2 have in common."""

    depth_scale: float = 1.0  # stored value per metre
    what: str = "depth"

    def __init__(
        self, root: str | Path | Sequence[tuple[str | Path, str | Path]], depth_suffix: str, K: np.ndarray | None
    ) -> None:
        if isinstance(root, (str, Path)):
            self.pairs = _pairs_from_root(Path(root), depth_suffix)
        else:
            self.pairs = [(Path(a), Path(b)) for a, b in root]
            if not self.pairs:
                raise ValueError(f"{type(self).__name__}: empty list of (image, depth) pairs")
        self.K = None if K is None else np.asarray(K, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        img, dep = self.pairs[i]
        return {
            "image": _read_rgb(img),
            "semseg": None,
            "depth": _depth_uint16(dep, self.depth_scale, self.what),
            "K": None if self.K is None else self.K.copy(),
            "name": img.stem,
        }


class KittiDepthDataset(_ImageDepthPairs):
    """KITTI-style depth: uint16 PNG, metres = value / 256, 0 = no LiDAR return.

    ``root`` is a folder of ``<name>.png`` + ``<name>_depth.png`` (like the fixture), or a list of
    ``(image, depth)`` paths. ``calib`` (one file for all frames) gives K from the P2 row.
    """

    depth_scale = 256.0
    what = "KITTI depth"

    def __init__(
        self,
        root: str | Path | Sequence[tuple[str | Path, str | Path]],
        calib: str | Path | None = None,
        depth_suffix: str = "_depth.png",
    ) -> None:
        super().__init__(root, depth_suffix, read_kitti_P2(calib) if calib is not None else None)


class NYUv2Dataset(_ImageDepthPairs):
    """NYUv2 depth: image jpg/png + uint16 depth in millimetres (0 invalid) -> metres.

    ``root`` is a folder of ``<name>.jpg`` + ``<name>_depth_mm.png`` or a list of pairs. The
    optional ``K`` defaults to None (NYU's Kinect intrinsics depend on the crop used).
    """

    depth_scale = 1000.0
    what = "NYU depth (mm)"

    def __init__(
        self,
        root: str | Path | Sequence[tuple[str | Path, str | Path]],
        depth_suffix: str = "_depth_mm.png",
        K: np.ndarray | None = None,
    ) -> None:
        super().__init__(root, depth_suffix, K)


_TYPES = ("synthetic", "cityscapes", "kitti", "nyu")


def build_dataset(spec: dict[str, Any] | str) -> Any:
    """Dataset from a spec ``{'type': 'synthetic'|'cityscapes'|'kitti'|'nyu', 'root': ..., **kwargs}``.

    A plain string is read as ``'type:root'`` (e.g. ``'kitti:/data/kitti'``) or, without a colon
    prefix naming a known type, as the root of a synthetic dataset.
    """
    if isinstance(spec, str):
        kind, sep, rest = spec.partition(":")
        spec = {"type": kind, "root": rest} if sep and kind in _TYPES else {"type": "synthetic", "root": spec}
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"dataset spec must be a dict with a 'type' key ({'|'.join(_TYPES)}), got {spec!r}")
    kwargs = dict(spec)
    kind = kwargs.pop("type")
    if "root" not in kwargs:
        raise ValueError(f"dataset spec {spec!r} has no 'root'")
    if kind == "synthetic":
        from mtl_perception.data.synthetic_io import SyntheticDataset

        return SyntheticDataset(kwargs.pop("root"), **kwargs)
    if kind == "cityscapes":
        return CityscapesDataset(**kwargs)
    if kind == "kitti":
        return KittiDepthDataset(**kwargs)
    if kind == "nyu":
        return NYUv2Dataset(**kwargs)
    raise ValueError(f"unknown dataset type {kind!r}; expected one of {', '.join(_TYPES)}")
