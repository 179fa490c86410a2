"""DDPM training (Algorithm 1): Adam, linear warm-up, global-norm clipping, EMA, random flips; resumable, DDP, AMP.

Hyperparameters (paper App. B; official `scripts/run_cifar.py`, `diffusion_tf/utils.py`, `tpu_utils.py`; ddpm
sheet §3): Adam(lr 2e-4, eps 1e-8), lr·min(step / warmup, 1) with warm-up 5000, gradient clipping at global norm
1, EMA decay 0.9999 (the EMA starts as a copy of the weights), batch 128, random horizontal flips.

Gradient clipping, `train.clip_microbatch`: the official TPU code computes each of its 8 replicas' gradient on 16
images, clips that at global norm 1 (`utils.make_optimizer`: clip_by_global_norm inside a CrossShardOptimizer, whose
cross-replica sum comes after), and averages the 8 clipped gradients. `clip_microbatch: 16` does the same at any
world size: the global batch is cut into micro-batches of 16 images, each micro-batch's mean gradient is clipped,
and the clipped gradients are averaged (across ranks too, by an all-reduce after the local micro-batches, so DDP's
own averaging is held back with `no_sync`). With 8 ranks of 16 images it is exactly the official computation and
costs nothing extra; on one device it runs 8 forward/backward passes of 16 images instead of one of 128.
`clip_microbatch: 0` clips the gradient of the whole batch once.

Exact resume. Every random draw of step s (batch order, flips, timesteps, noise, dropout) comes from generators
seeded with (seed, s, rank) alone, and a checkpoint holds the weights, the EMA, Adam's state and the step. So a
run killed after any checkpoint and started again ends with bitwise the same weights as an uninterrupted run on the
same device (`tests/ddpm/test_train.py`). Checkpoints are written atomically; one whose training hash differs
from the run's (another config) is refused with a message, never silently mixed in.

Checkpoint selection (`train.select`): 'last' evaluates the EMA weights of the last step; 'best_fid' follows the
paper (App. B: sample quality and likelihood are reported at the checkpoint of minimum FID): every `select_every`
steps and at the last step, `select_fn(ema)` (an FID of `select_n` samples against the train reference, made by the
CLI) scores the EMA weights, and the best so far are kept in `best.pt` beside the checkpoints (written atomically,
carried through resume). The final weights say which step they come from.

Data parallel: under `torchrun` (WORLD_SIZE > 1) each rank takes its slice of the same global batch and DDP
averages the gradients; rank 0 writes checkpoints and outputs. On CUDA, `amp` runs the network under bf16 autocast.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from repro.common.errors import UserError
from repro.common.io import save_torch
from repro.common.progress import progress
from repro.ddpm.config import VARIANTS, DDPMConfig, Variant
from repro.ddpm.diffusion import Diffusion, from_uint8
from repro.ddpm.unet import UNet, cpu_layout

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """Join the torchrun process group if WORLD_SIZE > 1 (NCCL on CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    info = DistInfo(rank=dist.get_rank(), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def build_model(cfg: DDPMConfig, variant: Variant) -> UNet:
    factor = 2 if variant.learned_var else 1
    return UNet(cfg.model, out_ch=cfg.model.in_channels * factor)


def stream_seed(seed: int, *streams: int) -> int:
    """A 63-bit seed for one stream of draws, e.g. (seed, STEP, step, rank) or (seed, PERM, epoch)."""
    return int(np.random.SeedSequence([seed, *streams]).generate_state(1, np.uint64)[0] >> np.uint64(1))


STEP_STREAM, PERM_STREAM = 0, 1


@dataclass(frozen=True)
class TrainResult:
    steps: int
    images_per_s: float          # training throughput over this invocation (after its first step), all ranks
    final_loss: float            # mean loss over the last logging window (diverged: the last finite loss)
    resumed_from: int
    losses: list[tuple[int, float]]
    status: str = "ok"           # "ok" | "diverged"
    diverged_at: int | None = None   # the step (1-based count) whose loss was the first non-finite one


@dataclass(frozen=True)
class Divergence:
    """A run whose loss went non-finite: an expected result for Table 2's unstable rows, not an error."""

    step: int                    # 1-based: the loss of the step-th update was the first non-finite one
    last_finite_loss: float      # the loss of the step before (or the last logged window mean), NaN if none

    def describe(self) -> str:
        return f"diverged at step {self.step} (last finite loss {self.last_finite_loss:.4g})"


class Trainer:
    """Trains one variant on uint8 images [N, H, W, C]; `run` resumes from `ckpt_dir/last.pt` if present."""

    def __init__(self, cfg: DDPMConfig, variant_key: str, images: np.ndarray, *, seed: int,
                 device: torch.device, ckpt_dir: str | os.PathLike, dist: DistInfo = DistInfo(),
                 select_fn: Callable[[nn.Module], float] | None = None):
        self.cfg, self.tc = cfg, cfg.train_for(variant_key)
        self.variant = VARIANTS[variant_key]
        self.seed, self.device, self.dist = seed, device, dist
        self.ckpt_path = Path(ckpt_dir) / "last.pt"
        self.best_path = Path(ckpt_dir) / "best.pt"
        self.hash = cfg.train_hash(variant_key)
        if self.tc.batch_size % dist.world:
            raise UserError(f"train.batch_size {self.tc.batch_size} is not divisible by the {dist.world} processes")
        self.local_batch = self.tc.batch_size // dist.world
        micro = self.tc.clip_microbatch
        if 0 < micro < self.tc.batch_size and self.local_batch % micro:
            raise UserError(f"train.clip_microbatch {micro} does not divide the {self.local_batch} images per process "
                            f"(batch_size {self.tc.batch_size} over {dist.world}); use a divisor, or 0 to clip the "
                            "whole batch's gradient")
        if len(images) < self.tc.batch_size:
            raise UserError(f"{len(images)} training images for a batch of {self.tc.batch_size}; lower "
                            "train.batch_size or raise train.train_subset in config/ddpm.yaml")
        self.data = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous().to(device)
        self.steps_per_epoch = len(images) // self.tc.batch_size
        torch.manual_seed(seed)  # the initial weights
        self.model = cpu_layout(build_model(cfg, self.variant).to(device), device)   # the EMA copy keeps it
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.diffusion = Diffusion(cfg.diffusion, self.variant).to(device)
        cuda = device.type == "cuda"
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.tc.lr, eps=1e-8, fused=cuda or None)
        self.net: nn.Module = self.model
        if dist.world > 1:
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=[dist.local_rank] if cuda else None)
        if self.tc.compile and cuda:
            self.net = torch.compile(self.net)   # checkpoints and the EMA use self.model: same keys either way
        self._perm_epoch, self._perm = -1, None
        self.step = 0
        self.losses: list[tuple[int, float]] = []
        self.divergence: Divergence | None = None
        if self.tc.select == "best_fid" and (select_fn is None or self.tc.select_every <= 0 or self.tc.select_n <= 0):
            raise UserError(f"{variant_key}: train.select best_fid needs select_every > 0, select_n > 0 and the FID "
                            "inputs (Inception weights, train statistics); or use select: last")
        self.select_fn = select_fn if self.tc.select == "best_fid" else None
        self.best: tuple[int, float] | None = None     # (step, FID) of the best EMA weights so far
        self.selections: list[tuple[int, float]] = []

    # -- checkpoints -----------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                "step": self.step, "train_hash": self.hash, "variant": self.variant.key, "seed": self.seed,
                "losses": self.losses, "best": self.best, "selections": self.selections}

    def save_checkpoint(self) -> None:
        """Write last.pt, unless the weights are no longer finite (a run that is diverging keeps its last finite
        checkpoint; the divergence itself is recorded when the loss window is read)."""
        finite = bool(torch.stack([p.isfinite().all() for p in self.model.parameters()]).all())
        if not finite:
            log.warning("%s: non-finite weights after step %d; checkpoint not written", self.variant.key, self.step)
        elif self.dist.main:
            save_torch(self.ckpt_path, self.state())
        self._barrier()

    def try_resume(self) -> int:
        if not self.ckpt_path.is_file():
            return 0
        try:
            ck = torch.load(self.ckpt_path, map_location=self.device, weights_only=False)
        except Exception as err:  # noqa: BLE001 - any unreadable checkpoint gets the same advice
            raise UserError(f"{self.ckpt_path}: unreadable checkpoint ({err}); delete it to start over") from None
        if ck.get("train_hash") != self.hash or ck.get("seed") != self.seed:
            raise UserError(f"{self.ckpt_path} was written by another configuration or seed (hash "
                            f"{ck.get('train_hash')} vs {self.hash}); delete {self.ckpt_path.parent} to start over")
        self.model.load_state_dict(ck["model"])
        self.ema.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["opt"])
        self.step, self.losses = int(ck["step"]), [tuple(x) for x in ck["losses"]]
        self.best = tuple(ck["best"]) if ck.get("best") else None
        self.selections = [tuple(x) for x in ck.get("selections", [])]
        log.info("resumed %s from step %d", self.variant.key, self.step)
        return self.step

    def _barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.barrier()

    # -- one step --------------------------------------------------------------------------------------------
    def _batch_index(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(stream_seed(self.seed, PERM_STREAM, epoch))
            self._perm, self._perm_epoch = torch.randperm(len(self.data), generator=gen), epoch
        start = pos * self.tc.batch_size + self.dist.rank * self.local_batch
        return self._perm[start:start + self.local_batch].to(self.device)

    def lr_at(self, step: int) -> float:
        """Official `get_warmed_up_lr`: lr · min(step / warmup, 1) (so the very first update has lr 0)."""
        return self.tc.lr * min(step / self.tc.warmup, 1.0) if self.tc.warmup > 0 else self.tc.lr

    def train_step(self, step: int) -> torch.Tensor:
        s = stream_seed(self.seed, STEP_STREAM, step, self.dist.rank)
        torch.manual_seed(s)                                  # dropout masks
        gen = torch.Generator(device=self.device).manual_seed(s)
        x = from_uint8(self.data[self._batch_index(step)])
        b = x.shape[0]
        if self.tc.flip:
            flip = torch.rand(b, generator=gen, device=self.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        t = torch.randint(0, self.diffusion.num_steps, (b,), generator=gen, device=self.device)
        noise = torch.randn(x.shape, generator=gen, device=self.device)
        micro = self.tc.clip_microbatch if 0 < self.tc.clip_microbatch < self.tc.batch_size else 0
        if micro and self.tc.grad_clip > 0:
            loss = self._clipped_microbatch_backward(x, t, noise, micro)
        else:
            loss = self._loss(self.net, x, t, noise)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.tc.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(step)
        self.opt.step()
        self._update_ema(step)
        return loss.detach()

    def _loss(self, net: nn.Module, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        amp = self.tc.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            return self.diffusion.training_loss(net, x, t, noise).float().mean()

    def _clipped_microbatch_backward(self, x: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                                     micro: int) -> torch.Tensor:
        """Leave in .grad the mean over micro-batches (of all ranks) of each micro-batch's gradient clipped at
        `grad_clip`; return the mean loss over this rank's images."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        acc = [torch.zeros_like(p) for p in params]
        chunks = x.shape[0] // micro
        no_sync = self.net.no_sync if isinstance(self.net, nn.parallel.DistributedDataParallel) else None
        total = torch.zeros((), device=self.device)
        for c in range(chunks):
            sl = slice(c * micro, (c + 1) * micro)
            self.opt.zero_grad(set_to_none=False)
            if no_sync is not None:
                with no_sync():
                    loss = self._loss(self.net, x[sl], t[sl], noise[sl])
                    loss.backward()
            else:
                loss = self._loss(self.net, x[sl], t[sl], noise[sl])
                loss.backward()
            nn.utils.clip_grad_norm_(params, self.tc.grad_clip)
            torch._foreach_add_(acc, [p.grad for p in params])
            total += loss.detach()
        torch._foreach_div_(acc, chunks * self.dist.world)
        if self.dist.world > 1:
            import torch.distributed as dist

            for a in acc:
                dist.all_reduce(a)
        for p, a in zip(params, acc):
            p.grad = a
        return total / chunks

    @torch.no_grad()
    def _update_ema(self, step: int) -> None:
        ema, cur = list(self.ema.parameters()), list(self.model.parameters())
        if step == 0:
            torch._foreach_copy_(ema, cur)
        else:
            torch._foreach_lerp_(ema, cur, 1.0 - self.tc.ema_decay)

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, on_step: Callable[[int], None] | None = None) -> TrainResult:
        """Train to `train.steps`; `on_step(step)` is called after each step (tests use it to kill a run).

        A non-finite loss (seen once per logging window, the one host sync) ends the run early with status
        "diverged": the step and the last finite loss are recorded, checkpoints only ever hold finite weights, and
        the caller reports it as the variant's result (DDPM Table 2 reports two rows as unstable)."""
        start = self.try_resume()
        self.model.train()
        window = torch.zeros(max(self.tc.log_every, 1), device=self.device)
        n_in_window, t0, first_done = 0, time.perf_counter(), start
        bar = progress(range(start, self.tc.steps), desc=f"train {self.variant.key}", total=self.tc.steps - start,
                       initial=0, unit="step", disable=not self.dist.main)
        for step in bar:
            window[n_in_window] = self.train_step(step)
            n_in_window += 1
            self.step = step + 1
            if step == start:      # time from the end of the first step: excludes one-off allocation costs
                self._sync()
                t0, first_done = time.perf_counter(), self.step
            if n_in_window == len(window) or self.step == self.tc.steps:
                self._log_window(window[:n_in_window])
                n_in_window = 0
                if self.divergence is not None:
                    break
            if self.select_fn is not None and (self.step % self.tc.select_every == 0 or self.step == self.tc.steps):
                self._select()
            if self.tc.ckpt_every and self.step % self.tc.ckpt_every == 0 and self.step < self.tc.steps:
                self.save_checkpoint()
            if on_step is not None:
                on_step(step)
        self._sync()
        elapsed = time.perf_counter() - t0
        done = self.step - first_done
        ips = done * self.tc.batch_size / elapsed if done > 0 and elapsed > 0 else math.nan
        if self.divergence is not None:
            return TrainResult(steps=self.step, images_per_s=ips, final_loss=self.divergence.last_finite_loss,
                               resumed_from=start, losses=list(self.losses), status="diverged",
                               diverged_at=self.divergence.step)
        final = self.losses[-1][1] if self.losses else math.nan
        return TrainResult(steps=self.step, images_per_s=ips, final_loss=final, resumed_from=start,
                           losses=list(self.losses))

    def _log_window(self, window: torch.Tensor) -> None:
        value = float(window.mean())                           # the one host sync per logging window
        if not math.isfinite(value):
            finite = torch.isfinite(window)
            first_bad = int((~finite).nonzero()[0])
            first_step = self.step - len(window) + 1            # 1-based step of window[0]
            if first_bad > 0:
                last = float(window[first_bad - 1])
            else:
                last = self.losses[-1][1] if self.losses else math.nan
            self.divergence = Divergence(step=first_step + first_bad, last_finite_loss=last)
            log.warning("%s: training loss is %s: %s; recorded as the variant's result", self.variant.key, value,
                        self.divergence.describe())
            return
        self.losses.append((self.step, value))
        log.info("%s step %d loss %.5f lr %.2e", self.variant.key, self.step, value, self.lr_at(self.step - 1))

    def _select(self) -> None:
        """Score the EMA weights of this step; keep them in best.pt if they are the best so far (rank 0)."""
        if self.dist.main:
            score = float(self.select_fn(self.ema))
            self.selections.append((self.step, score))
            log.info("%s step %d: selection FID %.4f (best so far %s)", self.variant.key, self.step, score,
                     "none" if self.best is None else f"{self.best[1]:.4f} at step {self.best[0]}")
            if math.isfinite(score) and (self.best is None or score < self.best[1]):
                self.best = (self.step, score)
                save_torch(self.best_path, {"ema": self.ema.state_dict(), "step": self.step, "fid": score,
                                            "train_hash": self.hash, "seed": self.seed})
        self._barrier()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def final_weights(self) -> dict:
        """What the evaluation loads: the EMA and raw weights with what made them. A diverged run holds no
        weights, only its status, the step of divergence and the last finite loss."""
        info = {"variant": self.variant.key, "step": self.step, "train_hash": self.hash, "seed": self.seed,
                "model_config": asdict(self.cfg.model), "diffusion_config": asdict(self.cfg.diffusion),
                "losses": self.losses}
        if self.divergence is not None:
            return {**info, "status": "diverged", "diverged_at": self.divergence.step,
                    "last_finite_loss": self.divergence.last_finite_loss}
        out = {**info, "status": "ok", "ema": self.ema.state_dict(), "model": self.model.state_dict(),
               "selected_step": self.step, "selection": "last", "selections": self.selections}
        if self.select_fn is not None and self.best is not None:
            best = torch.load(self.best_path, map_location="cpu", weights_only=False)
            if best.get("train_hash") != self.hash or int(best["step"]) != self.best[0]:
                raise UserError(f"{self.best_path} does not hold the best weights this run recorded (step "
                                f"{self.best[0]}); delete {self.ckpt_path.parent} to start over")
            out.update(ema=best["ema"], selected_step=self.best[0], selection=f"min FID {self.best[1]:.4g} of "
                       f"{self.tc.select_n} samples, every {self.tc.select_every} steps")
        return out
