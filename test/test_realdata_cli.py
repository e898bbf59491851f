"""``eval --realdata``, ``realdata-bag`` and ``replay-eval`` on the real KITTI drive, with tiny models.

The real frames come from ../shared/realdata (tests skip without it); bags and reports go under
tmp_path, never into the repository."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_models import ROOT, standardize_depth_head_, tiny_config

from mtl_perception.cli import main
from mtl_perception.model import build_model, save_checkpoint


def _tiny(path, camera: dict | None = None, seed: int = 0):
    torch.manual_seed(seed)
    cfg = tiny_config("mlore")
    if camera:
        cfg["camera"] = camera
    model = build_model(cfg)
    standardize_depth_head_(model, torch.randn(1, 3, 64, 128))
    return save_checkpoint(model, path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A stretch + metres model (like the shipped one)."""
    return _tiny(tmp_path_factory.mktemp("m") / "stretch.safetensors")


@pytest.fixture(scope="module")
def cam_ckpt(tmp_path_factory):
    """A letterbox + canonical-camera model: its depth in metres depends on each frame's K."""
    return _tiny(
        tmp_path_factory.mktemp("m") / "canonical.safetensors",
        {"resize": "letterbox", "canonical_focal": 100.0},
        seed=1,
    )


def _main(capsys, *args):
    code = main([*map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])


# ---------------------------------------------------------------------- error contract
def test_eval_realdata_error_contract(tmp_path, capsys, ckpt):
    _one_line_error(*_main(capsys, "eval")[::2], "--data DIR", "--realdata")
    _one_line_error(*_main(capsys, "eval", "--realdata", tmp_path / "none")[::2], "does not exist")
    _one_line_error(*_main(capsys, "eval", "--data", tmp_path, "--realdata", tmp_path)[::2], "not both")
    _one_line_error(*_main(capsys, "eval", "--data", tmp_path, "--compare", ckpt)[::2], "--compare", "--realdata only")
    _one_line_error(
        *_main(capsys, "eval", "--data", tmp_path, "--compare-defaults")[::2], "--compare-defaults", "--realdata only"
    )
    _one_line_error(*_main(capsys, "eval", "--realdata", tmp_path, "--compare-defaults")[::2], "needs --compare")
    (tmp_path / "kitti").mkdir()
    _one_line_error(*_main(capsys, "eval", "--realdata", tmp_path, "--sets", "kitty")[::2], "unknown realdata set")
    _one_line_error(*_main(capsys, "eval", "--realdata", tmp_path, "--single-task", "semseg=x")[::2], "--single-task")
    _one_line_error(*_main(capsys, "eval", "--realdata", tmp_path, "--grid", tmp_path / "g.gif")[::2], ".png")
    _one_line_error(*_main(capsys, "eval", "--realdata", tmp_path)[::2], "no real frames")


def test_eval_realdata_bad_checkpoints(realdata_dir, tmp_path, capsys, ckpt):
    code, _, err = _main(
        capsys, "eval", "--realdata", realdata_dir, "--checkpoint", ckpt, "--compare", tmp_path / "nope.safetensors"
    )
    _one_line_error(code, err, "--compare")


def test_realdata_bag_error_contract(tmp_path, capsys):
    (tmp_path / "exists").mkdir()
    _one_line_error(*_main(capsys, "realdata-bag", "--out", tmp_path / "exists")[::2], "already exists")
    _one_line_error(*_main(capsys, "realdata-bag", "--out", ROOT / "outputs" / "kitti_bag")[::2], "inside the repo")
    assert not (ROOT / "outputs" / "kitti_bag").exists()
    code, _, err = _main(capsys, "realdata-bag", "--out", tmp_path / "bag", "--realdata", tmp_path / "nothing")
    _one_line_error(code, err, "--realdata", "does not exist")
    assert not (tmp_path / "bag").exists()


@pytest.mark.parametrize("cmd", [["eval"], ["realdata-bag"], ["replay-eval"]])
def test_help(cmd):
    res = subprocess.run(
        [sys.executable, "-m", "mtl_perception.cli", *cmd, "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert res.returncode == 0 and "usage:" in res.stdout
    expected = {"eval": "--realdata", "realdata-bag": "--storage", "replay-eval": "--camera-info-topic"}[cmd[0]]
    assert expected in res.stdout


# ---------------------------------------------------------------------- eval --realdata end to end
def test_eval_realdata_report_compare_and_grid(realdata_dir, tmp_path, capsys, ckpt, cam_ckpt, monkeypatch):
    report, grid = tmp_path / "report", tmp_path / "grid.jpg"
    monkeypatch.chdir(ROOT)  # --realdata without DIR = ../shared/realdata from the working directory
    code, out, err = _main(
        capsys,
        "eval",
        "--realdata",
        "--sets",
        "cityscapes,camvid,kitti",
        "--checkpoint",
        ckpt,
        "--compare",
        cam_ckpt,
        "--backend",
        "torch",
        "--report",
        report,
        "--grid",
        grid,
        "--json",
    )
    assert code == 0, err
    r = json.loads(out)
    assert r["meta"]["realdata"] == "../shared/realdata" and r["meta"]["frames"] == 4
    assert list(r["models"]) == ["stretch", "canonical"]
    # --compare: a paired bootstrap over the frames, new (--checkpoint) minus old (--compare)
    paired = r["paired"]
    assert (paired["new"], paired["old"], paired["unit"]) == ("stretch", "canonical", "frame")
    pm = paired["metrics"]
    assert [pm[k]["frames"] for k in ("cityscapes_miou", "camvid_8_miou", "depth_abs_rel")] == [1, 2, 1]
    assert pm["cityscapes_miou"]["new"] == pytest.approx(r["models"]["stretch"]["cityscapes"]["miou"])
    assert pm["depth_abs_rel"]["old"] == pytest.approx(r["models"]["canonical"]["depth"]["abs_rel"])
    for label, m in r["models"].items():
        assert m["cityscapes"]["frames"] == 1 and m["camvid"]["frames"] == 2 and m["depth"]["frames"] == 1, label
        assert 0 <= m["cityscapes"]["miou"] <= 1 and 0 <= m["camvid"]["miou_8"] <= 1
        assert m["depth"]["abs_rel"] > 0 and "confusion" not in m["cityscapes"]
        srcs = {f["name"]: f["intrinsics_source"] for f in m["frames"]}
        assert srcs["000008"] == "frame" and srcs["0001TP_008550"] == "default"  # KITTI has K, CamVid not
    scales = {f["name"]: f["depth_scale"] for f in r["models"]["canonical"]["frames"]}
    assert scales["000008"] != 1.0  # canonical depth -> metres with KITTI's fx
    assert all(f["depth_scale"] == 1.0 for f in r["models"]["stretch"]["frames"])
    assert r["meta"]["models"]["canonical"]["resize"] == "letterbox"
    # the known camera heights went to the pipeline (KITTI's rig), CamVid's unknown one did not
    assert r["meta"]["camera_height"] is True
    fits = {f["name"]: f.get("ground_plane") for f in r["models"]["canonical"]["frames"]}
    assert fits["0001TP_008550"] is None
    k = fits["000008"]
    assert k["camera_height"] == 1.65 and "KITTI" in k["height_source"] and isinstance(k["applied"], bool)
    assert k["applied"] or k["reason"]  # a random tiny network's road is rarely a plane: it says why not
    for name in ("report.md", "metrics.json", "grid.png"):
        assert (report / name).is_file(), name
    full = json.loads((report / "metrics.json").read_text())
    assert len(full["models"]["stretch"]["cityscapes"]["confusion"]) == 19
    text = (report / "report.md").read_text()
    assert "| metric | stretch | canonical |" in text and "![real frames](grid.png)" in text
    assert "## How sure: new vs old" in text and "| depth_abs_rel | 1 |" in text
    assert full["paired"]["metrics"] == pm
    import cv2

    img = cv2.imread(str(report / "grid.png"))
    # header + 4 rows; columns: input | 2 x (classes, depth) | GT, 320 px each with 2 px gaps
    assert img.shape[1] == 6 * 320 + 5 * 2
    assert img.shape[0] == 22 + sum(
        round(h * 320 / w) + 2 for h, w in [(128, 256), (360, 480), (360, 480), (375, 1242)]
    )
    assert cv2.imread(str(grid)).shape == img.shape


def test_eval_realdata_without_camera_heights(realdata_dir, capsys, ckpt):
    args = ("eval", "--realdata", realdata_dir, "--sets", "kitti", "--checkpoint", ckpt, "--backend", "torch", "--json")
    code, out, err = _main(capsys, *args, "--no-camera-height")
    assert code == 0, err
    r = json.loads(out)
    assert r["meta"]["camera_height"] is False
    (m,) = r["models"].values()
    assert m["frames"] and all("ground_plane" not in f for f in m["frames"])


def test_compare_defaults_pairs_one_checkpoint_under_two_option_sets(realdata_dir, capsys, ckpt):
    """``--compare-defaults``: the second column is the same checkpoint under the node's defaults. With no
    option flag both columns are the same run (every paired difference 0); with one, meta says which
    options each column ran with."""
    base = ("eval", "--realdata", realdata_dir, "--sets", "cityscapes,kitti", "--backend", "torch", "--json")
    code, out, err = _main(capsys, *base, "--checkpoint", ckpt, "--compare", ckpt, "--compare-defaults")
    assert code == 0, err
    r = json.loads(out)
    new, old = r["models"]
    stem = ckpt.stem if hasattr(ckpt, "stem") else str(ckpt).rsplit("/", 1)[-1].split(".")[0]
    assert (new, old) == (stem, f"{stem} (node defaults)") and r["paired"]["old"] == old
    assert r["models"][new]["cityscapes"]["miou"] == r["models"][old]["cityscapes"]["miou"]
    assert all(m["difference"] == 0 for m in r["paired"]["metrics"].values())
    code, out, err = _main(
        capsys, *base, "--checkpoint", ckpt, "--compare", ckpt, "--compare-defaults", "--people-need-support"
    )
    assert code == 0, err
    meta = json.loads(out)["meta"]
    assert meta["people_need_support"] is True and meta["compare_options"]["people_need_support"] is False


def test_eval_realdata_table_on_stdout(realdata_dir, capsys, ckpt):
    code, out, err = _main(
        capsys, "eval", "--realdata", realdata_dir, "--sets", "cityscapes", "--checkpoint", ckpt, "--backend", "torch"
    )
    assert code == 0, err
    assert "| Cityscapes mIoU, pooled over 1 frames (classes in GT) |" in out and "report:" not in out


# ---------------------------------------------------------------------- the KITTI bag through replay-eval
@pytest.mark.slow
def test_kitti_bag_round_trip_through_replay_eval(realdata_dir, tmp_path, capsys, cam_ckpt):
    from mtl_perception.data.bags import gt_image_to_array, open_bag
    from mtl_perception.data.realdata import iter_realdata, read_kitti_timestamps
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.evaluate.metrics import DepthMeter
    from mtl_perception.imaging import image_msg_to_rgb
    from mtl_perception.pipeline import FramePipeline

    bag = tmp_path / "kitti_bag"
    code, out, err = _main(capsys, "realdata-bag", "--out", bag, "--realdata", realdata_dir, "--json")
    assert code == 0, err
    assert json.loads(out)["frames"] == 7
    samples = list(iter_realdata(realdata_dir, ["kitti_raw_0023_sequence"]))
    stamps = read_kitti_timestamps(realdata_dir / "kitti_raw_0023_sequence" / "image_02_timestamps.txt")[:7]
    with open_bag(bag) as b:
        assert {t: i.count for t, i in b.topics.items()} == {
            "/camera/image_raw": 7,
            "/camera/camera_info": 7,
            "/camera/gt/depth": 7,
        }
        msgs = list(b.messages())
        by_topic = {t: [m for m in msgs if m.topic == t] for t in b.topics}
    assert [m.stamp_ns for m in by_topic["/camera/image_raw"]] == stamps
    assert [m.timestamp for m in by_topic["/camera/gt/depth"]] == stamps
    for s, im, info, dep in zip(
        samples, by_topic["/camera/image_raw"], by_topic["/camera/camera_info"], by_topic["/camera/gt/depth"]
    ):
        np.testing.assert_array_equal(image_msg_to_rgb(im.msg), s["image"])
        np.testing.assert_allclose(np.asarray(info.msg.k).reshape(3, 3), s["K"])
        assert (info.msg.width, info.msg.height) == (1242, 375)
        gt = gt_image_to_array(dep.msg)
        assert dep.msg.encoding == "32FC1"
        np.testing.assert_array_equal(np.isnan(gt), s["depth"] == 0)  # no return = NaN, as synth --bag
        np.testing.assert_array_equal(gt[s["depth"] > 0], s["depth"][s["depth"] > 0])

    code, out, err = _main(
        capsys, "replay-eval", "--bag", bag, "--checkpoint", cam_ckpt, "--backend", "torch", "--no-progress", "--json"
    )
    assert code == 0, err
    r = json.loads(out)
    assert r["status"] == "ok" and r["frames"] == 7 and r["gt_frames"] == {"semantic": 0, "depth": 7}
    assert r["intrinsics"] == {"frames_with_K": 7, "frames_without_K": 0, "camera_info": 7}
    assert r["meta"]["camera_info_topics"] == "/camera/image_raw -> /camera/camera_info"
    # the same frames straight through the pipeline with each frame's K: identical metric depth errors
    engine = InferenceEngine.create(cam_ckpt, backend="torch", precision="fp32")
    pipe, meter = FramePipeline(engine), DepthMeter(max_depth=80.0)
    for s in samples:
        meter.update(np.nan_to_num(pipe.process(s["image"], K=s["K"]).depth, nan=0.0), s["depth"])
    ref = meter.compute()
    lidar = sum(int(((s["depth"] > 1e-3) & (s["depth"] < 80)).sum()) for s in samples)
    assert r["depth"]["n_valid"] == ref["n_valid"] == lidar  # sparse: only LiDAR returns count
    assert r["depth"]["abs_rel"] == pytest.approx(ref["abs_rel"], rel=1e-6)
    assert r["depth"]["delta1"] == pytest.approx(ref["delta1"], rel=1e-6)

    # without CameraInfo the canonical model falls back to its default field of view: other depth
    code, out, err = _main(
        capsys,
        *("replay-eval", "--bag", bag, "--checkpoint", cam_ckpt, "--backend", "torch", "--no-progress", "--json"),
        *("--camera-info-topic", "none"),
    )
    assert code == 0, err
    r2 = json.loads(out)
    assert r2["intrinsics"]["frames_with_K"] == 0 and r2["intrinsics"]["no_camera_info"] == 7
    assert r2["depth"]["abs_rel"] != pytest.approx(r["depth"]["abs_rel"], rel=1e-3)


@pytest.mark.parametrize("storage", ["sqlite3"])
def test_kitti_bag_sqlite3(realdata_dir, tmp_path, capsys, storage):
    from mtl_perception.data.bags import open_bag

    code, _, err = _main(
        capsys, "realdata-bag", "--out", tmp_path / "b", "--realdata", realdata_dir, "--storage", storage
    )
    assert code == 0, err
    with open_bag(tmp_path / "b") as b:
        assert b.storage_id == storage and b.topics["/camera/gt/depth"].count == 7
