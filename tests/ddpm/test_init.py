"""The official initialisation of the DDPM U-Net (hojonathanho/diffusion@c461299 diffusion_tf/nn.py `default_init`,
`conv2d`, `dense`, `nin`; diffusion_tf/models/unet.py: `init_scale=0.` on resnet_block conv2, attn_block proj_out and
the final conv_out).

default_init(scale) = variance_scaling(scale=1e-10 if scale == 0 else scale, mode='fan_avg', distribution='uniform'):
W ~ U(-b, b) with b = sqrt(3 scale / fan_avg), fan_avg = (fan_in + fan_out) / 2, fan_in = k·k·c_in,
fan_out = k·k·c_out; so std(W) = sqrt(scale / fan_avg). Biases are constant 0.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from repro.ddpm.config import ModelConfig
from repro.ddpm.unet import AttnBlock, ResnetBlock, UNet

torch.set_num_threads(1)


def fan_avg(w: torch.Tensor) -> float:
    receptive = w[0, 0].numel() if w.dim() > 2 else 1
    return (w.shape[0] + w.shape[1]) * receptive / 2


@pytest.fixture(scope="module")
def paper_net() -> UNet:
    torch.manual_seed(0)
    return UNet(ModelConfig())        # the paper's 35.7M U-Net, on CPU


def zero_scaled_names(net: UNet) -> set[str]:
    names = {"conv_out"}
    for name, m in net.named_modules():
        if isinstance(m, ResnetBlock):
            names.add(f"{name}.conv2")
        elif isinstance(m, AttnBlock):
            names.add(f"{name}.proj_out")
    return names


def test_every_weight_follows_default_init(paper_net):
    zero = zero_scaled_names(paper_net)
    assert len(zero) == 1 + 22 + 6          # 22 residual blocks, 6 attention blocks at 16x16 and in the middle
    kinds = {"conv3x3": 0, "conv1x1": 0, "dense": 0, "zero": 0}
    for name, m in paper_net.named_modules():
        if not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue
        w = m.weight.detach().double()
        scale = 1e-10 if name in zero else 1.0
        bound = math.sqrt(3 * scale / fan_avg(w))
        assert w.abs().max().item() <= bound * (1 + 1e-6), name     # float32 rounding of the bound
        # the sample std of n uniform draws is within 5% of bound / sqrt(3) for n >= 1000 (std error ~ 0.9/sqrt(n))
        if w.numel() >= 1000:
            assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05), name
        assert torch.count_nonzero(m.bias).item() == 0, f"{name}.bias"
        kinds["zero" if name in zero else "dense" if isinstance(m, nn.Linear)
              else f"conv{m.kernel_size[0]}x{m.kernel_size[1]}"] += 1
    # 3x3: conv_in, conv1 of the 22 blocks, 3 downsample and 3 upsample convs; 1x1 (official nn.nin): q, k, v of
    # the 6 attention blocks and the 13 shortcuts (down.1.block.0 and the 12 up blocks, whose inputs are
    # concatenations); dense: temb dense0/dense1 and the 22 temb_proj
    assert kinds == {"conv3x3": 1 + 22 + 3 + 3, "conv1x1": 3 * 6 + 13, "dense": 2 + 22, "zero": 29}


def test_layer_weight_std_by_type(paper_net):
    # worked out from the formula: conv_in 3x3, 3 -> 128: fan_avg = 9 (3 + 128) / 2 = 589.5 -> std 0.041188;
    # a 3x3 conv 128 -> 128: fan_avg 1152 -> std 0.029463; a 1x1 nin 256 -> 256 (attention q): 1/16 = 0.0625;
    # dense 128 -> 512 (temb.dense[0]): fan_avg 320 -> 0.055902; conv_out (init_scale 0): sqrt(1e-10 / 589.5)
    cases = {"conv_in": 0.041188, "down.0.block.0.conv1": 0.029463, "mid.attn_1.q": 0.0625,
             "temb.dense.0": 0.055902, "conv_out": 4.1188e-7, "mid.block_1.conv2": math.sqrt(1e-10 / (9 * 256))}
    modules = dict(paper_net.named_modules())
    for name, want in cases.items():
        assert modules[name].weight.std().item() == pytest.approx(want, rel=0.05), name


def test_output_at_init_is_near_zero(paper_net):
    """With every residual branch and the final conv at scale 1e-10, the output at init is ~1e-5 of the data scale
    (PyTorch's defaults give ~0.3). Predicted std: conv_out is a sum over fan_in = 9 * 128 inputs a, so
    var(out) ~ fan_in * E[a^2] * Var(W) with Var(W) = 1e-10 / fan_avg."""
    feats = {}
    hook = paper_net.conv_out.register_forward_hook(lambda m, inp, out: feats.update(a=inp[0]))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        out = paper_net.eval()(x, torch.tensor([0, 250, 500, 999]))
    hook.remove()
    fan_in, w = 9 * 128, paper_net.conv_out.weight
    predicted = math.sqrt(fan_in * feats["a"].pow(2).mean().item() * 1e-10 / fan_avg(w))
    assert out.std().item() == pytest.approx(predicted, rel=0.25)
    assert 1e-6 < out.std().item() < 2e-5


def test_pytorch_defaults_remain_available():
    cfg = ModelConfig(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), norm_groups=4, init="pytorch")
    torch.manual_seed(0)
    net = UNet(cfg)
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32), torch.tensor([0, 10]))
    assert out.std().item() > 1e-2                                  # PyTorch's defaults: an O(0.1) output
    assert torch.count_nonzero(net.conv_in.bias).item() > 0        # and uniform, not zero, biases
    with pytest.raises(ValueError, match="model.init"):
        UNet(ModelConfig(ch=16, ch_mult=(1,), num_res_blocks=1, attn_resolutions=(), norm_groups=4, init="xavier"))
