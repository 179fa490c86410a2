"""Judging the papers' claims against our results.

A claim (config/claims/<paper>.yaml) selects one cell of a paper's metrics, or a ratio or difference of two
cells, and says how it is checked: within an absolute or relative tolerance of the paper's number, within a
factor, or against a bound (for orderings and rates). Each claim is judged at each scale as `confirmed`,
`not_confirmed` or `not_run` (not checked at this scale, paper not run, cell missing, or value not available).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

STATUSES = ("confirmed", "not_confirmed", "not_run")
CLAIM_COLUMNS = ["claim_id", "paper", "table", "row", "column", "reported", "reproduced", "tolerance", "status",
                 "verified", "source", "scale", "note"]


@dataclass(frozen=True)
class Cell:
    """The mean over seeds of one metric cell, with its spread and any note (why it is missing)."""

    value: float
    std: float | None
    n_seeds: int
    note: str


def cell(metrics: pd.DataFrame, table: str, row: str, column: str) -> Cell | None:
    sel = metrics[(metrics["table"] == table) & (metrics["row"] == str(row)) & (metrics["column"] == str(column))]
    if sel.empty:
        return None
    values = sel["value"].astype(float)
    notes = "; ".join(sorted({n for n in sel["note"] if n}))
    if values.isna().any():
        return Cell(math.nan, None, len(sel), notes or "value missing")
    if len(sel) > 1:
        std = float(values.std(ddof=1))
    else:
        std = float(sel["std"].iloc[0]) if pd.notna(sel["std"].iloc[0]) else None
    return Cell(float(values.mean()), std, len(sel), notes)


def _selector(claim: dict, sel: dict) -> tuple[str, str, str]:
    return sel.get("table", claim.get("table")), sel.get("row", claim.get("row")), sel.get("column", claim.get("column"))


def measure(claim: dict, metrics: pd.DataFrame) -> tuple[float, str]:
    """The reproduced quantity a claim checks, and a note when it cannot be had."""
    spec = claim.get("measure")
    if spec is None:
        c = cell(metrics, claim["table"], claim["row"], claim["column"])
        if c is None:
            return math.nan, f"no result for {claim['table']} / {claim['row']} / {claim['column']}"
        return c.value, c.note if math.isnan(c.value) else ""
    (op, sels), = spec.items()
    values = []
    for sel in sels:
        key = _selector(claim, sel)
        c = cell(metrics, *key)
        if c is None:
            return math.nan, f"no result for {' / '.join(map(str, key))}"
        if math.isnan(c.value):
            return math.nan, c.note
        values.append(c.value)
    a, b = values
    if op == "ratio":
        return (a / b if b != 0 else math.inf), ""
    if op == "diff":
        return a - b, ""
    raise ValueError(f"claim {claim['id']}: unknown measure '{op}'")


def describe_check(check: dict) -> str:
    (kind, x), = check.items()
    return {
        "within": f"±{x:g}",
        "within_rel": f"±{100 * x:g}%",
        "factor": f"×/÷{x:g}",
        "at_least": f"≥ {x:g}",
        "at_most": f"≤ {x:g}",
        "greater_than": f"> {x:g}",
        "less_than": f"< {x:g}",
    }[kind]


def passes(check: dict, value: float, reported: float | None) -> bool:
    (kind, x), = check.items()
    if kind in ("within", "within_rel", "factor"):
        if reported is None:
            raise ValueError(f"check '{kind}' needs a reported value")
        if kind == "within":
            return abs(value - reported) <= x
        if kind == "within_rel":
            return abs(value - reported) <= x * abs(reported)
        return reported / x <= value <= reported * x if reported > 0 else reported * x <= value <= reported / x
    return {"at_least": value >= x, "at_most": value <= x, "greater_than": value > x, "less_than": value < x}[kind]


def judge(claim: dict, paper: str, metrics: pd.DataFrame | None, scale: str) -> dict:
    """One row of claims.csv for `claim` at `scale`; `metrics` is None when the paper was not run."""
    reported = claim.get("reported")
    row = {
        "claim_id": claim["id"], "paper": paper, "table": claim.get("table", ""), "row": claim.get("row", ""),
        "column": claim.get("column", ""), "reported": reported, "reproduced": math.nan,
        "tolerance": describe_check(claim["check"]), "status": "not_run", "verified": bool(claim["verified"]),
        "source": claim["source"], "scale": scale, "note": "",
    }
    if scale not in claim["scales"]:
        row["note"] = f"checked at {', '.join(claim['scales'])} scale only"
        return row
    if metrics is None:
        row["note"] = f"{paper} was not run at {scale} scale"
        return row
    value, note = measure(claim, metrics)
    row["reproduced"] = value
    if math.isnan(value):
        row["note"] = note
        return row
    row["status"] = "confirmed" if passes(claim["check"], value, reported) else "not_confirmed"
    if not claim["verified"]:
        row["note"] = "reported value unverified (" + claim["source"] + ")"
    return row


def judge_all(registries: dict[str, dict], metrics: dict[str, pd.DataFrame | None], scale: str) -> pd.DataFrame:
    rows = [judge(claim, paper, metrics.get(paper), scale)
            for paper, reg in registries.items() for claim in reg["claims"]]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, (int, float)):
        return f"{x:.4g}"
    return str(x)


def claims_markdown(df: pd.DataFrame, scale: str) -> str:
    counts = df["status"].value_counts()
    lines = [f"# Claims at `{scale}` scale", "",
             " · ".join(f"**{s}**: {int(counts.get(s, 0))}" for s in STATUSES), "",
             "A claim is *not_run* where it is not checked at this scale (small scales cannot reach the papers' "
             "numbers), where its paper was not run, or where its metric is not available; the note says which. "
             "Unverified reported values (read off a figure, or from a secondary source) are marked.", ""]
    for paper, group in df.groupby("paper", sort=False):
        lines += [f"## {paper}", "", "| claim | where | reported | reproduced | tolerance | status | note |",
                  "|---|---|---|---|---|---|---|"]
        for r in group.itertuples():
            where = " / ".join(str(x) for x in (r.table, r.row, r.column) if x)
            rep = _fmt(r.reported) + ("" if r.verified else " (unverified)")
            note = str(r.note).replace("|", "\\|")
            lines.append(f"| `{r.claim_id}` | {where} | {rep} | {_fmt(r.reproduced)} | {r.tolerance} | "
                         f"**{r.status}** | {note} |")
        lines.append("")
    return "\n".join(lines)
