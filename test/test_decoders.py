"""MoE, TaskExpert-style and MECO-style decoders: mechanics, VQ, deploy equivalence, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_models import randomize_bn_, standardize_depth_head_, tiny_config

from mtl_perception.model import build_model, deploy
from mtl_perception.model.decoders.meco import VectorQuantizer

torch.set_num_threads(2)


def _tiny(decoder, **kw):
    torch.manual_seed(0)
    return build_model(tiny_config(decoder, **kw))


@pytest.mark.parametrize("decoder", ["baseline", "moe", "taskexpert", "meco"])
def test_deploy_matches_eval(decoder):
    model = _tiny(decoder)
    randomize_bn_(model)
    x = torch.randn(2, 3, 64, 128)
    standardize_depth_head_(model, x)
    with torch.no_grad():
        ref, out = model(x), deploy(model)(x)
    for k in ref:
        err = float((ref[k] - out[k]).abs().max() / ref[k].std())
        assert err <= 1e-4, (k, err)


@pytest.mark.parametrize("decoder", ["moe", "taskexpert", "meco"])
def test_every_trainable_decoder_parameter_gets_gradient(decoder):
    model = _tiny(decoder).train()
    out, aux = model(torch.randn(2, 3, 64, 128), with_aux=True)
    loss = out["semseg"].mean() + out["depth"].mean() + sum(aux.values())
    loss.backward()
    params = [(n, p) for n, p in model.decoder.named_parameters() if p.requires_grad]
    assert [n for n, p in params if p.grad is None] == []  # all in the graph (DDP needs no unused-param search)
    # Zero gradient is only allowed for MoE experts that top-k dropped for every image and task.
    zero = [n for n, p in params if not p.grad.any() and not (decoder == "moe" and ".experts." in n)]
    assert zero == []


def test_moe_keeps_exactly_top_k_and_balances():
    model = _tiny("moe", num_experts=5, top_k=3).train()
    module = model.decoder.levels[0][0]
    gates = module.route(torch.randn(4, 32, 4, 8), "semseg")
    assert ((gates > 0).sum(1) == 3).all()
    assert torch.allclose(gates.sum(1), torch.ones(4), atol=1e-6)
    _, aux = model(torch.randn(2, 3, 64, 128), with_aux=True)
    assert set(aux) == {"load_balance"} and aux["load_balance"] >= 0


def test_taskexpert_gates_are_per_pixel_distributions_and_memory_evolves():
    model = _tiny("taskexpert", num_experts=3).eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 128))
    dec = model.decoder
    assert len(dec.last_gates) == 4 and len(dec.last_memories) == 5
    g = dec.last_gates[0]["semseg"]
    assert g.shape == (2, 4, 4, 8)  # N experts + memory, per pixel
    assert torch.allclose(g.sum(1), torch.ones(2, 4, 8), atol=1e-5)
    assert not torch.allclose(g[..., 0, 0], g[..., 1, 1])  # gates vary across pixels
    assert not torch.allclose(g, dec.last_gates[0]["depth"])  # and across tasks
    mems = dec.last_memories
    assert all(not torch.allclose(a, b) for a, b in zip(mems[:-1], mems[1:]))


# ----------------------------------------------------------------------------- vector quantisation
def test_vq_forward_returns_codebook_rows_and_straight_through_gradient():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=8, dim=4, update="loss").train()
    z = torch.randn(2, 4, 3, 5, requires_grad=True)
    q, loss, idx = vq(z)
    rows = q.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.allclose(rows, vq.codebook[idx.flatten()].detach())
    # nearest code really is the nearest
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.equal(idx.flatten(), torch.cdist(flat, vq.codebook.detach()).argmin(1))
    # straight-through: d(sum q)/dz = 1 everywhere
    q.sum().backward(retain_graph=True)
    assert torch.allclose(z.grad, torch.ones_like(z))
    # loss = ||sg(z) - q||^2 + beta ||z - sg(q)||^2, both equal in value
    expected = (1 + 0.25) * F.mse_loss(flat, vq.codebook[idx.flatten()].detach())
    assert torch.allclose(loss, expected, atol=1e-6)


def test_vq_gradient_reaches_encoder_through_quantiser():
    model = _tiny("meco", codebook_update="loss").train()
    out, aux = model(torch.randn(2, 3, 64, 128), with_aux=True)
    (out["semseg"].mean() + aux["vq"]).backward()
    enc = model.decoder.generic[0].encode.weight
    assert enc.grad is not None and enc.grad.abs().sum() > 0
    assert model.decoder.generic[0].vq.codebook.grad.abs().sum() > 0


def test_vq_ema_moves_used_codes_toward_inputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=4, dim=2, update="ema", decay=0.5).train()
    target = torch.tensor([3.0, -2.0])
    z = target.view(1, 2, 1, 1).expand(1, 2, 4, 4).clone()
    before = vq.codebook.detach().clone()
    _, loss, idx = vq(z)
    used = int(idx.flatten()[0])
    after = vq.codebook.detach()
    assert (after[used] - target).norm() < (before[used] - target).norm()
    unused = [i for i in range(4) if i != used]
    assert torch.allclose(after[unused], before[unused], atol=1e-3)
    assert not vq.codebook.requires_grad and loss > 0  # EMA mode: only the commitment loss


def test_vq_dead_codes_are_revived_and_stats():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=6, dim=3, update="loss", dead_code_steps=2).train()
    with torch.no_grad():
        vq.codebook.data = torch.tensor([[0.0, 0, 0]] + [[100.0, 100, 100]] * 5)
    z = torch.randn(1, 3, 4, 4) * 0.1
    vq(z)
    assert vq.steps_unused[1:].eq(1).all() and vq.steps_unused[0] == 0
    vq(z)  # second step unused -> re-initialised from current inputs
    assert vq.codebook[1:].abs().max() < 10 and vq.steps_unused.eq(0).all()
    stats = vq.stats()
    assert stats["used_fraction"] == pytest.approx(1 / 6) and stats["perplexity"] == pytest.approx(1.0)


def test_meco_code_usage_is_tracked():
    model = _tiny("meco").train()
    model(torch.randn(2, 3, 64, 128), with_aux=True)
    stats = model.decoder.codebook_stats()
    assert set(stats) >= {"level0.generic", "level0.semseg", "level3.depth"}
    for s in stats.values():
        assert 0 < s["used_fraction"] <= 1 and 1 <= s["perplexity"] <= s["num_codes"]


def test_meco_is_smaller_and_cheaper_than_baseline_at_shipped_size():
    """Acceptance: whole-model params and FLOPs of meco below baseline (same backbone, C, size)."""
    from tiny_models import ROOT

    from mtl_perception.model.complexity import count_flops, count_params

    base = build_model(ROOT / "config/models/baseline.yaml")
    meco = build_model(ROOT / "config/models/meco.yaml")
    assert count_params(meco)["total"] < count_params(base)["total"]
    assert count_flops(meco, 128, 256)["total"] < count_flops(base, 128, 256)["total"]
