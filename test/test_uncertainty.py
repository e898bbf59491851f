"""Depth uncertainty head (Gaussian on log depth): model, loss, head-only training, coverage meter."""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import randomize_bn_, standardize_depth_head_, tiny_cnn_config, tiny_config  # noqa: E402

from mtl_perception.model import ConfigError, build_model, deploy, save_checkpoint  # noqa: E402
from mtl_perception.model.uncertainty import LOG_SIGMA_MAX, LOG_SIGMA_MIN, OUTPUT  # noqa: E402


def _with_head(cfg: dict) -> dict:
    return {**copy.deepcopy(cfg), "uncertainty": {"depth": True}}


def test_head_adds_an_output_and_leaves_depth_and_semseg_unchanged():
    torch.manual_seed(0)
    plain = build_model(tiny_cnn_config("mlore")).eval()
    model = build_model(_with_head(tiny_cnn_config("mlore"))).eval()
    info = model.load_state_dict(plain.state_dict(), strict=False)
    assert not info.unexpected_keys and all(k.startswith("uncertainty.") for k in info.missing_keys)
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        a, b = plain(x), model(x)
    assert list(b) == model.output_names == ["semseg", "depth", OUTPUT]
    assert plain.output_names == ["semseg", "depth"]
    assert torch.equal(a["semseg"], b["semseg"]) and torch.equal(a["depth"], b["depth"])
    s = b[OUTPUT]
    assert s.shape == b["depth"].shape and bool(((s >= LOG_SIGMA_MIN) & (s <= LOG_SIGMA_MAX)).all())


@pytest.mark.parametrize("make", [tiny_config, tiny_cnn_config])
def test_mlore_fold_stays_exact_with_the_head(make):
    """float64: the deploy form (MLoRE folded) equals the training form on every output, the head's too."""
    model = build_model(_with_head(make("mlore"))).double()
    randomize_bn_(model)
    model.eval()
    x = torch.randn(2, 3, 64, 128, dtype=torch.float64)
    with torch.no_grad():
        ref, out = model(x), deploy(model)(x)
    assert list(out) == list(ref)
    for k in ref:
        assert (ref[k] - out[k]).abs().max() <= 1e-10 * ref[k].abs().max(), k


def test_nll_trains_sigma_only_and_never_reaches_depth():
    from mtl_perception.train.trainer import compute_loss

    model = build_model(_with_head(tiny_config("mlore"))).train()
    x = torch.randn(2, 3, 64, 128)
    out, aux = model(x, with_aux=True)
    target = torch.full((2, 1, 64, 128), 10.0)
    target[:, :, :8] = 0  # invalid
    batch = {"image": x, "semseg": torch.zeros(2, 64, 128, dtype=torch.long), "depth": target}
    _, parts = compute_loss(model, out, aux, batch)
    assert OUTPUT in parts and math.isfinite(parts[OUTPUT])
    # the uncertainty loss alone: gradient in the head only
    from mtl_perception.model.uncertainty import gaussian_log_depth_nll

    model.zero_grad()
    gaussian_log_depth_nll(out["depth"], out[OUTPUT], target).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all(n.startswith("uncertainty.") for n in with_grad)


def test_nll_minimum_is_at_the_true_spread():
    """For log errors ~ N(0, s^2) the NLL is smallest at log sigma = log s (it is a proper score)."""
    from mtl_perception.model.uncertainty import gaussian_log_depth_nll

    g = torch.Generator().manual_seed(0)
    pred = torch.full((1, 1, 200, 200), 20.0)
    target = pred * torch.exp(0.2 * torch.randn(pred.shape, generator=g))
    grid = torch.linspace(math.log(0.05), math.log(0.8), 61)
    nll = [float(gaussian_log_depth_nll(pred, torch.full_like(pred, float(s)), target)) for s in grid]
    assert abs(math.exp(float(grid[int(np.argmin(nll))])) - 0.2) < 0.01


def test_config_validation():
    with pytest.raises(ConfigError, match="uncertainty key"):
        build_model({**tiny_config("baseline"), "uncertainty": {"depht": True}})
    with pytest.raises(ConfigError, match="uncertainty.depth"):
        build_model({**tiny_config("baseline"), "uncertainty": {"depth": "yes"}})
    cfg = tiny_config("baseline")
    cfg["tasks"] = {"semseg": {"num_classes": 19}}
    with pytest.raises(ConfigError, match="needs a depth task"):
        build_model({**cfg, "uncertainty": {"depth": True}})
    # absent (every checkpoint before it): no head, config unchanged
    model = build_model(tiny_config("baseline"))
    assert "uncertainty" not in model.config and model.uncertainty_task is None


def _train_frozen(tmp_path: Path, ckpt: Path, train_only: list[str], **extra) -> tuple[dict, dict]:
    """Three real trainer steps from ``ckpt`` (its own config, every tensor copied) with only
    ``train_only`` trained; ``extra`` adds recipe keys. Returns (the loaded recipe, the run summary)."""
    from ddp_worker import StripesDataset, identity

    from mtl_perception.train import Trainer, load_train_config

    cfg = load_train_config(
        {
            "model": str(ckpt),
            "init_from": str(ckpt),
            "freeze": {"train_only": train_only},
            "data": {"train": {"type": "memory"}, "num_workers": 0},
            "steps": 3,
            "batch_size": 2,
            "optim": {"lr": 1e-2},
            "schedule": {"type": "constant", "warmup_steps": 0},
            "log_every": 1,
            **extra,
        }
    )
    trainer = Trainer(cfg, tmp_path / "run", StripesDataset(8), identity, device="cpu")
    try:
        return cfg, trainer.train(progress=False)
    finally:
        trainer.close()


def test_head_only_training_keeps_every_other_output_bit_identical(tmp_path):
    """The uncertainty_head recipe's mechanics: the checkpoint's own config + the head, every tensor
    copied, only the head trained (rest frozen in eval mode, BatchNorm statistics included)."""
    from mtl_perception.model import load_checkpoint

    torch.manual_seed(0)
    donor = build_model(tiny_cnn_config("mlore"))
    randomize_bn_(donor)
    ckpt = save_checkpoint(
        donor, tmp_path / "donor.safetensors", {"semseg_temperature": "1.7", "step": "42"}, dtype=torch.float16
    )
    cfg, summary = _train_frozen(
        tmp_path,
        ckpt,
        ["uncertainty"],
        model_overrides={"uncertainty": {"depth": True}},
        checkpoint_every=2,
        save_dtype="float16",
    )
    assert cfg["model"]["uncertainty"]["depth"] is True
    assert summary["freeze"]["train_only"] == ["uncertainty"]
    old, new = load_checkpoint(ckpt), load_checkpoint(tmp_path / "run" / "model.safetensors")
    before, after = old.state_dict(), new.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # weights, BN statistics, counters
    head = [k for k in after if k.startswith("uncertainty.")]
    assert head and not all(k in before for k in head)
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        a, b = old(x), new(x)
    assert torch.equal(a["semseg"], b["semseg"]) and torch.equal(a["depth"], b["depth"]) and OUTPUT in b
    # metadata of the unchanged outputs travels (the calibrated temperature), with provenance
    meta = new.checkpoint_metadata
    assert meta["semseg_temperature"] == "1.7" and meta["base_step"] == "42" and meta["step"] == "3"
    log = (tmp_path / "run" / "train_log.csv").read_text()
    assert OUTPUT in log


def test_depth_only_round_keeps_semantics_bit_identical(tmp_path):
    """``freeze.train_only: ["*.depth"]`` (the shipped model's step 14, docs/sim2real.md section 49): the
    glob names every task-specific depth module (decoder levels, fusion, skip, head) and nothing the
    semantic output reads, so a round of training changes depth and leaves semseg bit-identical."""
    from mtl_perception.model import load_checkpoint
    from mtl_perception.train.trainer import expand_train_only

    torch.manual_seed(0)
    donor = build_model(tiny_cnn_config("mlore"))
    randomize_bn_(donor)
    names = expand_train_only(donor, ["*.depth"])
    assert "heads.depth" in names and any(n.startswith("decoder.") for n in names)
    assert all(n.endswith(".depth") for n in names)
    assert not any(a != b and a.startswith(b + ".") for a in names for b in names)  # outermost matches only
    with pytest.raises(ValueError, match=r"\*\.lidar"):
        expand_train_only(donor, ["*.lidar"])
    ckpt = save_checkpoint(donor, tmp_path / "donor.safetensors")
    _, summary = _train_frozen(tmp_path, ckpt, ["*.depth"])
    assert summary["freeze"]["modules"] == len(names)
    old, new = load_checkpoint(ckpt), load_checkpoint(tmp_path / "run" / "model.safetensors")
    before, after = old.state_dict(), new.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(any(k.startswith(n + ".") for n in names) for k in changed)
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        a, b = old(x), new(x)
    assert torch.equal(a["semseg"], b["semseg"]) and not torch.equal(a["depth"], b["depth"])


def test_freeze_refuses_frozen_tensors_missing_from_init_from(tmp_path):
    from ddp_worker import StripesDataset, identity

    from mtl_perception.train import Trainer, load_train_config

    donor = build_model(tiny_config("baseline"))
    ckpt = save_checkpoint(donor, tmp_path / "baseline.safetensors")
    cfg = load_train_config(
        {
            "model": _with_head(tiny_config("mlore")),  # another decoder: its tensors are not in init_from
            "init_from": str(ckpt),
            "freeze": {"train_only": ["uncertainty"]},
            "data": {"train": {"type": "memory"}, "num_workers": 0},
            "steps": 1,
            "batch_size": 2,
        }
    )
    with pytest.raises(ValueError, match="frozen tensors are not in init_from"):
        Trainer(cfg, tmp_path / "run", StripesDataset(4), identity, device="cpu")
    with pytest.raises(ConfigError, match="freeze must be"):
        load_train_config({"freeze": {"train_only": []}})


def test_recipe_loads_the_shipped_checkpoint_config():
    from mtl_perception.deploy.artifacts import DEFAULT_CHECKPOINT
    from mtl_perception.train import load_train_config

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("shipped model missing")
    root = Path(__file__).resolve().parents[1]
    cfg = load_train_config(root / "config" / "train" / "uncertainty_head.yaml")
    assert cfg["model"]["uncertainty"]["depth"] is True and cfg["freeze"] == {"train_only": ["uncertainty"]}
    assert Path(cfg["init_from"]) == DEFAULT_CHECKPOINT.resolve()


# ----------------------------------------------------------------------------- deploy, pipeline, eval
@pytest.fixture(scope="module")
def ckpt_unc(tmp_path_factory):
    """A tiny shipped-style model (Lite0 + MLoRE, letterbox, canonical depth) with the head; the
    head's logits spread so sigma varies over the image (a random head is near-constant)."""
    torch.manual_seed(0)
    model = build_model(_with_head(tiny_cnn_config("mlore")))
    randomize_bn_(model)
    with torch.no_grad():
        model.uncertainty.out.weight.mul_(30.0)
    return save_checkpoint(model, tmp_path_factory.mktemp("u") / "unc.safetensors")


def _frames():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 255, (90, 200, 3), dtype=np.uint8), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)]


def test_uncertainty_in_metres_exact_inverse_and_nan_where_depth_is():
    from mtl_perception.deploy.uncertainty import log_sigma_from_uncertainty, uncertainty_from_log_sigma

    d = np.array([[1.0, 10.0, np.nan], [50.0, 2.0, 0.5]], np.float32)
    ls = np.log(np.array([[0.1, 0.3, 0.2], [1.0, 0.05, 2.0]], np.float32))
    u = uncertainty_from_log_sigma(d, ls)
    assert u.dtype == np.float32 and np.isnan(u[0, 2]) and np.isfinite(u[~np.isnan(d)]).all()
    np.testing.assert_allclose(u[0, 1], 10 * np.sinh(0.3), rtol=1e-5)
    np.testing.assert_allclose(log_sigma_from_uncertainty(d, u)[~np.isnan(d)], np.exp(ls)[~np.isnan(d)], rtol=1e-4)


def test_onnx_has_the_output_and_backends_agree(ckpt_unc, tmp_path):
    """torch fp32 vs ONNX Runtime fp32 (close) and int8 (runs, bounded); metadata names the output."""
    from mtl_perception.deploy.artifacts import onnx_artifact
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.deploy.export import read_metadata

    frames = _frames()
    ref = InferenceEngine.create(ckpt_unc, backend="torch", precision="fp32", device="cpu", threads=1).infer(frames)
    assert OUTPUT in ref and ref[OUTPUT].shape == ref["depth"].shape
    ort = InferenceEngine.create(ckpt_unc, backend="onnxruntime", precision="fp32", cache_dir=tmp_path, threads=1)
    out = ort.infer(frames)
    names = [o.name for o in ort.backend.session.get_outputs()]
    assert names == ["semseg", "depth", OUTPUT, "semseg_labels", "semseg_confidence"]
    np.testing.assert_allclose(out[OUTPUT], ref[OUTPUT], atol=1e-4)
    np.testing.assert_allclose(out["depth"], ref["depth"], rtol=1e-4)
    path = onnx_artifact(ckpt_unc, "fp32", (64, 128), tmp_path)
    assert OUTPUT in json.loads(read_metadata(path)["outputs"])
    dyn = InferenceEngine.create(
        ckpt_unc, backend="onnxruntime", precision="fp32", cache_dir=tmp_path, threads=1, max_batch=2
    )
    np.testing.assert_allclose(dyn.infer(frames)[OUTPUT], ref[OUTPUT], atol=1e-4)
    q = InferenceEngine.create(
        ckpt_unc, backend="onnxruntime", precision="int8", cache_dir=tmp_path, threads=1, calibration=frames
    ).infer(frames)
    assert q[OUTPUT].shape == ref[OUTPUT].shape and float(np.abs(q[OUTPUT] - ref[OUTPUT]).mean()) < 0.5


def test_pipeline_uncertainty_on_request_resized_like_depth(ckpt_unc):
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.deploy.uncertainty import log_sigma_from_uncertainty
    from mtl_perception.pipeline import FramePipeline

    eng = InferenceEngine.create(ckpt_unc, backend="torch", precision="fp32", device="cpu", threads=1)
    pipe = FramePipeline(eng)
    assert pipe.has_depth_uncertainty
    frame = _frames()[0]
    K = np.array([[150.0, 0, 100], [0, 150.0, 45], [0, 0, 1]])
    assert pipe.process(frame, K).depth_uncertainty is None  # not asked: not built
    res = pipe.process(frame, K, depth_uncertainty=True)
    u, d = res.depth_uncertainty, res.depth
    assert u.shape == d.shape == frame.shape[:2] and u.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(u), np.isnan(d))
    s = log_sigma_from_uncertainty(d, u)
    ok = np.isfinite(s)
    assert ok.any() and s[ok].min() >= 0.0099 and s[ok].max() <= 3.001 and s[ok].std() > 0
    # network resolution and a batch give the same products
    net = FramePipeline(eng, output_resolution="network", depth_uncertainty=True).process(frame, K)
    assert net.depth_uncertainty.shape == net.depth.shape
    batch = FramePipeline(eng, depth_uncertainty=True).process_batch([frame, frame], [K, K])
    np.testing.assert_allclose(batch[1].depth_uncertainty, u, rtol=1e-5)  # batch-2 conv rounding
    # a model without the head: asked for, still None
    plain = save_checkpoint(
        build_model(tiny_cnn_config("mlore")), Path(eng.info.extra["checkpoint"]).parent / "p.safetensors"
    )
    p2 = FramePipeline(InferenceEngine.create(plain, backend="torch", device="cpu", threads=1))
    assert not p2.has_depth_uncertainty and p2.process(frame, depth_uncertainty=True).depth_uncertainty is None


def test_coverage_meter_ideal_gaussian_and_exact_merge():
    from mtl_perception.deploy.uncertainty import uncertainty_from_log_sigma
    from mtl_perception.evaluate.uncertainty import CoverageMeter

    rng = np.random.default_rng(0)
    d = rng.uniform(2, 60, (400, 500)).astype(np.float32)
    s = rng.uniform(0.05, 0.5, d.shape).astype(np.float32)
    gt = d * np.exp(s * rng.standard_normal(d.shape))  # truly distributed as predicted
    u = uncertainty_from_log_sigma(d, np.log(s))
    whole = CoverageMeter(max_depth=200)
    whole.update(d, u, gt)
    cov = whole.compute()
    assert abs(cov["within_1sigma"] - 0.6827) < 0.005 and abs(cov["within_2sigma"] - 0.9545) < 0.005
    assert abs(cov["mean_sigma_log"] - float(s.mean())) < 1e-3
    a, b = CoverageMeter(max_depth=200), CoverageMeter(max_depth=200)
    a.update(d[:150], u[:150], gt[:150])
    b.update(d[150:], u[150:], gt[150:])
    assert a.merge(b.state()).compute()["within_1sigma"] == pytest.approx(cov["within_1sigma"], abs=1e-12)
    # too narrow a sigma under-covers
    narrow = CoverageMeter(max_depth=200)
    narrow.update(d, uncertainty_from_log_sigma(d, np.log(s / 2)), gt)
    assert narrow.compute()["within_1sigma"] < 0.45


def test_eval_runner_reports_coverage(ckpt_unc):
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.evaluate.runner import evaluate_engine

    eng = InferenceEngine.create(ckpt_unc, backend="torch", precision="fp32", device="cpu", threads=1)
    rng = np.random.default_rng(1)
    samples = [
        {
            "image": rng.integers(0, 255, (64, 128, 3), dtype=np.uint8),
            "semseg": rng.integers(0, 19, (64, 128)).astype(np.uint8),
            "depth": rng.uniform(1, 50, (64, 128)).astype(np.float32),
            "K": None,
        }
        for _ in range(2)
    ]
    res, _ = evaluate_engine(eng, samples, max_depth=80.0)
    cov = res["depth_uncertainty"]
    assert cov["n_valid"] == 2 * 64 * 128 and 0 <= cov["within_1sigma"] <= cov["within_2sigma"] <= 1


def test_pipeline_uncertainty_is_nan_exactly_where_depth_is(ckpt_unc):
    """Invalid network depth (NaN) on the grid: after the resize to the frame, uncertainty and depth
    are NaN at the same pixels (the same NaN-aware resize of the same validity)."""
    from mtl_perception.deploy.engine import InferenceEngine
    from mtl_perception.pipeline import FramePipeline

    eng = InferenceEngine.create(ckpt_unc, backend="torch", precision="fp32", device="cpu", threads=1)
    run = eng.backend.run

    def with_holes(x):
        out = run(x)
        out["depth"][:, :, 10:30, 20:70] = np.nan
        out["depth"][:, :, 40, :] = np.nan
        return out

    eng.backend.run = with_holes
    for resolution in ("input", "network"):
        res = FramePipeline(eng, resolution, depth_uncertainty=True).process(_frames()[1])
        assert np.isnan(res.depth).any() and not np.isnan(res.depth).all()
        np.testing.assert_array_equal(np.isnan(res.depth_uncertainty), np.isnan(res.depth))


def test_replay_eval_and_eval_report_the_same_coverage_and_fleet_merges_it(tmp_path, capsys):
    """The same rendered frames as a bag (replay-eval, the node's path) and as a dataset (eval): the
    same coverage up to the dataset's uint16 depth storage; the fleet state carries the sums exactly."""
    from mtl_perception.cli import main
    from mtl_perception.data.synthetic_io import derive_seed, write_bag, write_dataset
    from mtl_perception.evaluate import fleet
    from mtl_perception.evaluate.replay import ReplayAccumulator

    torch.manual_seed(0)
    model = build_model(_with_head(tiny_config("mlore")))
    standardize_depth_head_(model, torch.randn(1, 3, 64, 128))
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    seed, n = 11, 3
    write_dataset(tmp_path / "ds", seed, n, 64, 128, sequence_length=n)
    write_bag(tmp_path / "bag", derive_seed(seed, 0), n, 64, 128)
    args = ["--checkpoint", str(ckpt), "--backend", "torch", "--json"]
    assert main(["replay-eval", "--bag", str(tmp_path / "bag"), "--no-progress", *args]) == 0
    replay = json.loads(capsys.readouterr()[0])
    assert main(["eval", "--data", str(tmp_path / "ds"), *args]) == 0
    offline = json.loads(capsys.readouterr()[0])
    a, b = replay["depth_uncertainty"], offline["depth_uncertainty"]
    assert a["n_valid"] > 0 and abs(a["n_valid"] - b["n_valid"]) <= 0.01 * b["n_valid"]
    for k in ("within_1sigma", "within_2sigma", "mean_sigma_log"):
        assert a[k] == pytest.approx(b[k], abs=0.01), k
    # fleet: state -> merge -> accumulator gives the same coverage, exactly
    acc = ReplayAccumulator(["a", "b"], max_depth=80.0)
    rng = np.random.default_rng(0)
    d = rng.uniform(1, 50, (20, 30))
    acc.add(np.zeros((20, 30), np.uint8), d, gt_depth=d * 1.1, depth_uncertainty=d * 0.1)
    state = fleet.accumulator_state(acc)
    merged = fleet.accumulator_from_state(fleet.merge_states([state, state]))
    twice = acc.cov.compute()
    got = merged.results()["depth_uncertainty"]
    assert got["n_valid"] == 2 * twice["n_valid"] and got["within_1sigma"] == twice["within_1sigma"]
