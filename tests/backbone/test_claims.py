"""Claims judged with paired intervals, the inconclusive status, negative controls, and the registries' duty to
declare a control for every claim."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from scipy import stats

from repro.common import claims as C
from repro.common.config import load_claims
from repro.common.results import ResultWriter, read_metrics


def _units(rows: dict[str, list[float]], table="main", column="ID") -> pd.DataFrame:
    """Metrics with one unit row per task for each method, plus each method's summary row."""
    out = []
    for method, values in rows.items():
        for i, v in enumerate(values):
            out.append({"paper": "p", "table": table, "row": method, "column": column, "seed": 0,
                        "unit": f"task{i:02d}", "value": v, "std": None, "note": ""})
        out.append({"paper": "p", "table": table, "row": method, "column": column, "seed": 0, "unit": "",
                    "value": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else None, "note": ""})
    return pd.DataFrame(out)


BASE = {"id": "p.x", "table": "main", "column": "ID", "source": "s", "verified": True, "scales": ["smoke"],
        "reported": None}


def _paired(a, b, check, op="paired_diff", control=None):
    claim = {**BASE, "measure": {op: [{"row": a}, {"row": b}]}, "check": check}
    if control:
        claim["control"] = control
    return claim


@pytest.fixture
def tasks():
    rng = np.random.default_rng(1)
    base = rng.uniform(40, 80, size=24)
    return _units({
        "tina": list(base + 3.0 + rng.normal(0, 1.0, 24)),    # clearly better than generic, paired
        "generic": list(base),
        "noise": list(base + rng.normal(0, 8.0, 24)),        # same mean as generic, large per-task noise
        "worse": list(base - 5.0 + rng.normal(0, 1.0, 24)),
        "shuffled": list(base - 0.5 + rng.normal(0, 1.0, 24)),
    })


def test_paired_difference_uses_the_units_and_scipys_interval(tasks):
    row = C.judge(_paired("tina", "generic", {"greater_than": 0.0}), "p", tasks, "smoke")
    assert row["status"] == "confirmed" and row["n"] == 24
    a = tasks[(tasks.row == "tina") & (tasks.unit != "")]["value"].to_numpy()
    b = tasks[(tasks.row == "generic") & (tasks.unit != "")]["value"].to_numpy()
    assert row["reproduced"] == pytest.approx(np.mean(a - b))
    ref = stats.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x, axis) - np.mean(y, axis), paired=True,
                          vectorized=True, n_resamples=C.N_RESAMPLES, method="BCa", rng=np.random.default_rng(0))
    assert row["ci_low"] == pytest.approx(ref.confidence_interval.low)
    assert row["ci_high"] == pytest.approx(ref.confidence_interval.high)
    assert row["ci_low"] > 0 and row["ci_high"] < 6


def test_three_outcomes(tasks):
    assert C.judge(_paired("worse", "generic", {"greater_than": 0.0}), "p", tasks, "smoke")["status"] == \
        "not_confirmed"
    straddle = C.judge(_paired("noise", "generic", {"greater_than": 0.0}), "p", tasks, "smoke")
    assert straddle["status"] == "inconclusive" and straddle["ci_low"] < 0 < straddle["ci_high"]
    # a margin: +3 points is confirmed beyond 1 point, not beyond 10
    assert C.judge(_paired("tina", "generic", {"greater_than": 1.0}), "p", tasks, "smoke")["status"] == "confirmed"
    assert C.judge(_paired("tina", "generic", {"greater_than": 10.0}), "p", tasks, "smoke")["status"] == \
        "not_confirmed"


def test_paired_ratio_and_the_mean_over_units(tasks):
    row = C.judge(_paired("tina", "generic", {"at_least": 0.95}, op="paired_ratio"), "p", tasks, "smoke")
    a = tasks[(tasks.row == "tina") & (tasks.unit != "")]["value"].mean()
    b = tasks[(tasks.row == "generic") & (tasks.unit != "")]["value"].mean()
    assert row["reproduced"] == pytest.approx(a / b) and row["status"] == "confirmed"


def test_pairing_is_by_unit_not_by_position():
    """Shuffling one side's rows must not change the result: units are matched by name."""
    m = _units({"a": [10, 20, 30, 40], "b": [9, 19, 29, 39]})
    shuffled = pd.concat([m[m.row == "a"], m[m.row == "b"].iloc[::-1]])
    for df in (m, shuffled):
        row = C.judge(_paired("a", "b", {"greater_than": 0.0}), "p", df, "smoke")
        assert row["reproduced"] == pytest.approx(1.0) and row["status"] == "confirmed"
        assert row["ci_low"] == row["ci_high"] == pytest.approx(1.0)  # identical differences: no spread


def test_seeds_are_units_when_a_cell_has_no_unit_rows():
    m = pd.DataFrame([{"paper": "p", "table": "t", "row": r, "column": "c", "seed": s, "unit": "", "value": v,
                       "std": None, "note": ""}
                      for r, vals in {"a": [1.0, 1.2, 0.9], "b": [0.5, 0.6, 0.4]}.items() for s, v in enumerate(vals)])
    claim = {**BASE, "table": "t", "column": "c", "measure": {"paired_diff": [{"row": "a"}, {"row": "b"}]},
             "check": {"greater_than": 0.0}}
    row = C.judge(claim, "p", m, "smoke")
    assert row["n"] == 3 and row["reproduced"] == pytest.approx(0.5333333)


def test_one_pair_is_inconclusive():
    m = _units({"a": [10.0], "b": [2.0]})
    row = C.judge(_paired("a", "b", {"greater_than": 0.0}), "p", m, "smoke")
    assert row["status"] == "inconclusive" and "one paired unit" in row["note"]


def test_interval_against_a_reported_band():
    m = _units({"a": [3.1, 3.2, 3.15, 3.18, 3.22], "b": [0.0] * 5})
    inside = {**_paired("a", "b", {"within": 0.5}), "reported": 3.17}
    assert C.judge(inside, "p", m, "smoke")["status"] == "confirmed"
    far = {**_paired("a", "b", {"within": 0.5}), "reported": 5.0}
    assert C.judge(far, "p", m, "smoke")["status"] == "not_confirmed"
    edge = {**_paired("a", "b", {"within": 0.02}), "reported": 3.17}
    assert C.judge(edge, "p", m, "smoke")["status"] == "inconclusive"


def test_control_must_fail(tasks):
    good = _paired("tina", "generic", {"greater_than": 0.0},
                   control={"description": "the generator given shuffled text", "measure":
                            {"paired_diff": [{"row": "shuffled"}, {"row": "generic"}]}})
    row = C.judge(good, "p", tasks, "smoke")
    assert row["status"] == "confirmed" and row["control_status"] == "not_confirmed" and row["control_ok"]
    weak = _paired("tina", "generic", {"greater_than": 0.0},
                   control={"description": "a control that is no control", "row": "x",
                            "measure": {"paired_diff": [{"row": "tina"}, {"row": "worse"}]}})
    row = C.judge(weak, "p", tasks, "smoke")
    assert row["control_status"] == "confirmed" and not row["control_ok"] and "no evidence" in row["note"]
    missing = _paired("tina", "generic", {"greater_than": 0.0},
                      control={"description": "rows nobody wrote", "measure":
                               {"paired_diff": [{"row": "nope"}, {"row": "generic"}]}})
    row = C.judge(missing, "p", tasks, "smoke")
    assert row["control_status"] == "not_run" and not row["control_ok"] and "control not run" in row["note"]


def test_cell_claim_control_replaces_the_row():
    m = pd.DataFrame([{"paper": "p", "table": "t", "row": r, "column": "ratio", "seed": 0, "unit": "", "value": v,
                       "std": None, "note": ""} for r, v in (("proposed", 1.01), ("perturbed", 3.0))])
    claim = {**BASE, "table": "t", "row": "proposed", "column": "ratio", "check": {"at_most": 1.05},
             "control": {"description": "sigma^2 = 1.02 sigma*^2", "row": "perturbed"}}
    row = C.judge(claim, "p", m, "smoke")
    assert (row["status"], row["control_status"], row["control_reproduced"]) == ("confirmed", "not_confirmed", 3.0)


def test_claims_are_deterministic(tasks):
    claim = _paired("noise", "generic", {"greater_than": 0.0})
    a, b = (C.judge(claim, "p", tasks, "smoke") for _ in range(2))
    assert (a["ci_low"], a["ci_high"]) == (b["ci_low"], b["ci_high"])


def test_unit_rows_round_trip_and_stay_out_of_tables(tmp_path):
    out = tmp_path / "part.csv"
    with ResultWriter("p", "part", "smoke", out, config={}) as w:
        w.add("main", "tina", "ID", 70.0)
        w.add("main", "tina", "ID", 60.0, unit="task00")
        w.add("main", "tina", "ID", 80.0, unit="task01")
    assert len(read_metrics(out)) == 1
    full = read_metrics(out, units=True)
    assert sorted(full["unit"]) == ["", "task00", "task01"]
    assert C.cell(full, "main", "tina", "ID").value == 70.0
    assert list(C.unit_values(full, "main", "tina", "ID")) == [60.0, 80.0]


def test_summary_line_per_paper(tasks):
    reg = {"p": {"claims": [
        {**_paired("tina", "generic", {"greater_than": 0.0}), "id": "a",
         "control": {"description": "shuffled text generator", "measure":
                     {"paired_diff": [{"row": "shuffled"}, {"row": "generic"}]}}},
        {**_paired("noise", "generic", {"greater_than": 0.0}), "id": "b",
         "control": {"description": "shuffled text generator", "measure":
                     {"paired_diff": [{"row": "shuffled"}, {"row": "generic"}]}}},
        {**_paired("tina", "generic", {"greater_than": 0.0}), "id": "c", "scales": ["paper"],
         "control": {"description": "shuffled text generator", "row": "shuffled"}}]}}
    df = C.judge_all(reg, {"p": tasks}, "smoke")
    assert C.summary_lines(df) == ["p: 1 confirmed, 0 not confirmed, 1 inconclusive, 1 not run; "
                                   "controls failing as they must: 2 of 2 checked"]
    md = C.claims_markdown(df, "smoke")
    assert "p: 1 confirmed" in md and "95% interval" in md and "✓ not_confirmed" in md


@pytest.mark.parametrize("paper", ["selfcheck", "lowdim", "ddpm", "autopalette", "tina", "strainer"])
def test_every_claim_declares_a_negative_control(paper, root):
    """The schema requires it; this says which claim lacks one in words a reader can act on."""
    reg = load_claims(paper, root=root)
    lacking = [c["id"] for c in reg["claims"] if not (c.get("control") or {}).get("description")]
    assert not lacking, f"claims without a negative control: {lacking}"
    for c in reg["claims"]:
        ctl = C.control_claim(c)
        assert any(ctl.get(k) != c.get(k) for k in C.SELECTOR_KEYS), \
            f"{c['id']}: the control selects the same evidence as the claim"
