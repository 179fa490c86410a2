"""`python -m repro.report {merge,tables,claims,spread,reference,check-reference}`."""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
        notes = tables_mod.run_notes(metrics, table)
        save_text(out_tex, tables_mod.render_latex(frame, spec, args.paper, table, args.scale, ran, notes))
        save_text(out_html, tables_mod.render_html(frame, spec, args.paper, table, args.scale, ran, notes))


def cmd_claims(args) -> None:
    registries = {p: load_claims(p) for p in args.papers}
    metrics = {}
    for spec in args.metrics:
        paper, _, path = spec.partition("=")
        metrics[paper] = read_metrics(path, units=True)
    df = claims_mod.judge_all(registries, metrics, args.scale)
    with atomic_path(args.out_csv) as tmp:
        df.to_csv(tmp, index=False)
    save_text(args.out_md, claims_mod.claims_markdown(df, args.scale))
    if args.out_html:
        save_text(args.out_html, claims_mod.claims_html(df, args.scale))
    for line in claims_mod.summary_lines(df):
        print(f"claims at {args.scale}: {line}", file=sys.stderr)


def _timing_tables(paper: str) -> set[str]:
    reg = load_claims(paper)
    return {t for t, spec in reg["tables"].items() if spec.get("timing")}


def reference_bands(ref: pd.DataFrame, variants: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Reference numbers with bands from the measured spread of `variants` (see `repro.report.spread`)."""
    from repro.report import spread as S

    key = ["paper", "table", "row", "column", "unit"]
    out = ref[key + ["seed", "value"]].copy()
    out["spread_numerics"] = 0.0
    out["spread_seed"] = 0.0
    for name, df in variants.items():
        kind = S.VARIANTS[name].kind
        if kind == "reference":
            continue
        other = df[~df["value"].isna()]
        if kind == "numerics":
            m = out.merge(other[key + ["seed", "value"]], on=key + ["seed"], how="left", suffixes=("", "_v"))
        else:  # another seed: the same cell, compared across seeds
            m = out.merge(other[key + ["value"]].drop_duplicates(key), on=key, how="left", suffixes=("", "_v"))
        missing = m["value_v"].isna()
        if missing.any():
            lost = m[missing][key].head(5).to_string(index=False)
            raise UserError(f"variant {name} lacks {int(missing.sum())} reference number(s), e.g.\n{lost}")
        col = "spread_numerics" if kind == "numerics" else "spread_seed"
        out[col] = np.maximum(out[col].to_numpy(), (m["value_v"] - m["value"]).abs().to_numpy())
    # The units of one cell (the tasks of a method, the images of a fit) are exchangeable: pool their spreads, so
    # that a task that two seeds happened to leave alone does not get a band narrower than its neighbours'.
    units = out["unit"] != ""
    if units.any():
        cell = ["paper", "table", "row", "column", "seed"]
        for col in ("spread_numerics", "spread_seed"):
            pooled = out[units].groupby(cell)[col].transform("max")
            out.loc[units, col] = pooled
    out["chaotic"] = (out["spread_numerics"] >= S.CHAOS_FRACTION * out["spread_seed"]) & (out["spread_seed"] > 0)
    out["rtol"] = S.RTOL_FLOOR
    numerics_band = S.NUMERICS_MULTIPLE * out["spread_numerics"]
    out["atol"] = np.maximum(np.where(out["chaotic"], np.maximum(S.SEED_MULTIPLE * out["spread_seed"], numerics_band),
                                      numerics_band), S.CHAOS_FRACTION * out["spread_seed"]) + S.ATOL_FLOOR
    return out[["paper", "table", "row", "column", "seed", "unit", "value", "spread_numerics", "spread_seed",
                "chaotic", "rtol", "atol"]]


def cmd_reference(args) -> None:
    """Keep `metrics.csv` of a smoke run as the regression reference, with bands from the variants' spread."""
    import json

    from repro.report import spread as S

    df = read_metrics(args.metrics, units=True)
    df = df[~df["value"].isna()]
    excluded = sorted(_timing_tables(args.paper) | set(args.exclude_table or []))
    df = df[~df["table"].isin(excluded)]
    variants = {}
    for spec in args.variant or []:
        name, _, path = spec.partition("=")
        if name not in S.VARIANTS:
            raise UserError(f"--variant {spec}: unknown variant '{name}' (known: {', '.join(S.VARIANTS)})")
        variants[name] = read_metrics(path, units=True)
    kinds = {S.VARIANTS[n].kind for n in variants}
    if not {"numerics", "seed"} <= kinds:
        raise UserError("bands need at least one numerics variant and one seed variant "
                        "(python -m repro.report spread --paper P ... prints the --variant arguments)")
    ref = reference_bands(df, variants)
    prov_path = Path(args.metrics).with_name("provenance.json")
    commits = json.loads(prov_path.read_text())["git_commits"] if prov_path.is_file() else ["unknown"]
    lines = [f"Regression reference for {args.paper} at {args.scale} scale.",
             f"made by: python -m repro.report {' '.join(shlex.quote(a) for a in sys.argv[1:])}",
             f"from: {args.metrics}, produced by `python -m repro.report spread` at commit {', '.join(commits)}",
             f"machine: {_machine()}",
             "variants: " + "; ".join(f"{n} = {S.VARIANTS[n].description}" for n in variants),
             f"timing tables left out: {', '.join(excluded) or 'none'}",
             f"band: atol = {S.NUMERICS_MULTIPLE:g} x spread_numerics, or where chaotic (spread_numerics >= "
             f"{S.CHAOS_FRACTION:g} x spread_seed) the larger of that and {S.SEED_MULTIPLE:g} x spread_seed; never "
             f"below {S.CHAOS_FRACTION:g} x spread_seed; plus {S.ATOL_FLOOR:g}; rtol = {S.RTOL_FLOOR:g}",
             "a value passes when |new - value| <= atol + rtol * |value|",
             f"widest band relative to its spread: {_widest(ref)}"]
    with atomic_path(args.out) as tmp:
        with open(tmp, "w") as fh:
            fh.write("".join(f"# {line}\n" for line in lines))
            ref.to_csv(fh, index=False, float_format="%.10g")


def _machine() -> str:
    import platform

    from repro.common.provenance import provenance_record

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    rec = provenance_record()
    return f"{cpu} ({rec['platform']}), {os.cpu_count()} cores, torch {rec['packages'].get('torch', '?')}"


def _widest(ref: pd.DataFrame) -> str:
    """What set each band (counts), and the widest band as a multiple of the spread that set it."""
    from repro.report import spread as S

    num = S.NUMERICS_MULTIPLE * ref["spread_numerics"]
    chaos = np.where(ref["chaotic"], S.SEED_MULTIPLE * ref["spread_seed"], 0.0)
    seed_floor = S.CHAOS_FRACTION * ref["spread_seed"]
    which = np.select([(num == 0) & (chaos == 0) & (seed_floor == 0), (chaos >= num) & (chaos >= seed_floor),
                       num >= seed_floor], ["floor", "chaotic", "numerics"], "seed floor")
    counts = ", ".join(f"{int((which == k).sum())} by {k}" for k in ("numerics", "chaotic", "seed floor", "floor"))
    spread = np.where(which == "numerics", ref["spread_numerics"], ref["spread_seed"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(spread > 0, (ref["atol"] - S.ATOL_FLOOR) / spread, 0.0)
    i = int(np.argmax(ratio))
    r = ref.iloc[i]
    return (f"bands set {counts}; widest: {ratio[i]:.3g} x its {'numerics' if which[i] == 'numerics' else 'seed'} "
            f"spread ({r.table} / {r.row} / {r.column})")


def compare_reference(ref_path: str | Path, metrics: pd.DataFrame, *, only_present: bool = False) -> list[str]:
    """Every reference number that is missing from `metrics` or out of its band, as readable lines.

    `only_present`: compare only the numbers `metrics` has (a run of one part of a paper)."""
    ref = pd.read_csv(ref_path, comment="#", dtype={"row": str, "column": str, "table": str, "unit": str})
    if "unit" not in ref.columns:
        ref["unit"] = ""
    ref["unit"] = ref["unit"].fillna("")
    if "unit" not in metrics.columns:
        metrics = metrics.assign(unit="")
    key = ["paper", "table", "row", "column", "seed", "unit"]
    merged = ref.merge(metrics[key + ["value"]], on=key, how="left", suffixes=("_ref", ""))
    if only_present:
        present = metrics[key].drop_duplicates()
        merged = merged.merge(present, on=key, how="inner")
    problems = []
    for r in merged.itertuples():
        where = f"{r.paper} / {r.table} / {r.row} / {r.column} / seed {r.seed}" + (f" / {r.unit}" if r.unit else "")
        if r.value is None or (isinstance(r.value, float) and math.isnan(r.value)):
            problems.append(f"{where}: missing (reference {r.value_ref:.6g})")
        elif abs(r.value - r.value_ref) > r.atol + r.rtol * abs(r.value_ref):
            problems.append(f"{where}: {r.value:.6g} outside {r.value_ref:.6g} ± ({r.atol:.3g} + {r.rtol:g}·|ref|)")
    return problems


def cmd_check_reference(args) -> None:
    problems = compare_reference(args.reference, read_metrics(args.metrics, units=True))
    if problems:
        raise UserError(f"{len(problems)} number(s) left their band:\n  " + "\n  ".join(problems))
    print(f"{args.reference}: all numbers within their bands", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["spread"]:  # runs DAGs: its own module, its own options
        from repro.report import spread

        return spread.main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m repro.report", description=__doc__,
                                epilog="spread: run a paper's DAG under the numerics variants (see "
                                       "`python -m repro.report spread --help`)")
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
    c.add_argument("--out-html", help="the claims as an HTML page with one summary line per paper (for the report)")
    c.set_defaults(fn=cmd_claims)

    r = sub.add_parser("reference", help="keep a smoke run's metrics as the regression reference, with bands from "
                       "the measured spread of its variants (python -m repro.report spread)")
    r.add_argument("--paper", required=True)
    r.add_argument("--scale", default="smoke")
    r.add_argument("--metrics", required=True, help="the reference run's metrics.csv (variant 'default')")
    r.add_argument("--out", required=True)
    r.add_argument("--variant", action="append", help="NAME=path/to/metrics.csv of a variant run (threads1, avx2, "
                   "seed1, ...)")
    r.add_argument("--exclude-table", action="append", help="a table not kept (besides the registry's timing tables)")
    r.set_defaults(fn=cmd_reference)

    k = sub.add_parser("check-reference", help="compare a metrics.csv with its reference")
    k.add_argument("--reference", required=True)
    k.add_argument("--metrics", required=True)
    k.set_defaults(fn=cmd_check_reference)

    args = p.parse_args(argv)
    args.fn(args)
