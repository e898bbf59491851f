"""`mtl-perception ablation` end to end with a microscopic budget: 2 variants + 2 single-task
models, 2 steps, 32x64 frames, 2 held-out frames; table/JSON structure, Delta_m recomputed from
the JSON metrics, and a re-run that skips the trained runs."""

from __future__ import annotations

import json

import pytest
import yaml
from tiny_models import ROOT, TINY_BACKBONE

from mtl_perception.cli import main


def _recipe(tmp_path) -> str:
    models = ROOT / "config" / "models"
    recipe = {
        "train": {
            "data": {
                "train": {
                    "type": "synthetic",
                    "root": str(tmp_path / "train_data"),
                    "generate": {"seed": 1, "frames": 4, "height": 32, "width": 64, "sequence_length": 2},
                },
                "num_workers": 0,
                "augment": {"scale_range": [1.0, 1.0], "hflip": 0.5, "photometric": False},
            },
            "steps": 2,
            "batch_size": 2,
            "schedule": {"type": "poly", "warmup_steps": 1},
            "checkpoint_every": 1,
            "keep_checkpoints": 1,
            "log_every": 1,
            "seed": 0,
        },
        "model": {"input_size": [32, 64], "backbone": dict(TINY_BACKBONE), "decoder": {"channels": 16}},
        "variants": {
            "baseline": {"config": str(models / "baseline.yaml")},
            "mlore": {"config": str(models / "mlore.yaml"), "decoder": {"rank_range": [2, 8], "specific_rank": 4}},
        },
        "single_task": {"base": "baseline", "tasks": ["semseg", "depth"]},
        "eval": {"root": str(tmp_path / "val"), "seed": 2, "frames": 2, "height": 32, "width": 64},
        "latency": {"backend": "torch", "precision": "fp32", "threads": 1, "warmup": 1, "iters": 2},
    }
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _delta_m(mtl: dict, stl: dict, lower: dict) -> float:
    # The papers' definition, written out independently of mtl_perception.evaluate.metrics.
    terms = [(-1 if lower[k] else 1) * (mtl[k] - stl[k]) / stl[k] for k in lower]
    return 100 * sum(terms) / len(terms)


def test_ablation_end_to_end_and_skip(tmp_path, capsys):
    recipe, out, docs = _recipe(tmp_path), tmp_path / "runs", tmp_path / "docs" / "ablation.md"
    args = ["ablation", "--config", recipe, "--out", str(out), "--docs", str(docs), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()

    data = json.loads(docs.with_suffix(".json").read_text())
    runs = {r["name"]: r for r in data["runs"]}
    assert list(runs) == ["baseline", "mlore", "single_semseg", "single_depth"]
    for r in runs.values():
        assert r["train"]["status"] == "trained" and r["train"]["steps"] == 2
        assert r["complexity"]["params_m"] > 0 and r["complexity"]["gflops"] > 0
        assert r["latency"]["p50_ms"] > 0
        assert (out / r["name"] / "model.safetensors").is_file()
    assert set(runs["single_semseg"]["metrics"]) >= {"miou"} and "rmse" not in runs["single_semseg"]["metrics"]
    assert set(runs["single_depth"]["metrics"]) >= {"rmse", "abs_rel"} and "miou" not in runs["single_depth"]["metrics"]
    assert data["meta"]["eval"]["frames"] == 2 and data["meta"]["eval"]["seed"] != data["meta"]["budget"]["train_seed"]
    assert data["meta"]["budget"]["steps"] == 2 and data["meta"]["budget"]["input_size"] == [32, 64]

    stl = {
        "miou": runs["single_semseg"]["metrics"]["miou"],
        "rmse": runs["single_depth"]["metrics"]["rmse"],
        "abs_rel": runs["single_depth"]["metrics"]["abs_rel"],
    }
    for name in ("baseline", "mlore"):
        m = runs[name]["metrics"]
        two = _delta_m(m, stl, {"miou": False, "rmse": True})
        three = _delta_m(m, stl, {"miou": False, "rmse": True, "abs_rel": True})
        assert runs[name]["delta_m"] == pytest.approx(two, rel=1e-9, abs=1e-9)
        assert runs[name]["delta_m_abs_rel"] == pytest.approx(three, rel=1e-9, abs=1e-9)

    md = docs.read_text()
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    for col in ("params (M)", "GFLOPs", "latency p50 (ms)", "mIoU (%)", "RMSE (m)", "AbsRel", "Delta_m (%)"):
        assert col in header
    assert sum(line.startswith("| `") for line in md.splitlines()) == 4
    assert "**Reading.**" in md and "mlore beats baseline on" in md and "Single seed" in md
    assert "2 steps" in md and (docs.parent / "images" / "ablation.png").is_file()

    # Second invocation: every run is complete with the same recipe -> skipped, same metrics.
    mtimes = {n: (out / n / "model.safetensors").stat().st_mtime_ns for n in runs}
    assert main([*args, "--no-latency", "--json"]) == 0
    again = {r["name"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    for name, r in again.items():
        assert r["train"]["status"] == "skipped (complete)"
        assert (out / name / "model.safetensors").stat().st_mtime_ns == mtimes[name]
        assert r["metrics"] == runs[name]["metrics"]
        assert r["latency"] is None


def test_ablation_rejects_changed_recipe_without_force(tmp_path, capsys):
    recipe, out = _recipe(tmp_path), tmp_path / "runs"
    base = ["ablation", "--config", recipe, "--out", str(out), "--no-progress", "--no-latency", "--variants"]
    assert main([*base, "baseline", "--steps", "1"]) == 0
    capsys.readouterr()
    assert main([*base, "baseline", "--steps", "2"]) == 2  # other recipe in the same run folder
    assert "--force" in capsys.readouterr().err
