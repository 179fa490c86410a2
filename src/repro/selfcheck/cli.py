"""`python -m repro.selfcheck halves`: does the FID/KID pipeline see equal distributions as equal, and a shift?

The `fid_stats` rule computes the Inception features of a deterministic random subset of `n` images of a split
(`repro.common.data.subset(n=n, seed=0)`, in random order). From those features alone (no further Inception pass):

- random halves: even vs odd positions, two disjoint random samples of the same distribution;
- class-disjoint halves: images of the first half of the classes vs the rest, a real distribution shift.

For each: FID (biased upwards at small n, equally for both since the sizes match), KID (unbiased MMD^2 of the two
whole sets) with a permutation test on the pooled features (z-score and p-value against random re-splits), and the
IS of the random halves and, as the IS claim's negative control, of the images of one class (NaN with a
`not_available` note when only the pool3 weights exist).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from repro.common.config import load_paper_config
from repro.common.errors import UserError
from repro.common.results import ResultWriter

PAPER = "selfcheck"
TABLE = "halves"
RANDOM, SHIFT, ONE_CLASS = "random halves", "class-disjoint halves", "one class"


def cmd_halves(args: argparse.Namespace) -> None:
    from repro.common.data import load_split
    from repro.common.metrics.fidelity import FidStats, fid, inception_score, kid_permutation_test

    block = load_paper_config(PAPER, args.scale)
    stats = FidStats.load(args.stats)
    if stats.n != block["n"]:
        raise UserError(f"{args.stats} holds {stats.n} images but config/selfcheck.yaml ({args.scale}) asks for "
                        f"n = {block['n']}; re-run the DAG so the statistics match the config")
    if stats.index is None:
        raise UserError(f"{args.stats} does not record which images it holds (made by an older version); delete it "
                        "and re-run the DAG")
    labels = load_split(args.data).labels[stats.index]
    first = labels < labels.max() / 2  # classes 0-4 of CIFAR-10 (vehicles and birds ...) vs 5-9
    splits = {RANDOM: (np.arange(0, stats.n, 2), np.arange(1, stats.n, 2)),
              SHIFT: (np.flatnonzero(first), np.flatnonzero(~first))}
    with ResultWriter(paper=PAPER, part="fid_halves", scale=args.scale, out_csv=args.out, config=block) as rw:
        rw.extra["extractor"] = stats.extractor
        for row, (ia, ib) in splits.items():
            a, b = stats.take(ia), stats.take(ib)
            n = min(a.n, b.n)
            with rw.stage(f"fid {row}"):
                rw.add(TABLE, row, "FID", fid(a, b), n=n)
            with rw.stage(f"kid {row}"):
                test = kid_permutation_test(a.features, b.features, permutations=block["permutations"], seed=0)
                rw.add(TABLE, row, "KID", test.kid, std=test.null_std, n=n,
                       note=f"std: of the permutation null ({block['permutations']} re-splits)")
                rw.add(TABLE, row, "KID z", test.z, n=n)
                rw.add(TABLE, row, "KID p", test.p_value, n=n)
        with rw.stage("is"):
            is_mean, is_std, note = inception_score(stats.take(splits[RANDOM][0]))
            rw.add(TABLE, RANDOM, "IS", is_mean, std=None if np.isnan(is_std) else is_std,
                   n=len(splits[RANDOM][0]), note=note)
            one = np.flatnonzero(labels == labels.min())  # the negative control of the IS claim: one class only
            is_mean, is_std, note = inception_score(stats.take(one))
            rw.add(TABLE, ONE_CLASS, "IS", is_mean, std=None if np.isnan(is_std) else is_std, n=len(one), note=note)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro.selfcheck", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser("halves", help="FID/KID between halves of one split: random (equal) and class-disjoint (shift)")
    h.add_argument("--scale", required=True)
    h.add_argument("--stats", required=True, help="fid_stats file of the split subset")
    h.add_argument("--data", required=True, help="the prepared split the statistics were made from (for labels)")
    h.add_argument("--out", required=True, help="results/{scale}/selfcheck/parts/fid_halves.csv")
    h.set_defaults(fn=cmd_halves)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.fn(args)
