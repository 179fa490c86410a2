"""Regression bands from measured spread: run a paper's smoke DAG under the numerics that differ between machines.

A CPU of another kind sums floats in another order (AVX2 against AVX-512 kernels, oneDNN's ISA, the number of
threads), so a number that is stable on one machine can move on the next. `python -m repro.report spread` runs the
paper's DAG in scratch copies of the workflow under each *variant* below and keeps each run's metrics;
`python -m repro.report reference --variant NAME=PATH ...` turns them into bands:

- numerics spread s_num = max over the numerics variants of |v - v_ref| (same seed);
- seed spread s_seed = max over the other seeds of |v - v_ref| (same key, another seed);
- a number is *chaotic* at this scale when s_num >= CHAOS_FRACTION * s_seed: rounding differences already move it by
  a good part of what a new seed does, so another CPU may move it as far as a new seed would. Its band is
  SEED_MULTIPLE * s_seed (never less than the NUMERICS_MULTIPLE * s_num that every other number gets). Both get
  the floors (ATOL_FLOOR + RTOL_FLOOR * |v_ref|), and never less than CHAOS_FRACTION * s_seed: the variants of one
  machine cannot reach every other machine's kernels (MKL picks its code path by CPU vendor, for one), so a number
  may move by as much as a number that is not yet called chaotic;
- the units of one cell (tasks, images) share the largest of their spreads: with two or three seeds, the spread of
  a single unit is a poor estimate, and a machine moves whichever units it moves.

The header of the reference file records the variants, their settings, the commits and the multiples.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Variant:
    name: str
    kind: str  # "reference", "numerics" or "seed"
    env: dict = field(default_factory=dict)
    config: tuple[str, ...] = ()
    description: str = ""


# Each numerical library picks its kernels by the CPU's instruction sets; these pin all four to AVX2 ones
# (MKL serves torch's BLAS on x86 wheels, OpenBLAS numpy's and scipy's).
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "OPENBLAS_CORETYPE": "Haswell"}

VARIANTS = {v.name: v for v in (
    Variant("default", "reference", description="this machine's defaults (config threads, best CPU kernels)"),
    Variant("threads1", "numerics", config=("threads=1",), description="one torch thread per job"),
    Variant("avx2", "numerics", env=AVX2_KERNELS, description="ATen, oneDNN, MKL and OpenBLAS limited to AVX2 kernels"),
    Variant("other", "numerics", env={**AVX2_KERNELS, "REPRO_THREADS": "1"},
            description="both at once: AVX2-only kernels and one thread (another machine, in one run)"),
    Variant("seed1", "seed", config=("seeds=[1]",), description="seed 1 instead of 0"),
    Variant("seed2", "seed", config=("seeds=[2]",), description="seed 2 instead of 0"),
)}

NUMERICS_MULTIPLE = 4.0
SEED_MULTIPLE = 1.5
CHAOS_FRACTION = 0.1
RTOL_FLOOR = 1e-6
ATOL_FLOOR = 1e-9


def scratch_workflow(dest: Path, root: Path = ROOT) -> Path:
    """A copy of the workflow (Snakefile, workflow/, config/, envs/; src/ linked) where a DAG can run from scratch.

    Prepared data and downloads stay shared with the project (REPRO_DATA_DIR), so they are made once per machine."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / "Snakefile", dest / "Snakefile")
    for d in ("workflow", "config", "envs"):  # rules name their env files; Snakemake records them
        shutil.copytree(root / d, dest / d, dirs_exist_ok=True)
    if not (dest / "src").exists():
        (dest / "src").symlink_to(root / "src")
    return dest


def job_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.setdefault("REPRO_DATA_DIR", str(ROOT / "data"))
    if "REPRO_MIRROR" not in env and (ROOT.parent / "shared" / "mirror").is_dir():
        env["REPRO_MIRROR"] = str(ROOT.parent / "shared" / "mirror")
    env.update(extra or {})
    return env


# Data that is the same bytes on every machine (downloads, decoded datasets) is shared with the
# project's data directory; what a machine computes with floats (FID statistics, text-embedding caches) is made anew
# in each variant, so that its spread is measured too.
SHARED_DATA = ("downloads", "prepared")
# Stamps of the mirror checks (data.smk's verify_mirror) are copied with their times, not linked: Snakemake removes
# the empty directories it made below a linked one at the end of a run, and a fresh stamp would make the prepare
# rules rewrite the shared prepared data.
COPIED_DATA = ("verified",)


def variant_data_dir(dest: Path) -> Path:
    shared = Path(job_env()["REPRO_DATA_DIR"]).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    for name in SHARED_DATA:
        (shared / name).mkdir(parents=True, exist_ok=True)
        link = dest / name
        if not link.exists():
            link.symlink_to(shared / name)
    for name in COPIED_DATA:
        if (dest / name).is_symlink():
            (dest / name).unlink()
        if (shared / name).is_dir():
            shutil.copytree(shared / name, dest / name, dirs_exist_ok=True)
    return dest


def run_variant(paper: str, variant: Variant, workdir: Path, cores: int, scale: str = "smoke") -> Path:
    """Run `paper`'s DAG under `variant` in `workdir/<variant>`; return its metrics.csv."""
    wf = scratch_workflow(workdir / variant.name)
    data = variant_data_dir(workdir / variant.name / "data")
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(wf), "--snakefile", str(wf / "Snakefile"),
           "--cores", str(cores), "--config", f"papers=[{paper}]", f"scale={scale}", *variant.config,
           "--", f"results/{scale}/{paper}/metrics.csv"]
    t0 = time.perf_counter()
    print(f"[spread] {paper} / {variant.name} ({variant.description}) ...", file=sys.stderr, flush=True)
    from repro.common.provenance import git_commit

    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=job_env({**variant.env, "REPRO_DATA_DIR": str(data),
                                       "REPRO_GIT_COMMIT": git_commit(cwd=ROOT)}))
    if proc.returncode != 0:
        raise SystemExit(f"error: the {variant.name} run of {paper} failed ({proc.returncode}); its logs are in "
                         f"{wf / 'logs'}\n{proc.stderr[-3000:]}")
    print(f"[spread] {paper} / {variant.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return wf / f"results/{scale}/{paper}/metrics.csv"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m repro.report spread", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paper", required=True)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--workdir", required=True, help="scratch directory (one workflow copy per variant)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--scale", default="smoke")
    args = p.parse_args(argv)
    workdir = Path(args.workdir).resolve()
    # a reference must come from this code's own runs: a variant folder left by an earlier (or killed) spread would
    # hand its stale outputs and Snakemake records to this one
    used = [workdir / v for v in args.variants
            if (workdir / v).exists() and (not (workdir / v).is_dir() or any((workdir / v).iterdir()))]
    if used:
        raise SystemExit(f"error: {', '.join(map(str, used))} not empty: each variant runs from scratch, so that no "
                         f"result of an earlier run can stand in for this one's; remove it or choose another --workdir")
    paths = {v: run_variant(args.paper, VARIANTS[v], workdir, args.cores, args.scale) for v in args.variants}
    print(" ".join(f"--variant {k}={v}" for k, v in paths.items()))
