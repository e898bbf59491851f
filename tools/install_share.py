#!/usr/bin/env python3
"""Make an editable (``pip install -e .``) dev install visible to ament_index_python.

``pip install -e`` does not install setup.py data_files, so ``get_package_share_directory``
would not find us. This links ``<prefix>/share/mtl_perception/{package.xml,config,launch,rviz}``
to the checkout and writes the ament index marker. Idempotent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ITEMS = ("package.xml", "config", "launch", "rviz")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default=sys.prefix, help="install prefix (default: this interpreter's, the venv)")
    args = ap.parse_args()
    prefix = Path(args.prefix)
    share = prefix / "share" / "mtl_perception"
    share.mkdir(parents=True, exist_ok=True)
    for item in ITEMS:
        link, target = share / item, ROOT / item
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            print(f"error: {link} is a real directory (from `pip install .`?); remove it first", file=sys.stderr)
            return 2
        link.symlink_to(target)
    index = prefix / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True, exist_ok=True)
    (index / "mtl_perception").touch()
    print(f"linked {share} -> {ROOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
