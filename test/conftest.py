"""Shared fixtures. Real sample data live in ../shared/realdata (absent in a user's clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared not present (fresh clone): real-data fixtures unavailable")
    return SHARED


@pytest.fixture
def realdata_dir(shared_dir: Path) -> Path:
    path = shared_dir / "realdata"
    if not path.is_dir():
        pytest.skip("../shared/realdata not present: real-data fixtures unavailable")
    return path
