"""The DAG end to end on a scratch copy of the workflow: smoke regression, contract, report, a missing mirror.
(A killed run and its resume: tests/test_reliability.py, TestLifecycle; each paper's longest job killed and
resumed: tests/test_faults.py.)

The smoke DAG runs once per session (the `smoke_run` fixture of conftest.py: all papers in config/config.yaml), from
scratch except for prepared data and downloads (shared through REPRO_DATA_DIR, made once per machine).
"""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
import yaml

from repro.common.claims import CLAIM_COLUMNS, STATUSES
from repro.common.data.workflow import DataLayout
from repro.common.results import COLUMNS, read_metrics
from repro.report.cli import compare_reference
from tests.conftest import ROOT, SNAKEMAKE, copy_smoke_run, make_scratch_workflow, scratch_env, snakemake, snakemake_cmd

pytestmark = pytest.mark.dag
PAPERS = yaml.safe_load((ROOT / "config/config.yaml").read_text())["papers"]
REFERENCES = ROOT / "tests/reference/smoke"


@pytest.mark.parametrize("paper", PAPERS)
def test_paper_outputs_follow_the_contract(smoke_run, paper):
    res = smoke_run / "results/smoke"
    df = read_metrics(res / paper / "metrics.csv")
    assert list(df.columns) == COLUMNS and len(df) > 0
    assert (df["paper"] == paper).all()
    missing = df[df["value"].isna()]
    assert (missing["note"] != "").all(), "a missing value without a note"
    prov = yaml.safe_load((res / paper / "provenance.json").read_text())
    assert prov["config_hash"] and prov["git_commits"] and prov["wall_time_s"]
    for part in prov["parts"].values():
        assert part["config"] is not None and part["packages"] and part["device"]
    claims = yaml.safe_load((smoke_run / f"config/claims/{paper}.yaml").read_text())
    for table in claims["tables"]:
        tex = (res / "tables" / f"{paper}_{table}.tex").read_text()
        assert "\\begin{tabular}" in tex and "\\bottomrule" in tex
    figures = list((smoke_run / "figures/smoke").glob(f"{paper}_*.pdf"))
    assert all(f.with_suffix(".png").stat().st_size > 1000 for f in figures)


def test_claims_file(smoke_run):
    df = pd.read_csv(smoke_run / "results/smoke/claims.csv")
    assert list(df.columns) == CLAIM_COLUMNS
    assert set(df["status"]) <= set(STATUSES)
    assert set(df["paper"]) >= set(PAPERS)
    md = (smoke_run / "results/smoke/claims.md").read_text()
    assert all(f"`{cid}`" in md for cid in df["claim_id"])
    html = (smoke_run / "results/smoke/claims.html").read_text()
    for paper in PAPERS:  # one summary line per paper, in both reports
        line = next(ln for ln in md.splitlines() if ln.startswith(f"- {paper}: "))
        assert "inconclusive" in line and "controls failing as they must" in line and line[2:] in html


def test_every_checked_claim_has_a_control_that_fails(smoke_run):
    """A verdict is evidence only if the check could have come out the other way: on each checked claim's negative
    control the same check must not confirm."""
    df = pd.read_csv(smoke_run / "results/smoke/claims.csv")
    checked = df[df["status"] != "not_run"]
    assert len(checked) > 0
    bad = checked[~checked["control_ok"].astype(bool)]
    assert bad.empty, "claims whose control did not fail:\n" + bad[
        ["claim_id", "status", "control_status", "control_reproduced", "note"]].to_string()


def test_timings_do_not_decide_claims(smoke_run, tmp_path):
    """Two runs differ in their timings (by 58% between two identical strainer runs): the claims must not."""
    outs = []
    for factor in (0.4, 1.6):
        args = []
        for paper in PAPERS:
            reg = yaml.safe_load((smoke_run / f"config/claims/{paper}.yaml").read_text())
            timing = [t for t, spec in reg["tables"].items() if spec.get("timing")]
            df = read_metrics(smoke_run / f"results/smoke/{paper}/metrics.csv", units=True)
            df.loc[df["table"].isin(timing), "value"] *= factor
            path = tmp_path / f"{paper}_{factor}.csv"
            df.to_csv(path, index=False)
            args.append(f"{paper}={path}")
        out = tmp_path / f"claims_{factor}.csv"
        subprocess.run([*SNAKEMAKE[:1], "-m", "repro.report", "claims", "--scale", "smoke", "--papers", *PAPERS,
                        "--metrics", *args, "--out-csv", str(out), "--out-md", str(tmp_path / f"c{factor}.md")],
                       check=True, capture_output=True, cwd=smoke_run,
                       env={**scratch_env(), "REPRO_ROOT": str(smoke_run), "PYTHONPATH": str(ROOT / "src")})
        outs.append(out.read_text())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("paper", PAPERS)
def test_smoke_numbers_stay_in_their_bands(smoke_run, paper):
    ref = REFERENCES / f"{paper}.csv"
    assert ref.is_file(), f"no regression reference for {paper}: make one with `python -m repro.report reference`"
    problems = compare_reference(ref, read_metrics(smoke_run / f"results/smoke/{paper}/metrics.csv", units=True))
    assert not problems, "\n".join(problems)


def test_html_report(smoke_run, tmp_path):
    wf = copy_smoke_run(smoke_run, tmp_path / "wf")   # Snakemake locks the folder it reports on
    out = wf / "report.html"
    snakemake(wf, "--cores", "1", "--report", str(out))
    html = out.read_text(errors="replace")
    assert "lowdim_kl_tv_vs_d.png" in html and "claims.html" in html and "lowdim_rates.html" in html


def test_missing_mirror_is_a_clear_error(tmp_path):
    """Without mirror and network, preparing a dataset stops with a message naming the file and the fix."""
    wf = make_scratch_workflow(tmp_path / "wf")
    env = {**scratch_env(), "REPRO_MIRROR": str(tmp_path / "no-such-mirror"), "REPRO_DATA_DIR": str(tmp_path / "data")}
    # one dataset: its fetch and preparation, data-CLI jobs for which no warm server starts (warm.server_threads)
    target = DataLayout(data_dir=str(tmp_path / "data"), mirror=None, scale="smoke").prepared("cifar10", "test")
    proc = subprocess.run(snakemake_cmd(wf, "--cores", "1", "--config", "papers=[selfcheck]", "--", target),
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode != 0
    logs = "\n".join(p.read_text() for d in (wf / "logs", tmp_path / "data/logs") for p in d.rglob("*.log"))
    assert "no-such-mirror" in logs and "mirror" in logs.lower()
    assert not any((tmp_path / "data").rglob("*.npz")), "a failed preparation left a dataset behind"
