"""The results contract: atomic parts, notes for missing values, merge, claims, tables."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from repro.common import claims as C
from repro.common.errors import UserError
from repro.common.io import atomic_path
from repro.common.results import COLUMNS, ResultWriter, merge_parts, provenance_path, read_metrics
from repro.common.tables import render_latex, table_frame


def test_writer_writes_part_and_provenance(tmp_path):
    out = tmp_path / "parts/a.csv"
    with ResultWriter("p", "a", "smoke", out, config={"x": 1}) as rw:
        with rw.stage("work"):
            rw.add("t", "r", "c", 1.5, seed=0)
        rw.add("t", "r", "IS", None, note="not_available: no logits weights")
    df = read_metrics(out)
    assert list(df.columns) == COLUMNS
    assert df.loc[df["column"] == "c", "value"].item() == 1.5
    assert math.isnan(df.loc[df["column"] == "IS", "value"].item())
    prov = pd.read_json(provenance_path(out), typ="series")
    assert "work" in prov["wall_time_s"] and prov["config"] == {"x": 1} and prov["git_commit"]


def test_writer_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "a.csv"
    with pytest.raises(RuntimeError):
        with ResultWriter("p", "a", "smoke", out) as rw:
            rw.add("t", "r", "c", 1.0)
            raise RuntimeError("boom")
    assert not out.exists() and not provenance_path(out).exists()
    assert list(tmp_path.iterdir()) == []


def test_missing_value_needs_a_note(tmp_path):
    rw = ResultWriter("p", "a", "smoke", tmp_path / "a.csv")
    with pytest.raises(ValueError, match="needs a note"):
        rw.add("t", "r", "c", float("nan"))
    with pytest.raises(UserError, match="diverged"):
        rw.add("t", "r", "c", float("inf"))


def test_merge_rejects_duplicates(tmp_path):
    for part in ("a", "b"):
        with ResultWriter("p", part, "smoke", tmp_path / f"{part}.csv") as rw:
            rw.add("t", "r", "c", 1.0)
    with pytest.raises(UserError, match="same metric"):
        merge_parts([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "m.csv", tmp_path / "p.json")
    assert not (tmp_path / "m.csv").exists()


def test_killed_writer_leaves_no_output(tmp_path):
    """SIGKILL in the middle of a write: the target path never holds a partial file."""
    target = tmp_path / "big.bin"
    code = (
        "import sys, time\n"
        "from repro.common.io import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    with open(tmp, 'wb') as fh:\n"
        "        fh.write(b'x' * 1000); fh.flush(); print('writing', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": "src"})
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    time.sleep(0.1)
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".tmp-")] == []


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
            raise KeyError
    assert target.read_text() == "old"


def _metrics(rows):
    df = pd.DataFrame(rows, columns=["table", "row", "column", "seed", "value", "std", "note"])
    df["paper"] = "p"
    return df


def test_claim_checks_and_statuses():
    m = _metrics([["t", "a", "FID", 0, 3.0, None, ""], ["t", "a", "FID", 1, 3.4, None, ""],
                  ["t", "b", "FID", 0, 6.0, None, ""], ["t", "a", "IS", 0, float("nan"), None, "not_available: x"]])
    base = {"table": "t", "row": "a", "column": "FID", "source": "s", "verified": True, "scales": ["smoke"]}
    j = lambda extra, scale="smoke", metrics=m: C.judge({**base, "id": "x", **extra}, "p", metrics, scale)  # noqa
    assert j({"reported": 3.17, "check": {"within": 0.1}})["status"] == "confirmed"  # mean over seeds 3.2
    assert j({"reported": 3.17, "check": {"within": 0.01}})["status"] == "not_confirmed"
    assert j({"reported": 3.0, "check": {"within_rel": 0.05}})["status"] == "not_confirmed"
    assert j({"reported": 3.0, "check": {"within_rel": 0.07}})["status"] == "confirmed"
    assert j({"reported": 1.6, "check": {"factor": 2.0}})["status"] == "confirmed"
    assert j({"reported": 1.5, "check": {"factor": 2.0}})["status"] == "not_confirmed"
    ratio = {"measure": {"ratio": [{"row": "b"}, {"row": "a"}]}, "reported": None}
    assert j({**ratio, "check": {"at_least": 1.8}})["reproduced"] == pytest.approx(6.0 / 3.2)
    assert j({**ratio, "check": {"at_least": 1.9}})["status"] == "not_confirmed"
    assert j({"measure": {"diff": [{"row": "b"}, {"row": "a"}]}, "check": {"greater_than": 0}})["status"] == "confirmed"
    assert j({"reported": 3.17, "check": {"within": 1}}, scale="paper")["status"] == "not_run"
    assert j({"reported": 3.17, "check": {"within": 1}}, metrics=None)["note"].startswith("p was not run")
    na = j({"column": "IS", "reported": 9.46, "check": {"within": 1}})
    assert na["status"] == "not_run" and "not_available" in na["note"]
    missing = j({"row": "zzz", "reported": 1.0, "check": {"within": 1}})
    assert missing["status"] == "not_run" and "no result" in missing["note"]


def test_table_puts_paper_beside_ours():
    reg = {"tables": {"t": {"caption": "Cap", "digits": 2}},
           "claims": [{"id": "c", "table": "t", "row": "a", "column": "FID", "reported": 3.17, "verified": False,
                       "source": "s", "scales": ["paper"], "check": {"within": 1}}]}
    m = _metrics([["t", "a", "FID", 0, 10.0, None, ""], ["t", "a", "FID", 1, 12.0, None, ""],
                  ["t", "a", "KID", 0, 0.5, 0.1, ""]])
    frame, spec = table_frame(reg, "t", m)
    assert frame.loc["a", ("FID", "paper")] == "3.17*"
    assert frame.loc["a", ("FID", "ours")] == "11.00 ± 1.41"
    assert ("KID", "paper") not in frame.columns and frame.loc["a", ("KID", "ours")] == "0.50 ± 0.10"
    tex = render_latex(frame, spec, "p", "t", "smoke", True)
    assert "\\toprule" in tex and "3.17*" in tex and "11.00 $\\pm$ 1.41" in tex and "unverified" in tex


def test_atomic_output_has_default_permissions(tmp_path):
    import stat
    target = tmp_path / "f.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
