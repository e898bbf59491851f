"""``replay-eval --bags``: fleet evaluation. 2 torchrun processes (gloo, CPU) give exactly the merged metrics
of 1 process; the merge adds sums (not averages of averages); resume recomputes only missing bags; failed
bags are listed and the rest merge."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bad_bags
import numpy as np
import pytest
import torch
from tiny_models import ROOT, standardize_depth_head_, tiny_config

from mtl_perception.cli import main
from mtl_perception.data.synthetic_io import write_bag
from mtl_perception.evaluate import fleet
from mtl_perception.evaluate.replay import ReplayAccumulator
from mtl_perception.model import build_model, save_checkpoint

MERGED_KEYS = ("frames", "gt_frames", "semseg", "depth", "class_histogram", "depth_stats", "intrinsics", "resolutions")


@pytest.fixture(scope="module")
def fleet_set(tmp_path_factory):
    """A tiny model, 4 small synthetic bags with GT (both storages, 3-4 frames of 64x128), and its
    1-process report."""
    root = tmp_path_factory.mktemp("fleet")
    torch.manual_seed(0)
    model = build_model(tiny_config("mlore"))
    standardize_depth_head_(model, torch.randn(1, 3, 64, 128))
    ckpt = save_checkpoint(model, root / "m.safetensors")
    for i in range(4):
        storage = "mcap" if i % 2 else "sqlite3"
        write_bag(root / "bags" / f"drive_{i}", seed=20 + i, n_frames=3 + i % 2, height=64, width=128, storage=storage)
    report = root / "r1"
    code, r = _run_inprocess("--bags", root / "bags", "--checkpoint", ckpt, "--report", report)
    assert code == 0, r
    return {"root": root, "ckpt": ckpt, "bags": root / "bags", "report": report, "results": r}


def _run_inprocess(*args):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["replay-eval", *map(str, args), "--backend", "torch", "--no-progress", "--json"])
    out = buf.getvalue()
    return code, (json.loads(out) if out.strip() else None)


def _metrics(report: Path) -> dict:
    r = json.loads((report / "metrics.json").read_text())
    return {k: r.get(k) for k in MERGED_KEYS}


def test_two_torchrun_processes_equal_one_process(fleet_set, tmp_path):
    one = fleet_set["results"]
    assert one["status"] == "ok" and one["meta"]["world_size"] == 1 and one["meta"]["bags_ok"] == 4
    assert one["frames"] == 14 and one["gt_frames"] == {"semantic": 14, "depth": 14}
    report = tmp_path / "r2"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mtl_perception.cli",
        "replay-eval",
        "--bags",
        str(fleet_set["bags"]),
        "--checkpoint",
        str(fleet_set["ckpt"]),
        "--backend",
        "torch",
        "--report",
        str(report),
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # torchrun's torchelastic_* folder
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    two = json.loads(res.stdout)  # only rank 0 prints
    assert two["meta"]["world_size"] == 2 and {b["rank"] for b in two["bags"]} == {0, 1}
    assert "replay-eval bags" in res.stderr  # the progress line across bags (rank 0)
    # exactly the same merged numbers (confusion matrix, depth sums and bins, histograms: ==, not approx)
    m1, m2 = _metrics(fleet_set["report"]), _metrics(report)
    assert m1 == m2
    assert m1["semseg"]["confusion"] and m1["depth"]["n_valid"] > 0
    strip = ("rank", "wall_s", "resumed", "latency_total_p50_ms")
    rows = [[{k: v for k, v in b.items() if k not in strip} for b in r["bags"]] for r in (one, two)]
    assert rows[0] == rows[1]
    assert json.loads((report / "bags.json").read_text())[0]["name"] == "drive_0"
    assert "## Per bag" in (report / "report.md").read_text() and (report / "bags.md").is_file()


def test_merge_adds_sums_not_averages(fleet_set):
    """The merged confusion matrix is the sum of the bags'; the merged RMSE comes from the summed squared
    errors and counts (it is not the mean of the bags' RMSEs)."""
    recs = [json.loads(p.read_text()) for p in sorted((fleet_set["report"] / "bags").glob("*.json"))]
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    merged = json.loads((fleet_set["report"] / "metrics.json").read_text())
    conf = sum(np.asarray(r["state"]["seg"]["confusion"]) for r in recs)
    assert (np.asarray(merged["semseg"]["confusion"]) == conf).all()
    sq = sum(r["state"]["dep"]["sums"]["sq"] for r in recs)
    n = sum(r["state"]["dep"]["n"] for r in recs)
    assert merged["depth"]["n_valid"] == n and merged["depth"]["rmse"] == pytest.approx(np.sqrt(sq / n), rel=1e-12)
    assert merged["depth"]["rmse"] != pytest.approx(np.mean([r["metrics"]["rmse"] for r in recs]), rel=1e-6)
    assert merged["latency_ms"]["total"]["n"] == 14


def test_merge_states_equals_one_accumulator():
    """Two bags' states merged == one accumulator fed every frame (integers exact, float sums to 1e-12)."""
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(5)]
    frames = []
    for _ in range(6):
        gt_l = rng.integers(0, 5, (8, 16))
        gt_l[0, :3] = 255
        frames.append((rng.integers(0, 5, (8, 16)), rng.uniform(0.5, 90, (8, 16)), gt_l, rng.uniform(0.5, 90, (8, 16))))
    one, parts = ReplayAccumulator(names), [ReplayAccumulator(names), ReplayAccumulator(names)]
    for i, (lab, dep, gl, gd) in enumerate(frames):
        t = {"total": float(i)}
        one.add(lab, dep.astype(np.float32), None, gl, gd, t, i, "/cam")
        parts[i // 3].add(lab, dep.astype(np.float32), None, gl, gd, t, i, "/cam")
    parts[1].counters["gt_max_stamp_offset_us[/gt]"] = 7
    parts[0].counters["gt_max_stamp_offset_us[/gt]"] = 3
    merged = fleet.merge_states([fleet.accumulator_state(p) for p in parts], ["a", "b"])
    merged = json.loads(json.dumps(merged))  # as stored on disk
    acc = fleet.accumulator_from_state(merged)
    r_one, r_m = one.results(), acc.results()
    assert (r_one["semseg"]["confusion"] == r_m["semseg"]["confusion"]).all()
    for k in ("miou_all", "miou_present", "pixel_acc"):
        assert r_one["semseg"][k] == r_m["semseg"][k]
    for k in ("rmse", "abs_rel", "delta1", "silog", "n_valid"):
        assert r_m["depth"][k] == pytest.approx(r_one["depth"][k], rel=1e-12, abs=0)
    assert r_m["latency_ms"] == r_one["latency_ms"] and r_m["class_histogram"] == r_one["class_histogram"]
    assert r_m["counters"]["gt_max_stamp_offset_us[/gt]"] == 7  # a maximum, not a sum


def test_state_covers_every_accumulator_field():
    """A field added to ReplayAccumulator (a new metric) must be added to the fleet's mergeable state too
    (fleet.accumulator_state / merge_states / accumulator_from_state), or fleet reports would drop it."""
    acc = ReplayAccumulator(["a", "b"])
    covered = set(fleet.accumulator_state(acc)) | {"seg", "dep"}
    not_sums = {"palette", "max_depth", "keep_samples", "sample_stride", "samples"}  # settings, images
    assert set(vars(acc)) - not_sums <= covered, set(vars(acc)) - not_sums - covered


def test_resume_recomputes_only_the_missing_bag(fleet_set, tmp_path, monkeypatch):
    report = tmp_path / "r"
    shutil.copytree(fleet_set["report"], report)
    bags = report / "bags"
    (bags / "drive_2.json").unlink()
    kept = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in bags.glob("*.json")}
    calls = []
    real = fleet.evaluate_bag
    monkeypatch.setattr(fleet, "evaluate_bag", lambda path, *a: calls.append(path.name) or real(path, *a))
    code, r = _run_inprocess("--bags", fleet_set["bags"], "--checkpoint", fleet_set["ckpt"], "--report", report)
    assert code == 0 and calls == ["drive_2"]
    assert r["meta"]["bags_resumed"] == 3 and [b["resumed"] for b in r["bags"]] == [True, True, False, True]
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in bags.glob("*.json") if p.name in kept} == kept
    assert (bags / "drive_2.json").is_file()
    assert _metrics(report) == _metrics(fleet_set["report"])  # resumed bags still merged, same numbers
    # a changed setting invalidates the records: everything runs again
    calls.clear()
    code, r = _run_inprocess(
        "--bags", fleet_set["bags"], "--checkpoint", fleet_set["ckpt"], "--report", report, "--max-frames", "2"
    )
    assert code == 0 and len(calls) == 4 and r["meta"]["bags_resumed"] == 0 and r["frames"] == 8
    # so do the camera height and the pipeline's depth options: they change every depth figure
    base = ["--bags", fleet_set["bags"], "--checkpoint", fleet_set["ckpt"], "--report", report, "--max-frames", "2"]
    for extra in (["--camera-height", "1.65"], ["--camera-height", "1.65", "--sky-connected-to-top"]):
        calls.clear()
        code, r = _run_inprocess(*base, *extra)
        assert code == 0 and len(calls) == 4 and r["meta"]["bags_resumed"] == 0, extra
    assert r["meta"]["camera_height_m"] == 1.65 and r["meta"]["sky_connected_to_top"] is True
    calls.clear()
    code, r = _run_inprocess(*base, "--camera-height", "1.65", "--sky-connected-to-top")
    assert code == 0 and calls == [] and r["meta"]["bags_resumed"] == 4  # same settings: all resumed


def test_failed_bags_listed_rest_merged(fleet_set, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(fleet_set["bags"], mixed)
    bad_bags.talker_like(mixed)  # no image topic
    bad_bags.metadata_only(mixed)  # storage file gone: corrupt
    report = tmp_path / "r"
    code, r = _run_inprocess("--bags", mixed, "--checkpoint", fleet_set["ckpt"], "--report", report)
    assert code == 0 and r["status"] == "partial"
    assert (r["meta"]["bags"], r["meta"]["bags_ok"], r["meta"]["bags_failed"]) == (6, 4, 2)
    failed = {b["name"]: b["error"] for b in r["bags"] if b["status"] == "failed"}
    assert "no image topic" in failed["talker_sqlite3"] and "database files are missing" in failed["metadata_only"]
    assert r["error_counts"]["bag_failed"] == 2
    assert _metrics(report) == _metrics(fleet_set["report"])  # the good bags merge as without the bad ones
    text = (report / "bags.md").read_text()
    assert "| metadata_only | failed |" in text and "no image topic" in text
    code, _ = _run_inprocess("--bags", mixed, "--checkpoint", fleet_set["ckpt"], "--report", report, "--strict")
    assert code == 1


def test_all_bags_failed_exit_2_and_bag_discovery(fleet_set, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    bad_bags.talker_like(bad)
    bad_bags.metadata_only(bad)
    code, r = _run_inprocess("--bags", bad, "--checkpoint", fleet_set["ckpt"])
    assert code == 2 and r["status"] == "failed" and r["meta"]["bags_failed"] == 2
    assert "no bag could be evaluated" in capsys.readouterr().err
    code, _ = _run_inprocess("--bags", tmp_path / "nothing*", "--checkpoint", fleet_set["ckpt"])
    assert code == 2 and "no bag found" in capsys.readouterr().err
    # discovery: nested directories, globs, loose .mcap files; the report dir is never searched
    nested = tmp_path / "n"
    (nested / "day1").mkdir(parents=True)
    shutil.copytree(fleet_set["bags"] / "drive_1", nested / "day1" / "drive")
    shutil.copytree(fleet_set["bags"] / "drive_3", nested / "day2" / "drive")
    loose = next((nested / "day2" / "drive").glob("*.mcap"))
    shutil.copy(loose, nested / "day1" / "loose.mcap")
    shutil.copytree(fleet_set["bags"] / "drive_0", nested / "report" / "bags" / "x")
    found = fleet.discover_bags([str(nested)], exclude=nested / "report")
    assert [p.relative_to(nested.resolve()).as_posix() for p in found] == [
        "day1/drive",
        "day1/loose.mcap",
        "day2/drive",
    ]
    assert fleet.bag_names(found) == ["day1__drive", "day1__loose.mcap", "day2__drive"]
    assert fleet.discover_bags([str(nested / "day*" / "drive")]) == [found[0], found[2]]


def test_assignment_deterministic_and_balanced():
    sizes = [5, 1, 9, 3, 3, 7]
    plan = fleet.assign(sizes, 2)
    assert plan == fleet.assign(sizes, 2) and sorted(sum(plan, [])) == list(range(6))
    loads = [sum(sizes[i] for i in p) for p in plan]
    assert abs(loads[0] - loads[1]) <= 2
    assert fleet.assign(sizes, 1) == [list(range(6))] and fleet.assign([], 3) == [[], [], []]
