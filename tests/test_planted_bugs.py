"""Regression bands that hold on other machines and still catch bugs.

A regression test that cannot fail is a defect: for each paper, a planted bug must take a number out of its band.

Each case copies the smoke run (results, Snakemake's records and all), deletes the metric part(s) the bug reaches,
and lets Snakemake remake them with the bug planted: a `sitecustomize.py` on the jobs' PYTHONPATH patches one
function of `repro` before the job's own code runs (a flipped sign or a wrong constant in a loss, a wrong
normalisation in a metric). The paper's merged metrics are then compared with its reference, and at least one number
must leave its band. The same comparison without a bug is `test_dag.py::test_smoke_numbers_stay_in_their_bands`.

The other way round, the same remaking under another machine's numerics (AVX2-only ATen and oneDNN kernels, one
thread) must stay inside every band: that is what a CI on a colleague's CPU sees.
"""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from repro.common.results import read_metrics
from repro.report.cli import compare_reference
from repro.report.spread import VARIANTS
from tests.background import CORES
from tests.conftest import ROOT, copy_smoke_run, scratch_env, snakemake_cmd

pytestmark = pytest.mark.dag


@dataclass(frozen=True)
class Plant:
    paper: str
    parts: tuple[str, ...]  # glob patterns under results/smoke/<paper>/ whose files the bug reaches
    patch: str              # Python run at the start of each of the paper's jobs (in sitecustomize.py)
    what: str


PLANTS = [
    Plant("selfcheck", ("parts/fid_halves*",), """
        import repro.common.metrics.fidelity as f
        _orig = f._fid_low_rank
        def _fid_low_rank(x, y):  # the cross term counted once instead of twice
            import numpy as np
            x, y = x.astype(np.float64), y.astype(np.float64)
            a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
            b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
            d = x.mean(0) - y.mean(0)
            return float(d @ d + (a * a).sum() + (b * b).sum() - 1.0 * np.linalg.svd(a @ b.T, compute_uv=False).sum())
        f._fid_low_rank = _fid_low_rank
        """, "FID's cross term with the wrong constant"),
    Plant("lowdim", ("parts/exact*", "parts/summary*", "exact_grid*"), """
        import repro.lowdim.exact as e
        _kl_var = e.kl_var
        e.kl_var = lambda a, b: 2.0 * _kl_var(a, b)  # KL of two Gaussians without its 1/2
        """, "the Gaussian KL without its factor 1/2"),
    # (of the two bound jobs, the L_simple one: its rows are enough to show the bug)
    Plant("ddpm", ("parts/bound_eps_simple_s0*",), """
        import math
        import repro.common.metrics.likelihood as L
        L.nats_to_bits_per_dim = lambda nats: nats / math.log(10)  # bits/dim normalised by ln 10, not ln 2
        """, "bits/dim with the wrong normalisation (ln 10)"),
    Plant("tina", ("parts/eval_s0*",), """
        import repro.tina.zoo as z
        _evaluate = z.evaluate_models
        def evaluate_models(*args, **kwargs):  # task accuracy over images plus one per class slot
            r = _evaluate(*args, **kwargs)
            return z.HeadScores(r.correct.sum(1) / (r.count.sum(1) + r.count.shape[1]), r.correct, r.count)
        z.evaluate_models = evaluate_models
        """, "task accuracy with the wrong denominator"),
    Plant("autopalette", ("parts/random_c10_ipc1-s0*",), """
        import repro.common.train as t
        def accuracy(net, x, y, batch_size=t.PREDICT_BATCH):
            return t.top1(t.predict(net, x, batch_size), y) * len(y) / (len(y) + 1000)
        t.accuracy = accuracy
        """, "test accuracy normalised by the wrong count"),
    Plant("strainer", ("parts/in_domain_afhq_s0*",), """
        import numpy as np
        import repro.strainer.fit as f
        def psnr_from_mse(mse, value_range=(-1.0, 1.0)):  # the peak's span not squared
            span = float(value_range[1]) - float(value_range[0])
            return -10.0 * np.log10(np.asarray(mse, dtype=np.float64) / span)
        f.psnr_from_mse = psnr_from_mse
        """, "PSNR with the peak's span not squared"),
]


def remake(smoke_run: Path, paper: str, parts: tuple[str, ...], dest: Path, *, patch: str = "",
           env: dict | None = None) -> list[str]:
    """Remake `parts` of a copy of the smoke run (with a planted `patch`, under `env`); the reference comparison's
    problems for the paper's merged metrics."""
    import subprocess

    wf = copy_smoke_run(smoke_run, dest / "wf")
    results = wf / "results/smoke" / paper
    removed = [p for pattern in parts for p in results.glob(pattern)]
    assert removed, f"{paper}: no part matches {parts} (the pipeline changed: update the test)"
    for p in removed:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    # Snakemake leaves a missing intermediate alone while its target exists: the merged metrics go too
    for name in ("metrics.csv", "provenance.json"):
        (results / name).unlink()
    extra = dict(env or {})
    if patch:
        site = dest / "plant"
        site.mkdir()
        # only in the paper's own job processes (`python -m repro.<paper> ...`): Snakemake's process and the merge run
        # no code a bug is planted in, and would pay for importing it (torch) for nothing; a sitecustomize on the
        # path still keeps the warm server off (repro.common.warm)
        body = textwrap.indent(textwrap.dedent(patch), "    ")
        (site / "sitecustomize.py").write_text(f"import sys\nif 'repro.{paper}' in sys.orig_argv[:3]:\n{body}")
        # the workflow's own src first: sitecustomize imports `repro` before the Snakefile puts src on sys.path
        extra["PYTHONPATH"] = os.pathsep.join((str(wf / "src"), str(site)))
    proc = subprocess.run(snakemake_cmd(wf, "--cores", CORES, "--config", f"papers=[{paper}]", "--",
                                        f"results/smoke/{paper}/metrics.csv"),
                          capture_output=True, text=True, env=scratch_env(extra), timeout=1200)
    assert proc.returncode == 0, f"the remade run failed:\n{proc.stderr[-4000:]}"
    assert all(p.exists() for p in removed if p.suffix == ".csv"), "Snakemake did not remake the parts"
    metrics = read_metrics(results / "metrics.csv", units=True)
    return compare_reference(ROOT / f"tests/reference/smoke/{paper}.csv", metrics)


@pytest.mark.parametrize("plant", PLANTS, ids=[p.paper for p in PLANTS])
def test_a_planted_bug_leaves_the_band(smoke_run, plant, tmp_path):
    problems = remake(smoke_run, plant.paper, plant.parts, tmp_path, patch=plant.patch)
    assert problems, f"{plant.paper}: {plant.what} left every number in its band: the bands cannot catch it"


def test_every_paper_has_a_planted_bug():
    import yaml

    papers = yaml.safe_load((ROOT / "config/config.yaml").read_text())["papers"]
    assert sorted(p.paper for p in PLANTS) == sorted(papers)


OTHER_NUMERICS = VARIANTS["other"].env
SENSITIVE = [
    ("selfcheck", ("parts/fid_halves*",)),
    # the chaotic one (FID 394 on a Xeon against 419 here before the bands came from measured spread): retrain it
    ("ddpm", ("parts/train_mu_kl_fixed_s0*", "runs/mu_kl_fixed_s0")),
]


@pytest.mark.parametrize("paper,parts", SENSITIVE, ids=[p for p, _ in SENSITIVE])
def test_other_numerics_stay_in_band(smoke_run, paper, parts, tmp_path):
    problems = remake(smoke_run, paper, parts, tmp_path, env=OTHER_NUMERICS)
    assert not problems, "under AVX2 kernels and one thread:\n" + "\n".join(problems)


# The smoke run's jobs are forked from the warm interpreter (repro.common.warm); each of these, made again in a
# fresh interpreter, must give the same numbers bit for bit: torch, numpy and scipy work of three papers.
WARM_CHECKED = [
    ("selfcheck", ("parts/fid_halves*",), r"repro\.selfcheck halves"),
    ("tina", ("parts/eval_s0*",), r"repro\.tina evaluate"),
    ("autopalette", ("parts/random_c10_ipc1-s0*",), r"repro\.autopalette run .*--run random_c10_ipc1 "),
]


@pytest.mark.parametrize("paper,parts,job", WARM_CHECKED, ids=[p for p, _, _ in WARM_CHECKED])
def test_cold_jobs_remake_the_warm_numbers(smoke_run, paper, parts, job, tmp_path):
    log = (smoke_run / "logs/smoke/warm.log").read_text()
    assert re.search(f": {job}", log), f"the smoke run did not fork '{job}' from the warm interpreter:\n{log[-2000:]}"
    from repro.common.claims import timing_tables
    from repro.common.config import load_claims

    timings = timing_tables(load_claims(paper, root=ROOT))  # wall-clock tables differ between any two runs
    warm_numbers = read_metrics(smoke_run / f"results/smoke/{paper}/metrics.csv", units=True)
    remake(smoke_run, paper, parts, tmp_path, env={"REPRO_WARM": "0"})
    cold_numbers = read_metrics(tmp_path / f"wf/results/smoke/{paper}/metrics.csv", units=True)
    key = ["table", "row", "column", "seed", "unit"]
    warm_numbers, cold_numbers = (m[~m["table"].isin(timings)] for m in (warm_numbers, cold_numbers))
    merged = warm_numbers.merge(cold_numbers, on=key, how="outer", suffixes=("_warm", "_cold"), indicator=True)
    assert (merged["_merge"] == "both").all(), "the cold run wrote other cells"
    differ = merged[~((merged["value_warm"] == merged["value_cold"])
                      | (merged["value_warm"].isna() & merged["value_cold"].isna()))]
    assert differ.empty, (f"{paper}: numbers differ between the warm and the cold jobs:\n"
                          f"{differ[key + ['value_warm', 'value_cold']]}")
