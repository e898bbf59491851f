"""Crash-safe writes: every file the package writes appears whole or not at all.

A writer writes into a temporary sibling of the target (same directory, so the rename never
crosses a file system), flushes and fsyncs it, then ``os.replace``s it into place and fsyncs
the directory. A process killed at any instant (SIGKILL, power loss after the fsync) leaves
either the previous file, or the new one, or nothing, plus at worst a temporary file that no
reader picks up: temporary names start with a dot and end in ``.tmp``, e.g.
``.metrics.json.4711.9f3a12c0.tmp``, so no ``*.json`` / ``step_*.safetensors`` / ``*.png`` glob
matches them (images and figures are encoded with an explicit format). Stale temporaries of processes that no longer
run are removed by the next write to the same target (:func:`clean_stale_temps`).

Multi-file outputs (dataset folders, bag directories) are built in a temporary sibling
directory and renamed into place by :func:`atomic_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_dir",
    "atomic_imwrite",
    "atomic_path",
    "atomic_savefig",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "clean_stale_temps",
    "fsync_dir",
    "is_temp_name",
    "temp_sibling",
]

#: ``.<target name>.<pid>.<8 hex>.tmp``
_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.(?P<token>[0-9a-f]{8})\.tmp$")


def temp_sibling(path: str | Path) -> Path:
    """A fresh temporary path next to ``path`` (same directory, hidden, ending in ``.tmp``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def is_temp_name(name: str) -> bool:
    """True for names made by :func:`temp_sibling` (what readers and listings must ignore)."""
    return _TEMP_RE.match(name) is not None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(directory: str | Path, target: str | None = None) -> list[Path]:
    """Remove temporaries in ``directory`` (of ``target`` only, when given) left by dead processes.

    Temporaries of running processes are kept (a concurrent writer of the same cache entry).
    Returns what was removed."""
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or (target is not None and m.group("target") != target) or _pid_alive(int(m.group("pid"))):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
        except OSError:
            pass
    return removed


def fsync_dir(directory: str | Path) -> None:
    """fsync a directory so that a rename inside it survives a power loss (no-op where unsupported)."""
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _umask() -> int:
    """The process umask without changing it (``os.umask`` would, for every thread): Linux reports it
    in /proc/self/status; elsewhere assume the common 022."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _default_mode(tmp: Path) -> None:
    """Give a finished temporary the mode a plain ``open(path, "w")`` would (0666 & ~umask): some writers
    (safetensors) create 0600 files, and a checkpoint or engine cache then cannot be read by the
    user the ROS node runs as."""
    try:
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError:
        pass


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; the caller writes the whole file there (with any
    library: ``onnx.save``, ``savefig``, ``cv2.imwrite``, ``safetensors``). On normal exit it is
    fsynced and renamed onto ``path``; on an exception it is removed and ``path`` is untouched.
    A writer that reports failure without raising (``cv2.imwrite`` returning False) must raise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent, path.name)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise OSError(f"{path}: the writer produced no file")
        _default_mode(tmp)
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    path = Path(path)
    with atomic_path(path, fsync=False) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    if fsync:
        fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, fsync: bool = True, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


def atomic_write_json(path: str | Path, obj: Any, fsync: bool = True, newline: bool = True, **dumps: Any) -> Path:
    """``json.dumps(obj, **dumps)`` (plus a final newline) written atomically."""
    return atomic_write_text(path, json.dumps(obj, **dumps) + ("\n" if newline else ""), fsync=fsync)


@contextlib.contextmanager
def atomic_dir(path: str | Path, fsync: bool = True, create: bool = True) -> Iterator[Path]:
    """Build a directory output in a hidden staging directory next to ``path``, then rename it to ``path``.

    Yields ``<staging>/<path.name>`` (created unless ``create=False``: for writers that insist on
    creating their directory themselves, e.g. the rosbag2 writer, which also names its storage file
    after it). ``path`` must not exist, or be an empty directory (replaced). On an exception the
    staging directory is removed and ``path`` is untouched. Files are fsynced before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path.parent, path.name)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise FileExistsError(f"{path} already exists and is not empty; choose another path or delete it first")
    staging = temp_sibling(path)
    staging.mkdir()
    out = staging / path.name
    if create:
        out.mkdir()
    try:
        yield out
        if not out.is_dir():
            raise OSError(f"{path}: the writer produced no directory")
        if fsync:
            for root, _dirs, files in os.walk(out):
                for name in files:
                    _fsync_file(Path(root) / name)
                fsync_dir(root)
        os.replace(out, path)  # an empty directory at ``path`` is replaced atomically
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    if fsync:
        fsync_dir(path.parent)


def atomic_savefig(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """``fig.savefig`` (matplotlib) written atomically; the format follows ``path``'s suffix."""
    path = Path(path)
    kwargs.setdefault("format", path.suffix.lstrip(".").lower() or "png")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, **kwargs)
    return path


def atomic_imwrite(path: str | Path, image: Any, params: Any = None) -> Path:
    """``cv2.imwrite`` written atomically; OSError if OpenCV cannot encode it (it only returns False)."""
    import cv2

    path = Path(path)
    try:
        ok, buf = cv2.imencode(path.suffix.lower() or ".png", image, *([params] if params is not None else []))
    except cv2.error as exc:
        raise OSError(f"cannot write image {path} ({' '.join(str(exc).split())[:200]}); use a .png/.jpg path") from exc
    if not ok:
        raise OSError(f"cannot write image {path} (OpenCV could not encode it); use a .png/.jpg path")
    return atomic_write_bytes(path, buf.tobytes())
