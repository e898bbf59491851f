"""The artifact cache's listing and least-recently-used pruning (``deploy.cache``, ``mtl-perception cache``).

Real files in a temporary cache folder; the ONNX hit test exports a real tiny model through
``onnx_artifact``. TensorRT engines cannot be built here (no GPU): their entries are plain files
laid out as the TensorRT backend writes them (an ``.engine`` and its ``.json`` sidecar)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtl_perception.atomic_io import temp_sibling
from mtl_perception.deploy.cache import list_entries, prune

DAY = 86400.0


def _put(path: Path, size: int, age_days: float, now: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    t = now - age_days * DAY
    os.utime(path, (t, t))
    return path


@pytest.fixture
def cache(tmp_path: Path) -> tuple[Path, float]:
    now = time.time()
    root = tmp_path / "cache"
    _put(root / "onnx" / "aaaa_fp32_224x448.onnx", 4000, 40, now)  # oldest
    _put(root / "onnx" / "bbbb_fp16_224x448.onnx", 3000, 10, now)
    _put(root / "onnx" / "cccc_fp32_256x512.onnx", 2000, 0.5, now)  # newest
    _put(root / "engines" / "e1.engine", 1500, 20, now)
    _put(root / "engines" / "e1.json", 100, 20, now)
    _put(root / "engines" / "timing_NVIDIA_H100_10.9.cache", 500, 5, now)
    (root / "engines" / "notes.txt").write_text("not an artifact")
    return root, now


def test_list_orders_least_recently_used_first_and_pairs_engine_with_sidecar(cache):
    root, _ = cache
    entries = list_entries(root)
    assert [e.key for e in entries] == [
        "aaaa_fp32_224x448",
        "e1",
        "bbbb_fp16_224x448",
        "timing_NVIDIA_H100_10.9",
        "cccc_fp32_256x512",
    ]
    engine = entries[1]
    assert engine.kind == "engine" and engine.bytes == 1600 and len(engine.files) == 2
    assert {e.kind for e in entries} == {"onnx", "engine", "timing"}
    assert list_entries(root / "absent") == []


def test_prune_by_size_removes_oldest_until_it_fits(cache):
    root, now = cache
    res = prune(root, max_bytes=5000, now=now)
    # total 11,100: drop aaaa (4,000) -> 7,100, e1 (1,600) -> 5,500, bbbb (3,000) -> 2,500 <= 5,000
    assert [e.key for e in res.removed] == ["aaaa_fp32_224x448", "e1", "bbbb_fp16_224x448"]
    assert res.freed_bytes == 8600 and res.kept_bytes == 2500
    assert not (root / "engines" / "e1.engine").exists() and not (root / "engines" / "e1.json").exists()
    assert (root / "onnx" / "cccc_fp32_256x512.onnx").exists()
    assert (root / "engines" / "notes.txt").exists()  # not ours: never touched
    assert sum(e.bytes for e in list_entries(root)) == 2500


def test_prune_by_age_and_dry_run(cache):
    root, now = cache
    before = sorted(p for p in root.rglob("*") if p.is_file())
    dry = prune(root, unused_for_s=15 * DAY, dry_run=True, now=now)
    assert [e.key for e in dry.removed] == ["aaaa_fp32_224x448", "e1"]
    assert sorted(p for p in root.rglob("*") if p.is_file()) == before  # a dry run removes nothing
    res = prune(root, unused_for_s=15 * DAY, now=now)
    assert [e.key for e in res.removed] == ["aaaa_fp32_224x448", "e1"]
    assert [e.key for e in list_entries(root)] == ["bbbb_fp16_224x448", "timing_NVIDIA_H100_10.9", "cccc_fp32_256x512"]
    with pytest.raises(ValueError, match="needs a limit"):
        prune(root)


def test_prune_removes_temporaries_of_dead_writers_only(cache, tmp_path):
    root, now = cache
    target = root / "onnx" / "dddd_fp32_224x448.onnx"
    live = temp_sibling(target)  # this process: a writer still running
    live.write_bytes(b"x")
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = live.with_name(f".{target.name}.{int(dead_pid.stdout)}.0badc0de.tmp")
    dead.write_bytes(b"x")
    assert "dddd" not in {e.key for e in list_entries(root)}  # a temporary is never an entry
    res = prune(root, unused_for_s=1000 * DAY, now=now)
    assert res.removed == [] and res.stale_temps == [dead]
    assert live.exists() and not dead.exists()


def test_a_cache_hit_marks_the_onnx_artifact_used(tmp_path):
    """A second ``onnx_artifact`` call returns the cached export and touches it, so a prune keeps it."""
    import torch
    from tiny_models import tiny_config

    from mtl_perception.deploy.artifacts import onnx_artifact
    from mtl_perception.model import build_model
    from mtl_perception.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model(tiny_config("mlore")).eval(), ckpt)
    path = onnx_artifact(ckpt, "fp32", (64, 128), tmp_path / "cache")
    old = time.time() - 90 * DAY
    os.utime(path, (old, old))
    assert onnx_artifact(ckpt, "fp32", (64, 128), tmp_path / "cache") == path
    assert time.time() - path.stat().st_mtime < 3600
    assert prune(tmp_path / "cache", unused_for_s=30 * DAY).removed == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtl_perception.cli", "cache", *args], capture_output=True, text=True)


def test_cache_cli_lists_prunes_and_refuses_a_prune_without_limit(cache):
    root, _ = cache
    res = _cli("--cache-dir", str(root), "--json", "list")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["bytes"] == 11100 and doc["entries"][0]["key"] == "aaaa_fp32_224x448"
    assert doc["entries"][0]["unused_days"] == pytest.approx(40, abs=0.01)
    res = _cli("--cache-dir", str(root), "prune")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--max-gb" in res.stderr
    res = _cli("--cache-dir", str(root), "--json", "prune", "--max-gb", "0.000005", "--unused-days", "30")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert [e["key"] for e in doc["removed"]] == ["aaaa_fp32_224x448", "e1", "bbbb_fp16_224x448"]
    assert doc["kept_bytes"] == 2500 and doc["freed_bytes"] == 8600
    res = _cli("--cache-dir", str(root / "onnx" / "cccc_fp32_256x512.onnx"), "list")
    assert res.returncode == 2 and "not a folder" in res.stderr
    absent = root.parent / "never_made"
    res = _cli("--cache-dir", str(absent), "list")
    assert res.returncode == 0 and "0 artifact(s)" in res.stdout and not absent.exists()


def test_output_piped_into_head_ends_quietly(tmp_path):
    """`mtl-perception cache list | head -1`: the reader closes early; no error line, no traceback."""
    now = time.time()
    for i in range(2000):  # ~150 KB: more than a pipe holds, so the writer meets the closed reader
        _put(tmp_path / "onnx" / f"{i:016x}_fp32_224x448.onnx", 10, i / 24, now)
    cli = f"{sys.executable} -m mtl_perception.cli cache --cache-dir {tmp_path} list"
    cmd = f"{cli} | head -1; echo rc=${{PIPESTATUS[0]}}"
    res = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    assert res.stdout.splitlines()[0].startswith(f"{tmp_path}: 2000 artifact(s)")
    assert res.stdout.splitlines()[-1] == "rc=141" and res.stderr == "", res.stderr
