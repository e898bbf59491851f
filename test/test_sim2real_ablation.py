"""Sim-to-real ingredient ablation (``mtl-perception ablation`` on an arms recipe).

The shipped recipe's arms resolve to exactly the switch each one claims (and nothing else), and a
microscopic end-to-end run (2 arms, 2 steps, 64x128, tiny decoder, the real ImageNet backbone)
writes the table; the real-frame scoring runs only when ../shared/realdata exists and must equal
``mtl-perception eval --realdata`` on the same checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny_models import ROOT

from mtl_perception.cli import main
from mtl_perception.evaluate import sim2real_ablation as s2r
from mtl_perception.model import ConfigError

SHIPPED = ROOT / "config" / "train" / "sim2real_ablation.yaml"
REAL_SETS = ["cityscapes", "camvid", "kitti"]  # 4 frames: Cityscapes + CamVid labels, LiDAR depth


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k.startswith("_"):
            continue
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _diff(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    fa, fb = _flatten(a), _flatten(b)
    return {k for k in set(fa) | set(fb) if fa.get(k, "<absent>") != fb.get(k, "<absent>")}


def test_shipped_arms_resolve_to_what_they_claim():
    cfg = s2r.load_sim2real_config(SHIPPED)
    specs = {s.name: s for s in s2r.plan_arms(cfg)}
    assert list(specs) == [
        "full", "scratch", "no_canonical", "squashed", "no_randomization", "frozen_backbone", "bn_adapted",
        "style_perturbation",
    ]  # fmt: skip
    full = specs["full"].train_cfg

    # full = the shipped recipe's model untouched, its training recipe with only the budget cut
    shipped_model = yaml.safe_load((ROOT / "config" / "models" / "mlore_lite0.yaml").read_text())
    assert _diff(full["model"], shipped_model) == {"name"}
    b = full["model"]["backbone"]
    assert b["pretrained"] == "imagenet" and b["freeze_bn"] is True
    assert full["model"]["camera"]["resize"] == "letterbox" and full["model"]["camera"]["canonical_focal"] > 0
    aug, gen = full["data"]["augment"], full["data"]["train"]["generate"]
    assert aug["letterbox_prob"] > 0 and aug["sensor"] > 0 and gen["randomization"] == "full"
    assert aug["crop_size"] == [192, 384] and full["batch_size"] == 4 and full["steps"] == 300
    assert (gen["frames"], gen["height"], gen["width"]) == (600, 256, 512)
    recipe = yaml.safe_load((ROOT / "config" / "train" / "mlore_lite0.yaml").read_text())
    assert full["optim"] == {**recipe["optim"]} and full["data"]["augment"]["aspect_range"] == [1.25, 3.4]
    assert int(cfg["eval"]["seed"]) != gen["seed"]

    # every other arm differs from full in its own switch only (plus the run name)
    expected = {
        "scratch": {"model.backbone.pretrained", "model.backbone.freeze_bn", "optim.backbone_lr_mult"}
        # the recipe's frozen ImageNet stages (when it has any) are unfrozen for a random backbone
        | ({"model.backbone.freeze_stages"} if b.get("freeze_stages", "<absent>") != 0 else set()),
        "no_canonical": {"model.camera.canonical_focal"},
        "squashed": {"model.camera.resize", "data.augment.letterbox_prob"},
        "no_randomization": {"data.train.root", "data.train.generate.randomization", "data.augment.sensor"},
        "frozen_backbone": {"model.backbone.freeze_stages"},
        "bn_adapted": {"model.backbone.freeze_bn"},
        "style_perturbation": {"model.backbone.style_perturbation"},
    }
    for arm, keys in expected.items():
        assert _diff(specs[arm].train_cfg, full) == keys | {"model.name"}, arm
        assert specs[arm].fingerprint != specs["full"].fingerprint
    scratch = specs["scratch"].train_cfg
    sb = scratch["model"]["backbone"]
    assert sb["pretrained"] is None and sb["freeze_bn"] is False and sb["freeze_stages"] == 0
    assert scratch["optim"]["backbone_lr_mult"] == 1.0
    assert specs["no_canonical"].train_cfg["model"]["camera"]["canonical_focal"] is None
    squashed = specs["squashed"].train_cfg
    assert squashed["model"]["camera"]["resize"] == "stretch" and squashed["data"]["augment"]["letterbox_prob"] == 0
    assert specs["frozen_backbone"].train_cfg["model"]["backbone"]["freeze_stages"] == 7  # all of Lite0's stages
    assert specs["bn_adapted"].train_cfg["model"]["backbone"]["freeze_bn"] is False
    assert specs["style_perturbation"].train_cfg["model"]["backbone"]["style_perturbation"] == 0.5
    norand = specs["no_randomization"].train_cfg["data"]
    assert norand["train"]["generate"]["randomization"] == "basic" and norand["augment"]["sensor"] == 0
    assert norand["train"]["root"] != full["data"]["train"]["root"]  # never shares the full set's cache


def test_arm_subset_keeps_the_reference_and_steps_override():
    cfg = s2r.load_sim2real_config(SHIPPED, steps=3, arms=["squashed"])
    specs = s2r.plan_arms(cfg)
    assert [s.name for s in specs] == ["full", "squashed"]
    for s in specs:
        assert s.train_cfg["steps"] == 3 and s.train_cfg["schedule"]["warmup_steps"] < 3
        assert s.train_cfg["checkpoint_every"] <= 3


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda r: r["arms"]["no_randomization"]["data"]["train"].pop("root"), "its own root"),
        (lambda r: r["arms"].__setitem__("bad", {"modle": {}}), "unknown key"),
        (lambda r: r.__setitem__("reference", "nope"), "reference arm"),
        (lambda r: r["eval"].__setitem__("seed", 1), "training set's seed"),
        (lambda r: r.__setitem__("recipe", "missing.yaml"), "not found"),
        (lambda r: r["arms"]["scratch"]["model"]["backbone"].__setitem__("freeze_stages", 2), "random layers"),
    ],
)
def test_recipe_errors(tmp_path, edit, needle):
    raw = yaml.safe_load(SHIPPED.read_text())
    raw["recipe"] = str(ROOT / "config" / "train" / "mlore_lite0.yaml")
    edit(raw)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=needle):
        s2r.plan_arms(s2r.load_sim2real_config(path))


# ---------------------------------------------------------------------------------- end to end
def _tiny_recipe(tmp: Path) -> Path:
    """The shipped arms at test size: 64x128 input, tiny decoder, 4 rendered frames, 2 eval frames."""
    raw = yaml.safe_load(SHIPPED.read_text())
    raw["recipe"] = str(ROOT / "config" / "train" / "mlore_lite0.yaml")
    raw["model"] = {
        "input_size": [64, 128],
        "decoder": {"channels": 16, "rank_range": [4, 8], "specific_rank": 4},
        "head": {"channels": 16},
    }
    t = raw["train"]
    t["data"]["train"]["root"] = str(tmp / "data" / "full")
    t["data"]["train"]["generate"].update(frames=4, height=64, width=128, sequence_length=2)
    t["data"]["augment"]["crop_size"] = [64, 128]
    t["data"]["num_workers"] = 0
    t["batch_size"] = 2
    raw["arms"]["no_randomization"]["data"]["train"]["root"] = str(tmp / "data" / "basic")
    raw["eval"].update(root=str(tmp / "val"), frames=2, height=64, width=128, sequence_length=2)
    raw["realdata"]["sets"] = REAL_SETS
    path = tmp / "sim2real.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """2 arms (full is added to --arms no_randomization as the reference), 2 steps, no real frames."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("s2r")
    recipe, out, docs = _tiny_recipe(tmp), tmp / "runs", tmp / "docs" / "sim2real_ablation.md"
    args = ["ablation", "--config", str(recipe), "--out", str(out), "--docs", str(docs), "--no-progress"]
    args += ["--steps", "2", "--arms", "no_randomization", "--no-realdata", "--threads", "1"]
    # in a subprocess: torch.set_num_threads and the trainer's state stay out of the test process
    proc = subprocess.run(
        ["nice", "-n", "10", sys.executable, "-m", "mtl_perception.cli", *args],
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"recipe": recipe, "out": out, "docs": docs, "args": args, "stdout": proc.stdout, "stderr": proc.stderr}


def test_two_arm_run_writes_the_table(trained):
    docs, out = trained["docs"], trained["out"]
    data = json.loads(docs.with_suffix(".json").read_text())
    runs = {r["name"]: r for r in data["runs"]}
    assert list(runs) == ["full", "no_randomization"]
    for r in runs.values():
        assert r["train"]["status"] == "trained" and r["train"]["steps"] == 2
        assert (out / r["name"] / "model.safetensors").is_file()
        assert list(r["metrics"]) == list(s2r.METRICS)
        assert math.isfinite(r["metrics"]["syn_miou"]) and math.isfinite(r["metrics"]["syn_abs_rel"])
        assert r["realdata"] is None and r["metrics"]["cs_miou"] is None  # --no-realdata
    # the basic arm really trained on a basic render; the full arm on a full one
    for arm, look in (("full", "full"), ("no_randomization", "basic")):
        root = Path(runs[arm]["resolved"]["train_root"])
        assert json.loads((root / "dataset.json").read_text())["randomization"] == look
    assert runs["no_randomization"]["resolved"]["sensor"] == 0 and runs["full"]["resolved"]["sensor"] > 0
    # delta = arm - full
    nr, full = runs["no_randomization"], runs["full"]
    for key in ("syn_miou", "syn_abs_rel"):
        assert nr["delta"][key] == pytest.approx(nr["metrics"][key] - full["metrics"][key], abs=1e-12)
    assert nr["delta"]["cs_miou"] is None and full["delta"] == {}
    meta = data["meta"]
    assert meta["budget"]["steps"] == 2 and meta["budget"]["input_size"] == [64, 128]
    assert meta["eval"]["seed"] != meta["budget"]["train_seed"] and meta["machine"]["cpu_count"] >= 1
    assert meta["realdata"]["enabled"] is False
    assert meta["machine"]["threads"] == 1 and meta["engine"]["threads"] == 1  # --threads over the recipe's 2

    md = docs.read_text()
    assert "## Metrics per arm" in md and "## Delta of each arm against `full`" in md
    assert "| `full` (reference) |" in md and md.count("| `no_randomization` |") == 3  # metrics, delta, switches
    assert "2 steps x batch 2" in md and "CPU cores" in md and "One training seed" in md and "noise" in md
    assert "`--no-realdata`" in md and (docs.parent / "images" / "sim2real_ablation.png").is_file()
    assert "[sim2real 1/2] train full" in trained["stderr"]


def test_rerun_skips_finished_arms_and_keeps_metrics(trained, capsys):
    out = trained["out"]
    before = json.loads(trained["docs"].with_suffix(".json").read_text())
    mtimes = {n: (out / n / "model.safetensors").stat().st_mtime_ns for n in ("full", "no_randomization")}
    args = [a for a in trained["args"] if a not in ("--docs", str(trained["docs"]))]
    assert main([*args, "--json"]) == 0
    again = {r["name"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    for r in before["runs"]:
        assert again[r["name"]]["train"]["status"] == "skipped (complete)"
        assert (out / r["name"] / "model.safetensors").stat().st_mtime_ns == mtimes[r["name"]]
        assert again[r["name"]]["metrics"]["syn_miou"] == pytest.approx(r["metrics"]["syn_miou"], abs=1e-9)


def test_realdata_scores_equal_eval_realdata(trained, realdata_dir, capsys):
    """Skipped without ../shared/realdata. Arms already trained: this only scores them."""
    args = [a for a in trained["args"] if a not in ("--docs", str(trained["docs"]), "--no-realdata")]
    assert main([*args, "--realdata", str(realdata_dir), "--json"]) == 0
    runs = {r["name"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    for name, r in runs.items():
        m = r["metrics"]
        for key in s2r.REAL_METRICS:
            assert m[key] is not None and math.isfinite(m[key]), (name, key)
        assert r["realdata"]["cityscapes"]["frames"] >= 1 and r["realdata"]["depth"]["frames"] >= 1
    assert runs["no_randomization"]["delta"]["cs_miou"] == pytest.approx(
        runs["no_randomization"]["metrics"]["cs_miou"] - runs["full"]["metrics"]["cs_miou"], abs=1e-12
    )
    # the same checkpoint through `eval --realdata` gives the same table (same scorer, same pipeline)
    ckpt = trained["out"] / "full" / "model.safetensors"
    code = main(
        ["eval", "--realdata", str(realdata_dir), "--sets", ",".join(REAL_SETS), "--checkpoint", str(ckpt), "--json"]
    )
    assert code == 0
    ref = next(iter(json.loads(capsys.readouterr().out)["models"].values()))
    m = runs["full"]["metrics"]
    assert m["cs_miou"] == pytest.approx(ref["cityscapes"]["miou"], abs=1e-3)
    assert m["camvid_miou"] == pytest.approx(ref["camvid"]["miou_8"], abs=1e-3)
    assert m["depth_abs_rel"] == pytest.approx(ref["depth"]["abs_rel"], rel=1e-3)
    assert m["depth_delta1_med"] == pytest.approx(ref["depth"]["delta1_median_scaled"], abs=1e-3)


# ---------------------------------------------------------------------------------- CLI errors
def _one_line_error(capsys, args: list[str], *needles: str) -> None:
    assert main(args) == 2
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(err) == 1, err
    for n in needles:
        assert n in err[0], (n, err[0])


def test_cli_errors_are_one_line_and_come_before_training(tmp_path, capsys):
    recipe = _tiny_recipe(tmp_path)
    out = tmp_path / "runs"
    base = ["ablation", "--config", str(recipe), "--out", str(out), "--no-progress", "--steps", "1"]
    _one_line_error(capsys, [*base, "--arms", "full,nope"], "unknown arm", "nope")
    _one_line_error(capsys, [*base, "--variants", "baseline"], "--arms")
    _one_line_error(capsys, [*base, "--realdata", str(tmp_path / "absent")], "does not exist")
    _one_line_error(capsys, [*base, "--realdata", "x", "--no-realdata"], "exclude")
    _one_line_error(capsys, [*base, "--threads", "0"], "--threads")
    decoder = str(ROOT / "config" / "train" / "ablation.yaml")
    _one_line_error(capsys, ["ablation", "--config", decoder, "--arms", "full"], "arms recipe")
    assert not out.exists()  # nothing trained, nothing rendered into the run folder
    assert not (tmp_path / "data").exists()


def test_help_names_both_recipes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ablation", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--arms" in text and "--no-realdata" in text and "--threads" in text and "sim2real_ablation.yaml" in text
