"""`./suite plan`: the DDPM paper-scale budget worked out by hand from config/plan.yaml and config/ddpm.yaml, the
dry-run parser, the rules' `runtime` requests, and (dag marker) the plan of the real paper DAG."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from repro.common.config import read_yaml
from repro.common.plan import Job, Planner, budget, paper_of, parse_dry_run, render


@pytest.fixture(scope="module")
def planner(root):
    return Planner("paper", root)


def test_the_throughputs_are_the_recorded_ones(root):
    """The plan prices DDPM with the H100 figures recorded in config/ddpm.yaml (compile, fp32)."""
    tp = read_yaml(root / "config" / "plan.yaml")["throughputs"]
    text = (root / "config" / "ddpm.yaml").read_text()
    assert tp["ddpm_train_images_per_s"]["value"] == 2184 and "compile fp32       2,184" in text
    assert tp["ddpm_evals_per_s"]["value"] == 10154 and "10,154 (10.2)" in text
    assert all(isinstance(v["measured"], bool) and v["source"] for v in tp.values())


def test_ddpm_paper_budget_by_hand(planner):
    # config/ddpm.yaml paper: 800k steps x batch 128 on 8 GPUs at 2,184 images/s each, 90% data-parallel efficiency
    train = planner.estimate("ddpm_train", {"variant": "eps_simple", "seed": "0"})
    wall_s = 800_000 * 128 / (2184 * 8 * 0.9)                       # 6,512.0 s on the 8 GPUs
    assert train.gpus == 8
    assert train.hours == pytest.approx(wall_s / 3600, rel=1e-12)   # 1.809 h
    assert train.gpu_hours == pytest.approx(8 * wall_s / 3600, rel=1e-12)
    assert not train.measured                                        # the 8-GPU efficiency is assumed
    # 50k samples x 1000 steps at 10,154 evals/s, plus Inception features of 2 x 50k images at 4,000/s
    sample = planner.estimate("ddpm_sample", {"variant": "eps_simple", "seed": "0"})
    assert sample.hours == pytest.approx((50_000 * 1000 / 10154 + 100_000 / 4000) / 3600, rel=1e-12)
    assert sample.gpus == 1 and sample.measured
    assert sample.disk_gb == pytest.approx(50_000 * 3072 / 1e9)
    # the bound on the whole test split (10k) + 10k train images, 1000 steps each
    bound = planner.estimate("ddpm_bound", {"variant": "eps_simple", "seed": "0"})
    assert bound.hours == pytest.approx(20_000 * 1000 / 10154 / 3600, rel=1e-12)


def test_ddpm_budget_totals_and_table(planner):
    jobs = ([Job("ddpm_train", {"variant": v, "seed": "0"}, 8) for v in ("eps_simple", "mu_mse")]
            + [Job("ddpm_sample", {"variant": "eps_simple", "seed": "0"}, 1),
               Job("ddpm_figure", {"name": "samples"}, 0), Job("fid_stats", {"split": "test-n10000"}, 1)])
    plan = budget(planner, jobs)
    train_gpu_h = 2 * 8 * 800_000 * 128 / (2184 * 8 * 0.9) / 3600       # 28.94 GPU-h
    sample_gpu_h = (50_000 * 1000 / 10154 + 100_000 / 4000) / 3600     # 1.375 GPU-h
    assert plan["rules"]["ddpm"]["ddpm_train"]["gpu_hours"] == pytest.approx(train_gpu_h)
    assert plan["papers"]["ddpm"]["gpu_hours"] == pytest.approx(train_gpu_h + sample_gpu_h)
    assert plan["papers"]["ddpm"]["cpu_hours"] == pytest.approx(2 / 60)   # the figure: cpu_job_min
    assert plan["rules"]["shared"]["fid_stats"]["gpu_hours"] == pytest.approx(10_000 / 4000 / 3600)
    assert plan["total"]["jobs"] == 5
    text = render(plan)
    assert "ddpm_train" in text and f"{train_gpu_h:9.2f}" in text and "[estimate]" in text
    assert text.splitlines()[-1].startswith("TOTAL")


def test_runtime_requests_follow_the_estimates(root, planner):
    margin = read_yaml(root / "config" / "plan.yaml")["runtime_margin"]
    minutes = planner.runtime("ddpm_train", 30)({"variant": "eps_simple", "seed": "0"})
    est_min = 800_000 * 128 / (2184 * 8 * 0.9) / 60
    assert minutes == math.ceil(est_min * margin["factor"] + margin["slack_min"])   # 178 at factor 1.5, slack 15
    assert planner.runtime("ddpm_figure", 5) == 5                   # no model: the rule's own request
    assert Planner("smoke", root).runtime("ddpm_train", 30) == 30     # smoke keeps the rules' small requests


def test_autopalette_expert_and_disk(planner):
    est = planner.estimate("autopalette_expert", {"dataset": "cifar10", "index": "3"})
    assert est.hours == pytest.approx(100 * 1.16 / 3600)
    # ConvNetD3 width 128, instance norm, CIFAR-10: 3,584 + 2 x 147,584 + 768 + 20,490 = 320,010 parameters,
    # stored for 101 epochs in fp32
    assert est.disk_gb == pytest.approx(101 * 320_010 * 4 / 1e9)


DRY = """\
Building DAG of jobs...
[Mon Nov 30 21:40:09 2026]
rule ddpm_train:
    input: data/prepared/cifar10/train.npz
    output: results/paper/ddpm/runs/mu_mse_s0/model.pt
    jobid: 12
    wildcards: variant=mu_mse, seed=0
    threads: 2
    resources: tmpdir=/tmp, runtime=178, gpu=8, mem_mb=32000, mem=32 GB, mem_mib=30518
[Mon Nov 30 21:40:09 2026]
localrule merge_metrics:
    input: a.csv
    wildcards: paper=ddpm
    resources: tmpdir=/tmp, runtime=5, mem_mb=1000
[Mon Nov 30 21:40:09 2026]
localrule all:
    input: x
    resources: tmpdir=/tmp
Job stats:
job            count
-----------  -------
ddpm_train         1
"""


def test_parse_dry_run_and_paper_of():
    jobs = parse_dry_run(DRY)
    assert jobs == [Job("ddpm_train", {"variant": "mu_mse", "seed": "0"}, 8),
                    Job("merge_metrics", {"paper": "ddpm"}, 0)]
    assert [paper_of(j) for j in jobs] == ["ddpm", "ddpm"]
    assert paper_of(Job("tables_tina", {}, 0)) == "tina"
    assert paper_of(Job("fid_stats", {}, 1)) == "shared"


@pytest.mark.dag
def test_plan_of_the_paper_dag(root, tmp_path):
    """`./suite plan` end to end on the real DAG: DDPM's six trained variants and eight evaluations."""
    proc = subprocess.run([sys.executable, "-m", "repro.common.plan", "--json", "--config", "scale=paper",
                           "papers=[ddpm]"], cwd=root, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(root / "src")))
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    plan = json.loads(proc.stdout)
    rules = plan["rules"]["ddpm"]
    assert rules["ddpm_train"]["jobs"] == 6 and rules["ddpm_sample"]["jobs"] == 8
    per_train = 8 * 800_000 * 128 / (2184 * 8 * 0.9) / 3600
    assert rules["ddpm_train"]["gpu_hours"] == pytest.approx(6 * per_train)
    assert plan["total"]["gpu_hours"] > 6 * per_train


def test_a_gpu_model_on_a_cpu_job_is_flagged(planner):
    plan = budget(planner, [Job("fid_stats", {"split": "train"}, 0)])
    r = plan["rules"]["shared"]["fid_stats"]
    assert r["gpu_hours"] == 0 and r["cpu_hours"] == pytest.approx(50_000 / 4000 / 3600)
    assert not r["measured"] and "runs on the CPU" in r["basis"]
