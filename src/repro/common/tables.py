"""Paper-vs-ours tables, rendered from a paper's metrics and its claims registry (booktabs LaTeX and HTML)."""

from __future__ import annotations

import html
import math

import pandas as pd

from repro.common.claims import cell

DASH = "—"


def _number(x: float | None, digits: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    if x != 0 and (abs(x) >= 10 ** (digits + 2) or abs(x) < 10 ** -(digits + 1)):
        return f"{x:.{digits}e}"
    return f"{x:.{digits}f}"


def table_frame(paper_claims: dict, table: str, metrics: pd.DataFrame | None) -> tuple[pd.DataFrame, dict]:
    """A frame indexed by row with (column, 'paper'|'ours') string cells, and the table's spec."""
    spec = paper_claims["tables"][table]
    digits = spec.get("digits", 2)
    ours = metrics[metrics["table"] == table] if metrics is not None else pd.DataFrame(columns=["row", "column"])
    reported = {(c["row"], c["column"]): c for c in paper_claims["claims"]
                if c.get("table") == table and "measure" not in c and c.get("reported") is not None}
    rows = list(spec.get("rows") or [])
    cols = list(spec.get("columns") or [])
    for r in list(ours["row"]) + [k[0] for k in reported]:
        if r not in rows and not spec.get("rows"):
            rows.append(r)
    for c in list(ours["column"]) + [k[1] for k in reported]:
        if c not in cols and not spec.get("columns"):
            cols.append(c)
    cols_with_paper = [c for c in cols if any((r, c) in reported for r in rows)]
    data = {}
    for c in cols:
        if c in cols_with_paper:
            data[(c, "paper")] = [_reported_str(reported.get((r, c)), digits) for r in rows]
        data[(c, "ours")] = [_ours_str(metrics, table, r, c, digits) for r in rows]
    frame = pd.DataFrame(data, index=pd.Index(rows, name="")) if rows else pd.DataFrame()
    return frame, spec


def _reported_str(claim: dict | None, digits: int) -> str:
    if claim is None:
        return DASH
    s = _number(claim["reported"], digits)
    if claim.get("reported_std") is not None:
        s += f" ± {_number(claim['reported_std'], digits)}"
    return s + ("" if claim.get("verified", True) else "*")


def _ours_str(metrics: pd.DataFrame | None, table: str, row: str, column: str, digits: int) -> str:
    if metrics is None:
        return DASH
    c = cell(metrics, table, row, column)
    if c is None or math.isnan(c.value):
        return DASH
    s = _number(c.value, digits)
    if c.std is not None and not math.isnan(c.std):
        s += f" ± {_number(c.std, digits)}"
    return s


def run_notes(metrics: pd.DataFrame | None, table: str) -> list[str]:
    """The notes our run attached to the table's numbers (sample counts, reference sets, weights, why missing).

    A note shared by every noted row is given once; otherwise each row's notes are prefixed with the row's name."""
    if metrics is None:
        return []
    sel = metrics[(metrics["table"] == table) & (metrics["note"] != "")]
    if "unit" in sel.columns:
        sel = sel[sel["unit"] == ""]
    if sel.empty:
        return []
    by_row = {r: sorted(set(g["note"])) for r, g in sel.groupby("row", sort=False)}
    distinct = sorted({n for notes in by_row.values() for n in notes})
    if all(notes == distinct for notes in by_row.values()):
        return distinct
    return [f"{r}: {'; '.join(notes)}" for r, notes in by_row.items()]


def caption_text(spec: dict, scale: str, ran: bool, notes: list[str]) -> str:
    """The table's caption, plus what makes our numbers incomparable with the paper's below paper scale."""
    caption = spec["caption"] + f" Ours: {scale} scale" + ("" if ran else " (not run)") + "."
    if scale != "paper" and ran:
        caption += (f" Not comparable with the paper's numbers: the {scale} scale runs smaller models, fewer steps and "
                    "fewer samples (config/<paper>.yaml).")
    if notes:
        caption += " Notes of our run: " + " | ".join(notes) + "."
    return caption


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}"),
                 ("±", r"$\pm$"), ("—", "---"), ("≤", r"$\le$"), ("≥", r"$\ge$"), ("×", r"$\times$"),
                 ("σ", r"$\sigma$"), ("β", r"$\beta$"), ("α", r"$\alpha$"), ("ε", r"$\epsilon$"),
                 ("μ", r"$\mu$"), ("Σ", r"$\Sigma$"), ("√", r"$\surd$")):
        s = s.replace(a, b)
    return s


def render_latex(frame: pd.DataFrame, spec: dict, paper: str, table: str, scale: str, ran: bool,
                 notes: list[str] = ()) -> str:
    caption = caption_text(spec, scale, ran, list(notes))
    if any(s.endswith("*") for s in frame.astype(str).values.ravel()):
        caption += " * reported value unverified."
    if frame.empty:
        body = ["\\begin{tabular}{l}", "\\toprule", "no rows at this scale \\\\", "\\bottomrule", "\\end{tabular}"]
    else:
        top = list(dict.fromkeys(c for c, _ in frame.columns))
        spans = [(c, sum(1 for cc, _ in frame.columns if cc == c)) for c in top]
        body = ["\\begin{tabular}{l" + "r" * len(frame.columns) + "}", "\\toprule"]
        body.append(" & " + " & ".join(f"\\multicolumn{{{n}}}{{c}}{{{_tex_escape(c)}}}" for c, n in spans) + " \\\\")
        start, rules = 2, []
        for _, n in spans:
            rules.append(f"\\cmidrule(lr){{{start}-{start + n - 1}}}")
            start += n
        body.append(" ".join(rules))
        body.append(" & " + " & ".join("Paper" if k == "paper" else "Ours" for _, k in frame.columns) + " \\\\")
        body.append("\\midrule")
        for r, values in frame.iterrows():
            body.append(_tex_escape(str(r)) + " & " + " & ".join(_tex_escape(v) for v in values) + " \\\\")
        body += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join([
        f"% {paper} {table}: generated by `python -m repro.report tables` from results/{scale}/{paper}/metrics.csv "
        f"and config/claims/{paper}.yaml. Needs \\usepackage{{booktabs}}.",
        "\\begin{table}[t]", "\\centering", "\\small", *body,
        f"\\caption{{{_tex_escape(caption)}}}", f"\\label{{tab:{paper}-{table}}}", "\\end{table}", ""])


def render_html(frame: pd.DataFrame, spec: dict, paper: str, table: str, scale: str, ran: bool,
                notes: list[str] = ()) -> str:
    caption = html.escape(caption_text(spec, scale, ran, list(notes)))
    table_html = frame.to_html(border=0, classes="repro-table") if not frame.empty else "<p>no rows at this scale</p>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{paper} {table}</title>"
            "<style>body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse}"
            "th,td{padding:2px 8px;text-align:right} th{border-bottom:1px solid #888}</style></head><body>"
            f"<p><b>{html.escape(paper)} — {html.escape(table)}.</b> {caption}</p>{table_html}</body></html>\n")
