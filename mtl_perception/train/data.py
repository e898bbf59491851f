"""Training data plumbing: a resumable, rank-sharded infinite sampler and tensor batches.

The sampler yields ``(index, aug_seed)`` pairs, so augmentation randomness depends only on
(seed, epoch, position): identical across worker counts and exactly reproducible after
``--resume`` without saving any data-loader state.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class ResumableShardedSampler(Sampler):
    """Infinite stream of (index, aug_seed): a fresh permutation per epoch, rank ``r`` takes
    every ``world``-th item, starting ``start`` items into its own stream.

    With ``rare`` (a ``rare_class.RareClassSampler``) every item becomes (index, aug_seed, focus):
    ``rare.fraction`` of them replaced by a rare-class draw (focus = that class), the others the
    usual item (focus = -1). The choice depends only on aug_seed, so ``start`` still resumes exactly."""

    def __init__(
        self,
        length: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        rare: Any = None,
    ) -> None:
        if length <= 0:
            raise ValueError("the training dataset is empty")
        self.length, self.seed, self.rank, self.world, self.start = length, seed, rank, world_size, start
        self.per_rank = length // world_size if length >= world_size else 1
        self.rare = rare

    def __iter__(self) -> Iterator[tuple[int, int] | tuple[int, int, int]]:
        epoch, pos = divmod(self.start, self.per_rank)
        while True:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.length, generator=g).tolist()
            shard = perm[self.rank :: self.world][: self.per_rank] or perm[:1]
            for i in range(pos, len(shard)):
                aug_seed = (self.seed * 1_000_003 + epoch) * 1_000_033 + self.rank * 100_003 + i
                if self.rare is None:
                    yield shard[i], aug_seed
                    continue
                rng = np.random.default_rng([aug_seed, 0x5A4E])  # its own stream: augmentation draws unchanged
                if rng.random() < self.rare.fraction:
                    index, focus = self.rare.draw(rng)
                    yield index, aug_seed, focus
                else:
                    yield shard[i], aug_seed, -1
            epoch, pos = epoch + 1, 0

    def __len__(self) -> int:  # infinite; a nominal length for libraries that ask
        return 2**31 - 1


def sample_to_tensors(sample: dict[str, Any], mean: list[float], std: list[float]) -> dict[str, torch.Tensor]:
    """uint8 HxWx3 RGB + labels (numpy) -> normalised CHW float, int64 labels, 1xHxW depth."""
    image = torch.from_numpy(np.ascontiguousarray(sample["image"])).permute(2, 0, 1).float() / 255.0
    image = (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    h, w = image.shape[-2:]
    out = {"image": image}
    sem = sample.get("semseg")
    out["semseg"] = (
        torch.from_numpy(np.ascontiguousarray(sem)).long()
        if sem is not None
        else torch.full((h, w), 255, dtype=torch.long)
    )
    dep = sample.get("depth")
    out["depth"] = (
        torch.from_numpy(np.ascontiguousarray(dep, dtype=np.float32)).unsqueeze(0)
        if dep is not None
        else torch.zeros(1, h, w)
    )
    # fx of the image as the network sees it (after every augmentation): turns metric depth into the
    # canonical camera's depth for models with camera.canonical_focal; NaN = unknown
    K = sample.get("K")
    out["focal"] = torch.tensor(float(np.asarray(K)[0, 0]) if K is not None else float("nan"), dtype=torch.float32)
    return out


class AugmentedDataset(Dataset):
    """Wraps a sample-dict dataset; ``transform(sample, rng) -> sample`` then tensors."""

    def __init__(self, base: Any, transform: Callable[[dict, np.random.Generator], dict], mean, std) -> None:
        self.base, self.transform, self.mean, self.std = base, transform, list(mean), list(std)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: int | tuple[int, ...]) -> dict[str, torch.Tensor]:
        """``item``: an index, (index, aug_seed) or (index, aug_seed, focus class or -1)."""
        if not isinstance(item, tuple):
            item = (item, index_seed(item))
        index, aug_seed = item[:2]
        sample = dict(self.base[index])
        if len(item) > 2 and item[2] >= 0:
            from mtl_perception.data.transforms import FOCUS_CLASS

            sample[FOCUS_CLASS] = int(item[2])  # the crop must show this class (rare-class sampling)
        sample = self.transform(sample, np.random.default_rng(aug_seed))
        return sample_to_tensors(sample, self.mean, self.std)


def index_seed(index: int) -> int:
    return 7919 * index + 17


def _note_other_generator(ds: Any) -> None:
    """A recipe's folder rendered on first use is reused as it is; say so when it was rendered by another
    generator version than this one (a fresh render would differ), so a rerun is not mistaken for a repeat."""
    from mtl_perception.data.synthetic.constants import GENERATOR_VERSION

    have = ds.meta.get("generator_version")
    if have is not None and have != GENERATOR_VERSION:
        print(
            f"note: {ds.root} was rendered by generator {have}; this one is {GENERATOR_VERSION}. Training on "
            f"the folder as it is; delete it (or give the recipe another root) to render {GENERATOR_VERSION}",
            file=sys.stderr,
            flush=True,
        )


def _ensure_synthetic(spec: dict[str, Any]) -> str:
    """Generate a synthetic dataset folder on first use when the spec has ``generate``."""
    root = Path(spec["root"])  # relative roots are relative to the working directory
    if (root / "dataset.json").is_file() or "generate" not in spec:
        return str(root)
    from tqdm import tqdm

    from mtl_perception.data.synthetic_io import write_dataset

    gen = dict(spec["generate"])
    n = int(gen.pop("frames"))
    gen["workers"] = int(gen.get("workers", 1))  # render processes; the folder is the same for any number
    print(f"rendering {n} synthetic frames into {root} (first use)", file=sys.stderr, flush=True)
    # a bar on a terminal only: redirected to a log, tqdm's carriage returns would fill it with one line
    with tqdm(total=n, desc=f"render {root.name}", unit="frame", disable=None) as bar:
        write_dataset(root, n_frames=n, progress=lambda i: bar.update(1), **gen)
    return str(root)


def build_dataset_from_spec(spec: dict[str, Any]) -> Any:
    """A sample-dict dataset from a spec ``{type: synthetic|cityscapes|kitti|nyu, root: ...}``."""
    spec = dict(spec)
    if spec.get("type") == "synthetic":
        from mtl_perception.data.synthetic_io import SyntheticDataset

        ds = SyntheticDataset(_ensure_synthetic(spec))
        if "generate" in spec:  # a recipe's own folder: rendered now (this generator) or reused
            _note_other_generator(ds)
        return ds
    from mtl_perception.data.loaders import build_dataset

    return build_dataset(spec)


class _EitherGeometry:
    """Letterbox a random-aspect window with probability p, else random scale + crop."""

    def __init__(self, letterbox: Any, scale_crop: Any) -> None:
        self.letterbox, self.scale_crop = letterbox, scale_crop

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        out = self.letterbox(sample, rng)
        return self.scale_crop(out, rng) if out is sample else out


def build_transform(
    aug: dict[str, Any], size: tuple[int, int], mean: list[float] | None = None
) -> Callable[[dict, np.random.Generator], dict]:
    """Training augmentation: metric-consistent random scale + crop to ``size`` (or, with
    ``letterbox_prob``, a random-aspect window letterboxed as in deployment), flip, colour
    jitter, (``random_conv``) random-convolution texture scrambling and (``sensor``) camera/ISP effects."""
    from mtl_perception.data import transforms as T

    geometry: Any = T.RandomScaleCrop(
        scale_range=tuple(aug.get("scale_range", (0.75, 1.5))),
        crop=tuple(size),
        depth_mode=aug.get("depth_mode", "scale_intrinsics"),
    )
    if float(aug.get("letterbox_prob", 0.0)) > 0:
        pad = [255.0 * m for m in (mean or (0.5, 0.5, 0.5))]
        geometry = _EitherGeometry(
            T.RandomAspectLetterbox(
                size,
                p=float(aug["letterbox_prob"]),
                aspect_range=tuple(aug.get("aspect_range", (1.25, 3.4))),
                pad_rgb=pad,
            ),
            geometry,
        )
    steps: list[Any] = [geometry]
    if aug.get("hflip", 0.5) > 0:
        steps.append(T.HorizontalFlip(p=float(aug.get("hflip", 0.5))))
    if aug.get("photometric", True):
        steps.append(T.PhotometricDistortion())
    if float(aug.get("random_conv", 0.0)) > 0:  # off unless asked: recipes without it draw as before
        keep = aug.get("random_conv_polarity", "any") == "keep"
        steps.append(T.RandomConvolution(p=float(aug["random_conv"]), keep_polarity=keep))
    if float(aug.get("sensor", 0.0)) > 0:
        steps.append(T.SensorEffects(strength=float(aug["sensor"])))
    return T.Compose(steps)


def build_train_data(cfg: dict[str, Any]) -> tuple[Any, Callable[[dict, np.random.Generator], dict]]:
    from mtl_perception.model import load_config

    model_cfg = load_config(cfg["model"])
    dataset = build_dataset_from_spec(cfg["data"]["train"])
    aug = cfg["data"].get("augment") or {}
    # crops smaller than the network input cut the CPU cost per image; the CNN is fully convolutional
    size = tuple(aug.get("crop_size") or model_cfg["input_size"])
    transform = build_transform(aug, size, model_cfg["normalization"]["mean"])
    return dataset, transform
