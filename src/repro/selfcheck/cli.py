"""`python -m repro.selfcheck halves`: FID/KID between the two halves of a split's reference features.

The `fid_stats` rule computes the Inception features of a deterministic random subset of `n` images (positions in
random order, `repro.common.data.subset(n=n, seed=0)`); this command splits them into even and odd positions,
two disjoint random halves of the same distribution, and reports FID and KID between them, plus IS of each half
(NaN with a `not_available` note when only the pool3 weights exist).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from repro.common.config import load_paper_config
from repro.common.errors import UserError
from repro.common.results import ResultWriter

PAPER = "selfcheck"


def cmd_halves(args: argparse.Namespace) -> None:
    from repro.common.metrics.fidelity import FidStats, fid, inception_score, kid

    block = load_paper_config(PAPER, args.scale)
    stats = FidStats.load(args.stats)
    if stats.n != block["n"]:
        raise UserError(f"{args.stats} holds {stats.n} images but config/selfcheck.yaml ({args.scale}) asks for "
                        f"n = {block['n']}; re-run the DAG so the statistics match the config")
    half_a, half_b = stats.take(np.arange(0, stats.n, 2)), stats.take(np.arange(1, stats.n, 2))
    label = f"{block['dataset']} {block['split']}: {half_a.n} vs {half_b.n}"
    with ResultWriter(paper=PAPER, part="fid_halves", scale=args.scale, out_csv=args.out, config=block) as rw:
        rw.extra["extractor"] = stats.extractor
        with rw.stage("fid"):
            rw.add("halves", label, "FID", fid(half_a, half_b), n=half_a.n)
        with rw.stage("kid"):
            k_mean, k_std = kid(half_a, half_b, subsets=block["kid_subsets"])
            rw.add("halves", label, "KID", k_mean, std=k_std, n=half_a.n)
            rw.add("halves", label, "KID / std", k_mean / k_std if k_std > 0 else float("nan"), n=half_a.n,
                   note="" if k_std > 0 else "KID std is 0")
        with rw.stage("is"):
            for name, half in (("half A", half_a), ("half B", half_b)):
                is_mean, is_std, note = inception_score(half)
                rw.add("halves", f"{block['dataset']} {block['split']} {name}", "IS", is_mean,
                       std=None if np.isnan(is_std) else is_std, n=half.n, note=note)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro.selfcheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser("halves", help="FID/KID between two halves of one split")
    h.add_argument("--scale", required=True)
    h.add_argument("--stats", required=True, help="fid_stats file of the split subset")
    h.add_argument("--out", required=True, help="results/{scale}/selfcheck/parts/fid_halves.csv")
    h.set_defaults(fn=cmd_halves)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.fn(args)
