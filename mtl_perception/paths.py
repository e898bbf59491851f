"""Where the package's share files (config/, launch/, rviz/, package.xml) live.

Installed (colcon, pip, or the dev venv's share links): the ament index knows the package.
A source checkout without an install: the repository root next to the package.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "mtl_perception"
SOURCE_ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def package_share_dir() -> Path:
    """The share directory of ``mtl_perception`` (contains ``config/``)."""
    # A plain venv has no setup.bash: default the ament prefix to this interpreter's prefix.
    os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            share = Path(get_package_share_directory(PACKAGE))
            if (share / "config").is_dir():
                return share
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    # `pip install .` without ament_index_python: data_files land under <prefix>/share.
    share = Path(sys.prefix) / "share" / PACKAGE
    if (share / "config").is_dir():
        return share
    if (SOURCE_ROOT / "config").is_dir():
        return SOURCE_ROOT
    raise FileNotFoundError(
        "mtl_perception share files not found: run `make setup` (dev venv), `pip install .`, "
        "or source your colcon workspace's install/setup.bash"
    )


def model_config_path(name: str) -> Path:
    """``config/models/<name>.yaml`` from the share directory (a path is returned as is)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return package_share_dir() / "config" / "models" / f"{name}.yaml"
