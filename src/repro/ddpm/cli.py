"""`python -m repro.ddpm {train,sample,bound,figure}`: the commands the ddpm rules run (workflow/rules/ddpm.smk).

    train   train one Table 2 variant (resumable; under torchrun: data parallel) -> weights + metrics part
    sample  samples of a variant (or the released weights), FID/KID/IS against train and test statistics
    bench   training and sampling images/s at a scale's network size (prints JSON; writes nothing)
    bound   the full variational bound (NLL bits/dim) on test and a train subset, progressive-coding curve
    figure  sample grid, rate-distortion (Fig. 5), progressive generation (Fig. 6)
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence

import numpy as np

from repro.common.device import describe_device, pick_device, set_threads
from repro.common.errors import UserError
from repro.common.io import load_npz, save_npz, save_torch
from repro.common.results import ResultWriter
from repro.common.seeding import seed_everything
from repro.ddpm.config import RELEASED_ROW, VARIANTS, DDPMConfig, load_config

PAPER = "ddpm"
RELEASED = "released"
log = logging.getLogger("repro.ddpm")


# -- loading -------------------------------------------------------------------------------------------------
def load_model(path: str, variant_key: str, cfg: DDPMConfig, device):
    """(EMA network, Diffusion, Variant) of a trained run or, for variant 'released', of the released weights."""
    import torch

    from repro.ddpm.diffusion import Diffusion

    if variant_key == RELEASED:
        from repro.ddpm.released import RELEASED_VARIANT, load_released, released_configs

        model_cfg, diffusion_cfg = released_configs(cfg)
        model = load_released(path, map_location=device, model_cfg=model_cfg).to(device)
        return model, Diffusion(diffusion_cfg, RELEASED_VARIANT).to(device), RELEASED_VARIANT
    from repro.ddpm.train import build_model

    variant = VARIANTS[variant_key]
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
    except FileNotFoundError:
        raise UserError(f"{path}: trained weights not found; run the ddpm_train rule first") from None
    if ck.get("train_hash") != cfg.train_hash(variant.trained_by):
        raise UserError(f"{path} was trained with another config than config/ddpm.yaml ({cfg.scale}); re-run "
                        "its ddpm_train rule")
    model = build_model(cfg, variant).to(device)
    model.load_state_dict(ck["ema"])
    return model.eval(), Diffusion(cfg.diffusion, variant).to(device), variant


def divergence_of(path: str, variant_key: str, cfg: DDPMConfig) -> str | None:
    """'diverged at step N (last finite loss x)' if the training run behind `path` diverged, else None."""
    if variant_key == RELEASED:
        return None
    import torch

    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"{path}: trained weights not found; run the ddpm_train rule first") from None
    if ck.get("status") != "diverged":
        return None
    if ck.get("train_hash") != cfg.train_hash(VARIANTS[variant_key].trained_by):
        raise UserError(f"{path} was trained with another config than config/ddpm.yaml ({cfg.scale}); re-run "
                        "its ddpm_train rule")
    from repro.ddpm.train import Divergence

    return Divergence(int(ck["diverged_at"]), float(ck["last_finite_loss"])).describe()


def _maybe_compile(model, cfg: DDPMConfig, device):
    """torch.compile for sampling and the bound on CUDA when train.compile is set (1.4x to 2.2x on an H100)."""
    if cfg.train.compile and device.type == "cuda":
        import torch

        return torch.compile(model)
    return model


def load_checked_split(path: str, cfg: DDPMConfig):
    """The prepared split at `path`, refused (one line with the fix) if its recorded source is not what this scale
    needs (paper scale: the official CIFAR-10 archive, never the mirror's JPEGs)."""
    from repro.common.data import load_split
    from repro.common.data.workflow import source_problem

    split = load_split(path)
    problem = source_problem(split.source, cfg.dataset, cfg.scale, path)
    if problem:
        raise UserError(problem)
    return split


def load_checked_stats(path: str, cfg: DDPMConfig):
    """FID reference statistics, refused if the split they were computed from has the wrong source for the scale."""
    from repro.common.data.workflow import source_problem
    from repro.common.metrics.fidelity import FidStats

    stats = FidStats.load(path)
    problem = source_problem(str(stats.meta.get("source", "")), cfg.dataset, cfg.scale, path)
    if problem:
        raise UserError(problem)
    return stats


def _setup(args) -> tuple:
    """(config, device); torch is imported here so that `figure` runs without it (report environment)."""
    set_threads(args.threads)
    seed_everything(args.seed)
    return load_config(args.scale), pick_device()


# -- train ---------------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from repro.common.data import subset
    from repro.ddpm.train import Trainer, init_distributed

    cfg, device = _setup(args)
    if args.variant not in cfg.train_variants:
        raise UserError(f"variant {args.variant!r} is not trained at {args.scale} scale; trained: "
                        f"{list(cfg.train_variants)} (config/ddpm.yaml variants)")
    dist = init_distributed()
    if dist.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    split = load_checked_split(args.data, cfg)
    if cfg.train.train_subset:
        split = subset(split, n=min(cfg.train.train_subset, len(split)), seed=0)
    trainer = Trainer(cfg, args.variant, split.images, seed=args.seed, device=device, ckpt_dir=args.ckpt_dir,
                      dist=dist, select_fn=_selection_fid(args, cfg, device))
    with ResultWriter(paper=PAPER, part=f"train_{args.variant}_s{args.seed}", scale=args.scale, out_csv=args.out,
                      config=cfg.block) as rw:
        with rw.stage("train"):
            result = trainer.run()
        if not dist.main:
            raise SystemExit(0)       # rank 0 writes; the others leave without outputs
        final = trainer.final_weights()
        save_torch(args.out_model, final)
        rw.extra["selections"] = trainer.selections
        rw.extra.update(device=describe_device(), world_size=dist.world, resumed_from=result.resumed_from)
        variant = VARIANTS[args.variant]
        kind = "bits/dim per step term" if variant.loss_type == "kl" else "MSE"
        if result.status == "diverged":
            what = trainer.divergence.describe()
            rw.add("training", variant.row, "final loss", result.final_loss, seed=args.seed,
                   note=f"{kind}; {what}: the last finite loss")
            rw.add("training", variant.row, "diverged at step", float(result.diverged_at), seed=args.seed,
                   note=f"of {trainer.tc.steps} steps")
            rw.add("table2", variant.row, "diverged", 1.0, seed=args.seed, note=what)
        else:
            rw.add("training", variant.row, "final loss", result.final_loss, seed=args.seed, note=kind)
            rw.add("training", variant.row, "evaluated checkpoint (step)", float(final["selected_step"]),
                   seed=args.seed, note=f"EMA weights, selection: {final['selection']}")
            rw.add("table2", variant.row, "diverged", 0.0, seed=args.seed,
                   note=f"finite loss over all {result.steps} steps")
        rw.add("speed", f"train: {args.variant}", "images/s", result.images_per_s, seed=args.seed,
               n=result.steps - result.resumed_from, note=f"{device.type}, {dist.world} process(es), batch "
               f"{cfg.train.batch_size}, {torch.get_num_threads()} threads; excludes the first step")


def _selection_fid(args: argparse.Namespace, cfg: DDPMConfig, device):
    """For train.select best_fid: EMA network -> FID of select_n samples (fixed seed) against the train reference."""
    tc = cfg.train_for(args.variant)
    if tc.select != "best_fid":
        return None
    if not (args.inception and args.extractor and args.train_stats):
        raise UserError("train.select best_fid needs --inception, --extractor and --train-stats (the ddpm_train rule "
                        "passes them when the config selects by FID)")
    from repro.common.metrics.fidelity import compute_stats, fid
    from repro.ddpm.diffusion import Diffusion
    from repro.ddpm.evaluate import generate

    reference = load_checked_stats(args.train_stats, cfg)
    diffusion = Diffusion(cfg.diffusion, VARIANTS[args.variant]).to(device)

    def score(ema) -> float:
        samples = generate(ema, diffusion, n=tc.select_n, batch_size=cfg.sample.batch_size, seed=10_000 + args.seed,
                           device=device, clip=cfg.sample.clip_denoised, amp=tc.amp)
        stats = compute_stats(samples.images, args.inception, args.extractor, batch_size=cfg.fid.batch_size,
                              desc="inception (selection)")
        return fid(stats, reference)

    return score


# -- sample + FID --------------------------------------------------------------------------------------------
def cmd_sample(args: argparse.Namespace) -> None:
    from repro.common.metrics.fidelity import compute_stats, evaluate, fid
    from repro.ddpm.evaluate import generate

    cfg, device = _setup(args)
    train_ref, test_ref = load_checked_stats(args.train_stats, cfg), load_checked_stats(args.test_stats, cfg)
    diverged = divergence_of(args.model, args.variant, cfg)
    if diverged:
        return _diverged_sample(args, cfg, diverged)
    model, diffusion, variant = load_model(args.model, args.variant, cfg, device)
    model = _maybe_compile(model, cfg, device)
    sc = cfg.sample
    n = max(sc.n, cfg.fid.n)
    with ResultWriter(paper=PAPER, part=f"sample_{args.variant}_s{args.seed}", scale=args.scale, out_csv=args.out,
                      config=cfg.block) as rw:
        rw.extra["device"] = describe_device()
        with rw.stage("sample"):
            samples = generate(model, diffusion, n=n, batch_size=sc.batch_size, seed=args.seed, device=device,
                               clip=sc.clip_denoised, keep=sc.progressive, frames=sc.progressive_frames,
                               amp=cfg.train.amp)
        save_npz(args.out_samples, images=samples.images,
                 x0_frames=samples.x0_frames if samples.x0_frames is not None else np.zeros((0,), np.uint8),
                 frame_steps=samples.frame_steps, num_steps=np.array(diffusion.num_steps))
        rw.add("speed", f"sample: {args.variant}", "images/s", samples.images_per_s, seed=args.seed, n=n,
               note=f"{device.type}, full {diffusion.num_steps}-step chains, batch {sc.batch_size}")
        with rw.stage("fidelity"):
            stats = compute_stats(samples.images[:cfg.fid.n], args.inception, args.extractor,
                                  batch_size=cfg.fid.batch_size, desc="inception (samples)")
            res = evaluate(stats, train_ref, kid_subsets=cfg.fid.kid_subsets)
            fid_test = fid(stats, test_ref)
        is_std = None if np.isnan(res.is_std) else res.is_std
        rows = _sample_rows(args.variant)
        for table, row in rows:
            rw.add(table, row, "IS", res.is_mean, std=is_std, seed=args.seed, n=res.n, note=res.is_note)
            rw.add(table, row, "FID", res.fid, seed=args.seed, n=res.n, note=f"vs {res.n_ref} train images")
            rw.add(table, row, "KID", res.kid_mean, std=res.kid_std, seed=args.seed, n=res.n)
        if any(t == "table1" for t, _ in rows):
            rw.add("table1", rows[-1][1], "FID (test)", fid_test, seed=args.seed, n=res.n,
                   note=f"vs {test_ref.n} test images")


def _sample_rows(variant_key: str) -> list[tuple[str, str]]:
    """(table, row) pairs a variant's sample metrics fill."""
    if variant_key == RELEASED:
        return [("table1", RELEASED_ROW)]
    variant = VARIANTS[variant_key]
    return [("table2", variant.row)] + ([("table1", variant.table1_row)] if variant.table1_row else [])


def _diverged_sample(args: argparse.Namespace, cfg: DDPMConfig, diverged: str) -> None:
    """A diverged variant has no samples: IS, FID and KID are not available (NaN, the divergence as the note; its
    Table 2 row says `diverged` 1, from the training rule); the samples file holds no images."""
    with ResultWriter(paper=PAPER, part=f"sample_{args.variant}_s{args.seed}", scale=args.scale, out_csv=args.out,
                      config=cfg.block) as rw:
        rw.extra["status"] = "diverged"
        for table, row in _sample_rows(args.variant):
            note = f"{diverged}: no samples"
            for column in ("IS", "FID", "KID") + (("FID (test)",) if table == "table1" else ()):
                rw.add(table, row, column, math.nan, seed=args.seed, note=note)
        res = cfg.model.resolution
        save_npz(args.out_samples, images=np.zeros((0, res, res, cfg.model.in_channels), np.uint8),
                 x0_frames=np.zeros((0,), np.uint8), frame_steps=np.zeros((0,), np.int64),
                 num_steps=np.array(cfg.diffusion.steps), status=np.array(["diverged"]),
                 note=np.array([diverged]))


# -- the bound and progressive coding ------------------------------------------------------------------------
def cmd_bound(args: argparse.Namespace) -> None:
    from repro.common.data import subset
    from repro.ddpm.evaluate import bound, coding_row_step, rate_distortion

    cfg, device = _setup(args)
    splits = {"test": load_checked_split(args.test, cfg), "train": load_checked_split(args.train, cfg)}
    diverged = divergence_of(args.model, args.variant, cfg)
    if diverged:
        return _diverged_bound(args, cfg, diverged)
    model, diffusion, variant = load_model(args.model, args.variant, cfg, device)
    model = _maybe_compile(model, cfg, device)
    bc = cfg.bpd

    def images(name: str, n: int) -> np.ndarray:
        split = splits[name]
        return (subset(split, n=n, seed=0) if 0 < n < len(split) else split).images

    released = args.variant == RELEASED
    row = RELEASED_ROW if released else (variant.table1_row or variant.row)
    with ResultWriter(paper=PAPER, part=f"bound_{args.variant}_s{args.seed}", scale=args.scale, out_csv=args.out,
                      config=cfg.block) as rw:
        rw.extra["device"] = describe_device()
        results = {}
        for name, n in (("test", bc.test_n), ("train", bc.train_n)):
            with rw.stage(f"bound_{name}"):
                results[name] = bound(model, diffusion, images(name, n), batch_size=bc.batch_size, seed=args.seed,
                                      device=device, desc=f"bound ({name})")
            nll = results[name].nll
            rw.add("table1", row, f"NLL {name}", float(nll.mean()), seed=args.seed, n=len(nll),
                   note=f"full bound over T = {diffusion.num_steps}; std error {nll.std(ddof=1) / np.sqrt(len(nll)):.4f}"
                   if len(nll) > 1 else f"full bound over T = {diffusion.num_steps}")
        rd = rate_distortion(results["test"])
        T = diffusion.num_steps
        rw.add("nll_split", row, "rate (bits/dim)", float(rd.rate[-1]), seed=args.seed, n=len(results["test"].nll))
        rw.add("nll_split", row, "distortion (bits/dim)", rd.distortion_bpd, seed=args.seed)
        rw.add("nll_split", row, "RMSE at t=1", float(rd.rmse[-1]), seed=args.seed)
        rw.add("nll_split", row, "L_T (bits/dim)", float(results["test"].prior.mean()), seed=args.seed)
        # negative control of the "L_T is negligible" check: the same prior term had the forward process stopped
        # halfway (t = T/2), where q(x_t | x0) is far from N(0, I); a check that passed on it would test nothing
        half = T // 2
        rw.add("nll_split", f"{row}, forward process stopped at T/2 (control)", "L_T (bits/dim)",
               _prior_at(images("test", bc.test_n), diffusion.cfg, half), seed=args.seed,
               note=f"KL(q(x_t | x0) || N(0, I)) at t = {half} of {T}")
        if released or variant.key == "eps_simple":
            table = "table4_released" if released else "table4"
            for paper_row in bc.coding_rows:
                k = coding_row_step(paper_row, T)
                note = "" if T == 1000 else f"reverse step {k} of T = {T}"
                rw.add(table, str(paper_row), "Rate (bits/dim)", float(rd.rate[k - 1]), seed=args.seed, note=note)
                rw.add(table, str(paper_row), "Distortion (RMSE)", float(rd.rmse[k - 1]), seed=args.seed, note=note)
                rw.add(table, str(paper_row), "Distortion (pooled RMSE)", float(rd.rmse_pooled[k - 1]),
                       seed=args.seed, note=note)
                rw.add(table, str(paper_row), "PSNR (dB)", float(rd.psnr[k - 1]), seed=args.seed, note=note)
        save_npz(args.out_curve, steps=rd.steps, rate=rd.rate, rmse=rd.rmse, rmse_pooled=rd.rmse_pooled, psnr=rd.psnr,
                 terms=results["test"].terms.mean(0), prior=np.array(results["test"].prior.mean()),
                 label=np.array([row]))


def _prior_at(images: np.ndarray, dcfg, t: int) -> float:
    """Mean over images of KL(q(x_t | x0) || N(0, I)) in bits/dim, t 1-based (t = T: the bound's L_T)."""
    import torch

    from repro.common.metrics.likelihood import prior_kl
    from repro.ddpm.diffusion import from_uint8, linear_betas

    abar = float(np.prod(1.0 - linear_betas(dcfg)[:t]))
    x0 = from_uint8(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2))
    return float(prior_kl(x0, abar ** 0.5, 1.0 - abar).mean())


def _diverged_bound(args: argparse.Namespace, cfg: DDPMConfig, diverged: str) -> None:
    """A diverged variant has no bound: every number is NaN with the divergence as its note; the curve is NaN."""
    variant = VARIANTS[args.variant]
    row = variant.table1_row or variant.row
    with ResultWriter(paper=PAPER, part=f"bound_{args.variant}_s{args.seed}", scale=args.scale, out_csv=args.out,
                      config=cfg.block) as rw:
        rw.extra["status"] = "diverged"
        for column in ("NLL test", "NLL train"):
            rw.add("table1", row, column, math.nan, seed=args.seed, note=diverged)
        for column in ("rate (bits/dim)", "distortion (bits/dim)", "RMSE at t=1", "L_T (bits/dim)"):
            rw.add("nll_split", row, column, math.nan, seed=args.seed, note=diverged)
        if variant.key == "eps_simple":
            for paper_row in cfg.bpd.coding_rows:
                for column in ("Rate (bits/dim)", "Distortion (RMSE)", "Distortion (pooled RMSE)", "PSNR (dB)"):
                    rw.add("table4", str(paper_row), column, math.nan, seed=args.seed, note=diverged)
        T = cfg.diffusion.steps
        nan = np.full(T, np.nan)
        save_npz(args.out_curve, steps=np.arange(1, T + 1), rate=nan, rmse=nan, rmse_pooled=nan, psnr=nan,
                 terms=nan, prior=np.array(np.nan), label=np.array([f"{row} ({diverged})"]))


# -- figures -------------------------------------------------------------------------------------------------
def cmd_figure(args: argparse.Namespace) -> None:
    from repro.ddpm import figures

    def why_empty(arrays: dict) -> str:
        return f"{arrays['note'][0]}: no samples" if "note" in arrays else "no samples"

    if args.name == "samples":
        arrays = load_npz(args.inputs[0])
        figures.sample_grid(arrays["images"], args.out_stem, n=args.grid, why_empty=why_empty(arrays))
    elif args.name == "rate_distortion":
        figures.rate_distortion([load_npz(p) for p in args.inputs], args.out_stem)
    elif args.name == "progressive_generation":
        figures.progressive_generation(load_npz(args.inputs[0]), args.out_stem)
    elif args.name == "table2_samples":
        arrays = [load_npz(p) for p in args.inputs]
        figures.variant_samples([a["images"] for a in arrays], args.labels, args.out_stem,
                                why_empty=[why_empty(a) for a in arrays])
    else:
        raise UserError(f"unknown figure {args.name!r}")


# -- parser --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro.ddpm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, variants: list[str]) -> None:
        sp.add_argument("--scale", required=True)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--variant", required=True, choices=variants)
        sp.add_argument("--threads", type=int, default=None, help="torch CPU threads (the rule's threads)")
        sp.add_argument("--out", required=True, help="metrics part (.csv)")

    t = sub.add_parser("train", help="train one variant (resumable)")
    common(t, [k for k, v in VARIANTS.items() if not v.train_key])
    t.add_argument("--data", required=True, help="prepared train split (.npz)")
    t.add_argument("--ckpt-dir", required=True, help="periodic checkpoints (resume from last.pt)")
    t.add_argument("--out-model", required=True, help="final weights (.pt)")
    t.add_argument("--inception", help="FID Inception weights (train.select best_fid)")
    t.add_argument("--extractor", choices=["inception-pool3", "inception-full"], help="(train.select best_fid)")
    t.add_argument("--train-stats", help="train reference statistics (train.select best_fid)")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="samples + FID/KID/IS")
    common(s, [*VARIANTS, RELEASED])
    s.add_argument("--model", required=True, help="trained weights, or the released checkpoint for 'released'")
    s.add_argument("--inception", required=True, help="FID Inception weights")
    s.add_argument("--extractor", required=True, choices=["inception-pool3", "inception-full"])
    s.add_argument("--train-stats", required=True)
    s.add_argument("--test-stats", required=True)
    s.add_argument("--out-samples", required=True, help="samples (.npz)")
    s.set_defaults(fn=cmd_sample)

    b = sub.add_parser("bound", help="NLL bits/dim (full bound) and progressive coding")
    common(b, [*VARIANTS, RELEASED])
    b.add_argument("--model", required=True)
    b.add_argument("--test", required=True, help="prepared test split (.npz)")
    b.add_argument("--train", required=True, help="prepared train split (.npz)")
    b.add_argument("--out-curve", required=True, help="rate-distortion curve (.npz)")
    b.set_defaults(fn=cmd_bound)

    f = sub.add_parser("figure", help="render one figure")
    f.add_argument("--name", required=True)
    f.add_argument("--inputs", nargs="+", required=True)
    f.add_argument("--labels", nargs="*", default=[])
    f.add_argument("--grid", type=int, default=64)
    f.add_argument("--out-stem", required=True)
    f.set_defaults(fn=cmd_figure)

    n = sub.add_parser("bench", help="training and sampling images/s at a scale's network size (no outputs)")
    n.add_argument("--scale", required=True)
    n.add_argument("--variant", default="eps_simple", choices=[k for k, v in VARIANTS.items() if not v.train_key])
    n.add_argument("--train-steps", type=int, default=20)
    n.add_argument("--warmup-steps", type=int, default=5)
    n.add_argument("--batch", type=int, default=None, help="training batch (default: the config's)")
    n.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    n.add_argument("--compile", action="store_true", help="torch.compile the training network (CUDA only)")
    n.add_argument("--clip-microbatch", type=int, default=None,
                   help="clip each micro-batch of this many images (0: the whole batch; default: the config's)")
    n.add_argument("--sample-batch", type=int, default=256)
    n.add_argument("--sample-steps", type=int, default=50, help="reverse steps timed (extrapolated to T)")
    n.add_argument("--threads", type=int, default=None)
    n.add_argument("--ckpt-dir", default="/tmp/ddpm-bench")
    n.set_defaults(fn=lambda a: __import__("repro.ddpm.bench", fromlist=["main"]).main(a))
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.fn(args)

