"""TransINR and IPC hypernetworks (repro.strainer.hypernet): shapes, the predicted INR's form, training, TTO."""

import math

import numpy as np
import pytest
import torch

from repro.strainer.config import HypernetConfig, StrainerConfig
from repro.common.config import load_paper_config
from repro.strainer.data import coord_grid
from repro.strainer.hypernet import Hypernet, Renderer, fourier_features, predict, relu_forward, train_hypernet

RES, WIDTH = 16, 24
CFG = HypernetConfig(kinds=("transinr", "ipc"), dim=16, depth=1, heads=2, patch=4, padding=0, dropout=0.0,
                     hyponet_layers=4, ff_dim=8, ff_sigma=8.0, transinr_groups=6, ipc_rank=5, ipc_layers=(1,),
                     steps=30, batch=4, lr=1e-3)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images in [-1, 1], [n, RES*RES, 3]: low-frequency patterns a hypernetwork can learn."""
    g = torch.Generator().manual_seed(seed)
    xy = coord_grid(RES)
    a, f, p = torch.rand(n, 1, 3, generator=g), 1 + 2 * torch.rand(n, 1, 3, generator=g), 6 * torch.rand(n, 1, 3, generator=g)
    return (0.8 * a * torch.sin(f * (xy[:, :1] + xy[:, 1:]).unsqueeze(0) + p)).float()


def test_fourier_features_layout_and_values():
    coords = torch.tensor([[0.5, -0.25]])
    ff = fourier_features(coords, ff_dim=4, ff_sigma=4.0)  # 2 frequencies per axis: 1 and 4
    # phases pi * [x*1, x*4, y*1, y*4] = pi * [0.5, 2, -0.25, -1]; cos block then sin block
    phase = math.pi * np.array([0.5, 2.0, -0.25, -1.0])
    assert ff.shape == (1, 8)
    np.testing.assert_allclose(ff[0].numpy(), np.concatenate([np.cos(phase), np.sin(phase)]), atol=1e-6)


@pytest.mark.parametrize("kind", ["transinr", "ipc"])
def test_prediction_is_a_valid_inr_of_the_configured_width(kind):
    model = Hypernet(kind, CFG, width=WIDTH, resolution=RES, channels=3, seed=0)
    assert model.n_patches == (RES // CFG.patch) ** 2
    layers = predict(model, _images(3))
    dims = [(2 * CFG.ff_dim, WIDTH)] + [(WIDTH, WIDTH)] * (CFG.hyponet_layers - 2) + [(WIDTH, 3)]
    assert [tuple(w.shape) for w, _ in layers] == [(3, i, o) for i, o in dims]
    assert [tuple(b.shape) for _, b in layers] == [(3, 1, o) for _, o in dims]
    for w, _ in layers:  # every weight column (output unit) has unit L2 norm over its fan-in
        np.testing.assert_allclose(w.norm(dim=1).numpy(), 1.0, atol=1e-5)
    out = Renderer(coord_grid(RES), CFG.ff_dim, CFG.ff_sigma)(layers)
    assert out.shape == (3, RES * RES, 3) and torch.isfinite(out).all()


def test_transinr_modulates_every_layer_ipc_only_its_layers():
    imgs = _images(2)
    for kind, varying in (("transinr", {0, 1, 2, 3}), ("ipc", {1})):
        model = Hypernet(kind, CFG, width=WIDTH, resolution=RES, channels=3, seed=1)
        with torch.no_grad():  # make the weight tokens' outputs depend on the image strongly
            model.patch_embed.weight.mul_(50)
        layers = predict(model, imgs)
        differs = {i for i, (w, _) in enumerate(layers) if not torch.allclose(w[0], w[1], atol=1e-6)}
        assert differs == varying, kind
    ipc = Hypernet("ipc", CFG, width=WIDTH, resolution=RES, channels=3, seed=1)
    assert ipc.n_tokens == CFG.ipc_rank
    assert not any(p is ipc.base_w[1] for p in ipc.trainable())  # IPC ignores the modulated layer's base weight
    tr = Hypernet("transinr", CFG, width=WIDTH, resolution=RES, channels=3, seed=1)
    assert tr.n_tokens == 6 * 3 + 3  # min(groups, fan_out) per layer: 6, 6, 6, then 3 for the 3-channel output


def test_transinr_groups_tile_across_columns():
    """Column j of a TransINR layer uses group j mod g (the official `repeat`): with base weights all ones, columns
    j and j + g are equal, j and j + 1 are not."""
    model = Hypernet("transinr", CFG, width=WIDTH, resolution=RES, channels=3, seed=2)
    with torch.no_grad():
        for w in model.base_w:
            w.fill_(1.0)
    w = predict(model, _images(1))[1][0][0]  # layer 1 [WIDTH, WIDTH], 6 groups
    torch.testing.assert_close(w[:, 0], w[:, 6])
    assert not torch.allclose(w[:, 0], w[:, 1])


def test_renderer_maps_the_unit_output_to_the_pixel_range():
    zero = [(torch.zeros(1, 2 * CFG.ff_dim, 3), torch.zeros(1, 1, 3))]  # hyponet output 0 -> 0.5 on [0, 1]
    coords = coord_grid(4)
    assert torch.allclose(Renderer(coords, CFG.ff_dim, CFG.ff_sigma, (-1.0, 1.0))(zero), torch.zeros(1, 16, 3))
    assert torch.allclose(Renderer(coords, CFG.ff_dim, CFG.ff_sigma, (0.0, 1.0))(zero), torch.full((1, 16, 3), 0.5))
    assert relu_forward(zero, torch.ones(5, 2 * CFG.ff_dim)).shape == (1, 5, 3)


@pytest.mark.parametrize("kind", ["transinr", "ipc"])
def test_a_few_training_steps_lower_the_loss(kind):
    torch.set_num_threads(1)
    trained = train_hypernet(kind, CFG, _images(8), coord_grid(RES), width=WIDTH, seed=0)
    first, last = trained.loss[:5].mean(), trained.loss[-5:].mean()
    assert last < 0.6 * first, (first, last)
    assert trained.steps == CFG.steps and trained.train_images == 8


def test_untileable_patches_fail_with_the_fix():
    from repro.common.errors import UserError

    bad = HypernetConfig(**{**CFG.__dict__, "patch": 5})
    with pytest.raises(UserError, match="does not tile"):
        Hypernet("ipc", bad, width=WIDTH, resolution=RES, channels=3, seed=0)


def test_without_tto_the_curve_is_flat_and_with_tto_it_rises():
    from repro.strainer.hypernet import TrainedHypernet
    from repro.strainer.runs import hypernet_fits

    cfg = StrainerConfig.from_dict(load_paper_config("strainer", "smoke"))
    import dataclasses

    cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, iters=20, lr=1e-3),
                              data=dataclasses.replace(cfg.data, resolution=RES), model=dataclasses.replace(
                                  cfg.model, width=WIDTH))
    coords = coord_grid(RES)
    nets = {k: TrainedHypernet(Hypernet(k, CFG, width=WIDTH, resolution=RES, channels=3, seed=3), 0.0, 0, 0,
                               float("nan"), np.zeros(0)) for k in ("transinr", "ipc")}
    clean = _images(2, seed=5)
    rows, psnr, outs = hypernet_fits(cfg, nets, clean, coords)
    assert rows == ["TransINR w/o TTO", "TransINR w/ TTO", "IPC w/o TTO", "IPC w/ TTO"]
    assert psnr.shape == (4, 21, 2) and outs.shape == (4, 2, RES * RES, 3)
    for r in (0, 2):
        assert np.all(psnr[r] == psnr[r, :1])  # no TTO: the prediction's PSNR at every iteration
        np.testing.assert_array_equal(psnr[r, 0], psnr[r + 1, 0])  # TTO starts from that prediction
        assert np.all(psnr[r + 1, -1] > psnr[r + 1, 0] + 1.0)  # and fitting it improves every image


def test_tto_in_chunks_equals_one_stack():
    """fit.chunk splits the hypernetworks' TTO stack (device memory at paper scale) without changing any curve."""
    import dataclasses

    from repro.strainer.hypernet import TrainedHypernet
    from repro.strainer.runs import hypernet_fits

    base = StrainerConfig.from_dict(load_paper_config("strainer", "smoke"))
    cfg = dataclasses.replace(base, fit=dataclasses.replace(base.fit, iters=5, lr=1e-3, chunk=0),
                              data=dataclasses.replace(base.data, resolution=RES),
                              model=dataclasses.replace(base.model, width=WIDTH))
    nets = {k: TrainedHypernet(Hypernet(k, CFG, width=WIDTH, resolution=RES, channels=3, seed=4), 0.0, 0, 0,
                               float("nan"), np.zeros(0)) for k in ("transinr", "ipc")}
    clean, coords = _images(3, seed=6), coord_grid(RES)
    whole = hypernet_fits(cfg, nets, clean, coords)[1]
    chunked = hypernet_fits(dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, chunk=2)), nets, clean,
                            coords)[1]
    np.testing.assert_allclose(chunked, whole, atol=1e-4)


def test_gray_targets_are_fitted_through_the_luma_of_the_rgb_inr():
    """A 1-channel target (Table 3's OD MRI column): the RGB hypernetwork sees it as gray RGB, its INR is rendered
    as BT.601 luma, and the curves keep their form (flat without TTO, rising with it)."""
    import dataclasses

    from repro.strainer.hypernet import TrainedHypernet
    from repro.strainer.runs import hypernet_fits

    base = StrainerConfig.from_dict(load_paper_config("strainer", "smoke"))
    cfg = dataclasses.replace(base, fit=dataclasses.replace(base.fit, iters=20, lr=1e-3, chunk=0),
                              data=dataclasses.replace(base.data, resolution=RES),
                              model=dataclasses.replace(base.model, width=WIDTH))
    nets = {"ipc": TrainedHypernet(Hypernet("ipc", CFG, width=WIDTH, resolution=RES, channels=3, seed=7), 0.0, 0, 0,
                                   float("nan"), np.zeros(0))}
    gray = _images(2, seed=8).mean(dim=-1, keepdim=True)
    rows, psnr, outs = hypernet_fits(cfg, nets, gray, coord_grid(RES))
    assert rows == ["IPC w/o TTO", "IPC w/ TTO"] and outs.shape == (2, 2, RES * RES, 1)
    assert np.all(psnr[0] == psnr[0, :1]) and np.all(psnr[1, -1] > psnr[1, 0] + 1.0)
    rgb = [(torch.zeros(1, 2 * CFG.ff_dim, 3), torch.tensor([[[0.5, 0.0, -0.5]]]))]  # unit output 1, 0.5, 0
    lum = Renderer(coord_grid(2), CFG.ff_dim, CFG.ff_sigma, (0.0, 1.0), gray=True)(rgb)
    assert torch.allclose(lum, torch.full((1, 4, 1), 0.299 * 1.0 + 0.587 * 0.5 + 0.114 * 0.0))
