"""`python -m repro.lowdim {exact,curved,summary,figure}`: the lowdim rules' commands (runnable by hand)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import pandas as pd

from repro.common.config import load_paper_config
from repro.common.errors import UserError
from repro.common.io import atomic_path
from repro.common.progress import progress
from repro.common.results import ResultWriter
from repro.common.seeding import rng
from repro.lowdim.analysis import dim_dependence, rate_in_T
from repro.lowdim.config import LowdimConfig
from repro.lowdim.curved import path_kl_mc, run_sampler, tangent_mixture
from repro.lowdim.exact import exact_errors
from repro.lowdim.marginal import marginal_kl
from repro.lowdim.schedules import make_schedule

PAPER = "lowdim"


def _write_csv(df: pd.DataFrame, path: str) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g")


EXACT_COLUMNS = ("schedule", "design", "T", "d", "kl", "tv", "path_kl")
CURVED_COLUMNS = ("design", "eps", "T", "d", "path_kl", "kl")


def read_grid(path: str, columns: Sequence[str], rule: str) -> pd.DataFrame:
    """A grid CSV written by `rule`; a missing, unreadable or foreign file raises one UserError saying so."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"{path}: grid not found; make it with rule {rule} (snakemake --cores 1 {path})") from None
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a readable CSV ({str(err).splitlines()[0]}); delete it and re-run rule "
                        f"{rule}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"{path}: no column(s) {', '.join(missing)} (it has {', '.join(map(str, df.columns))}); "
                        f"not a grid of rule {rule}: delete it and re-run that rule")
    return df


def cmd_exact(args) -> None:
    block = load_paper_config(PAPER, args.scale)
    cfg = LowdimConfig.from_dict(block)
    ex = cfg.exact
    with ResultWriter(PAPER, "exact", args.scale, args.out, config=block) as rw:
        records = []
        with rw.stage("exact_grid"):
            combos = [(s, des, T) for s in ex.schedules for des in ex.designs for T in ex.steps]
            for sched_name, design, T in progress(combos, desc="exact KL/TV grid"):
                sched = make_schedule(sched_name, T, ex.c0, ex.c1)
                records += [asdict(r) for r in exact_errors(sched, design, cfg.k, list(ex.dims))]
        grid = pd.DataFrame(records)
        for r in grid.itertuples():
            row, col = f"{r.design}, T={r.T}", f"d={r.d}"
            rw.add(f"t1_kl_{r.schedule}", row, col, r.kl)
            rw.add(f"t1_tv_{r.schedule}", row, col, r.tv)
            rw.add(f"t1_pathkl_{r.schedule}", row, col, r.path_kl)
        _write_csv(grid, args.out_grid)


def _row(design: str, eps: float, T: int) -> str:
    return f"{design}, T={T}" if eps == 0 else f"{design}, eps={eps:g}, T={T}"


def curved_grid(cfg: LowdimConfig, seed: int) -> pd.DataFrame:
    """Per unit (a fresh manifold and fresh draws), ambient dimension d and step count T: the Monte Carlo path KL
    of every design and score-error level, and, at the largest T only (each design's sampler carries `samples` draws
    through all T steps), the marginal KL at t = 1 of the `marginal_designs` without score error. The designs of a
    unit share every random draw (the same X samples, the same sampler noise), so their differences are paired."""
    cv = cfg.curved
    records = []
    for j in range(cv.units):
        for d in cv.dims:
            target = tangent_mixture(cv.anchors, d, cfg.k, cv.frequency, cv.tangent_scale, rng(seed, d, j))
            for T in cv.steps:
                sched = make_schedule(cv.schedule, T, cfg.exact.c0, cfg.exact.c1)
                res = path_kl_mc(target, sched, list(cv.designs), cv.path_samples, rng(seed, d, T, j, 1),
                                 score_eps=cv.score_eps, steps=cv.step_subsample,
                                 desc=f"path KL unit {j + 1}/{cv.units} d={d} T={T}")
                kl = {}
                if T == max(cv.steps):
                    x1 = target.sample(np.full(cv.samples, sched.abar[0]), rng(seed, d, T, j, 2))
                    for des in cv.marginal_designs:
                        y1 = run_sampler(target, sched, des, cv.samples, rng(seed, d, T, j, 3),
                                         desc=f"sampler {des} unit {j + 1}/{cv.units} d={d} T={T}")
                        kl[des] = marginal_kl(target, x1, y1, float(sched.abar[0]), cv.knn)
                records += [{"design": r.design, "eps": r.score_eps, "T": T, "d": d, "unit": j, "tau": target.tau,
                             "path_kl": r.mean, "path_se": r.stderr,
                             "kl": kl.get(r.design, math.nan) if r.score_eps == 0 else math.nan, "seed": seed}
                            for r in res]
    return pd.DataFrame(records)


def cmd_curved(args) -> None:
    block = load_paper_config(PAPER, args.scale)
    cfg = LowdimConfig.from_dict(block)
    cv = cfg.curved
    with ResultWriter(PAPER, f"curved_s{args.seed}", args.scale, args.out, config=block) as rw:
        with rw.stage("curved_grid"):
            grid = curved_grid(cfg, args.seed)
        for table, value, what in (("t2_pathkl", "path_kl", "Monte Carlo path KL (an upper bound on KL at t = 1)"),
                                   ("t2_kl", "kl", "KL at t = 1 estimated on the chart statistic (a lower bound)")):
            note = f"{what}; mean over {cv.units} units (fresh manifolds), std: between units"
            for (des, eps, T, d), g in grid.groupby(["design", "eps", "T", "d"], sort=False):
                if g[value].isna().all():
                    continue
                row, col = _row(des, eps, T), f"d={d}"
                for r in g.itertuples():
                    rw.add(table, row, col, getattr(r, value), seed=args.seed, unit=f"u{r.unit}")
                rw.add(table, row, col, g[value].mean(), seed=args.seed, std=g[value].std(ddof=1), n=len(g),
                       note=note)
        d_max = max(cv.dims)
        note = f"path KL at d = {d_max}; mean over {cv.units} units, std: between units"
        for (des, eps, T), g in grid[grid["d"] == d_max].groupby(["design", "eps", "T"], sort=False):
            rw.add("t2_score_error", f"{des}, eps={eps:g}", f"T={T}", g["path_kl"].mean(), seed=args.seed,
                   std=g["path_kl"].std(ddof=1), n=len(g), note=note)
        _write_csv(grid, args.out_grid)


def cmd_summary(args) -> None:
    block = load_paper_config(PAPER, args.scale)
    exact = read_grid(args.exact_grid, EXACT_COLUMNS, "lowdim_exact")
    curved = pd.concat([read_grid(p, CURVED_COLUMNS, "lowdim_curved") for p in args.curved_grid])
    curved = curved[curved["eps"] == 0].groupby(["design", "T", "d"], as_index=False, sort=False)[
        ["path_kl", "kl"]].mean()
    with ResultWriter(PAPER, "summary", args.scale, args.out, config=block) as rw:
        for sched, g in exact.groupby("schedule", sort=False):
            for r in dim_dependence(g, "kl").itertuples():
                rw.add("dim_dependence", f"exact {sched} {r.design}, T={r.T}", "ratio", r.ratio)
                rw.add("dim_dependence", f"exact {sched} {r.design}, T={r.T}", "slope", r.slope)
            for value in ("tv", "kl"):
                for r in rate_in_T(g, value).itertuples():
                    rw.add("rates", f"{sched} {r.design}", f"{value.upper()} slope", r.slope)
        for value, name in (("path_kl", "path KL"), ("kl", "KL")):
            part = curved.dropna(subset=[value])
            for r in dim_dependence(part, value).itertuples():
                for col, x in (("ratio", r.ratio), ("slope", r.slope)):
                    ok = np.isfinite(x)
                    rw.add("dim_dependence", f"curved {name} {r.design}, T={r.T}", col, x if ok else None,
                           note="" if ok else f"not defined: the {name} estimate is not positive at every d (a k-NN "
                                              "estimate can fall below 0 when the divergence is near 0)")


def cmd_figure(args) -> None:
    from repro.lowdim import figures

    exact = read_grid(args.exact_grid, EXACT_COLUMNS, "lowdim_exact")
    curved = (pd.concat([read_grid(p, CURVED_COLUMNS, "lowdim_curved") for p in args.curved_grid])
              if args.curved_grid else None)
    figures.FIGURES[args.name](exact=exact, curved=curved, stem=args.out_stem)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m repro.lowdim", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    e = sub.add_parser("exact", help="Tier 1: closed-form KL, quadrature TV, path KL over the (schedule, design, T, d) grid")
    e.add_argument("--scale", required=True)
    e.add_argument("--out", required=True, help="metrics part (.csv)")
    e.add_argument("--out-grid", required=True, help="the full grid (.csv), for figures")
    e.set_defaults(fn=cmd_exact)

    c = sub.add_parser("curved", help="Tier 2: path KL and marginal KL at t = 1 on a curved k-dimensional target, "
                       "exact score")
    c.add_argument("--scale", required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True)
    c.add_argument("--out-grid", required=True)
    c.set_defaults(fn=cmd_curved)

    s = sub.add_parser("summary", help="dependence on d and rates in T, from the grids")
    s.add_argument("--scale", required=True)
    s.add_argument("--exact-grid", required=True)
    s.add_argument("--curved-grid", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_summary)

    f = sub.add_parser("figure", help="draw one figure from the grids")
    f.add_argument("--name", required=True)
    f.add_argument("--exact-grid", required=True)
    f.add_argument("--curved-grid", nargs="*", default=[])
    f.add_argument("--out-stem", required=True, help="output path without extension (.pdf and .png are written)")
    f.set_defaults(fn=cmd_figure)

    args = p.parse_args(argv)
    args.fn(args)
