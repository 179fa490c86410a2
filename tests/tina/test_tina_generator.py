"""The DDPM schedule and sampler, the parameter transformer, and a generator that learns text -> model."""

from dataclasses import replace

import pytest
import torch

from repro.tina.config import load
from repro.tina.diffusion import GaussianDiffusion
from repro.tina.archs import ParamLayout
from repro.tina.train import ParamData, build_generator, generate, train_generator


def head_layout(k: int, f: int) -> ParamLayout:
    return ParamLayout.of(__import__("repro.tina.archs", fromlist=["Head"]).Head(f, k))


def test_schedule_matches_ho_et_al():
    d = GaussianDiffusion(1000, 1e-4, 2e-2)
    betas = torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    assert torch.allclose(d.sqrt_abar.double(), abar.sqrt(), rtol=1e-6)
    assert float(abar[-1]) < 1e-4  # x_T is (almost) pure noise
    # At t = 0 the posterior mean is x0 itself; the coefficients sum to the identity on x0 = x_t.
    assert float(d.post_c0[0]) == pytest.approx(1.0) and float(d.post_ct[0]) == pytest.approx(0.0, abs=1e-7)
    x0, noise, t = torch.randn(5000, 1), torch.randn(5000, 1), torch.full((5000,), 500)
    xt = d.q_sample(x0, t, noise)
    assert float(xt.var()) == pytest.approx(1.0, rel=0.08)


def test_fixed_large_variance_is_tinas():
    """Tina's `create_diffusion(learn_sigma=False)` selects FIXED_LARGE (aoliliao/Tina `Gpt/diffusion/__init__.py`,
    commit e7596f269f160f6fe011e4927e1cc04d31411124): sigma_t^2 = beta_t for t >= 1 and beta_tilde_1 at t = 0,
    where beta_tilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t). Values worked out from the formula."""
    d = GaussianDiffusion(1000, 1e-4, 2e-2, variance="fixed_large")
    var = d.logvar.double().exp()
    beta = lambda t: 1e-4 + (2e-2 - 1e-4) * t / 999  # noqa: E731  (torch.linspace(1e-4, 2e-2, 1000)[t])
    for t in (1, 2, 10, 500, 999):
        assert float(var[t]) == pytest.approx(beta(t), rel=1e-5)
    # beta_tilde_1 = beta_1 (1 - abar_0) / (1 - abar_1) with abar_0 = 1 - beta_0, abar_1 = abar_0 (1 - beta_1)
    b0, b1 = beta(0), beta(1)
    tilde1 = b1 * b0 / (1 - (1 - b0) * (1 - b1))
    assert float(var[0]) == pytest.approx(tilde1, rel=1e-5)
    assert tilde1 == pytest.approx(5.4532e-05, rel=1e-4)
    # FIXED_SMALL keeps the posterior variance, strictly smaller for t >= 1.
    small = GaussianDiffusion(1000, 1e-4, 2e-2, variance="fixed_small").logvar.double().exp()
    assert float(small[500]) < float(var[500]) and float(small[0]) == pytest.approx(tilde1, rel=1e-5)
    with pytest.raises(ValueError):
        GaussianDiffusion(10, variance="learned")


class _Stop(Exception):
    pass


def _first_reverse_step(d: GaussianDiffusion, n: int = 20000) -> tuple[torch.Tensor, torch.Tensor]:
    """x_T and x after the sampler's first reverse step, with a model predicting x0 = 0."""
    seen = []

    def model(x, t):
        seen.append((x.clone(), t.clone()))
        if len(seen) == 2:
            raise _Stop
        return torch.zeros_like(x)

    with pytest.raises(_Stop):
        d.sample(model, (n, 1), torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    return seen[0][0], seen[1][0], seen[0][1][0].item()


def test_sampler_noise_has_the_fixed_large_spread():
    """The first reverse step from T-1: x_{T-2} - mean has variance beta_{T-1} (FIXED_LARGE), not beta_tilde."""
    d = GaussianDiffusion(100, 1e-4, 0.2)
    x_t, x_prev, t = _first_reverse_step(d)
    assert t == 99
    noise = x_prev - d.post_ct[99] * x_t   # the posterior mean with x0 = 0 is post_ct * x_t
    assert float(noise.var()) == pytest.approx(0.2, rel=0.04)


def test_respaced_sampling_follows_improved_diffusion():
    from repro.tina.diffusion import spaced_timesteps

    used = spaced_timesteps(1000, 100)
    assert len(used) == 100 and used[0] == 0 and used[-1] == 999 and used[1] == 10
    assert spaced_timesteps(1000, 1000) == list(range(1000))
    full = GaussianDiffusion(1000, 1e-4, 2e-2)
    d = GaussianDiffusion(1000, 1e-4, 2e-2, sample_steps=100)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64), 0)
    # FIXED_LARGE over the kept steps: beta'_i = 1 - abar_{t_i} / abar_{t_{i-1}}
    for i in (1, 50, 99):
        beta = 1 - abar[used[i]] / abar[used[i - 1]]
        assert float(d.logvar[i].double().exp()) == pytest.approx(float(beta), rel=1e-5)
    x_t, _, t = _first_reverse_step(d, 10)
    assert t == 999  # the network sees the original timestep
    assert torch.equal(d.sqrt_abar, full.sqrt_abar)  # training is untouched


@pytest.mark.parametrize("steps", [100, 25])
def test_sampler_with_an_oracle_denoiser_returns_the_data_point(steps):
    d = GaussianDiffusion(100, 1e-4, 0.2, sample_steps=steps)
    target = torch.tensor([[0.5, -1.0, 2.0]])
    out = d.sample(lambda x, t: target.expand_as(x), (4, 3), torch.device("cpu"),
                   generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target.expand(4, 3), atol=1e-5)


@pytest.mark.parametrize("policy", ["class_rows", "chunk_within_layer"])
def test_generator_forward_shapes(policy):
    cfg = replace(load("smoke").generator, split_policy=policy, chunk_size=7, n_embd=16, n_layer=1, n_head=2)
    layout = head_layout(3, 4)
    for conditioning in ("tina", "shared"):
        for text_dim in (5, None):
            net = build_generator(replace(cfg, conditioning=conditioning), layout, text_dim)
            x, t = torch.randn(2, layout.numel), torch.tensor([0, 999])
            kwargs = {"text": torch.randn(2, 3, 5), "slot_mask": torch.tensor([[1, 1, 0], [1, 1, 1]]).bool()}
            out = net(x, t, **kwargs) if text_dim else net(x, t)
            assert out.shape == x.shape and torch.isfinite(out).all()


def test_whole_network_generator_needs_layer_chunks():
    from repro.common.errors import UserError

    cfg = replace(load("smoke").generator, n_embd=16, n_layer=1, n_head=2)
    layout = ParamLayout.for_arch("convnet5k", 5)
    x, t, text, mask = torch.randn(2, layout.numel), torch.tensor([3, 7]), torch.randn(2, 5, 6), torch.ones(2, 5).bool()
    # Tina's layout: conv1 432 values, conv2 4608 = 8 x 576, fc.weight 160, fc.bias 5.
    net = build_generator(replace(cfg, split_policy="chunk_within_layer"), layout, 6)
    assert net.layout.sizes == [432] + [576] * 8 + [160, 5] and not net.slot_aligned
    assert net(x, t, text, mask).shape == (2, 5205)
    # The project's smoke layout: the same conv chunks, then one token per class slot (32 weights + its bias).
    net = build_generator(replace(cfg, split_policy="layer_chunks_class_rows"), layout, 6)
    assert net.layout.sizes == [432] + [576] * 8 + [33] * 5 and net.slot_aligned
    tokens = net.layout.to_tokens(x)
    w, b = layout.head(x)
    assert torch.equal(tokens[:, 9 + 2, :32], w[:, 2]) and torch.equal(tokens[:, 9 + 2, 32], b[:, 2])
    assert net(x, t, text, mask).shape == (2, 5205)
    with pytest.raises(UserError, match="class_rows needs a head arch"):
        build_generator(replace(cfg, split_policy="class_rows"), layout, 6)


def test_generator_learns_the_head_named_by_the_text():
    """Two 'classes' with orthogonal texts and opposite heads: after training, the text picks the right head."""
    torch.manual_seed(0)
    layout = head_layout(2, 3)
    base = torch.tensor([[1.0, -1.0, 0.5], [-0.5, 0.5, 1.0]])
    # Task A = (class 0, class 1) and task B = (class 1, class 0): the head rows follow the class order.
    weight = torch.stack([base, base.flip(0)]).repeat(8, 1, 1)
    bias = torch.zeros(16, 2)
    emb = torch.eye(2)
    text = torch.stack([emb, emb.flip(0)]).repeat(8, 1, 1)
    data = ParamData(torch.cat([weight.flatten(1), bias], 1), text, torch.ones(16, 2, dtype=torch.bool))
    cfg = replace(load("smoke").generator, split_policy="class_rows", conditioning="shared", normalizer="std",
                  n_embd=32, n_layer=1, n_head=2, steps=400, batch_size=32, lr=3e-3,
                  warmup_steps=20, ema_decay=0.9, timesteps=100, beta_end=0.2, permute_augment=True, log_every=100)
    net = build_generator(cfg, layout, text_dim=2)
    res = train_generator(net, data, layout, cfg, torch.device("cpu"), seed=0)
    assert res.steps_per_s > 0 and res.final_loss < 0.5
    from repro.tina.diffusion import GaussianDiffusion as GD

    flat = generate(res.ema, res.normalizer, layout, GD(100, 1e-4, 0.2, "fixed_small"),
                    torch.stack([emb, emb.flip(0)]), torch.ones(2, 2, dtype=torch.bool), torch.device("cpu"), seed=1)
    w = layout.head(flat)[0]
    err_right = (w - torch.stack([base, base.flip(0)])).abs().mean()
    err_swapped = (w - torch.stack([base.flip(0), base])).abs().mean()
    assert err_right < 0.5 * err_swapped, (err_right, err_swapped)


def test_killed_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import repro.tina.train as T

    layout = head_layout(2, 3)
    data = ParamData(torch.randn(6, 8), torch.randn(6, 2, 4), torch.ones(6, 2, dtype=torch.bool))
    cfg = replace(load("smoke").generator, n_embd=16, n_layer=1, n_head=2, steps=30, batch_size=4, warmup_steps=5,
                  log_every=10, timesteps=50, sample_steps=50)

    def run(ckpt=None):
        torch.manual_seed(0)
        net = build_generator(cfg, layout, text_dim=4)
        return T.train_generator(net, data, layout, cfg, torch.device("cpu"), seed=3, ckpt=ckpt, ckpt_every=10)

    reference = run().ema.state_dict()
    real_progress = T.progress

    class DyingBar:  # killed between the checkpoints at steps 20 and 30
        def __init__(self, iterable, **kw):
            self.bar = real_progress(iterable, **kw)

        def __iter__(self):
            for i in self.bar:
                if i == 25:
                    raise KeyboardInterrupt
                yield i

        def set_postfix(self, **kw):
            self.bar.set_postfix(**kw)

    dying_progress = DyingBar

    ckpt = tmp_path / "gen.pt.resume"
    monkeypatch.setattr(T, "progress", dying_progress)
    with pytest.raises(KeyboardInterrupt):
        run(ckpt)
    assert ckpt.is_file()
    monkeypatch.setattr(T, "progress", real_progress)
    resumed = run(ckpt).ema.state_dict()
    assert not ckpt.exists()
    for k, v in reference.items():
        assert torch.equal(v, resumed[k]), k
