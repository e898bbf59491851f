"""Model library: shapes, MLoRE mechanics, deploy-form equivalence, checkpoints, config errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_models import ROOT, randomize_bn_, standardize_depth_head_, tiny_config

from mtl_perception.model import (
    CheckpointError,
    ConfigError,
    build_model,
    deploy,
    list_decoders,
    load_checkpoint,
    save_checkpoint,
)
from mtl_perception.model.backbone import default_taps
from mtl_perception.model.decoders.mlore import MLoReModule, spread_ranks, topk_gates

torch.set_num_threads(2)

VARIANTS = ["baseline", "moe", "mlore", "taskexpert", "meco"]


def _tiny(decoder="mlore", **kw):
    torch.manual_seed(0)
    return build_model(tiny_config(decoder, **kw))


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("decoder", VARIANTS)
def test_every_variant_builds_and_outputs_input_resolution(decoder):
    if decoder not in list_decoders():
        pytest.fail(f"decoder {decoder!r} is not registered")
    model = _tiny(decoder).eval()
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        out = model(x)
    assert set(out) == {"semseg", "depth"}
    assert out["semseg"].shape == (2, 19, 64, 128)
    assert out["depth"].shape == (2, 1, 64, 128)
    d = out["depth"]
    assert torch.isfinite(d).all() and (d >= 0.1 - 1e-6).all() and (d <= 120.0 + 1e-4).all()


@pytest.mark.parametrize("decoder", VARIANTS)
def test_shipped_configs_are_valid(decoder):
    from mtl_perception.model import load_config, resolve_decoder_config

    cfg = load_config(ROOT / "config" / "models" / f"{decoder}.yaml")
    assert cfg["decoder"]["type"] == decoder
    resolve_decoder_config(cfg["decoder"])


def test_backbone_taps_and_feature_grid():
    assert default_taps(12) == [3, 6, 9, 12]
    assert default_taps(24) == [6, 12, 18, 24]
    model = _tiny("baseline")
    assert model.backbone.taps == [1, 2, 3, 4]
    feats = model.backbone(torch.randn(1, 3, 64, 128))
    assert [tuple(f.shape) for f in feats] == [(1, 64, 4, 8)] * 4
    # dynamic image size: another multiple of 16 works
    feats = model.backbone(torch.randn(1, 3, 96, 160))
    assert feats[0].shape[-2:] == (6, 10)


def test_other_input_size_runs_and_keeps_resolution():
    model = _tiny("mlore").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 160))
    assert out["semseg"].shape[-2:] == (96, 160)


# ----------------------------------------------------------------------------- MLoRE mechanics
def test_spread_ranks_reproduces_official_vit_s_list():
    assert spread_ranks(15, 8, 64) == list(range(8, 65, 4))


@pytest.mark.parametrize("norm", ["renorm", "softmax"])
def test_topk_keeps_exactly_k(norm):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 15, generator=g)
    gates = topk_gates(logits, 9, norm)
    assert ((gates > 0).sum(dim=1) == 9).all()
    kept = gates > 0
    expected = torch.zeros_like(kept).scatter(1, logits.argsort(dim=1, descending=True)[:, :9], True)
    assert torch.equal(kept, expected)
    sums = gates.sum(dim=1)
    if norm == "renorm":
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6)
        masked = torch.softmax(logits.masked_fill(~kept, -1e10), dim=1)  # the official formulation
        assert torch.allclose(gates, masked, atol=1e-6)
    else:
        assert (sums < 1).all()
        assert torch.allclose(gates[kept], torch.softmax(logits, 1)[kept])


def test_module_routes_top_k_per_image_and_noise_only_in_training():
    torch.manual_seed(0)
    m = MLoReModule(
        16, ["a"], [2, 3, 4, 5, 6], top_k=3, specific_rank=4, gate_norm="renorm", noisy_gating=True, grid=(4, 8)
    )
    x = torch.randn(4, 16, 4, 8)
    m.eval()
    g1, g2 = m(x, "a")[1], m(x, "a")[1]
    assert torch.equal(g1, g2)
    assert ((g1 > 0).sum(1) == 3).all() and g1.shape == (4, 5)
    m.train()
    torch.manual_seed(1)
    gt = m(x, "a")[1]
    assert not torch.equal(gt, g1)  # noisy top-k perturbs gates in training


def test_generic_path_learns_but_passes_no_gradient():
    """The generic 3x3 conv is fed u.detach(): its weights get gradients, its input none."""
    torch.manual_seed(0)
    m = MLoReModule(
        8, ["a"], [2, 4], top_k=1, specific_rank=2, gate_norm="renorm", noisy_gating=False, grid=(4, 4)
    ).eval()
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    # Control: with experts active, the input receives gradient.
    m(x, "a")[0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # Silence every non-generic path: the output then depends on x only via generic(u.detach()).
    with torch.no_grad():
        m.expert_up.zero_()
        m.expert_up_bias.zero_()
        m.specific["a"][1].weight.zero_()
        m.specific["a"][1].bias.zero_()
    x.grad = None
    m.zero_grad()
    m(x, "a")[0].sum().backward()
    assert m.generic.weight.grad is not None and m.generic.weight.grad.abs().sum() > 0
    assert x.grad is None or torch.count_nonzero(x.grad) == 0


def test_router_position_weights_resize_preserves_mass():
    m = MLoReModule(8, ["a"], [2, 4], top_k=1, specific_rank=2, gate_norm="renorm", noisy_gating=False, grid=(4, 8))
    r = m.router["a"]
    assert r.position_weights(4, 8) is r.pos_weight
    w = r.position_weights(8, 16)
    assert w.shape == (128,)
    assert math.isclose(float(w.sum()), float(r.pos_weight.sum()), rel_tol=1e-4, abs_tol=1e-5)


def test_load_balance_loss_in_training_only():
    model = _tiny("mlore")
    x = torch.randn(2, 3, 64, 128)
    model.train()
    _, aux = model.forward_with_aux(x)
    assert set(aux) == {"load_balance"} and aux["load_balance"].requires_grad
    assert float(aux["load_balance"]) >= 0
    model.eval()
    with torch.no_grad():
        assert model.forward_with_aux(x)[1] == {}


# ----------------------------------------------------------------------------- deploy form
def _max_rel_err(a: dict, b: dict) -> dict:
    return {k: float((a[k] - b[k]).abs().max() / a[k].std()) for k in a}


@pytest.mark.parametrize("norm", ["renorm", "softmax"])
@pytest.mark.parametrize("conv", ["grouped", "unfold"])
def test_mlore_deploy_matches_training_form_fp32(norm, conv):
    """Acceptance bound: max |deploy - train| <= 1e-4 * std(output), fp32, random weights."""
    model = _tiny("mlore", gate_norm=norm, folded_conv=conv)
    randomize_bn_(model)
    x = torch.randn(3, 3, 64, 128)
    standardize_depth_head_(model, x)  # depth spanning metres, not a near-constant map
    with torch.no_grad():
        ref = model(x)
        fast = deploy(model)
        out = fast(x)
    assert fast.deployed and not hasattr(fast.decoder.levels[0][0], "expert_down")
    errs = _max_rel_err(ref, out)
    assert all(e <= 1e-4 for e in errs.values()), errs
    # The gates actually differ between images (otherwise per-image folding is untested).
    u = torch.randn(3, 32, 4, 8)
    g = fast.decoder.levels[0][0].route(u, "semseg")[0]
    assert not torch.allclose(g[0], g[1])


def test_mlore_fold_is_exact_in_float64():
    model = _tiny("mlore").double()
    randomize_bn_(model)
    model.eval()
    x = torch.randn(2, 3, 64, 128, dtype=torch.float64)
    with torch.no_grad():
        ref, out = model(x), deploy(model)(x)
    for k in ref:
        assert (ref[k] - out[k]).abs().max() <= 1e-10 * ref[k].abs().max()


def test_deploy_does_not_modify_input_model_and_folds_one_conv_per_task():
    model = _tiny("mlore").eval()
    n_before = sum(p.numel() for p in model.parameters())
    fast = deploy(model)
    assert sum(p.numel() for p in model.parameters()) == n_before
    module = fast.decoder.levels[0][0]
    # one dense 3x3 kernel bank (N x C*C*9) + one specific kernel per task, no low-rank paths
    assert module.kernel_bank.shape == (len(module.ranks), 32 * 32 * 9)
    assert set(module.specific_kernel) == {"semseg", "depth"}


def test_mlore_deploy_exports_to_onnx_and_runs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = deploy(_tiny("mlore").eval())
    x = torch.randn(1, 3, 64, 128)
    path = tmp_path / "m.onnx"
    torch.onnx.export(
        model, (x,), str(path), input_names=["image"], output_names=["semseg", "depth"], opset_version=17, dynamo=False
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sem, dep = sess.run(None, {"image": x.numpy()})
    with torch.no_grad():
        ref = model(x)
    assert np.abs(sem - ref["semseg"].numpy()).max() <= 1e-3
    assert np.abs(dep - ref["depth"].numpy()).max() <= 1e-3


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    model = _tiny("mlore")
    randomize_bn_(model)
    model.eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", extra_metadata={"step": 7})
    loaded = load_checkpoint(path)
    assert loaded.checkpoint_metadata["step"] == "7"
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in a:
        assert torch.equal(a[k], b[k])
    # fp16 storage: smaller, numerically close
    p16 = save_checkpoint(model, tmp_path / "m16.safetensors", dtype=torch.float16)
    assert p16.stat().st_size < 0.6 * path.stat().st_size
    with torch.no_grad():
        c = load_checkpoint(p16)(x)
    assert (c["semseg"].argmax(1) == a["semseg"].argmax(1)).float().mean() > 0.95


def test_checkpoint_config_mismatch_is_clear(tmp_path):
    path = save_checkpoint(_tiny("mlore"), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="decoder.top_k"):
        load_checkpoint(path, config=tiny_config("mlore", top_k=3))
    load_checkpoint(path, config=tiny_config("mlore"))  # the matching config is accepted


def test_checkpoint_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointError, match="not an mtl_perception checkpoint"):
        load_checkpoint(other)


# ----------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["decoder"].update(type="nope"), "unknown decoder.type 'nope'"),
        (lambda c: c["decoder"].update(bogus=1), r"unknown key\(s\) \['bogus'\] for decoder 'mlore'"),
        (lambda c: c["decoder"].update(num_experts="many"), "decoder.num_experts for 'mlore' must be int"),
        (lambda c: c["decoder"].update(top_k=99), "top_k must be in 1..num_experts"),
        (lambda c: c["decoder"].update(gate_norm="max"), "gate_norm must be one of"),
        (lambda c: c.update(input_size=[65, 128]), "multiples of 16"),
        (lambda c: c["tasks"].update(normals={}), "unknown task type 'normals'"),
        (lambda c: c.update(colour="red"), r"unknown top-level config key\(s\) \['colour'\]"),
        (lambda c: c["backbone"].update(taps=[1, 2]), "backbone.taps must be 4 block numbers"),
        (lambda c: c["backbone"].update(name="not_a_timm_model"), "cannot build CNN backbone"),
        (lambda c: c["backbone"].update(pretrained_path="/nonexistent/w.safetensors"), "does not exist"),
    ],
)
def test_bad_configs_give_clear_errors(mutate, message):
    cfg = tiny_config("mlore")
    mutate(cfg)
    with pytest.raises(ConfigError, match=message):
        build_model(cfg)


def test_input_size_multiple_follows_the_backbone():
    """ViT: multiples of its 16-px patch; CNN: of its stride 32 (272x512 misaligns the decoder's
    grids: a shape error deep in the forward pass before this check existed in export / model-info)."""
    from mtl_perception.model.config import check_input_size, input_multiple, load_config

    vit, cnn = tiny_config("mlore"), load_config("config/models/mlore_lite0.yaml")
    assert input_multiple(vit) == 16 and input_multiple(cnn) == 32
    assert check_input_size(vit, 272, 512) is None and check_input_size(cnn, 256, 512) is None
    msg = check_input_size(cnn, 272, 512)
    assert "multiples of 32" in msg and "stride" in msg and "272x512" in msg and "e.g. 256x512" in msg
    assert "multiples of 16" in check_input_size(vit, 70, 512)
    assert check_input_size(cnn, 0, 512) is not None


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_model(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("decoder: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_model(bad)


def test_pretrained_weights_load_from_local_file(tmp_path):
    from safetensors.torch import save_file

    donor = _tiny("baseline")
    state = {k: v.clone() + 1.0 for k, v in donor.backbone.vit.state_dict().items()}
    path = tmp_path / "vit.safetensors"
    save_file(state, str(path))
    cfg = tiny_config("baseline")
    cfg["backbone"]["pretrained_path"] = str(path)
    model = build_model(cfg)
    assert torch.equal(model.backbone.vit.patch_embed.proj.weight, state["patch_embed.proj.weight"])


def test_checkpoint_keeps_task_order(tmp_path):
    """Task order defines parameter order (optimizer state on resume) and output order."""
    model = _tiny("baseline")
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "m.safetensors"))
    assert list(loaded.task_specs) == list(model.task_specs) == ["semseg", "depth"]
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_deploy_with_bn_fusion_is_equivalent():
    model = _tiny("baseline")
    randomize_bn_(model)
    x = torch.randn(2, 3, 64, 128)
    standardize_depth_head_(model, x)
    with torch.no_grad():
        ref, out = model(x), deploy(model, fuse_bn=True)(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy(model, fuse_bn=True).heads.modules())
    for k in ref:
        assert float((ref[k] - out[k]).abs().max() / ref[k].std()) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["renorm", "softmax"])
def test_mlore_deploy_equivalence_at_shipped_size(norm):
    """The acceptance bound on the shipped ViT-S / C=192 / 256x512 MLoRE config."""
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "models" / "mlore.yaml").read_text())
    cfg["decoder"]["gate_norm"] = norm
    torch.manual_seed(0)
    model = build_model(cfg)
    randomize_bn_(model)
    x = torch.randn(1, 3, 256, 512)
    standardize_depth_head_(model, x)
    with torch.no_grad():
        ref, out = model(x), deploy(model)(x)
    errs = _max_rel_err(ref, out)
    assert all(e <= 1e-4 for e in errs.values()), errs
