"""The paper's U-Net (35.7M parameters) and the loader of the released weights (pesser/pytorch_diffusion layout)."""

from __future__ import annotations

import pytest
import torch

from repro.common.errors import UserError
from repro.ddpm.config import ModelConfig
from repro.ddpm.released import RELEASED_MODEL, load_released
from repro.ddpm.unet import UNet, count_parameters, timestep_embedding

torch.set_num_threads(1)


def test_paper_unet_has_35_7M_parameters():
    n = count_parameters(UNet(ModelConfig()))       # constructed on CPU, never run
    assert round(n / 1e6, 1) == 35.7                # DDPM App. B; official code comment "35.7M"
    assert n == 35_746_307


def test_learned_variance_doubles_the_output_channels():
    cfg = ModelConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16, norm_groups=2)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([0, 7])
    assert UNet(cfg)(x, t).shape == (2, 3, 16, 16)
    assert UNet(cfg, out_ch=6)(x, t).shape == (2, 6, 16, 16)


def test_timestep_embedding_is_sin_then_cos():
    emb = timestep_embedding(torch.tensor([0, 3]), 8)
    assert torch.allclose(emb[0], torch.tensor([0, 0, 0, 0, 1, 1, 1, 1.0]))
    assert torch.allclose(emb[1, :4] ** 2 + emb[1, 4:] ** 2, torch.ones(4))
    assert emb[1, 0].item() == pytest.approx(torch.sin(torch.tensor(3.0)).item())   # frequency 1 first


def pesser_layout(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_res=(16,), resolution=32, in_ch=3, out_ch=3):
    """Key -> shape of a state dict of pesser/pytorch_diffusion's `Model`, enumerated independently of our UNet from
    that code's construction rules (res block: norm1, conv1, temb_proj, norm2, conv2, nin_shortcut when the width
    changes; attention: norm, q, k, v, proj_out as 1x1 convs; up path with num_res_blocks + 1 blocks per level)."""
    shapes: dict[str, tuple[int, ...]] = {}
    temb = 4 * ch

    def conv(name, cout, cin, k):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c,), (c,)

    def res(name, cin, cout):
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cout, cin, 3)
        shapes[f"{name}.temb_proj.weight"], shapes[f"{name}.temb_proj.bias"] = (cout, temb), (cout,)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cout, cin, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{p}", c, c, 1)

    shapes["temb.dense.0.weight"], shapes["temb.dense.0.bias"] = (temb, ch), (temb,)
    shapes["temb.dense.1.weight"], shapes["temb.dense.1.bias"] = (temb, temb), (temb,)
    conv("conv_in", ch, in_ch, 3)
    in_mult = (1,) + tuple(ch_mult)
    cur_res, block_in = resolution, ch
    for i, m in enumerate(ch_mult):
        block_in = ch * in_mult[i]
        for j in range(num_res_blocks):
            res(f"down.{i}.block.{j}", block_in, ch * m)
            block_in = ch * m
            if cur_res in attn_res:
                attn(f"down.{i}.attn.{j}", block_in)
        if i != len(ch_mult) - 1:
            conv(f"down.{i}.downsample.conv", block_in, block_in, 3)
            cur_res //= 2
    res("mid.block_1", block_in, block_in)
    attn("mid.attn_1", block_in)
    res("mid.block_2", block_in, block_in)
    for i in reversed(range(len(ch_mult))):
        out, skip = ch * ch_mult[i], ch * ch_mult[i]
        for j in range(num_res_blocks + 1):
            if j == num_res_blocks:
                skip = ch * in_mult[i]
            res(f"up.{i}.block.{j}", block_in + skip, out)
            block_in = out
            if cur_res in attn_res:
                attn(f"up.{i}.attn.{j}", block_in)
        if i != 0:
            conv(f"up.{i}.upsample.conv", block_in, block_in, 3)
            cur_res *= 2
    norm("norm_out", block_in)
    conv("conv_out", out_ch, block_in, 3)
    return shapes


def released_like_checkpoint(path):
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=gen) * 0.02 for k, s in pesser_layout().items()}
    torch.save(state, path)               # pesser's checkpoints are a bare state_dict saved with torch.save
    return state


def test_released_loader_maps_every_tensor(tmp_path):
    path = tmp_path / "model-790000.ckpt"
    state = released_like_checkpoint(path)
    assert sum(v.numel() for v in state.values()) == 35_746_307
    model = load_released(path)
    ours = model.state_dict()
    assert set(ours) == set(state)
    for k, v in state.items():
        assert torch.equal(ours[k], v), k
    assert not model.training
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 32, 32), torch.tensor([999]))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
    assert RELEASED_MODEL == ModelConfig()   # the paper's CIFAR-10 network


def test_released_loader_rejects_other_layouts(tmp_path):
    state = released_like_checkpoint(tmp_path / "a.ckpt")
    bad = dict(state)
    del bad["mid.attn_1.q.weight"]
    bad["conv_out.weight"] = torch.zeros(6, 128, 3, 3)
    torch.save(bad, tmp_path / "b.ckpt")
    with pytest.raises(UserError, match="missing.*mid.attn_1.q.weight.*shape mismatch.*conv_out.weight"):
        load_released(tmp_path / "b.ckpt")
    (tmp_path / "c.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable torch checkpoint"):
        load_released(tmp_path / "c.ckpt")
    with pytest.raises(UserError, match="not found"):
        load_released(tmp_path / "missing.ckpt")
