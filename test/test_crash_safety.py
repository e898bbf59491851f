"""Crash safety, CI slice of `make crash-test` (tools/kill_points.py): SIGKILL real CLI writers.

A handful of seeded kill points (the campaign runs 56): a training run killed right after a
checkpoint resumes to bit-identical weights and losses; random kills of training, a synth dataset
and a synth bag leave nothing that a reader accepts unless it is whole, and a rerun completes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TOOL = Path(__file__).resolve().parents[1] / "tools" / "kill_points.py"


def _tool():
    spec = importlib.util.spec_from_file_location("kill_points", TOOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kill_points"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    kp = _tool()
    camp = kp.Campaign(tmp_path_factory.mktemp("kill_points"), seed=14, quick=True)
    camp.setup(["train", "synth_dataset", "synth_bag"])
    return kp, camp


def test_resume_after_kill_at_a_checkpoint_is_bit_identical(campaign):
    kp, camp = campaign
    rec = {"point": 0, "problems": []}
    # killed the instant step 4's weights appear (its state is already whole: it is written first)
    camp.kill_train(100, rec, after_file="checkpoints/step_0000004.safetensors")
    assert rec["killed"], "the run ended before the kill: nothing was tested"
    assert rec["recovered"] in ("resumed from step 4", "resumed from step 6"), rec
    assert rec["problems"] == []  # final weights and the (step, loss, lr) log equal the straight run's


def test_random_kills_leave_no_corrupt_output_and_reruns_complete(campaign):
    kp, camp = campaign
    records = {}
    for writer, points in (("train", 1), ("synth_dataset", 2), ("synth_bag", 2)):
        records[writer] = []
        for i in range(points):
            rec = {"point": i, "problems": []}
            getattr(camp, f"kill_{writer}")(i, rec)
            records[writer].append(rec)
    summary = {w: kp.summarize(w, rs) for w, rs in records.items()}
    assert sum(v["kill_points"] for v in summary.values()) == 5
    assert all(v["failures"] == 0 for v in summary.values()), {w: v["failure_details"] for w, v in summary.items()}
    for rs in records.values():
        for r in rs:
            assert r["recovered"] != "?"


def test_a_corrupt_output_is_reported_as_a_failure(campaign, tmp_path):
    """The harness's checks can fail: a truncated dataset frame and a truncated bag are caught."""
    kp, camp = campaign
    import shutil

    ds = tmp_path / "dataset"
    shutil.copytree(camp.work / "ref" / "dataset", ds)
    png = sorted((ds / "images").glob("*.png"))[-1]
    png.write_bytes(png.read_bytes()[:50])
    with pytest.raises(ValueError):
        camp._validate_created("synth_dataset", ds)
    bag = tmp_path / "bag"
    shutil.copytree(camp.work / "ref" / "bag", bag)
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(Exception):  # noqa: B017 (BagError or the salvage's ValueError, both mean refused)
        camp._validate_created("synth_bag", bag)
