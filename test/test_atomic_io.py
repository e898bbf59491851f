"""mtl_perception.atomic_io and the readers' refusal of partial files (issue 14, crash safety)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mtl_perception.atomic_io import (
    atomic_dir,
    atomic_imwrite,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    clean_stale_temps,
    is_temp_name,
    temp_sibling,
)


def _dead_pid() -> int:
    """The pid of a process that has exited (for stale temporaries)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_previous_file_and_removes_temp(tmp_path):
    target = tmp_path / "m.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.bin"]


def test_temp_names_are_hidden_and_match_no_reader_glob(tmp_path):
    for name in ("step_0000004.safetensors", "metrics.json", "iou.png", "x.onnx"):
        tmp = temp_sibling(tmp_path / name)
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        assert is_temp_name(tmp.name) and not is_temp_name(name)
        tmp.write_bytes(b"partial")
    assert list(tmp_path.glob("step_*.safetensors")) == []
    assert list(tmp_path.glob("*.json")) == [] and list(tmp_path.glob("*.png")) == []


def test_stale_temps_of_dead_processes_are_cleaned_live_ones_kept(tmp_path):
    dead = tmp_path / f".a.json.{_dead_pid()}.0123abcd.tmp"
    live = tmp_path / f".a.json.{os.getpid()}.89abcdef.tmp"
    other = tmp_path / f".b.json.{_dead_pid()}.00000000.tmp"
    for p in (dead, live, other):
        p.write_bytes(b"partial")
    atomic_write_json(tmp_path / "a.json", [1])  # a rerun of the same writer cleans its own stale temp
    assert not dead.exists() and live.exists() and other.exists()
    assert clean_stale_temps(tmp_path) == [other]
    assert live.exists()


def test_atomic_dir_is_all_or_nothing(tmp_path):
    target = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "half.txt").write_text("x")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    target.mkdir()  # an empty folder is replaced
    with atomic_dir(target) as d:
        (d / "whole.txt").write_text("x")
    assert [p.name for p in target.iterdir()] == ["whole.txt"]
    with pytest.raises(FileExistsError):
        with atomic_dir(target):
            pass
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_imwrite_encodes_by_suffix_and_raises_on_bad_suffix(tmp_path):
    import cv2

    img = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    path = atomic_imwrite(tmp_path / "x.png", img)
    assert np.array_equal(cv2.imread(str(path)), img)
    with pytest.raises(OSError):
        atomic_imwrite(tmp_path / "x.notanimage", img)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from tiny_models import tiny_config

    from mtl_perception.model import build_model, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    return save_checkpoint(build_model(tiny_config("baseline"), load_pretrained=False), path)


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.3, 0.999])
def test_truncated_checkpoint_is_refused_with_the_clear_error(tmp_path, tiny_checkpoint, fraction):
    from mtl_perception.model import CheckpointError, load_checkpoint

    raw = tiny_checkpoint.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(cut)


def test_truncated_training_state_is_refused_and_incomplete_pairs_are_not_resumed(tmp_path, tiny_checkpoint):
    import torch

    from mtl_perception.train.trainer import latest_checkpoint, state_path_of

    ck = tmp_path / "checkpoints"
    ck.mkdir()
    for step in (2, 4):
        (ck / f"step_{step:07d}.safetensors").write_bytes(tiny_checkpoint.read_bytes())
    torch.save({"step": 2}, state_path_of(ck / "step_0000002.safetensors"))
    # step 4 has no state (a kill between the two writes is impossible in this order, but a user may
    # delete one): the newest *complete* pair is step 2
    assert latest_checkpoint(tmp_path) == ck / "step_0000002.safetensors"
    (ck / f".step_0000006.safetensors.{_dead_pid()}.0badc0de.tmp").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == ck / "step_0000002.safetensors"


def test_dataset_without_completion_or_with_missing_frames_is_refused(tmp_path):
    from mtl_perception.data.synthetic_io import SyntheticDataset, write_dataset

    ds = tmp_path / "ds"
    write_dataset(ds, seed=3, n_frames=3, height=32, width=64)
    assert len(SyntheticDataset(ds)) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no staging directory left
    lines = (ds / "frames.jsonl").read_text().splitlines(keepends=True)
    (ds / "frames.jsonl").write_text("".join(lines[:2]))
    with pytest.raises(ValueError, match="incomplete"):
        SyntheticDataset(ds)
    (ds / "frames.jsonl").write_text("".join(lines[:2]) + lines[2][:10])
    with pytest.raises(ValueError, match="frames.jsonl"):
        SyntheticDataset(ds)
    (ds / "dataset.json").write_text((ds / "dataset.json").read_text()[:40])
    with pytest.raises(ValueError, match="dataset.json"):
        SyntheticDataset(ds)
    (ds / "dataset.json").unlink()
    with pytest.raises(ValueError, match="missing dataset.json"):
        SyntheticDataset(ds)


def test_engine_sidecar_rejects_a_damaged_engine(tmp_path):
    import hashlib

    from mtl_perception.deploy.backends.tensorrt_backend import sidecar_matches

    key = {
        "model_hash": "m",
        "precision": "fp16",
        "input_shape": [1, 3, 8, 8],
        "max_batch": 1,
        "tensorrt": "10",
        "gpu": "g",
        "compute_capability": "9.0",
    }
    engine = tmp_path / "e.engine"
    data = b"engine-bytes" * 10
    engine.write_bytes(data)
    side = {**key, "engine_bytes": len(data), "engine_sha256": hashlib.sha256(data).hexdigest()}
    engine.with_suffix(".json").write_text(json.dumps(side))
    assert sidecar_matches(engine, key)[0]
    engine.write_bytes(data[:-1])
    assert sidecar_matches(engine, key) == (False, "cached engine is not the size its sidecar records (damaged file)")
    engine.write_bytes(data[:-1] + b"X")
    assert not sidecar_matches(engine, key)[0]
    engine.with_suffix(".json").write_text("{trunc")
    assert sidecar_matches(engine, key) == (False, "engine sidecar unreadable")


def test_written_files_get_the_default_mode_not_the_writers(tmp_path):
    """safetensors creates 0600 files; through atomic_path the result has 0666 & ~umask like open()."""
    import stat

    import torch
    from safetensors.torch import save_file

    from mtl_perception.atomic_io import _umask, atomic_path

    target = tmp_path / "m.safetensors"
    with atomic_path(target) as tmp:
        save_file({"a": torch.zeros(2)}, str(tmp))
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
