"""Judging the papers' claims against our results, with intervals and negative controls.

A claim (config/claims/<paper>.yaml) selects what it checks and says how it is checked:

- `table`/`row`/`column`: one metric cell (mean over seeds);
- `measure: {diff|ratio: [a, b]}`: a derived quantity of two cells (point values: a rate, a speed-up of one run);
- `measure: {paired_diff|paired_ratio: [a, b]}`: a *comparison* of two cells over their natural units (the unit rows
  of the metrics: tasks, images; else the seeds), paired by (seed, unit). Its 95% interval comes from a paired
  bootstrap (scipy.stats.bootstrap, BCa, fixed random state so that two runs give the same claims.csv).

The check (`within`, `within_rel`, `factor`, `at_least`, `at_most`, `greater_than`, `less_than`) is applied to the
interval where there is one: *confirmed* when the whole interval satisfies it, *not_confirmed* when none of it does,
*inconclusive* when it straddles. A point value (one unit) is confirmed or not confirmed. A paired comparison with
fewer than two units is inconclusive: one pair cannot tell a difference from noise.

Every claim declares a negative `control`: the same claim with some of its selectors replaced by evidence on which
the check must come out *not confirmed* (a perturbed design, shuffled text, a random encoder, an untrained model).
The control is judged like the claim; a control that is *confirmed* means the check cannot discriminate, and the
claim's verdict is not evidence.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

STATUSES = ("confirmed", "not_confirmed", "inconclusive", "not_run")
CLAIM_COLUMNS = ["claim_id", "paper", "table", "row", "column", "reported", "reproduced", "ci_low", "ci_high", "n",
                 "tolerance", "status", "control", "control_reproduced", "control_status", "control_ok", "verified",
                 "source", "scale", "note"]
PAIRED = ("paired_diff", "paired_ratio")
POINT = ("diff", "ratio")
CONFIDENCE = 0.95
N_RESAMPLES = 9999
SELECTOR_KEYS = ("table", "row", "column", "measure")


@dataclass(frozen=True)
class Cell:
    """The mean over seeds of one metric cell, with its spread and any note (why it is missing)."""

    value: float
    std: float | None
    n_seeds: int
    note: str


@dataclass(frozen=True)
class Measured:
    """What a claim's check is applied to: a value, its interval where it has one, the number of units, a note."""

    value: float
    low: float = math.nan
    high: float = math.nan
    n: int = 1
    note: str = ""

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))


def _summary(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics[metrics["unit"] == ""] if "unit" in metrics.columns else metrics


def _select(metrics: pd.DataFrame, table: str, row: str, column: str) -> pd.DataFrame:
    return metrics[(metrics["table"] == table) & (metrics["row"] == str(row)) & (metrics["column"] == str(column))]


def cell(metrics: pd.DataFrame, table: str, row: str, column: str) -> Cell | None:
    sel = _select(_summary(metrics), table, row, column)
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


def unit_values(metrics: pd.DataFrame, table: str, row: str, column: str) -> pd.Series | None:
    """A cell's values per unit, indexed by (seed, unit): its unit rows, else its summary rows (one per seed)."""
    sel = _select(metrics, table, row, column)
    if sel.empty:
        return None
    units = sel[sel["unit"] != ""] if "unit" in sel.columns else sel.iloc[0:0]
    use = units if not units.empty else _summary(sel)
    if use.empty:
        return None
    unit = use["unit"] if "unit" in use.columns else pd.Series("", index=use.index)
    return pd.Series(use["value"].astype(float).to_numpy(),
                     index=pd.MultiIndex.from_arrays([use["seed"].astype(int).to_numpy(), unit.to_numpy()],
                                                     names=["seed", "unit"]))


def _selector(claim: dict, sel: dict) -> tuple[str, str, str]:
    return sel.get("table", claim.get("table")), sel.get("row", claim.get("row")), sel.get("column", claim.get("column"))


def paired_interval(a: np.ndarray, b: np.ndarray, op: str) -> tuple[float, float, float]:
    """The statistic of paired samples `a`, `b` (mean difference or ratio of means) and its bootstrap 95% interval."""
    from scipy import stats

    if op == "paired_diff":
        def statistic(x, y, axis=-1):
            return np.mean(x, axis=axis) - np.mean(y, axis=axis)
    else:
        def statistic(x, y, axis=-1):
            return np.mean(x, axis=axis) / np.mean(y, axis=axis)
    value = float(statistic(a, b))
    if np.allclose(a - b, (a - b)[0]) and np.allclose(b, b[0]):
        return value, value, value  # no variation between units: the interval is the point
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for method in ("BCa", "percentile"):
            res = stats.bootstrap((a, b), statistic, paired=True, vectorized=True, confidence_level=CONFIDENCE,
                                  n_resamples=N_RESAMPLES, method=method, rng=np.random.default_rng(0))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
            if not (math.isnan(low) or math.isnan(high)):
                return value, low, high
    return value, math.nan, math.nan


def _side(metrics: pd.DataFrame, key: tuple[str, str, str], paired: bool) -> float | pd.Series | Measured:
    """One side of a comparison: its unit values (paired) or its cell's value; a NaN Measured saying why if neither."""
    c = cell(metrics, *key)
    values = unit_values(metrics, *key) if paired else None
    if (values if paired else c) is None:
        return Measured(math.nan, note=f"no result for {' / '.join(map(str, key))}")
    if (c is not None and math.isnan(c.value)) or (values is not None and values.isna().any()):
        return Measured(math.nan, note=(c.note if c else "") or "value missing")
    return values if paired else c.value


def is_paired(claim: dict) -> bool:
    """Whether a claim compares two cells over their units (its interval decides), not as two point values."""
    spec = claim.get("measure")
    return bool(spec) and next(iter(spec)) in PAIRED


def measure(claim: dict, metrics: pd.DataFrame) -> Measured:
    """The reproduced quantity a claim checks; its value is NaN (with a note) when it cannot be had."""
    spec = claim.get("measure")
    if spec is None:
        c = cell(metrics, claim["table"], claim["row"], claim["column"])
        if c is None:
            return Measured(math.nan, note=f"no result for {claim['table']} / {claim['row']} / {claim['column']}")
        return Measured(c.value, n=c.n_seeds, note=c.note if math.isnan(c.value) else "")
    (op, sels), = spec.items()
    if op not in POINT + PAIRED:
        raise ValueError(f"claim {claim['id']}: unknown measure '{op}'")
    sides = []
    for sel in sels:
        side = _side(metrics, _selector(claim, sel), paired=op in PAIRED)
        if isinstance(side, Measured):
            return side
        sides.append(side)
    if op in POINT:
        a, b = sides
        return Measured((a / b if b != 0 else math.inf) if op == "ratio" else a - b)
    a, b = sides
    common = a.index.intersection(b.index)
    if len(common) == 0:
        return Measured(math.nan, note="the two sides share no (seed, unit) pair")
    x, y = a.loc[common].to_numpy(), b.loc[common].to_numpy()
    if len(common) < 2:
        value = float(x[0] - y[0]) if op == "paired_diff" else float(x[0] / y[0])
        return Measured(value, n=1, note="one paired unit only: cannot tell a difference from noise")
    value, low, high = paired_interval(x, y, op)
    return Measured(value, low, high, len(common))


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


def _accepted(check: dict, reported: float | None) -> tuple[float, float, bool, bool]:
    """The set of values the check accepts, as an interval (lo, hi) with whether each end is closed."""
    (kind, x), = check.items()
    if kind in ("within", "within_rel", "factor"):
        if reported is None:
            raise ValueError(f"check '{kind}' needs a reported value")
        if kind == "within":
            return reported - x, reported + x, True, True
        if kind == "within_rel":
            return reported - x * abs(reported), reported + x * abs(reported), True, True
        lo, hi = sorted((reported / x, reported * x))
        return lo, hi, True, True
    return {"at_least": (x, math.inf, True, False), "at_most": (-math.inf, x, False, True),
            "greater_than": (x, math.inf, False, False), "less_than": (-math.inf, x, False, False)}[kind]


def _inside(v: float, lo: float, hi: float, lo_closed: bool, hi_closed: bool) -> bool:
    return (v >= lo if lo_closed else v > lo) and (v <= hi if hi_closed else v < hi)


def passes(check: dict, value: float, reported: float | None) -> bool:
    return _inside(value, *_accepted(check, reported))


def verdict(check: dict, m: Measured, reported: float | None) -> str:
    """confirmed / not_confirmed / inconclusive for a measured value (interval-aware)."""
    lo, hi, lc, hc = _accepted(check, reported)
    if not m.has_interval:
        return "confirmed" if _inside(m.value, lo, hi, lc, hc) else "not_confirmed"
    if _inside(m.low, lo, hi, lc, hc) and _inside(m.high, lo, hi, lc, hc):
        return "confirmed"
    outside = (m.high < lo or (m.high == lo and not lc)) or (m.low > hi or (m.low == hi and not hc))
    return "not_confirmed" if outside else "inconclusive"


def _status(claim: dict, metrics: pd.DataFrame | None, paper: str, scale: str) -> tuple[str, Measured]:
    if scale not in claim["scales"]:
        return "not_run", Measured(math.nan, note=f"checked at {', '.join(claim['scales'])} scale only")
    if metrics is None:
        return "not_run", Measured(math.nan, note=f"{paper} was not run at {scale} scale")
    m = measure(claim, metrics)
    if math.isnan(m.value):
        return "not_run", m
    if is_paired(claim) and m.n < 2:
        return "inconclusive", m
    return verdict(claim["check"], m, claim.get("reported")), m


def control_claim(claim: dict) -> dict | None:
    """The claim with its control's selectors in place of its own (None when it declares no control)."""
    ctl = claim.get("control")
    if not ctl:
        return None
    out = {k: v for k, v in claim.items() if k != "control"}
    for key in SELECTOR_KEYS:
        if key in ctl:
            out[key] = ctl[key]
    return out


def tables_read(claim: dict) -> set[str]:
    """The tables whose cells a claim (not its control) reads."""
    spec = claim.get("measure")
    if spec is None:
        return {claim.get("table")}
    (_, sels), = spec.items()
    return {sel.get("table", claim.get("table")) for sel in sels}


def judge(claim: dict, paper: str, metrics: pd.DataFrame | None, scale: str,
          timing_tables: frozenset[str] = frozenset()) -> dict:
    """One row of claims.csv for `claim` at `scale`; `metrics` is None when the paper was not run.

    A claim that reads a timing table (`timing: true` in the registry) is judged only as a paired comparison over
    repeated timings: one run's timings move by tens of percent between identical runs, and a verdict that flips
    with them is no evidence."""
    reported = claim.get("reported")
    timing = tables_read(claim) & set(timing_tables)
    if timing and not is_paired(claim) and scale in claim["scales"]:
        status, m = "not_run", Measured(math.nan, note=f"reads timings ({', '.join(sorted(timing))}) of one run: "
                                                       "judged only as a paired comparison over repeated timings")
    else:
        status, m = _status(claim, metrics, paper, scale)
    row = {
        "claim_id": claim["id"], "paper": paper, "table": claim.get("table", ""), "row": claim.get("row", ""),
        "column": claim.get("column", ""), "reported": reported, "reproduced": m.value, "ci_low": m.low,
        "ci_high": m.high, "n": m.n if not math.isnan(m.value) else 0,
        "tolerance": describe_check(claim["check"]), "status": status,
        "control": (claim.get("control") or {}).get("description", ""), "control_reproduced": math.nan,
        "control_status": "not_run", "control_ok": False, "verified": bool(claim["verified"]),
        "source": claim["source"], "scale": scale, "note": m.note,
    }
    ctl = control_claim(claim)
    if ctl is not None and status != "not_run":
        cstatus, cm = _status(ctl, metrics, paper, scale)
        row["control_reproduced"], row["control_status"] = cm.value, cstatus
        row["control_ok"] = cstatus in ("not_confirmed", "inconclusive")
        if cstatus == "not_run":
            row["note"] = "; ".join(x for x in (row["note"], f"control not run: {cm.note}") if x)
        elif cstatus == "confirmed":
            row["note"] = "; ".join(x for x in (row["note"], "control passed the check: this verdict is no "
                                                "evidence") if x)
    elif ctl is None and status != "not_run":
        row["note"] = "; ".join(x for x in (row["note"], "no negative control declared") if x)
    if status != "not_run" and not claim["verified"]:
        row["note"] = "; ".join(x for x in (row["note"], f"reported value unverified ({claim['source']})") if x)
    return row


def timing_tables(registry: dict) -> frozenset[str]:
    return frozenset(t for t, spec in registry.get("tables", {}).items() if spec.get("timing"))


def judge_all(registries: dict[str, dict], metrics: dict[str, pd.DataFrame | None], scale: str) -> pd.DataFrame:
    rows = [judge(claim, paper, metrics.get(paper), scale, timing_tables(reg))
            for paper, reg in registries.items() for claim in reg["claims"]]
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if isinstance(x, (int, float)):
        return f"{x:.4g}"
    return str(x)


def summary_lines(df: pd.DataFrame) -> list[str]:
    """One line per paper: the claims by status, and how many checked claims have a control that failed as it must."""
    lines = []
    for paper, g in df.groupby("paper", sort=False):
        counts = g["status"].value_counts()
        checked = g[g["status"] != "not_run"]
        ok = int(checked["control_ok"].astype(bool).sum())
        lines.append(f"{paper}: " + ", ".join(f"{int(counts.get(s, 0))} {s.replace('_', ' ')}" for s in STATUSES)
                     + f"; controls failing as they must: {ok} of {len(checked)} checked")
    return lines


def _interval(r) -> str:
    if math.isnan(r.ci_low):
        return "—"
    return f"[{r.ci_low:.4g}, {r.ci_high:.4g}]"


def claims_markdown(df: pd.DataFrame, scale: str) -> str:
    counts = df["status"].value_counts()
    lines = [f"# Claims at `{scale}` scale", "",
             " · ".join(f"**{s}**: {int(counts.get(s, 0))}" for s in STATUSES), "",
             *[f"- {line}" for line in summary_lines(df)], "",
             "A claim is *not_run* where it is not checked at this scale (small scales cannot reach the papers' "
             "numbers), where its paper was not run, or where its metric is not available; the note says which. "
             "Comparisons are judged on a paired bootstrap 95% interval over their units (n): *inconclusive* when "
             "the interval straddles the threshold. Each checked claim's negative control is judged the same way "
             "and must come out not confirmed (✓); a confirmed control (✗) means the check cannot tell. "
             "Unverified reported values (read off a figure, or from a secondary source) are marked.", ""]
    for paper, group in df.groupby("paper", sort=False):
        lines += [f"## {paper}", "",
                  "| claim | where | reported | reproduced | 95% interval | n | tolerance | status | control | note |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in group.itertuples():
            where = " / ".join(str(x) for x in (r.table, r.row, r.column) if x)
            rep = _fmt(r.reported) + ("" if r.verified else " (unverified)")
            note = str(r.note).replace("|", "\\|")
            if r.status == "not_run":
                ctl = "—"
            else:
                mark = "✓" if r.control_ok else "✗"
                ctl = f"{mark} {r.control_status} ({_fmt(r.control_reproduced)}): {r.control}".replace("|", "\\|")
            lines.append(f"| `{r.claim_id}` | {where} | {rep} | {_fmt(r.reproduced)} | {_interval(r)} | {r.n} | "
                         f"{r.tolerance} | **{r.status}** | {ctl} | {note} |")
        lines.append("")
    return "\n".join(lines)


def claims_html(df: pd.DataFrame, scale: str) -> str:
    """The claims as a self-contained HTML page: a summary line per paper, then every claim (for the HTML report)."""
    import html

    cols = ["claim_id", "status", "reproduced", "ci_low", "ci_high", "n", "tolerance", "reported", "control_status",
            "control", "note"]
    summary = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(df))
    table = df[cols].to_html(index=False, border=0, na_rep="—", float_format=lambda x: f"{x:.4g}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>claims at {scale} scale</title>"
            "<style>body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse}"
            "th,td{padding:2px 6px;text-align:left;vertical-align:top} th{border-bottom:1px solid #888}</style>"
            f"</head><body><h3>Claims at {html.escape(scale)} scale</h3><ul>{summary}</ul>{table}</body></html>\n")
