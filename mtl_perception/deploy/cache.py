"""What the artifact cache holds, and pruning it least-recently-used first.

The cache (``artifacts.cache_root``: ``$MTL_PERCEPTION_CACHE`` or ``~/.cache/mtl_perception``) is
content-addressed: every new checkpoint, precision or input size adds an ONNX export (tens of MB)
or a TensorRT engine, and nothing is ever overwritten by a different model. On a vehicle that
receives model updates, or a workstation that evaluates many checkpoints, it grows without bound.
A cache hit touches the artifact's modification time (:func:`mark_used`), so "last used" is the
mtime, and :func:`prune` removes the least recently used entries first.

Layout: ``onnx/<hash16>_<precision>_<H>x<W>[_dyn].onnx``; ``engines/<id>.engine`` with its
``engines/<id>.json`` sidecar (one entry: they go together); ``engines/timing_*.cache`` (a
TensorRT timing cache, shared by the engines of one GPU). Temporary files of writers that died
(``atomic_io``) are removed by a prune; those of running writers are kept.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from mtl_perception.atomic_io import clean_stale_temps, is_temp_name

__all__ = ["CacheEntry", "PruneResult", "list_entries", "mark_used", "prune"]


@dataclass(frozen=True)
class CacheEntry:
    """One artifact: its files (an engine with its sidecar), their size and when it was last used."""

    key: str  # the artifact's file stem
    kind: str  # "onnx" | "engine" | "timing"
    files: tuple[Path, ...]
    bytes: int
    last_used: float  # newest mtime of its files (seconds since the epoch)

    def as_dict(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        return {
            "key": self.key,
            "kind": self.kind,
            "files": [str(f) for f in self.files],
            "bytes": self.bytes,
            "last_used": self.last_used,
            "unused_days": round(max(0.0, now - self.last_used) / 86400.0, 2),
        }


@dataclass(frozen=True)
class PruneResult:
    removed: list[CacheEntry]
    kept: list[CacheEntry]
    stale_temps: list[Path]
    dry_run: bool

    @property
    def freed_bytes(self) -> int:
        return sum(e.bytes for e in self.removed)

    @property
    def kept_bytes(self) -> int:
        return sum(e.bytes for e in self.kept)


def mark_used(*paths: Path) -> None:
    """Touch cached files on a cache hit (their mtime is what :func:`prune` orders by).

    A read-only cache (a shared, pre-built artifact folder) is fine: the touch is skipped."""
    for path in paths:
        try:
            os.utime(path)
        except OSError:
            pass


def _stat(paths: list[Path]) -> tuple[int, float]:
    size, newest = 0, 0.0
    for p in paths:
        st = p.stat()
        size += st.st_size
        newest = max(newest, st.st_mtime)
    return size, newest


def list_entries(root: str | Path) -> list[CacheEntry]:
    """Every artifact under ``root``, least recently used first. A missing folder is an empty cache."""
    root = Path(root)
    groups: list[tuple[str, str, list[Path]]] = []
    onnx = root / "onnx"
    if onnx.is_dir():
        groups += [(p.stem, "onnx", [p]) for p in sorted(onnx.glob("*.onnx")) if not is_temp_name(p.name)]
    engines = root / "engines"
    if engines.is_dir():
        for p in sorted(engines.glob("*.engine")):
            if is_temp_name(p.name):
                continue
            side = p.with_suffix(".json")
            groups.append((p.stem, "engine", [p, side] if side.is_file() else [p]))
        groups += [(p.stem, "timing", [p]) for p in sorted(engines.glob("timing_*.cache")) if not is_temp_name(p.name)]
    entries = []
    for key, kind, files in groups:
        try:
            size, used = _stat(files)
        except FileNotFoundError:  # removed by a concurrent prune
            continue
        entries.append(CacheEntry(key, kind, tuple(files), size, used))
    return sorted(entries, key=lambda e: (e.last_used, e.key))


def prune(
    root: str | Path,
    max_bytes: int | None = None,
    unused_for_s: float | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> PruneResult:
    """Remove entries unused for longer than ``unused_for_s``, then the least recently used ones
    until the cache holds at most ``max_bytes``. At least one limit must be given."""
    if max_bytes is None and unused_for_s is None:
        raise ValueError("prune needs a limit: max_bytes or unused_for_s")
    if max_bytes is not None and max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    if unused_for_s is not None and unused_for_s < 0:
        raise ValueError(f"unused_for_s must be >= 0, got {unused_for_s}")
    now = time.time() if now is None else now
    entries = list_entries(root)  # oldest first
    removed: list[CacheEntry] = []
    kept: list[CacheEntry] = []
    total = sum(e.bytes for e in entries)
    for entry in entries:
        too_old = unused_for_s is not None and now - entry.last_used > unused_for_s
        too_big = max_bytes is not None and total > max_bytes
        if too_old or too_big:
            removed.append(entry)
            total -= entry.bytes
        else:
            kept.append(entry)
    stale: list[Path] = []
    if not dry_run:
        for entry in removed:
            for f in entry.files:
                f.unlink(missing_ok=True)
        for sub in ("onnx", "engines"):
            stale += clean_stale_temps(Path(root) / sub)
    return PruneResult(removed, kept, stale, dry_run)
