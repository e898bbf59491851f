"""Post-hoc logit adjustment (train/logit_adjust.py, ``mtl-perception logit-adjust``): the theory it relies
on, the shift folded into the bias, where the weights come from (runs, checkpoints, soups) and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from tiny_models import tiny_config

from mtl_perception.model import build_model, load_checkpoint, save_checkpoint
from mtl_perception.model.errors import CheckpointError
from mtl_perception.train.logit_adjust import adjust_checkpoint, read_class_weights
from mtl_perception.train.soup import average_checkpoints

CLASSES = tiny_config("baseline")["tasks"]["semseg"]["num_classes"]


def _weights(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return [round(float(w), 4) for w in rng.uniform(0.3, 8.0, CLASSES)]


def _ckpt(path, seed: int, weights: list[float] | None = None, **meta):
    torch.manual_seed(seed)
    model = build_model(tiny_config("baseline"))
    with torch.no_grad():
        model.heads["semseg"].out.bias.uniform_(-1, 1)
    if weights is not None:
        meta["class_balance"] = json.dumps({"semseg": {"weights": weights, "frequency": [0.05] * CLASSES}})
    return save_checkpoint(model, path, extra_metadata=meta)


def _outputs(path, x):
    model = load_checkpoint(path).eval()
    with torch.no_grad():
        return model(x)


def _meta(path):
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def test_the_weighted_loss_shifts_logits_by_log_w_and_the_adjustment_undoes_it():
    """The theory, on a problem where both optima are reached: softmax regression on three 1-D Gaussian
    classes with priors 0.80 / 0.15 / 0.05, fitted once with the plain cross-entropy and once with
    inverse-square-root class weights (the recipe's default power). The weighted fit's biases are the
    plain fit's plus log w (up to a common constant); subtracting log w gives back the plain decisions."""
    torch.manual_seed(0)
    priors, means = torch.tensor([0.80, 0.15, 0.05]), torch.tensor([0.0, 1.5, 3.0])
    y = torch.multinomial(priors, 30000, replacement=True)
    x = (means[y] + torch.randn(len(y))).unsqueeze(1)
    w = priors**-0.5
    w = w / (priors * w).sum()

    def fit(weight):
        lin = torch.nn.Linear(1, 3).double()
        opt = torch.optim.LBFGS(lin.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(lin(x.double()), y, weight=weight)
            loss.backward()
            return loss

        opt.step(closure)
        return lin

    plain, weighted = fit(None), fit(w.double())
    shift = (weighted.bias - plain.bias).detach()
    log_w = torch.log(w).double()
    assert torch.allclose(shift - shift.mean(), log_w - log_w.mean(), atol=0.03), (shift, log_w)
    # softmax ignores a constant added to every class: compare the slopes centred too
    centred = [(m.weight - m.weight.mean()).detach() for m in (weighted, plain)]
    assert torch.allclose(*centred, atol=0.03), centred
    grid = torch.linspace(-4, 7, 2001, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        ref = plain(grid).argmax(1)
        raw = weighted(grid).argmax(1)
        adjusted = (weighted(grid) - log_w).argmax(1)
    assert (raw != ref).float().mean() > 0.05  # the weighted head over-predicts the rare classes
    assert (adjusted != ref).float().mean() < 0.005


def test_logits_become_the_originals_minus_tau_log_w_and_nothing_else_changes(tmp_path):
    weights = _weights(1)
    src = _ckpt(tmp_path / "cb.safetensors", 1, weights, semseg_temperature="0.9", step="800")
    x = torch.randn(2, 3, 64, 128)
    before = _outputs(src, x)
    for tau in (1.0, 0.5):
        out = tmp_path / f"la_{tau}.safetensors"
        summary = adjust_checkpoint(src, out, tau=tau)
        after = _outputs(out, x)
        shift = torch.tensor(np.log(weights), dtype=torch.float32).view(1, -1, 1, 1) * tau
        torch.testing.assert_close(after["semseg"], before["semseg"] - shift, rtol=0, atol=1e-5)
        assert torch.equal(after["depth"], before["depth"])
        meta = _meta(out)
        record = json.loads(meta["logit_adjustment"])
        assert record["tau"] == tau and record["weights_from"] == [str(src)]
        assert record["subtracted"]["semseg"] == pytest.approx(list(tau * np.log(weights)), abs=1e-6)
        assert "semseg_temperature" not in meta and summary["dropped_metadata"] == ["semseg_temperature"]
        assert meta["step"] == "800" and "class_balance" in meta  # provenance kept
        with pytest.raises(CheckpointError, match="already logit-adjusted"):
            adjust_checkpoint(out, tmp_path / "twice.safetensors")


def test_weights_from_run_configs_and_from_a_soup_give_the_same_shift(tmp_path):
    """Two class-balanced runs and one plain run: `average` records the geometric mean of their weights
    (1 for the plain run), and adjusting the soup from that record equals adjusting it from the runs'
    config.json files (the plain run's config records no class balance: log w = 0)."""
    wa, wb = _weights(2), _weights(3)
    a = _ckpt(tmp_path / "a" / "model.safetensors", 2, wa)
    b = _ckpt(tmp_path / "b" / "model.safetensors", 3, wb)
    c = _ckpt(tmp_path / "c" / "model.safetensors", 4, None)
    for run, w in (("a", wa), ("b", wb)):
        rec = {"semseg": {"frequency": [0.05] * CLASSES, "weights": w}}
        (tmp_path / run / "config.json").write_text(json.dumps({"train": {}, "class_balance": rec}))
    assert np.allclose(read_class_weights(tmp_path / "a")["semseg"], wa)
    assert np.allclose(read_class_weights(a)["semseg"], wa)
    soup = tmp_path / "soup.safetensors"
    average_checkpoints([a, b, c], soup)
    combined = json.loads(_meta(soup)["class_balance"])["semseg"]["weights"]
    expected = np.exp((np.log(wa) + np.log(wb)) / 3)
    assert np.allclose(combined, expected, rtol=1e-5)
    assert not np.allclose(combined, np.exp((np.log(wa) + np.log(wb)) / 2), rtol=1e-3)

    x = torch.randn(1, 3, 64, 128)
    from_meta = tmp_path / "la_meta.safetensors"
    adjust_checkpoint(soup, from_meta)
    (tmp_path / "c" / "config.json").write_text(json.dumps({"train": {}, "class_balance": None}))
    with pytest.raises(CheckpointError, match="not class-balanced"):
        read_class_weights(tmp_path / "c")
    from_runs = tmp_path / "la_runs.safetensors"
    two = tmp_path / "soup2.safetensors"
    average_checkpoints([a, b], two)
    adjust_checkpoint(two, from_runs, weights_from=[tmp_path / "a", tmp_path / "b" / "config.json"])
    # the two-run soup adjusted from the runs' files, against its own metadata record
    torch.testing.assert_close(
        _outputs(from_runs, x)["semseg"],
        _outputs(two, x)["semseg"] - torch.tensor((np.log(wa) + np.log(wb)) / 2, dtype=torch.float32).view(1, -1, 1, 1),
        rtol=0,
        atol=1e-5,
    )
    torch.testing.assert_close(
        _outputs(from_meta, x)["semseg"],
        _outputs(soup, x)["semseg"] - torch.tensor(np.log(expected), dtype=torch.float32).view(1, -1, 1, 1),
        rtol=0,
        atol=1e-4,
    )
    with pytest.raises(CheckpointError, match="average the unadjusted checkpoints"):
        average_checkpoints([from_runs, a], tmp_path / "bad.safetensors")


def test_errors_name_the_input_and_the_fix(tmp_path):
    plain = _ckpt(tmp_path / "plain.safetensors", 5, None)
    with pytest.raises(CheckpointError, match="--class-weights-from"):
        adjust_checkpoint(plain, tmp_path / "x.safetensors")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"class_balance": {"semseg": {"weights": [1.0, 2.0, 3.0]}}}))
    with pytest.raises(CheckpointError, match="3 classes but heads.semseg.out.bias has"):
        adjust_checkpoint(plain, tmp_path / "x.safetensors", weights_from=[wrong])
    other_task = tmp_path / "other.json"
    other_task.write_text(json.dumps({"class_balance": {"lanes": {"weights": [1.0, 2.0]}}}))
    with pytest.raises(CheckpointError, match="no semantic task 'lanes'"):
        adjust_checkpoint(plain, tmp_path / "x.safetensors", weights_from=[other_task])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"class_balance": {"semseg": {"weights": [1.0, -2.0]}}}))
    with pytest.raises(CheckpointError, match="finite and > 0"):
        read_class_weights(bad)
    with pytest.raises(CheckpointError, match="no such file"):
        read_class_weights(tmp_path / "nowhere.json")
    with pytest.raises(ValueError, match="tau must be"):
        adjust_checkpoint(plain, tmp_path / "x.safetensors", tau=0.0, weights_from=[wrong])
    assert not (tmp_path / "x.safetensors").exists()


def test_cli_writes_a_loadable_checkpoint_and_reports_json(tmp_path):
    src = _ckpt(tmp_path / "cb.safetensors", 6, _weights(6))
    out = tmp_path / "la.safetensors"
    r = subprocess.run(
        [sys.executable, "-m", "mtl_perception.cli", "logit-adjust", str(src), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["out"] == str(out) and summary["tau"] == 1.0
    assert len(summary["subtracted"]["semseg"]) == CLASSES
    load_checkpoint(out)
