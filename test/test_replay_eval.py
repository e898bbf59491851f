"""``mtl-perception replay-eval``: metrics on a synthetic bag with GT, real-frame bags without GT, and the
bad-bag corpus (clear message, no crash, partial report, non-zero exit)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bad_bags
import pytest
import torch
from tiny_models import ROOT, standardize_depth_head_, tiny_config

from mtl_perception.cli import main
from mtl_perception.data.synthetic_io import write_bag
from mtl_perception.model import build_model, save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(tiny_config("mlore"))
    standardize_depth_head_(model, torch.randn(1, 3, 64, 128))
    return save_checkpoint(model, tmp_path_factory.mktemp("model") / "m.safetensors")


def _run(capsys, *args):
    code = main(["replay-eval", *map(str, args), "--backend", "torch", "--no-progress", "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_synthetic_bag_with_gt_end_to_end(tmp_path, ckpt):
    bag = tmp_path / "drive"
    write_bag(bag, seed=4, n_frames=6, height=64, width=128, storage="mcap")
    report = tmp_path / "report"
    cmd = [
        sys.executable,
        "-m",
        "mtl_perception.cli",
        "replay-eval",
        "--bag",
        str(bag),
        "--checkpoint",
        str(ckpt),
        "--backend",
        "torch",
        "--report",
        str(report),
        "--json",
        "--samples",
        "3",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(res.stdout)
    assert r["status"] == "ok" and r["frames"] == 6 and r["gt_frames"] == {"semantic": 6, "depth": 6}
    assert 0 <= r["semseg"]["miou_present"] <= 1 and r["depth"]["rmse"] > 0 and r["depth"]["n_valid"] > 0
    assert set(r["latency_ms"]) == {"decode", "preprocess", "inference", "postprocess", "total"}
    assert r["latency_ms"]["total"]["p99"] >= r["latency_ms"]["total"]["p50"] > 0
    ds = r["depth_stats"]
    assert abs(sum(r["class_histogram"].values()) - 1) < 1e-3 and ds["valid_fraction"] + ds["beyond_range_fraction"] > 0
    # +inf depth (beyond range) only where the pixels are labelled sky (the pipeline's sky_beyond_range)
    assert 0 <= ds["beyond_range_fraction"] <= r["class_histogram"].get("sky", 0.0) + 1e-5
    assert r["counters"]["gt_matched[/camera/gt/semantic]"] == 6
    for name in (
        "report.md",
        "metrics.json",
        "class_iou.png",
        "confusion.png",
        "latency.png",
        "class_histogram.png",
        "samples.png",
    ):
        assert (report / name).is_file(), name
    assert len(list((report / "samples").glob("frame_*.png"))) == 3
    text = (report / "report.md").read_text()
    assert "## Semantic segmentation" in text and "## Latency per frame (ms)" in text
    # never overwrite silently: a non-empty report dir is refused, --force replaces
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 2 and "not empty" in again.stderr and "--force" in again.stderr


def test_broken_step_images_partial_report(tmp_path, ckpt, capsys):
    report = tmp_path / "r"
    code, r, err = _run(capsys, "--bag", bad_bags.broken_step(tmp_path), "--checkpoint", ckpt, "--report", report)
    assert code == 1 and r["status"] == "partial"
    assert r["frames"] == 3 and r["error_counts"] == {"image_decode": 3}
    assert any("step" in e for e in r["errors"])
    assert "partial" in (report / "report.md").read_text() and "Traceback" not in err


def test_corrupt_messages_counted(tmp_path, ckpt, capsys):
    code, r, _ = _run(capsys, "--bag", bad_bags.corrupt_messages(tmp_path), "--checkpoint", ckpt)
    assert code == 1 and r["frames"] == 3 and r["error_counts"] == {"corrupt_message": 2}


def test_truncated_bag_partial_metrics(tmp_path, ckpt, capsys):
    report = tmp_path / "r"
    code, r, _ = _run(
        capsys, "--bag", bad_bags.truncated(tmp_path, "sqlite3"), "--checkpoint", ckpt, "--report", report
    )
    assert code == 1 and r["status"] == "partial" and r["error_counts"]["storage"] == 1
    assert 0 < r["frames"] < 8 and "semseg" in r and r["meta"]["metadata_message_count"] == 32
    assert (report / "metrics.json").is_file()


def test_unknown_type_topic_does_not_matter(tmp_path, ckpt, capsys):
    code, r, _ = _run(capsys, "--bag", bad_bags.unknown_type(tmp_path), "--checkpoint", ckpt, "--max-frames", "2")
    assert code == 0 and r["frames"] == 2 and r["counters"]["frames_skipped_max_frames"] == 2


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("talker_like", r"no image topic .*topics: /rosout \(rcl_interfaces/msg/Log, 0 msgs\), /topic"),
        ("empty_image_topic", "have no messages"),
        ("not_a_bag", "is not a rosbag2 bag"),
        ("metadata_only", "database files are missing"),
    ],
)
def test_nothing_to_evaluate_exit_2_with_report(tmp_path, ckpt, capsys, case, message):
    report = tmp_path / "r"
    code, r, err = _run(capsys, "--bag", bad_bags.ALL[case](tmp_path), "--checkpoint", ckpt, "--report", report)
    assert code == 2 and r["status"] == "failed" and r["frames"] == 0
    line = err.strip().splitlines()[-1]
    assert line.startswith("mtl-perception replay-eval: error:") and len(err.strip().splitlines()) == 1
    assert pytest.importorskip("re").search(message, line), line
    assert "failed" in (report / "report.md").read_text()


def test_decoder_without_shipped_model_names_train_command(tmp_path, capsys, monkeypatch):
    """Every decoder ships a model; an install without one (assets pruned) names the command that trains it."""
    from mtl_perception.deploy import artifacts

    monkeypatch.setattr(artifacts, "ASSETS", tmp_path / "assets")  # an install whose models were pruned
    bag = tmp_path / "b"
    write_bag(bag, seed=1, n_frames=1, height=32, width=64)
    code, _, err = _run(capsys, "--bag", bag, "--decoder", "moe")
    assert code == 2 and "--set model=../models/moe_lite0.yaml" in err and len(err.strip().splitlines()) == 1
    # the named command is runnable: its recipe + override resolve to the variant's model config
    from mtl_perception.train.config import load_train_config

    words = artifacts.train_hint("moe").split()
    cfg = load_train_config(words[words.index("--config") + 1], [words[words.index("--set") + 1]])
    assert Path(cfg["model"]).name == "moe_lite0.yaml" and Path(cfg["model"]).is_file()
    assert Path(cfg["init_from"]).is_file()  # warm start from the shipped mlore model


@pytest.mark.parametrize("name", ["real_frames_mcap", "real_frames_sqlite3"])
def test_real_frames_latency_histograms_samples(realdata_dir, tmp_path, ckpt, capsys, name):
    report = tmp_path / "r"
    code, r, _ = _run(
        capsys, "--bag", realdata_dir / "bags" / name, "--image-topic", "all", "--checkpoint", ckpt, "--report", report
    )
    assert code == 0 and r["status"] == "ok" and r["frames"] == 5
    assert r["frames_per_topic"] == {
        "/cityscapes/image_raw": 1,
        "/dgp/CAMERA_01/image/compressed": 3,
        "/kitti/image_02/image_raw": 1,
    }
    assert set(r["resolutions"]) == {"256x128", "1242x375", "1936x1216"}
    assert "semseg" not in r and r["latency_ms"]["total"]["n"] == 5 and r["class_histogram"]
    assert len(list((report / "samples").glob("*.png"))) == 4


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_real_talker_bag_clear_message(realdata_dir, tmp_path, ckpt, capsys, storage):
    bag = realdata_dir / "bags" / "rosbag2_talker" / storage / "talker"
    code, r, err = _run(capsys, "--bag", bag, "--checkpoint", ckpt)
    assert code == 2 and r["frames"] == 0
    assert "no image topic" in err and "/topic (std_msgs/msg/String, 10 msgs)" in err and "/rosout" in err


def test_replay_eval_equals_eval_on_the_same_frames(tmp_path, ckpt, capsys):
    """A bag and a dataset folder holding the same rendered frames give the same numbers through
    `replay-eval` (the node's conversion path) and `eval` (the dataset path): one pipeline, one metric
    code. Depth differs only by the dataset's uint16 storage (1/256 m steps)."""
    from mtl_perception.data.synthetic_io import derive_seed, write_dataset

    seed, n = 11, 4
    write_dataset(tmp_path / "ds", seed, n, 64, 128, sequence_length=n)
    write_bag(tmp_path / "bag", derive_seed(seed, 0), n, 64, 128)  # the dataset's first (only) sequence
    code, replay, _ = _run(capsys, "--bag", tmp_path / "bag", "--checkpoint", ckpt)
    assert code == 0 and replay["frames"] == n
    code = main(["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path / "ds"), "--backend", "torch", "--json"])
    out, _ = capsys.readouterr()
    offline = json.loads(out)
    assert code == 0 and offline["frames"] == n
    for k in ("miou_present", "miou_all", "pixel_acc"):
        assert replay["semseg"][k] == pytest.approx(offline["semseg"][k], abs=1e-9), k
    for k in ("abs_rel", "rmse", "delta1"):
        assert replay["depth"][k] == pytest.approx(offline["depth"][k], rel=2e-3, abs=2e-3), k
    # the same depth options through both CLIs: still one pipeline, and both reports say which options ran
    opts = ["--no-ground-contact", "--sky-min-confidence", "0.3", "--sky-connected-to-top"]
    code, replay, _ = _run(capsys, "--bag", tmp_path / "bag", "--checkpoint", ckpt, *opts)
    assert code == 0
    code = main(
        ["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path / "ds"), "--backend", "torch", "--json", *opts]
    )
    offline = json.loads(capsys.readouterr()[0])
    for meta in (replay["meta"], offline["meta"]):
        assert meta["ground_contact"] is False and meta["sky_min_confidence"] == 0.3
        assert meta["sky_connected_to_top"] is True and meta["sky_beyond_range"] is True
    for k in ("abs_rel", "rmse", "delta1"):
        assert replay["depth"][k] == pytest.approx(offline["depth"][k], rel=2e-3, abs=2e-3), k
