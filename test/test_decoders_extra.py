"""More checks of the moe, taskexpert and meco decoders (tiny configs, CPU, < 40 s).

Complements test_decoders.py: shapes and aux-loss keys, top-k in every MoE module and the
load-balance value, TaskExpert gates/memory in training, VQ losses and EMA/dead-code updates
against hand computations, straight-through gradients, usage statistics, eval purity, and
deploy equivalence at batch 1 / for the loss-trained codebook.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from tiny_models import randomize_bn_, tiny_config

from mtl_perception.model import build_model, deploy
from mtl_perception.model.decoders.meco import VectorQuantizer
from mtl_perception.model.decoders.mlore import cv_squared
from mtl_perception.model.decoders.moe import MoEModule

torch.set_num_threads(2)

X = (2, 3, 64, 128)  # tiny input; the 1/16 grid is 4 x 8
AUX_KEYS = {"moe": {"load_balance"}, "taskexpert": set(), "meco": {"vq"}}


def _tiny(decoder, **kw):
    torch.manual_seed(0)
    return build_model(tiny_config(decoder, **kw))


@pytest.mark.parametrize("decoder", ["moe", "taskexpert", "meco"])
def test_shapes_and_aux_keys(decoder):
    model = _tiny(decoder).train()
    x = torch.randn(*X)
    feats = model.backbone(x)
    task_feats, aux = model.decoder(feats)
    assert set(task_feats) == {"semseg", "depth"}
    assert all(f.shape == (2, 32, 4, 8) for f in task_feats.values())
    assert set(aux) == AUX_KEYS[decoder] and all(v.ndim == 0 and torch.isfinite(v) for v in aux.values())
    model.eval()
    with torch.no_grad():
        out, aux = model(x, with_aux=True)
    assert aux == {}
    assert out["semseg"].shape == (2, 19, 64, 128) and out["depth"].shape == (2, 1, 64, 128)
    assert type(model.decoder).OFFICIAL is (decoder == "moe")
    doc = sys.modules[type(model.decoder).__module__].__doc__
    assert ("unofficial" in doc.lower()) is (decoder != "moe")


def test_moe_every_module_keeps_k_gates_and_load_balance_value():
    model = _tiny("moe", num_experts=6, top_k=2, load_balance_weight=0.5).train()
    seen: dict[int, list[torch.Tensor]] = {}
    for m in model.decoder.modules():
        if isinstance(m, MoEModule):
            m.register_forward_hook(lambda mod, args, out: seen.setdefault(id(mod), []).append(out[1]))
    _, aux = model.decoder(model.backbone(torch.randn(*X)))
    assert len(seen) == 4 * 2  # 4 levels x modules_per_level
    for gates_per_task in seen.values():
        assert len(gates_per_task) == 2  # one call per task
        for g in gates_per_task:
            assert g.shape == (2, 6)
            assert ((g > 0).sum(1) == 2).all()  # exactly k experts per image
            assert torch.allclose(g.sum(1), torch.ones(2), atol=1e-6)
    expected = 0.5 * sum(cv_squared(torch.cat(g)) for g in seen.values())
    assert torch.allclose(aux["load_balance"], expected, rtol=1e-5)


def test_moe_noisy_gating_only_in_training():
    model = _tiny("moe", num_experts=6, top_k=2)
    module = model.decoder.levels[0][0]
    u = torch.randn(4, 32, 4, 8)
    with torch.no_grad():
        module.router["semseg"].fc.bias[6:].fill_(3.0)  # large noise std
        module.eval()
        assert torch.equal(module.route(u, "semseg"), module.route(u, "semseg"))
        module.train()
        assert not torch.equal(module.route(u, "semseg"), module.route(u, "semseg"))


def test_taskexpert_training_gates_memory_and_final_read():
    model = _tiny("taskexpert", num_experts=3).train()
    model.decoder(model.backbone(torch.randn(*X)))
    dec = model.decoder
    for level_gates in dec.last_gates:
        for g in level_gates.values():
            assert g.shape == (2, 4, 4, 8) and (g >= 0).all()
            assert torch.allclose(g.sum(1), torch.ones(2, 4, 8), atol=1e-5)
    mems = dec.last_memories
    assert all(m.shape == (2, 32, 4, 8) and not m.requires_grad for m in mems)
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(mems[:-1], mems[1:]))
    # the memory after the last level feeds every task's output
    model.eval()
    x = torch.randn(*X)
    with torch.no_grad():
        ref = model.decoder(model.backbone(x))[0]
        for t in dec.tasks:
            dec.final_read[t].weight.zero_()
            dec.final_read[t].bias.zero_()
        cut = model.decoder(model.backbone(x))[0]
    assert all(not torch.allclose(ref[t], cut[t]) for t in dec.tasks)


# ----------------------------------------------------------------------------- vector quantisation
def _nearest_brute_force(flat, codebook):
    return ((flat[:, None, :] - codebook[None]) ** 2).sum(-1).argmin(1)  # brute force, no matmul trick


@pytest.mark.parametrize("update", ["loss", "ema"])
def test_vq_loss_matches_hand_computation(update):
    torch.manual_seed(1)
    vq = VectorQuantizer(num_codes=5, dim=3, beta=0.4, update=update, dead_code_steps=1000).train()
    codebook = vq.codebook.detach().clone()
    z = torch.randn(2, 3, 2, 3)
    q, loss, idx = vq(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    want_idx = _nearest_brute_force(flat, codebook)
    assert torch.equal(idx.flatten(), want_idx)
    sq = ((flat - codebook[want_idx]) ** 2).sum() / flat.numel()  # mean squared error
    expected = (1.0 + 0.4) * sq if update == "loss" else 0.4 * sq  # codebook + beta * commitment
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert torch.allclose(q.permute(0, 2, 3, 1).reshape(-1, 3), codebook[want_idx], atol=1e-6)


def test_vq_ema_update_matches_hand_computation():
    torch.manual_seed(2)
    k, d, decay, eps = 4, 2, 0.9, 1e-5
    vq = VectorQuantizer(num_codes=k, dim=d, update="ema", decay=decay, eps=eps, dead_code_steps=1000).train()
    init = vq.codebook.detach().clone()
    z = torch.randn(1, d, 3, 3)
    _, _, idx = vq(z)
    flat, idx = z.permute(0, 2, 3, 1).reshape(-1, d), idx.flatten()
    count = torch.stack([(idx == i).sum() for i in range(k)]).float()
    total = torch.stack([flat[idx == i].sum(0) for i in range(k)])
    ema_count = decay * torch.ones(k) + (1 - decay) * count
    ema_sum = decay * init + (1 - decay) * total
    n = ema_count.sum()
    smoothed = (ema_count + eps) / (n + k * eps) * n
    assert torch.allclose(vq.codebook.detach(), ema_sum / smoothed[:, None], atol=1e-6)
    # used codes moved toward the mean of their inputs
    for i in idx.unique().tolist():
        centre = flat[idx == i].mean(0)
        assert (vq.codebook[i] - centre).norm() < (init[i] - centre).norm()


def test_vq_dead_codes_revived_in_ema_mode():
    torch.manual_seed(3)
    vq = VectorQuantizer(num_codes=5, dim=3, update="ema", dead_code_steps=1).train()
    far = torch.tensor([[0.0, 0, 0]] + [[50.0, 50, 50]] * 4)
    vq.codebook.data.copy_(far)
    vq.ema_sum.copy_(far)
    z = torch.randn(1, 3, 4, 4) * 0.1
    vq(z)
    flat = z.permute(0, 2, 3, 1).reshape(-1, 3)
    for i in range(1, 5):  # every revived code is one of the current encoder outputs
        assert (flat - vq.codebook[i]).abs().sum(1).min() < 1e-6
        assert torch.equal(vq.ema_sum[i], vq.codebook[i]) and vq.ema_count[i] == 1.0
    assert vq.steps_unused.eq(0).all()


def test_vq_usage_stats():
    vq = VectorQuantizer(num_codes=4, dim=4, update="loss", dead_code_steps=1000).train()
    vq.codebook.data.copy_(10 * torch.eye(4))
    # each code hit exactly 3 times -> perplexity K, all used
    z = (10 * torch.eye(4)).repeat(3, 1).t().reshape(1, 4, 3, 4)
    vq(z)
    s = vq.stats()
    assert s["perplexity"] == pytest.approx(4.0, rel=1e-5) and s["used_fraction"] == 1.0
    vq.usage.zero_()
    vq(z[:, :, :, :2])  # columns 0,1 hit codes 0,1 three times each -> perplexity 2, half used
    s = vq.stats()
    assert s["perplexity"] == pytest.approx(2.0, rel=1e-5) and s["used_fraction"] == 0.5


def test_meco_straight_through_task_loss_reaches_encoders_not_codebook():
    model = _tiny("meco", codebook_update="loss").train()
    out, aux = model(torch.randn(*X), with_aux=True)
    (out["semseg"].mean() + out["depth"].mean()).backward(retain_graph=True)  # task losses only
    dec = model.decoder
    for expert in [dec.generic[1], dec.specific[2]["semseg"], dec.specific[3]["depth"]]:
        assert expert.encode.weight.grad.abs().sum() > 0  # through the quantiser (identity backward)
        cb = expert.vq.codebook.grad
        assert cb is None or not cb.any()  # codebook is trained by the codebook loss only
    model.zero_grad()
    aux["vq"].backward()
    assert dec.specific[2]["semseg"].vq.codebook.grad.abs().sum() > 0


@pytest.mark.parametrize("update", ["loss", "ema"])
def test_meco_all_trainable_params_get_gradient_and_eval_is_pure(update):
    model = _tiny("meco", codebook_update=update).train()
    out, aux = model(torch.randn(*X), with_aux=True)
    (out["semseg"].mean() + out["depth"].mean() + aux["vq"]).backward()
    params = [(n, p) for n, p in model.decoder.named_parameters() if p.requires_grad]
    assert [n for n, p in params if p.grad is None or not p.grad.any()] == []
    if update == "ema":  # EMA codebooks are updated by the quantiser, not by the optimiser
        assert all(not p.requires_grad for n, p in model.decoder.named_parameters() if n.endswith("codebook"))
    model.decoder.reset_codebook_stats()
    assert all(s["perplexity"] == 0.0 for s in model.decoder.codebook_stats().values())
    state = {k: v.clone() for k, v in model.decoder.state_dict().items()}
    model.eval()
    with torch.no_grad():
        model(torch.randn(*X))
    # eval changes no codebook, EMA or usage buffer
    assert all(torch.equal(state[k], v) for k, v in model.decoder.state_dict().items())


@pytest.mark.parametrize(
    "decoder,kw",
    [("moe", {"num_experts": 6, "top_k": 2}), ("taskexpert", {}), ("meco", {"codebook_update": "loss"})],
)
def test_deploy_matches_eval_batch1(decoder, kw):
    model = _tiny(decoder, **kw)
    randomize_bn_(model)
    with torch.no_grad():  # spread the depth output (as in test_decoders.py) so std is not tiny
        model.heads["depth"].out.weight.mul_(20.0)  # spread-out depth (see tiny_models.standardize_depth_head_)
    model.eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        ref, out = model(x), deploy(model)(x)
    for k in ref:
        err = float((ref[k] - out[k]).abs().max() / ref[k].std())
        assert err <= 1e-4, (k, err)


def test_moe_dense_mixture_equals_sparse_sum_over_kept_experts():
    """Dense compute-all-and-weight equals summing only the k selected experts (eval)."""
    model = _tiny("moe", num_experts=6, top_k=2).eval()
    module = model.decoder.levels[1][1]
    x = torch.randn(2, 32, 4, 8)
    with torch.no_grad():
        y, gates = module(x, "depth")
        u = module.task_proj["depth"](x)
        sparse = []
        for b in range(2):
            kept = gates[b].nonzero().flatten().tolist()
            sparse.append(sum(gates[b, i] * module.experts[i](u[b : b + 1]) for i in kept))
        y_sparse = module.post["depth"](torch.cat(sparse))
    assert torch.allclose(y, y_sparse, atol=1e-5)
    assert F.mse_loss(y, y_sparse) < 1e-10
