"""Fault tests: kill a long job of each paper in the middle (SIGKILL to the whole run, as on a pre-empted node),
resume, and compare every number it writes with the uninterrupted smoke run's.

Runs on a copy of the session's smoke DAG (`smoke_run` in tests/conftest.py): that run is the uninterrupted one;
each case forces its job again in the copy, kills it once its log shows it is past the marker (for training: past a
checkpoint), checks that nothing half-written is left, unlocks and reruns with --rerun-incomplete, and compares the
job's outputs with the saved ones exactly, timing rows excepted (wall-clock figures differ between any two runs).
The lowdim Monte Carlo pass is covered the same way by tests/test_reliability.py (through ./suite resume).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.background import CORES  # as the smoke run: a job's threads, and so its numerics, are that run's
from tests.conftest import copy_smoke_run, scratch_env, snakemake, snakemake_cmd

DOC = Path(__file__).resolve().parents[1] / "docs/bad-input.md"
TIMING_TABLES = ("speed",)  # wall-clock rows (images/s, s/iteration): measured, never reproducible to the bit
TIMING_KEY = re.compile(r"(_s|_per_s|_s_per_\w+)\.$")  # the same in saved dicts: train_s, steps_per_s, gen_s_per_model


@dataclass(frozen=True)
class Fault:
    id: str
    kind: str
    paper: str
    outputs: tuple[str, ...]    # every output of the job (relative to the workflow); the first is the target
    log: str
    marker: str                 # regex the job's log matches once it is well into its work
    resumes: str | None = None  # regex the rerun's log matches when it resumed from a checkpoint
    fresh: tuple[str, ...] = ()  # resumable state the uninterrupted run left behind: removed, so the job starts at 0


CASES = (
    Fault("ddpm-train", "training with checkpoints", "ddpm",
          ("results/smoke/ddpm/parts/train_eps_simple_s0.csv", "results/smoke/ddpm/runs/eps_simple_s0/model.pt"),
          "logs/smoke/ddpm/train_eps_simple_s0.log", r"step 45 loss", resumes=r"resumed eps_simple from step 30",
          fresh=("results/smoke/ddpm/runs/eps_simple_s0/ckpt/last.pt",)),
    Fault("ddpm-sample", "sampling and a FID/KID pass", "ddpm",
          ("results/smoke/ddpm/parts/sample_eps_simple_s0.csv", "results/smoke/ddpm/samples/eps_simple_s0.npz"),
          "logs/smoke/ddpm/sample_eps_simple_s0.log", r"sample:\s+0%"),
    Fault("tina-generator", "training with checkpoints", "tina",
          ("results/smoke/tina/main/generators/cond_s0.pt",),
          "logs/smoke/tina/main/generator_cond_s0.log", r"generator cond:.*\|\s*(1[5-9]\d|[2-4]\d\d)/600",
          resumes=r"resuming generator training at step [1-5]00 "),
    Fault("strainer-fit", "fitting", "strainer",
          ("results/smoke/strainer/parts/in_domain_afhq_s0.csv", "results/smoke/strainer/arrays/in_domain_afhq_s0.npz"),
          "logs/smoke/strainer/fit_in_domain_afhq_s0.log", r"in-domain fit:.*\|\s*([4-9]\d|1[0-8]\d)/200"),
    # (the shortest of the fits that write PSNR curves: 14 s; one batched fit, as every other strainer fit's first
    # stage; celebahq's in-domain job adds TransINR/IPC's test-time optimisation and takes 31 s)
    Fault("autopalette-distill", "distillation and evaluation", "autopalette",
          ("results/smoke/autopalette/parts/autopalette_c10_ipc1-s0.csv",
           "results/smoke/autopalette/sets/autopalette_c10_ipc1-s0.npz"),
          "logs/smoke/autopalette/run_autopalette_c10_ipc1-s0.log",
          r"evaluate ConvNet:\s+0%"),
    # (killed as the evaluation of its distilled set starts: a log gets a progress line every 5 s, and the 10
    # distillation iterations take ~4 s, so no line falls in the middle of the distillation)
)


def numbers(path: Path) -> dict[str, object]:
    """Every number a job output holds, by name: metric rows (timings excepted), arrays, tensors."""
    if path.suffix == ".csv":
        df = pd.read_csv(path)
        df = df[~df["table"].isin(TIMING_TABLES)]
        return {f"{r.table}|{r.row}|{r.column}|{r.seed}": (r.value, getattr(r, "std", None)) for r in df.itertuples()}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if path.suffix == ".pt":
        import torch

        return {k: v for k, v in flatten(torch.load(path, map_location="cpu", weights_only=False))
                if not TIMING_KEY.search(k)}
    raise ValueError(f"no reader for {path}")


def flatten(obj, prefix=""):
    import torch

    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}{k}.")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}{i}.")
    elif isinstance(obj, torch.Tensor):
        yield prefix, obj.detach().cpu().numpy()
    elif isinstance(obj, (int, float, str, bool, np.ndarray)) or obj is None:
        yield prefix, obj


def assert_same(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), f"{what}: different entries {set(a) ^ set(b)}"
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray):
            assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), \
                f"{what}: {k} differs after the kill and resume"
        else:
            assert x == y or (x != x and y != y) or (isinstance(x, tuple) and str(x) == str(y)), \
                f"{what}: {k}: {x} (uninterrupted) != {y} (killed and resumed)"


def kill_in_the_middle(wf: Path, fault: Fault, config: str, timeout: float = 600) -> None:
    """Force the job, kill the whole Snakemake run once its log matches the marker; nothing may be left."""
    log = wf / fault.log
    log.unlink(missing_ok=True)  # the uninterrupted run's log already matches the marker
    cmd = snakemake_cmd(wf, "--cores", CORES, "--force", "--config", config, "--", fault.outputs[0])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=scratch_env(),
                            start_new_session=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if log.is_file() and re.search(fault.marker, log.read_text(errors="replace").replace("\r", "\n")):
                break
            time.sleep(0.3)
        assert proc.poll() is None, f"{fault.id}: the job ended before its log matched {fault.marker!r}"
        assert log.is_file() and re.search(fault.marker, log.read_text(errors="replace").replace("\r", "\n")), \
            f"{fault.id}: no {fault.marker!r} in {fault.log} within {timeout:.0f} s"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    left = [o for o in fault.outputs if (wf / o).exists()]
    assert not left, f"{fault.id}: the killed job left {left}"


def servers_started(wf: Path) -> int:
    log = wf / "logs/smoke/warm.log"
    return log.read_text().count("warm: serving on") if log.is_file() else 0


def check_fault(wf: Path, fault: Fault, config: str) -> None:
    before = {o: numbers(wf / o) for o in fault.outputs}
    servers = servers_started(wf)
    for path in fault.fresh:
        (wf / path).unlink(missing_ok=True)
    kill_in_the_middle(wf, fault, config)
    snakemake(wf, "--unlock")
    snakemake(wf, "--cores", CORES, "--rerun-incomplete", "--config", config, "--", fault.outputs[0], timeout=900)
    if fault.resumes:
        assert re.search(fault.resumes, (wf / fault.log).read_text()), f"{fault.id}: did not resume from a checkpoint"
    # both runs had one job to run: neither may have paid for a warm server (its imports cost more than one job's;
    # common.smk starts one for a thread count of at least 2 jobs, warm.server_threads)
    assert servers_started(wf) == servers, f"{fault.id}: a one-job run started a warm server"
    for o in fault.outputs:
        assert_same(before[o], numbers(wf / o), f"{fault.id}: {o}")


def test_the_docs_list_every_case():
    listed = re.findall(r"^\| `([a-z]+-[a-z]+)` \|", DOC.read_text().split("## Killed jobs", 1)[1], re.M)
    assert listed == [c.id for c in CASES]


@pytest.mark.dag
@pytest.mark.parametrize("fault", CASES, ids=[c.id for c in CASES])
def test_killed_job_resumes_to_the_uninterrupted_numbers(smoke_run, fault, tmp_path):
    papers = [p for p in (smoke_run / "config/config.yaml").read_text().split("papers:", 1)[1].splitlines()[0]
              .strip(" []").replace(" ", "").split(",") if p]
    if fault.paper not in papers:
        pytest.fail(f"{fault.paper} is not in config/config.yaml papers: the fault case cannot run")
    check_fault(copy_smoke_run(smoke_run, tmp_path / "wf"), fault, f"papers=[{fault.paper}]")
