"""SIREN initialisation statistics and the STRAINER shared/per-image parameter split."""

import math

import pytest
import torch

from repro.strainer.data import coord_grid
from repro.strainer.siren import (SirenSpec, forward, hidden_preactivations, init_networks, network_seed,
                                  repeat_stack, weight_bound)
from repro.strainer.train import split_layers, strainer_layers

SPEC = SirenSpec(in_features=2, width=256, out_features=3, n_layers=6, omega0=30.0)


def test_parameter_count_matches_sheet():
    # Sheet section 3.1: 264,707 parameters at width 256; 128,519 at width 178.
    assert SPEC.n_params == 264_707
    assert SirenSpec(width=178).n_params == 128_519


def test_weight_bounds_and_uniform_moments():
    layers = init_networks(SPEC, [0, 1])
    for index, (w, b) in enumerate(layers):
        fan_in = SPEC.dims()[index][0]
        bound = 1 / fan_in if index == 0 else math.sqrt(6 / fan_in) / 30.0
        assert weight_bound(SPEC, index) == pytest.approx(bound)
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.95 * bound  # fills its interval
        # U(-a, a) has variance a^2 / 3
        assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.1 if w.numel() > 2000 else 0.5)
        assert abs(w.mean().item()) < 0.05 * bound
        assert b.abs().max() <= 1 / math.sqrt(fan_in)


def test_hidden_preactivations_have_unit_variance():
    """SIREN's init keeps omega0 * W x at unit variance in every hidden layer (Sitzmann et al. 2020, Sec. 3.2)."""
    torch.manual_seed(0)
    coords = coord_grid(64)
    layers = init_networks(SPEC, [3])
    stds = [p.std().item() for p in hidden_preactivations(layers, coords, SPEC.omega0)]
    assert len(stds) == SPEC.n_layers - 2
    for s in stds:
        assert s == pytest.approx(1.0, abs=0.1)
    # a wrong scale (forgetting the 1/omega0) would blow this up by a factor of 30
    bad = [(w * 30, b) if i > 0 else (w, b) for i, (w, b) in enumerate(layers)]
    assert hidden_preactivations(bad, coords, SPEC.omega0)[0].std().item() > 10


def test_network_seeds_are_reproducible_and_distinct():
    a = init_networks(SPEC, [network_seed(0, 1, 2)])
    b = init_networks(SPEC, [network_seed(0, 1, 2)])
    c = init_networks(SPEC, [network_seed(0, 1, 3)])
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))
    assert not torch.equal(a[1][0], c[1][0])
    # network i of a stack equals the same network initialised alone
    stack = init_networks(SPEC, [5, 6, 7])
    alone = init_networks(SPEC, [6])
    assert all(torch.equal(s[0][1], x[0][0]) and torch.equal(s[1][1], x[1][0]) for s, x in zip(stack, alone))


def test_shared_encoder_and_per_image_heads():
    spec = SirenSpec(width=32, n_layers=6)
    layers = strainer_layers(spec, n_images=4, shared_layers=5, seed=0, device="cpu")
    encoder, decoder = split_layers(layers, 5)
    assert [w.shape[0] for w, _ in encoder] == [1] * 5      # shared: one copy
    assert [tuple(w.shape) for w, _ in decoder] == [(4, 32, 3)]  # one linear head per image
    heads = decoder[0][0]
    assert not torch.equal(heads[0], heads[1])
    coords = coord_grid(8)
    out = forward(layers, coords, spec.omega0)
    assert out.shape == (4, 64, 3)
    # every image's output is the shared features through its own head
    feats = forward(encoder + [(torch.eye(32)[None], torch.zeros(1, 1, 32))], coords, spec.omega0, n_sine=5)
    for k in range(4):
        torch.testing.assert_close(out[k], feats[0] @ heads[k] + decoder[0][1][k])
    # gradients: the encoder collects gradient from every image, a head only from its own image
    params = [t.requires_grad_(True) for layer in layers for t in layer]
    forward(layers, coords, spec.omega0)[2].sum().backward()
    head_grad = decoder[0][0].grad
    assert head_grad[2].abs().sum() > 0
    assert head_grad[[0, 1, 3]].abs().sum() == 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params[:10])


def test_fewer_shared_layers_give_deeper_heads():
    spec = SirenSpec(width=16, n_layers=6)
    encoder, decoder = split_layers(strainer_layers(spec, 3, 2, 0, "cpu"), 2)
    assert len(encoder) == 2 and len(decoder) == 4
    assert all(w.shape[0] == 3 for w, _ in decoder)
    with pytest.raises(ValueError):
        split_layers(encoder + decoder, 6)


def test_repeat_stack_copies_encoder_per_image():
    enc = init_networks(SirenSpec(width=8), [1])[:5]
    rep = repeat_stack(enc, 3)
    assert rep[0][0].shape[0] == 3
    rep[0][0][1] += 1  # copies, not views
    assert not torch.equal(rep[0][0][0], rep[0][0][1])
