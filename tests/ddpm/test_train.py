"""The trainer: exact resume after a kill, refusal of foreign checkpoints, warm-up, EMA, divergence message."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from repro.common.errors import UserError
from repro.ddpm.config import DDPMConfig, load_config
from repro.ddpm.train import Trainer

torch.set_num_threads(1)


class Killed(Exception):
    pass


def tiny_config(variant_loss: str = "eps_simple", **train) -> DDPMConfig:
    cfg = load_config("smoke")
    model = replace(cfg.model, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16,
                    norm_groups=2)
    tc = replace(cfg.train, steps=6, batch_size=4, ckpt_every=3, log_every=2, warmup=2, ema_decay=0.9, **train)
    return replace(cfg, model=model, train=tc, diffusion=replace(cfg.diffusion, steps=10))


def images(n: int = 12) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def trainer(cfg, ckpt_dir, variant="eps_simple", seed=0) -> Trainer:
    return Trainer(cfg, variant, images(), seed=seed, device=torch.device("cpu"), ckpt_dir=ckpt_dir)


def assert_same_state(a: Trainer, b: Trainer) -> None:
    for name in ("model", "ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k} differs"
    oa, ob = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    for k in oa:
        for s in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(oa[k][s]), torch.as_tensor(ob[k][s]))


@pytest.mark.parametrize("variant", ["eps_simple", "mu_kl_learned"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, variant):
    cfg = tiny_config()
    full = trainer(cfg, tmp_path / "full", variant)
    full.run()

    first = trainer(cfg, tmp_path / "killed", variant)

    def kill(step: int) -> None:
        if step == 4:                    # after the checkpoint at 3 completed steps, mid-interval
            raise Killed

    with pytest.raises(Killed):
        first.run(on_step=kill)
    assert (tmp_path / "killed" / "last.pt").is_file()
    resumed = trainer(cfg, tmp_path / "killed", variant)
    result = resumed.run()
    assert result.resumed_from == 3 and result.steps == 6
    assert_same_state(full, resumed)
    # and the run really moved the weights
    fresh = trainer(cfg, tmp_path / "fresh", variant)
    assert not torch.equal(fresh.model.conv_out.weight, resumed.model.conv_out.weight)


def test_different_seed_gives_different_weights(tmp_path):
    cfg = tiny_config()
    a, b = trainer(cfg, tmp_path / "a", seed=0), trainer(cfg, tmp_path / "b", seed=1)
    a.run(), b.run()
    assert not torch.equal(a.model.conv_out.weight, b.model.conv_out.weight)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    first = trainer(tiny_config(), tmp_path)
    with pytest.raises(Killed):
        first.run(on_step=lambda s: (_ for _ in ()).throw(Killed) if s == 3 else None)
    other = trainer(tiny_config(lr=5e-4), tmp_path)
    with pytest.raises(UserError, match="another configuration"):
        other.run()


def test_warmup_and_ema(tmp_path):
    t = trainer(tiny_config(), tmp_path)
    assert [t.lr_at(s) for s in (0, 1, 2, 5)] == pytest.approx([0.0, 0.5e-3, 1e-3, 1e-3])
    t.train_step(0)
    for e, p in zip(t.ema.parameters(), t.model.parameters()):
        assert torch.equal(e, p)                       # the EMA starts as a copy
    before = [p.clone() for p in t.ema.parameters()]
    t.train_step(1)
    e, p, b = next(t.ema.parameters()), next(t.model.parameters()), before[0]
    assert torch.allclose(e, 0.9 * b + 0.1 * p, atol=1e-7)


def test_divergence_is_a_result_not_an_error(tmp_path):
    """Under a 1-step warm-up step 1 updates with lr 0 and step 2 with lr 100, which blows the weights up: the loss of
    step 3 is the first non-finite one. The run stops at the end of that logging window (step 3) with status
    'diverged', records step 3 and the loss of step 2; its checkpoint is the last one with finite weights (step 2's:
    huge but finite)."""
    cfg = tiny_config(lr=100.0)
    cfg = replace(cfg, train=replace(cfg.train, steps=12, log_every=3, ckpt_every=1, warmup=1))
    t = trainer(cfg, tmp_path)
    res = t.run()
    assert res.status == "diverged" and res.diverged_at == 3 and t.step == 3
    again = trainer(cfg, tmp_path / "again")
    again.train_step(0)
    assert res.final_loss == pytest.approx(again.train_step(1).item())          # the loss of step 2
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    assert ck["step"] == 2 and all(torch.isfinite(v).all() for v in ck["model"].values())
    final = t.final_weights()
    assert final["status"] == "diverged" and final["diverged_at"] == 3 and "ema" not in final
    assert "diverged at step 3" in t.divergence.describe()


def test_train_overrides_apply_to_one_variant(tmp_path):
    cfg = replace(tiny_config(), train_overrides={"mu_mse": {"lr": 100.0}})
    assert cfg.train_for("mu_mse").lr == 100.0 and cfg.train_for("eps_simple").lr == cfg.train.lr
    assert cfg.train_hash("mu_mse") != replace(cfg, train_overrides={}).train_hash("mu_mse")
    assert cfg.train_hash("eps_simple") == replace(cfg, train_overrides={}).train_hash("eps_simple")
    block = dict(cfg.block, train_overrides={"eps_kl_learned": {"lr": 1.0}}, variants=["eps_simple"],
                 bpd=dict(cfg.block["bpd"], variants=["eps_simple"]))
    with pytest.raises(UserError, match="train_overrides for .*eps_kl_learned.* not trained"):
        DDPMConfig.from_block("smoke", block)


def test_too_few_images_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="batch"):
        Trainer(tiny_config(), "eps_simple", images(2), seed=0, device=torch.device("cpu"), ckpt_dir=tmp_path)


MICRO = (0, 2)   # micro-batch clipping off, and on at each rank's half of the global batch


def _ddp_worker(rank: int, world: int, tmp: str) -> None:
    """Both settings of MICRO in one pair of processes (each spawned child imports torch and this module anew)."""
    import torch.distributed as dist

    from repro.ddpm.train import DistInfo

    torch.set_num_threads(1)
    for micro in MICRO:
        out = f"{tmp}/micro{micro}"
        dist.init_process_group("gloo", init_method=f"file://{out}-rendezvous", rank=rank, world_size=world)
        try:
            t = Trainer(tiny_config(clip_microbatch=micro), "eps_simple", images(), seed=0,
                        device=torch.device("cpu"), ckpt_dir=f"{out}/ckpt", dist=DistInfo(rank=rank, world=world))
            t.run()
            torch.save(t.model.state_dict(), f"{out}/rank{rank}.pt")
        finally:
            dist.destroy_process_group()


def test_data_parallel_ranks_stay_in_sync(tmp_path):
    """Two gloo ranks (what torchrun starts per GPU) take halves of each global batch and end with equal weights;
    rank 0 alone writes the checkpoint. With micro-batch clipping (micro 2 = each rank's half, as the official
    per-replica clipping) DDP's averaging is held back and the clipped gradients are all-reduced by hand."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    single = trainer(tiny_config(), tmp_path / "single")
    for micro in MICRO:
        out = tmp_path / f"micro{micro}"
        a, b = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
        for k in a:
            assert torch.equal(a[k], b[k]), (micro, k)
        assert (out / "ckpt" / "last.pt").is_file(), micro
        assert not torch.equal(single.model.conv_out.weight, a["conv_out.weight"]), micro   # it trained


# -- gradient clipping per micro-batch (official: hojonathanho/diffusion@c461299 diffusion_tf/utils.py make_optimizer
#    clips each TPU replica's 16-image gradient at global norm 1 inside tf.tpu.CrossShardOptimizer, whose
#    cross-replica sum averages the clipped gradients) ----------------------------------------------------------
def no_dropout(cfg: DDPMConfig, **train) -> DDPMConfig:
    return replace(cfg, model=replace(cfg.model, dropout=0.0), train=replace(cfg.train, **train))


def step_inputs(t: Trainer, step: int):
    """The batch, steps and noise of `train_step(step)` (same seeds), without flips."""
    from repro.ddpm.diffusion import from_uint8
    from repro.ddpm.train import STEP_STREAM, stream_seed

    gen = torch.Generator().manual_seed(stream_seed(t.seed, STEP_STREAM, step, 0))
    x = from_uint8(t.data[t._batch_index(step)])
    return x, torch.randint(0, t.diffusion.num_steps, (x.shape[0],), generator=gen), torch.randn(x.shape, generator=gen)


def test_microbatch_clipping_averages_the_clipped_gradients(tmp_path):
    clip = 1e-3                                       # so small that every micro-batch's gradient is clipped
    cfg = no_dropout(tiny_config(), grad_clip=clip, clip_microbatch=2, flip=False)
    t = trainer(cfg, tmp_path)
    x, ts, noise = step_inputs(t, 0)
    params = list(t.model.parameters())
    want = [torch.zeros_like(p) for p in params]
    for sl in (slice(0, 2), slice(2, 4)):             # by hand: each half's gradient scaled to norm `clip`
        g = torch.autograd.grad(t.diffusion.training_loss(t.model, x[sl], ts[sl], noise[sl]).mean(), params)
        norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
        assert norm > 10 * clip
        for w, gi in zip(want, g):
            w += gi * (clip / norm) / 2
    t._clipped_microbatch_backward(x, ts, noise, 2)
    for p, w in zip(params, want):
        torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-10)
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
    assert total < clip                               # two clipped gradients that are not parallel average below it
    # clipping the whole batch instead gives a gradient of norm exactly `clip`, in another direction
    whole = trainer(no_dropout(tiny_config(), grad_clip=clip, clip_microbatch=0, flip=False), tmp_path / "w")
    whole.train_step(0)
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in whole.model.parameters())).item()
    assert norm == pytest.approx(clip, rel=1e-4)      # torch scales by clip / (norm + 1e-6)


def test_microbatch_clipping_without_active_clip_is_the_batch_gradient(tmp_path):
    # norm far below the threshold: averaging the micro-batch gradients is the batch gradient (linearity)
    a = trainer(no_dropout(tiny_config(), grad_clip=1e6, clip_microbatch=2), tmp_path / "a")
    b = trainer(no_dropout(tiny_config(), grad_clip=1e6, clip_microbatch=0), tmp_path / "b")
    la, lb = a.train_step(0), b.train_step(0)
    assert la.item() == pytest.approx(lb.item(), rel=1e-6)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-9)


def test_microbatch_must_divide_the_batch(tmp_path):
    with pytest.raises(UserError, match="clip_microbatch 3 does not divide"):
        trainer(tiny_config(clip_microbatch=3), tmp_path)


# -- checkpoint selection (paper App. B: the checkpoint of minimum FID) -----------------------------------------
def test_best_fid_selection_keeps_the_best_ema_and_survives_resume(tmp_path):
    """Scored at steps 2, 4, 6 (a stand-in score per step: 5, 3, 4); killed after step 4's selection with the last
    checkpoint at step 3. The resumed run re-scores step 4 (bitwise the same weights) and ends with the EMA
    weights of step 4, not the last ones."""
    cfg = tiny_config(select="best_fid", select_every=2, select_n=4)      # steps 6, checkpoints every 3
    table = {2: 5.0, 4: 3.0, 6: 4.0}
    holder, emas = {}, {}

    def score(ema):
        step = holder["t"].step
        emas[step] = {k: v.clone() for k, v in ema.state_dict().items()}
        return table[step]

    holder["t"] = t = trainer_with(cfg, tmp_path, score)
    with pytest.raises(Killed):
        t.run(on_step=lambda s: kill_at(s, 3))       # 0-indexed step 3 = the 4th step, after its selection
    assert t.best == (4, 3.0) and t.selections == [(2, 5.0), (4, 3.0)]
    first_best = emas[4]
    holder["t"] = t2 = trainer_with(cfg, tmp_path, score)
    t2.run()
    assert t2.selections == [(2, 5.0), (4, 3.0), (6, 4.0)] and t2.best == (4, 3.0)
    final = t2.final_weights()
    assert final["selected_step"] == 4 and "min FID 3" in final["selection"]
    for k, v in final["ema"].items():
        assert torch.equal(v, first_best[k]) and torch.equal(v, emas[4][k]), k
    assert not torch.equal(final["ema"]["conv_in.weight"], t2.ema.state_dict()["conv_in.weight"])   # not the last


def kill_at(step: int, at: int) -> None:
    if step == at:
        raise Killed


def trainer_with(cfg, ckpt_dir, select_fn) -> Trainer:
    return Trainer(cfg, "eps_simple", images(), seed=0, device=torch.device("cpu"), ckpt_dir=ckpt_dir,
                   select_fn=select_fn)


def test_best_fid_selection_needs_its_settings(tmp_path):
    with pytest.raises(UserError, match="select best_fid needs"):
        trainer_with(tiny_config(select="best_fid", select_every=0, select_n=4), tmp_path, lambda ema: 1.0)
    with pytest.raises(UserError, match="select best_fid needs"):
        trainer(tiny_config(select="best_fid", select_every=2, select_n=4), tmp_path)      # no scoring function
