"""`python -m repro.report {merge,tables,claims,reference,check-reference}`."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from repro.common import claims as claims_mod
from repro.common import tables as tables_mod
from repro.common.config import load_claims
from repro.common.errors import UserError
from repro.common.io import atomic_path, save_text
from repro.common.results import merge_parts, read_metrics


def _metrics_or_none(path: str | None) -> pd.DataFrame | None:
    return read_metrics(path) if path and Path(path).is_file() else None


def cmd_merge(args) -> None:
    merge_parts(args.parts, args.out_csv, args.out_json)


def cmd_tables(args) -> None:
    reg = load_claims(args.paper)
    metrics = _metrics_or_none(args.metrics)
    for table, out_tex, out_html in zip(args.table, args.out_tex, args.out_html, strict=True):
        if table not in reg["tables"]:
            raise UserError(f"config/claims/{args.paper}.yaml has no table '{table}' (has: {', '.join(reg['tables'])})")
        frame, spec = tables_mod.table_frame(reg, table, metrics)
        ran = metrics is not None
        save_text(out_tex, tables_mod.render_latex(frame, spec, args.paper, table, args.scale, ran))
        save_text(out_html, tables_mod.render_html(frame, spec, args.paper, table, args.scale, ran))


def cmd_claims(args) -> None:
    registries = {p: load_claims(p) for p in args.papers}
    metrics = {}
    for spec in args.metrics:
        paper, _, path = spec.partition("=")
        metrics[paper] = read_metrics(path)
    df = claims_mod.judge_all(registries, metrics, args.scale)
    with atomic_path(args.out_csv) as tmp:
        df.to_csv(tmp, index=False)
    save_text(args.out_md, claims_mod.claims_markdown(df, args.scale))
    counts = df["status"].value_counts().to_dict()
    print(f"claims at {args.scale}: {counts}", file=sys.stderr)


def cmd_reference(args) -> None:
    """Keep `metrics.csv` of a smoke run as the regression reference, with bands and where it came from."""
    df = read_metrics(args.metrics)
    df = df[~df["value"].isna()]
    if args.exclude_table:
        df = df[~df["table"].isin(args.exclude_table)]
    ref = df[["paper", "table", "row", "column", "seed", "value"]].copy()
    ref["rtol"] = args.rtol
    ref["atol"] = args.atol
    for band in args.band or []:
        table, _, tol = band.partition("=")
        rtol, _, atol = tol.partition(",")
        sel = ref["table"] == table
        if not sel.any():
            raise UserError(f"--band {band}: no table '{table}' in {args.metrics}")
        ref.loc[sel, "rtol"], ref.loc[sel, "atol"] = float(rtol), float(atol or 0.0)
    import json

    prov_path = Path(args.metrics).with_name("provenance.json")
    commits = json.loads(prov_path.read_text())["git_commits"] if prov_path.is_file() else ["unknown"]
    header = (f"# Regression reference for {args.paper} at {args.scale} scale.\n"
              f"# made by: python -m repro.report {' '.join(shlex.quote(a) for a in sys.argv[1:])}\n"
              f"# from: {args.metrics}, produced by `./suite dag` at commit {', '.join(commits)}\n"
              "# a value passes when |new - value| <= atol + rtol * |value|\n")
    with atomic_path(args.out) as tmp:
        with open(tmp, "w") as fh:
            fh.write(header)
            ref.to_csv(fh, index=False, float_format="%.10g")


def compare_reference(ref_path: str | Path, metrics: pd.DataFrame) -> list[str]:
    """Every reference number that is missing from `metrics` or out of its band, as readable lines."""
    ref = pd.read_csv(ref_path, comment="#", dtype={"row": str, "column": str, "table": str})
    merged = ref.merge(metrics[["paper", "table", "row", "column", "seed", "value"]],
                       on=["paper", "table", "row", "column", "seed"], how="left", suffixes=("_ref", ""))
    problems = []
    for r in merged.itertuples():
        where = f"{r.paper} / {r.table} / {r.row} / {r.column} / seed {r.seed}"
        if r.value is None or (isinstance(r.value, float) and math.isnan(r.value)):
            problems.append(f"{where}: missing (reference {r.value_ref:.6g})")
        elif abs(r.value - r.value_ref) > r.atol + r.rtol * abs(r.value_ref):
            problems.append(f"{where}: {r.value:.6g} outside {r.value_ref:.6g} ± ({r.atol:g} + {r.rtol:g}·|ref|)")
    return problems


def cmd_check_reference(args) -> None:
    problems = compare_reference(args.reference, read_metrics(args.metrics))
    if problems:
        raise UserError(f"{len(problems)} number(s) left their band:\n  " + "\n  ".join(problems))
    print(f"{args.reference}: all numbers within their bands", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m repro.report", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    m = sub.add_parser("merge", help="join a paper's metric parts into metrics.csv and provenance.json")
    m.add_argument("--parts", nargs="*", default=[])
    m.add_argument("--out-csv", required=True)
    m.add_argument("--out-json", required=True)
    m.set_defaults(fn=cmd_merge)

    t = sub.add_parser("tables", help="render paper-vs-ours tables (LaTeX and HTML)")
    t.add_argument("--paper", required=True)
    t.add_argument("--scale", required=True)
    t.add_argument("--metrics", help="the paper's metrics.csv (absent: paper not run)")
    t.add_argument("--table", nargs="+", required=True)
    t.add_argument("--out-tex", nargs="+", required=True)
    t.add_argument("--out-html", nargs="+", required=True)
    t.set_defaults(fn=cmd_tables)

    c = sub.add_parser("claims", help="judge every claim of the given papers at a scale")
    c.add_argument("--scale", required=True)
    c.add_argument("--papers", nargs="+", required=True, help="papers whose claims are listed")
    c.add_argument("--metrics", nargs="*", default=[], help="PAPER=path/to/metrics.csv for each paper that ran")
    c.add_argument("--out-csv", required=True)
    c.add_argument("--out-md", required=True)
    c.set_defaults(fn=cmd_claims)

    r = sub.add_parser("reference", help="keep a smoke run's metrics as the regression reference")
    r.add_argument("--paper", required=True)
    r.add_argument("--scale", default="smoke")
    r.add_argument("--metrics", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--rtol", type=float, default=0.05)
    r.add_argument("--atol", type=float, default=1e-8)
    r.add_argument("--band", action="append", help="TABLE=RTOL[,ATOL]: a band for one table")
    r.add_argument("--exclude-table", action="append", help="a table not kept (timings, for instance)")
    r.set_defaults(fn=cmd_reference)

    k = sub.add_parser("check-reference", help="compare a metrics.csv with its reference")
    k.add_argument("--reference", required=True)
    k.add_argument("--metrics", required=True)
    k.set_defaults(fn=cmd_check_reference)

    args = p.parse_args(argv)
    args.fn(args)
