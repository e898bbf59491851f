#!/usr/bin/env python3
"""Make an editable (``pip install -e .``) dev install look like a colcon ``--symlink-install``.

``pip install -e`` installs neither setup.py's data_files nor anything under ``lib/<package>``,
so neither ``ament_index_python`` nor ``ros2 launch`` / ``ros2 run`` would find the package. This
writes, under the prefix (default: this interpreter's, the venv):

- ``share/mtl_perception/package.xml``: a file symlink to the checkout's;
- ``share/mtl_perception/{launch,config,rviz}/``: REAL directories holding one symlink per file
  (``ros2 launch`` looks for launch files with ``os.walk`` without ``followlinks``, so a directory
  symlink hides them). An old directory symlink is migrated, links whose file is gone are removed;
- ``lib/mtl_perception/{perception_node,mtl-perception}``: executable scripts (the bodies of
  ``scripts/*``) whose shebang is the prefix's Python, absolute: launch_ros resolves
  ``Node(executable=...)`` in ``<prefix>/lib/<package>/`` and nothing there may depend on PATH;
- ``share/ament_index/resource_index/packages/mtl_perception``: the ament index marker.

Idempotent and cheap (``make setup`` runs it every time, so new launch / config files appear).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mtl_perception"
FILES = ("package.xml",)
TREES = ("launch", "config", "rviz")
SCRIPTS = ("perception_node", "mtl-perception")  # scripts/<name> -> lib/mtl_perception/<name>


def _skip(rel: Path) -> bool:
    return any(part == "__pycache__" or part.startswith(".") for part in rel.parts) or rel.suffix == ".pyc"


def source_files(root: Path, tree: str) -> list[Path]:
    """Files of ``root/tree`` to link (relative to root); caches and hidden files excluded."""
    top = root / tree
    if not top.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not _skip(Path(d)))
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(root)
            if not _skip(rel):
                out.append(rel)
    return out


def _link(link: Path, target: Path, log: list[str]) -> None:
    """``link`` -> ``target`` (absolute); replaces a wrong link or a plain file."""
    if link.is_symlink():
        if os.readlink(link) == str(target):
            return
        link.unlink()
    elif link.is_dir():
        raise RuntimeError(f"{link} is a directory where a link to the file {target} belongs; remove it")
    elif link.exists():
        link.unlink()  # a copy (e.g. from `pip install .`): the link keeps it current
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    log.append(f"link {link} -> {target}")


def sync_tree(share: Path, root: Path, tree: str, log: list[str]) -> None:
    """``share/tree`` as a real directory tree with one link per file of ``root/tree``."""
    dest = share / tree
    if dest.is_symlink():  # the old layout: one directory symlink (invisible to os.walk)
        dest.unlink()
        log.append(f"migrate {dest}: directory symlink -> directory of file links")
    elif dest.exists() and not dest.is_dir():
        dest.unlink()
    wanted = {share / rel for rel in source_files(root, tree)}
    for rel in source_files(root, tree):
        _link(share / rel, root / rel, log)
    if not dest.is_dir():
        return
    # stale entries: links not wanted any more (file removed or renamed), then empty directories
    for dirpath, dirnames, filenames in os.walk(dest, topdown=False):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            if p.is_symlink() and p not in wanted:
                p.unlink()
                log.append(f"remove stale {p}")
        if Path(dirpath) != dest and not any(Path(dirpath).iterdir()):
            Path(dirpath).rmdir()


def script_text(name: str, python: str, root: Path = ROOT) -> str:
    """``scripts/<name>`` with its ``#!/usr/bin/env python3`` replaced by ``#!<python>``."""
    body = (root / "scripts" / name).read_text()
    lines = body.splitlines(keepends=True)
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    return f"#!{python}\n" + "".join(lines)


def install_scripts(prefix: Path, python: str, log: list[str], root: Path = ROOT) -> None:
    libdir = prefix / "lib" / PACKAGE
    libdir.mkdir(parents=True, exist_ok=True)
    for name in SCRIPTS:
        path = libdir / name
        text = script_text(name, python, root)
        if path.is_symlink():
            path.unlink()
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            log.append(f"write {path}")
        if not os.access(path, os.X_OK):
            path.chmod(0o755)


def prefix_python(prefix: Path) -> str:
    """The interpreter that belongs to ``prefix`` (its bin/python, not the resolved base)."""
    for name in ("python3", "python"):
        cand = prefix / "bin" / name
        if cand.exists():
            return str(cand.absolute())
    return sys.executable


def install(prefix: Path, root: Path = ROOT, python: str | None = None) -> list[str]:
    """Everything above under ``prefix``; returns the changes made (empty when up to date)."""
    log: list[str] = []
    share = prefix / "share" / PACKAGE
    share.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        _link(share / name, root / name, log)
    for tree in TREES:
        sync_tree(share, root, tree, log)
    install_scripts(prefix, python or prefix_python(prefix), log, root)
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True, exist_ok=True)
    marker = index / PACKAGE
    if not marker.exists():
        marker.touch()
        log.append(f"index {marker}")
    return log


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default=sys.prefix, help="install prefix (default: this interpreter's, the venv)")
    ap.add_argument("--python", default=None, help="shebang interpreter of lib/ scripts (default: PREFIX/bin/python3)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only when something changed")
    args = ap.parse_args()
    prefix = Path(args.prefix).absolute()
    try:
        log = install(prefix, ROOT, args.python)
    except RuntimeError as exc:
        print(f"install_share: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        for line in log:
            print(line)
    if log or not args.quiet:
        print(f"install_share: {prefix}/share/{PACKAGE} and lib/{PACKAGE} -> {ROOT} ({len(log)} change(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
