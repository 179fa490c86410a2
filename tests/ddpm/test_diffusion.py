"""Forward process, parameterisations, sampler and bound against closed forms and oracle networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from repro.common.metrics.likelihood import discretized_gaussian_log_likelihood
from repro.ddpm.config import VARIANTS, DiffusionConfig, Variant
from repro.ddpm.diffusion import Diffusion, from_uint8, linear_betas, to_uint8
from repro.ddpm.evaluate import coding_row_step, frame_indices, rate_distortion, BoundResult

torch.set_num_threads(1)
PAPER = DiffusionConfig()
SMALL = DiffusionConfig(steps=20, beta_start=5e-3, beta_end=0.6)


def test_paper_schedule():
    betas = linear_betas(PAPER)
    assert betas[0] == 1e-4 and betas[-1] == pytest.approx(0.02) and len(betas) == 1000
    abar_T = np.prod(1 - betas)
    assert abar_T == pytest.approx(4.04e-5, rel=0.01)   # the schedule keeps L_T ~ 1e-5 bits/dim (§4)


def test_posterior_matches_gaussian_conditioning():
    d = Diffusion(PAPER, VARIANTS["eps_simple"]).double()
    betas = linear_betas(PAPER)
    abar = np.cumprod(1 - betas)
    for i in (1, 10, 500, 999):  # 0-indexed step i = paper t - 1; q(x_{t-1}|x0) then q(x_t|x_{t-1})
        prior_var, a, b = 1 - abar[i - 1], math.sqrt(1 - betas[i]), betas[i]
        x0, xt = 0.3, -0.7
        prec = 1 / prior_var + a * a / b
        want_var = 1 / prec
        want_mean = want_var * (math.sqrt(abar[i - 1]) * x0 / prior_var + a * xt / b)
        mean, logvar = d.q_posterior(torch.tensor([[[[x0]]]], dtype=torch.float64),
                                     torch.tensor([[[[xt]]]], dtype=torch.float64), torch.tensor([i]))
        assert mean.item() == pytest.approx(want_mean, rel=1e-4)
        assert math.exp(logvar.item()) == pytest.approx(want_var, rel=1e-4)


def test_fixed_variances_follow_the_official_code():
    large = Diffusion(PAPER, VARIANTS["eps_simple"])
    betas = linear_betas(PAPER)
    abar = np.cumprod(1 - betas)
    post1 = betas[1] * (1 - abar[0]) / (1 - abar[1])
    assert math.exp(large.fixedlarge_logvar[0].item()) == pytest.approx(post1, rel=1e-5)   # β̃_2 at the first step
    assert math.exp(large.fixedlarge_logvar[500].item()) == pytest.approx(betas[500], rel=1e-5)
    assert math.exp(large.post_logvar_clipped[0].item()) == pytest.approx(post1, rel=1e-5)


def test_parameterisations_invert():
    d = Diffusion(SMALL, VARIANTS["mu_mse"])
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 5, 12, 19])
    xt = d.q_sample(x0, t, eps)
    assert torch.allclose(d.predict_x0_from_eps(xt, t, eps), x0, atol=1e-4)
    mean, _ = d.q_posterior(x0, xt, t)
    assert torch.allclose(d.predict_x0_from_xprev(xt, t, mean), x0, atol=1e-3)


class PointOracle(nn.Module):
    """The exact network for data that is one image x*: ε = (x_t - sqrt(ᾱ) x*) / sqrt(1 - ᾱ), or μ̃(x_t, x*)."""

    def __init__(self, d: Diffusion, target: torch.Tensor, mean_type: str, logvar: torch.Tensor | None = None):
        super().__init__()
        self.d, self.target, self.mean_type, self.logvar = d, target, mean_type, logvar

    def forward(self, x, t):
        x0 = self.target.expand_as(x)
        if self.mean_type == "eps":
            out = (x - Diffusion._at(self.d.sqrt_abar, t) * x0) / Diffusion._at(self.d.sqrt_one_minus_abar, t)
        else:
            out = self.d.q_posterior(x0, x, t)[0]
        if self.logvar is not None:
            out = torch.cat([out, self.logvar(t).expand_as(out)], 1)
        return out


def _target():
    g = torch.Generator().manual_seed(1)
    return from_uint8(torch.randint(0, 256, (1, 3, 8, 8), generator=g, dtype=torch.uint8))


@pytest.mark.parametrize("key", ["eps_simple", "mu_mse", "eps_simple_small"])
def test_sampler_recovers_a_point_mass_exactly(key):
    d = Diffusion(SMALL, VARIANTS[key])
    target = _target()
    oracle = PointOracle(d, target, VARIANTS[key].mean_type)
    res = d.sample(oracle, (5, 3, 8, 8), torch.Generator().manual_seed(0), keep_x0_at=(19, 10, 0), keep=2)
    assert torch.equal(res.images, to_uint8(target).expand(5, -1, -1, -1))
    assert res.x0_frames.shape == (2, 3, 3, 8, 8) and res.frame_steps == (19, 10, 0)


def test_bound_of_the_exact_model_is_decoder_plus_prior():
    """With σ² = β̃ and the exact network for a point mass, every KL term vanishes (the model is the posterior), so
    the bound is L_0 + L_T, with L_0 = -log P(bin of x* | N(x*, β̃_2)) in closed form."""
    d = Diffusion(SMALL, VARIANTS["eps_simple_small"]).double()
    target = _target().double()
    oracle = PointOracle(d, target, "eps")
    out = d.bpd_terms(oracle, target.expand(3, -1, -1, -1), torch.Generator().manual_seed(0))
    assert out["terms"][:, 1:].abs().max().item() < 1e-6
    var = math.exp(d.post_logvar_clipped[0].item())
    l0 = -discretized_gaussian_log_likelihood(target, target, torch.full_like(target, 0.5 * math.log(var)))
    want = l0.mean().item() / math.log(2)
    assert out["terms"][:, 0].numpy() == pytest.approx([want] * 3, rel=1e-6)
    assert (out["mse"][:, :5] < 1e-10).all()       # x̂0 is exact (up to clipping of an exact value)


def test_learned_variance_reads_the_second_half_of_the_output():
    d = Diffusion(SMALL, VARIANTS["eps_kl_learned"])
    target = _target()
    oracle = PointOracle(d, target, "eps", logvar=lambda t: torch.full((1, 1, 1, 1), -3.0))
    x = torch.randn(2, 3, 8, 8)
    mean, logvar, _, _ = d.p_mean_variance(oracle, x, torch.tensor([4, 4]), clip=True)
    assert torch.all(logvar == -3.0) and mean.shape == x.shape


def test_objectives():
    x0, eps, t = _target().expand(4, -1, -1, -1), torch.randn(4, 3, 8, 8), torch.tensor([0, 3, 9, 19])
    d = Diffusion(SMALL, VARIANTS["eps_simple"])
    exact = PointOracle(d, _target(), "eps")
    assert d.training_loss(exact, x0, t, eps).abs().max().item() < 1e-6          # L_simple of the exact ε is 0
    zero = lambda x, t: torch.zeros_like(x)                                        # noqa: E731
    assert torch.allclose(d.training_loss(zero, x0, t, eps), (eps ** 2).flatten(1).mean(1))
    kl = Diffusion(SMALL, Variant("k", "eps", "fixedsmall", "kl", "k"))
    terms = kl.training_loss(exact, x0, t, eps)
    assert terms[1:].abs().max().item() < 1e-4 and terms[0].item() > 0           # only the decoder term remains
    with pytest.raises(ValueError, match="does not train a variance"):
        Diffusion(SMALL, Variant("x", "eps", "learned", "mse", "x")).training_loss(zero, x0, t, eps)


def test_rate_distortion_bookkeeping():
    T = 5
    terms = np.tile(np.array([2.0, 0.5, 0.25, 0.125, 0.0625]), (3, 1))      # index i = t - 1
    mse = np.tile(np.linspace(0.001, 0.5, T), (3, 1))
    rd = rate_distortion(BoundResult(terms=terms, prior=np.full(3, 1e-5), mse=mse))
    assert rd.rate[0] == pytest.approx(1e-5)                                 # k = 1: only x_T received
    assert rd.rate[-1] == pytest.approx(1e-5 + 0.5 + 0.25 + 0.125 + 0.0625)  # k = T: everything but L_0
    assert rd.distortion_bpd == 2.0
    assert rd.rmse[-1] == pytest.approx(math.sqrt(0.001) * 127.5)            # x̂0 from x_1
    assert rd.rmse[0] == pytest.approx(math.sqrt(0.5) * 127.5)               # x̂0 from x_T
    assert np.all(np.diff(rd.rate) >= 0)
    assert rd.psnr[-1] == pytest.approx(20 * math.log10(255 / rd.rmse[-1]))


def test_rate_distortion_reports_both_rmse_aggregations():
    # two images, one step: per-image MSEs 0.01 and 0.09 on the [-1, 1] scale -> per-image RMSEs 0.1 and 0.3.
    # Paper (§4.3, sqrt(||x0 - x̂0||² / D) per image, then the mean): 0.2 * 127.5 = 25.5.
    # Pooled (sqrt of the mean MSE): sqrt(0.05) * 127.5 = 28.5102...; larger, by Jensen.
    res = BoundResult(terms=np.zeros((2, 1)), prior=np.zeros(2), mse=np.array([[0.01], [0.09]]))
    rd = rate_distortion(res)
    assert rd.rmse[0] == pytest.approx(25.5)
    assert rd.rmse_pooled[0] == pytest.approx(math.sqrt(0.05) * 127.5)
    assert rd.psnr[0] == pytest.approx(20 * math.log10(255 / 25.5))      # PSNR of the paper's RMSE
    # equal per-image errors: the two agree
    same = rate_distortion(BoundResult(terms=np.zeros((3, 1)), prior=np.zeros(3), mse=np.full((3, 1), 0.04)))
    assert same.rmse[0] == pytest.approx(same.rmse_pooled[0]) == pytest.approx(0.2 * 127.5)


def test_table4_rows_and_frames():
    assert coding_row_step(1000, 1000) == 1000 and coding_row_step(100, 40) == 4 and coding_row_step(1000, 40) == 40
    assert frame_indices(40, 5) == (39, 29, 20, 10, 0)


def test_generate_batches_seeds_and_times():
    from repro.ddpm.evaluate import generate

    d = Diffusion(SMALL, VARIANTS["eps_simple"])

    class Net(nn.Module):
        def forward(self, x, t):
            return 0.1 * x

    net = Net()
    a = generate(net, d, n=5, batch_size=2, seed=3, device=torch.device("cpu"), keep=2, frames=3, image_shape=(3, 8, 8))
    b = generate(net, d, n=5, batch_size=2, seed=3, device=torch.device("cpu"), image_shape=(3, 8, 8))
    one = generate(net, d, n=2, batch_size=4, seed=3, device=torch.device("cpu"), image_shape=(3, 8, 8))
    assert a.images.shape == (5, 8, 8, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images)                                       # seeded per batch
    assert not np.array_equal(a.images[0], a.images[2])
    assert a.x0_frames.shape == (2, 3, 8, 8, 3) and list(a.frame_steps) == [1, 10, 20]
    assert a.images_per_s > 0 and one.images_per_s > 0
