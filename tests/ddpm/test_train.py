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


def test_divergence_is_reported(tmp_path):
    t = trainer(tiny_config(), tmp_path)
    with pytest.raises(UserError, match="diverged"):
        t._log_window(torch.tensor([1.0, float("nan")]))


def test_too_few_images_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="batch"):
        Trainer(tiny_config(), "eps_simple", images(2), seed=0, device=torch.device("cpu"), ckpt_dir=tmp_path)


def _ddp_worker(rank: int, world: int, tmp: str) -> None:
    import torch.distributed as dist

    from repro.ddpm.train import DistInfo

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        t = Trainer(tiny_config(), "eps_simple", images(), seed=0, device=torch.device("cpu"), ckpt_dir=f"{tmp}/ckpt",
                    dist=DistInfo(rank=rank, world=world))
        t.run()
        torch.save(t.model.state_dict(), f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_data_parallel_ranks_stay_in_sync(tmp_path):
    """Two gloo ranks (what torchrun starts per GPU) take halves of each global batch and end with equal weights;
    rank 0 alone writes the checkpoint."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "ckpt" / "last.pt").is_file()
    single = trainer(tiny_config(), tmp_path / "single")
    assert not torch.equal(single.model.conv_out.weight, a["conv_out.weight"])   # it trained
