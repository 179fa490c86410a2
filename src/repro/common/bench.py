"""`./suite bench`: every paper's own benchmark in one command, one JSON document on stdout, no file left behind.

A paper takes part when its CLI has a `bench` subcommand (`python -m repro.<paper> bench ...`, printing one JSON
object on stdout); that is the whole interface. The command line each is run with comes from config/bench.yaml
(the settings of the README's "Measured here" table), once per device: on the CPU with `--threads` torch threads,
and on CUDA where a GPU is present (the device is chosen through env REPRO_DEVICE, which
`repro.common.device.pick_device` honours). Progress and the papers' own logs go to stderr.

    ./suite bench [--papers ddpm autopalette] [--devices cpu cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from repro.common.config import project_root, read_yaml

NO_BENCH = "invalid choice: 'bench'"


@dataclass(frozen=True)
class BenchRun:
    paper: str
    device: str
    argv: list[str]


def candidate_papers(root: Path) -> list[str]:
    """Every subpackage of repro with a `__main__` (a CLI), in config/config.yaml's paper order first."""
    pkgs = sorted(p.parent.name for p in (root / "src" / "repro").glob("*/__main__.py"))
    order = list(read_yaml(root / "config" / "config.yaml").get("papers", []))
    return [p for p in order if p in pkgs] + [p for p in pkgs if p not in order]


def bench_args(settings: dict, paper: str, device: str, threads: int, tmp: str) -> list[str]:
    """The `bench` command line of `paper` on `device` from config/bench.yaml (default: `--scale smoke`)."""
    entry = settings.get(paper) or {}
    line = entry.get(device, "--scale smoke --threads {threads}" if device == "cpu" else "--scale smoke")
    return shlex.split(line.format(threads=threads, tmp=tmp))


def plan_runs(root: Path, papers: Sequence[str] | None, devices: Sequence[str], threads: int,
              tmp: str) -> list[BenchRun]:
    settings = read_yaml(root / "config" / "bench.yaml") or {}
    unknown = sorted(set(settings) - set(candidate_papers(root)))
    if unknown:
        raise SystemExit(f"error: config/bench.yaml names {unknown}, which are not packages of repro; "
                         "remove them or fix the spelling")
    chosen = list(papers) if papers else candidate_papers(root)
    return [BenchRun(p, d, [sys.executable, "-m", f"repro.{p}", "bench", *bench_args(settings, p, d, threads, tmp)])
            for p in chosen for d in devices]


def parse_json_stdout(text: str) -> dict:
    """The JSON object a paper's bench printed (the last one, if it printed other lines before it)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start = text.rfind("\n{")
        if start >= 0:
            return json.loads(text[start + 1:])
        raise


def run_one(run: BenchRun, env: dict, cwd: Path, timeout: float) -> dict:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(run.argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"ran past {timeout:.0f} s; raise --timeout or lighten config/bench.yaml"}
    wall = round(time.perf_counter() - t0, 1)
    sys.stderr.write(proc.stderr[-4000:])
    if proc.returncode != 0:
        if NO_BENCH in proc.stderr:
            return {"status": "absent"}
        if proc.returncode < 0:
            return {"status": "error", "error": f"killed by signal {-proc.returncode}; rerun it", "wall_s": wall}
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return {"status": "error", "error": f"exit {proc.returncode}: {last}", "wall_s": wall}
    try:
        result = parse_json_stdout(proc.stdout)
    except json.JSONDecodeError:
        return {"status": "error", "error": "its stdout is not one JSON object; a paper's bench must print only that",
                "wall_s": wall}
    return {"status": "ok", "wall_s": wall, "result": result}


def cuda_available(env: dict) -> bool:
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           env=env, capture_output=True, text=True)
    return probe.stdout.strip() == "True"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="./suite bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--papers", nargs="+", default=None, help="default: every package with a bench subcommand")
    ap.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=None,
                    help="default: cpu, and cuda where available")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the CPU runs (default 2)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per paper and device")
    args = ap.parse_args(argv)

    from repro.common.provenance import git_commit, package_versions

    root = project_root()
    env = dict(os.environ)
    src = str(root / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["REPRO_ROOT"] = str(root)
    devices = args.devices or (["cpu", "cuda"] if cuda_available(env) else ["cpu"])
    tmp = tempfile.mkdtemp(prefix="repro-bench-")
    out: dict = {"commit": git_commit(), "packages": package_versions(("torch", "numpy")),
                 "cpu_count": os.cpu_count(), "threads": args.threads, "settings": "config/bench.yaml",
                 "papers": {}}
    try:
        runs = plan_runs(root, args.papers, devices, args.threads, tmp)
        for i, run in enumerate(runs, 1):
            print(f"[bench {i}/{len(runs)}] {run.paper} on {run.device}: {shlex.join(run.argv[1:])}",
                  file=sys.stderr, flush=True)
            renv = dict(env, REPRO_DEVICE=run.device)
            if run.device == "cpu":
                renv.update(OMP_NUM_THREADS=str(args.threads), CUDA_VISIBLE_DEVICES="")
            res = run_one(run, renv, root, args.timeout)
            print(f"[bench {i}/{len(runs)}] {run.paper} on {run.device}: {res['status']}"
                  + (f" ({res['error']})" if "error" in res else f" in {res.get('wall_s', 0)} s"),
                  file=sys.stderr, flush=True)
            if res["status"] != "absent":
                out["papers"].setdefault(run.paper, {})[run.device] = dict(res, command=shlex.join(run.argv[1:]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))
    if any(r.get("status") == "error" for d in out["papers"].values() for r in d.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
