"""The DDPM schedule and sampler, the parameter transformer, and a generator that learns text -> head."""

from dataclasses import replace

import pytest
import torch

from repro.tina.config import load
from repro.tina.diffusion import GaussianDiffusion
from repro.tina.params import HeadLayout
from repro.tina.train import HeadData, build_generator, generate_heads, train_generator


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


def test_sampler_with_an_oracle_denoiser_returns_the_data_point():
    d = GaussianDiffusion(100, 1e-4, 0.2)
    target = torch.tensor([[0.5, -1.0, 2.0]])
    out = d.sample(lambda x, t: target.expand_as(x), (4, 3), torch.device("cpu"),
                   generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target.expand(4, 3), atol=1e-5)


@pytest.mark.parametrize("policy", ["class_rows", "chunk_within_layer"])
def test_generator_forward_shapes(policy):
    cfg = replace(load("smoke").generator, split_policy=policy, chunk_size=7, n_embd=16, n_layer=1, n_head=2)
    layout = HeadLayout(3, 4)
    for text_dim in (5, None):
        net = build_generator(cfg, layout, text_dim)
        x, t = torch.randn(2, layout.numel), torch.tensor([0, 999])
        kwargs = {"text": torch.randn(2, 3, 5), "slot_mask": torch.tensor([[1, 1, 0], [1, 1, 1]]).bool()}
        out = net(x, t, **kwargs) if text_dim else net(x, t)
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_generator_learns_the_head_named_by_the_text():
    """Two 'classes' with orthogonal texts and opposite heads: after training, the text picks the right head."""
    torch.manual_seed(0)
    layout = HeadLayout(k_max=2, feat_dim=3)
    base = torch.tensor([[1.0, -1.0, 0.5], [-0.5, 0.5, 1.0]])
    # Task A = (class 0, class 1) and task B = (class 1, class 0): the head rows follow the class order.
    weight = torch.stack([base, base.flip(0)]).repeat(8, 1, 1)
    bias = torch.zeros(16, 2)
    emb = torch.eye(2)
    text = torch.stack([emb, emb.flip(0)]).repeat(8, 1, 1)
    data = HeadData(weight, bias, text, torch.ones(16, 2, dtype=torch.bool))
    cfg = replace(load("smoke").generator, n_embd=32, n_layer=1, n_head=2, steps=400, batch_size=32, lr=3e-3,
                  warmup_steps=20, ema_decay=0.9, timesteps=100, beta_end=0.2, permute_augment=True, log_every=100)
    net = build_generator(cfg, layout, text_dim=2)
    res = train_generator(net, data, layout, cfg, torch.device("cpu"), seed=0)
    assert res.steps_per_s > 0 and res.final_loss < 0.5
    from repro.tina.diffusion import GaussianDiffusion as GD

    w, b = generate_heads(res.ema, res.normalizer, layout, GD(100, 1e-4, 0.2), torch.stack([emb, emb.flip(0)]),
                          torch.ones(2, 2, dtype=torch.bool), torch.device("cpu"), seed=1)
    err_right = (w - torch.stack([base, base.flip(0)])).abs().mean()
    err_swapped = (w - torch.stack([base.flip(0), base])).abs().mean()
    assert err_right < 0.5 * err_swapped, (err_right, err_swapped)


def test_killed_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import repro.tina.train as T

    layout = HeadLayout(2, 3)
    data = HeadData(torch.randn(6, 2, 3), torch.randn(6, 2), torch.randn(6, 2, 4), torch.ones(6, 2, dtype=torch.bool))
    cfg = replace(load("smoke").generator, n_embd=16, n_layer=1, n_head=2, steps=30, batch_size=4, warmup_steps=5,
                  log_every=10, timesteps=50)

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
