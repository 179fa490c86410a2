"""What a scale's DAG will cost: GPU-hours per rule and paper, and the disk it needs, from measured throughputs.

`./suite plan --config scale=paper [papers='[ddpm]']` builds the DAG as Snakemake would run it (a forced dry run
with the same `--config`), prices every job with the model of its rule below, and prints one table per paper and
the total. The throughputs are in config/plan.yaml, each marked measured (timed on the stated GPU with this suite's
code; `./suite bench` re-measures them) or assumed; a line priced with an assumed figure is marked `estimate`.

The same models set the rules' `runtime` requests at the GPU scales (`Planner.runtime`, used in
workflow/rules/*.smk), so the SLURM profile asks for estimate x factor + slack minutes (config/plan.yaml).
At smoke scale the rules keep their own small requests: the models price GPU work, not a 2-core CPU.
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from repro.common.config import load_paper_config, project_root, read_yaml

GB = 1e9
SHARED = "shared"
PAPER_PREFIXES = ("selfcheck", "lowdim", "ddpm", "autopalette", "tina", "strainer")


@dataclass(frozen=True)
class Estimate:
    """One job: wall hours on `gpus` GPUs (0: a CPU job), the disk its outputs take, and how the figure was made."""

    hours: float
    gpus: int
    disk_gb: float
    basis: str
    measured: bool

    @property
    def gpu_hours(self) -> float:
        return self.hours * self.gpus


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: dict[str, str]
    gpus: int


class Planner:
    """Prices the jobs of `scale` with the throughputs of config/plan.yaml and the paper configs at that scale."""

    def __init__(self, scale: str, root: Path | None = None):
        self.root = Path(root or project_root())
        self.scale = scale
        spec = read_yaml(self.root / "config" / "plan.yaml")
        self.gpu = spec["gpu"]
        self.margin = spec["runtime_margin"]
        self.tp = spec["throughputs"]
        self.dataset_gb = spec["dataset_gb"]
        self._cfg: dict[str, dict] = {}

    # --- helpers -------------------------------------------------------------------------------------------------
    def cfg(self, paper: str) -> dict:
        if paper not in self._cfg:
            self._cfg[paper] = load_paper_config(paper, self.scale, root=self.root)
        return self._cfg[paper]

    def v(self, key: str) -> float:
        return float(self.tp[key]["value"])

    def measured(self, *keys: str) -> bool:
        return all(bool(self.tp[k]["measured"]) for k in keys)

    def _est(self, seconds: float, gpus: int, disk_gb: float, basis: str, *keys: str) -> Estimate:
        return Estimate(seconds / 3600, gpus, disk_gb, basis, self.measured(*keys))

    # --- the models ----------------------------------------------------------------------------------------------
    def ddpm_train(self, w: dict) -> Estimate:
        t = self.cfg("ddpm")["train"]
        gpus = max(1, int(t["gpus"]))
        images = t["steps"] * t["batch_size"]
        speed = self.v("ddpm_train_images_per_s") * (gpus * self.v("multi_gpu_efficiency") if gpus > 1 else 1)
        keys = ["ddpm_train_images_per_s", "ddpm_params"] + (["multi_gpu_efficiency"] if gpus > 1 else [])
        # model.pt (weights + EMA) and the checkpoint (weights, EMA, Adam's two moments), fp32
        disk = self.v("ddpm_params") * 4 * 6 / GB
        return self._est(images / speed, gpus, disk,
                         f"{t['steps']:,} steps x batch {t['batch_size']} at {speed:,.0f} images/s", *keys)

    def _ddpm_evals_key(self) -> str:
        return "ddpm_evals_per_s_bf16" if self.cfg("ddpm")["train"].get("amp") else "ddpm_evals_per_s"

    def ddpm_sample(self, w: dict) -> Estimate:
        c = self.cfg("ddpm")
        n, steps = c["sample"]["n"], c["diffusion"]["steps"]
        key = self._ddpm_evals_key()
        seconds = n * steps / self.v(key) + 2 * n / self.v("inception_images_per_s")
        return self._est(seconds, 1, n * 3 * c["model"]["resolution"] ** 2 / GB,
                         f"{n:,} samples x {steps} steps at {self.v(key):,.0f} evals/s + Inception", key,
                         "inception_images_per_s")

    def ddpm_bound(self, w: dict) -> Estimate:
        c = self.cfg("ddpm")
        b = c["bpd"]
        test_n = b["test_n"] or 10000            # 0: the whole test split
        n, steps = test_n + b["train_n"], c["diffusion"]["steps"]
        key = self._ddpm_evals_key()
        return self._est(n * steps / self.v(key), 1, 0.01,
                         f"{n:,} images x {steps} steps at {self.v(key):,.0f} evals/s", key)

    def fid_stats(self, w: dict) -> Estimate:
        split = w.get("split", "")
        m = re.search(r"-n(\d+)$", split)
        n = int(m.group(1)) if m else (10000 if split.startswith("test") else 50000)
        return self._est(n / self.v("inception_images_per_s"), 1, 0.001,
                         f"{n:,} images at {self.v('inception_images_per_s'):,.0f}/s", "inception_images_per_s")

    def _convnet_params(self, classes: int) -> int:
        net = self.cfg("autopalette")["net"]
        w, depth = net["width"], net["depth"]
        convs = 3 * w * 9 + w + (depth - 1) * (w * w * 9 + w)
        norm = 2 * w * depth if net.get("norm") in ("instancenorm", "batchnorm", "layernorm") else 0
        feat = w * (32 // 2 ** depth) ** 2
        return convs + norm + feat * classes + classes

    def autopalette_expert(self, w: dict) -> Estimate:
        e = self.cfg("autopalette")["experts"]
        classes = 100 if w.get("dataset") == "cifar100" else 10
        disk = (e["epochs"] + 1) * self._convnet_params(classes) * 4 / GB
        return self._est(e["epochs"] * self.v("convnet_epoch_s"), 1, disk,
                         f"{e['epochs']} epochs x {self.v('convnet_epoch_s')} s", "convnet_epoch_s")

    def autopalette_select(self, w: dict) -> Estimate:
        s = self.cfg("autopalette")["selection"]
        classes = 100 if w.get("dataset") == "cifar100" else 10
        per_class = 500 if classes == 100 else 5000  # pool_per_class null: the whole class (CIFAR train split)
        pool = (s["pool_per_class"] or per_class) * classes
        seconds = s["epochs"] * self.v("convnet_epoch_s") * pool / 50000
        return self._est(seconds, 1, 0.01, f"{s['epochs']} epochs over {pool:,} images", "convnet_epoch_s")

    def autopalette_run(self, w: dict) -> Estimate:
        from repro.autopalette.config import AutoPaletteConfig
        from repro.autopalette.pipeline import stored_images_per_class

        cfg = AutoPaletteConfig.from_dict(self.cfg("autopalette"))
        run = cfg.runs[w["ap_run"]]
        classes = 100 if run.dataset == "cifar100" else 10
        n = stored_images_per_class(run) * classes
        ev = cfg.evaluation
        step_s = self.v("convnet_epoch_s") / math.ceil(50000 / 256)
        eval_s = ev.num_nets * ev.epochs * math.ceil(n / ev.batch_size) * step_s
        keys = ["convnet_epoch_s"]
        basis = f"evaluation {ev.num_nets} nets x {ev.epochs} epochs on {n:,} images"
        seconds = eval_s
        if run.method in ("mtt", "autopalette"):
            d = cfg.run_distill(run)
            per_it = self.v("distill_iteration_s") * d.syn_steps * (d.batch_syn or n) / self.v(
                "distill_reference_image_steps")
            seconds += d.iterations * per_it
            basis = f"{d.iterations:,} iterations x {per_it:.2f} s (syn_steps {d.syn_steps}) + " + basis
            keys += ["distill_iteration_s", "distill_reference_image_steps"]
        return self._est(seconds, 1, n * 3072 / GB + 0.001, basis, *keys)

    def strainer_inits(self, w: dict) -> Estimate:
        c = self.cfg("strainer")
        tr = c["train"]
        ms = self.v("strainer_image_iteration_ms")
        seconds = tr["iters"] * tr["images"] * ms / 1000 + self.v("strainer_meta_s") * c["meta"]["outer_iters"] / 5000
        seconds += c["fit"]["iters"] * tr["images"] * ms / 1000      # the fitted-SIREN initialisation
        keys, basis = ["strainer_image_iteration_ms", "strainer_meta_s"], ""
        hn = c.get("hypernet")
        if hn and w.get("dataset") == c["data"]["source"]:  # TransINR / IPC train in the source dataset's job
            seconds += len(hn["kinds"]) * hn["steps"] * self.v("strainer_hypernet_step_ms") / 1000
            keys.append("strainer_hypernet_step_ms")
            basis = f" + {len(hn['kinds'])} hypernetworks x {hn['steps']:,} steps"
        return self._est(seconds, 1, 0.05, f"encoder {tr['iters']} iterations x {tr['images']} images + MAML" + basis,
                         *keys)

    def strainer_shape3d(self, w: dict) -> Estimate:
        """Fig. 12: a SIREN iteration costs in proportion to its points; grid^3 points against one 178x178 image."""
        c = self.cfg("strainer")
        s3, tr = c["shape3d"], c["train"]
        per_shape = self.v("strainer_image_iteration_ms") * s3["grid"] ** 3 / 178 ** 2 / 1000
        seconds = (tr["iters"] * s3["shapes"] + 3 * s3["iters"]) * per_shape
        return self._est(seconds, 1, 0.1, f"encoder {tr['iters']} iterations x {s3['shapes']} shapes of "
                         f"{s3['grid']}^3 points + 3 fits x {s3['iters']}", "strainer_image_iteration_ms")

    def strainer_fit(self, w: dict) -> Estimate:
        c = self.cfg("strainer")
        images = c["inverse"]["n_images"] if "inverse" in w.get("experiment", "") else c["data"]["n_test"]
        if "speed" in w.get("experiment", ""):
            images = c["speed"]["n_images"]
        nets = images * self.v("strainer_methods_per_fit")
        seconds = c["fit"]["iters"] * nets * self.v("strainer_image_iteration_ms") / 1000
        return self._est(seconds, 1, 0.05, f"{c['fit']['iters']} iterations x {nets:.0f} networks",
                         "strainer_image_iteration_ms", "strainer_methods_per_fit")

    def tina_generator(self, w: dict) -> Estimate:
        g = self.cfg("tina")["generator"]
        return self._est(g["steps"] / self.v("tina_generator_steps_per_s"), 1, 0.5,
                         f"{g['steps']:,} steps at {self.v('tina_generator_steps_per_s')}/s",
                         "tina_generator_steps_per_s")

    def tina_zoo(self, w: dict) -> Estimate:
        c = self.cfg("tina")
        epochs = c["generic"]["epochs"]
        return self._est(epochs * self.v("tina_resnet20_epoch_s"), 1, 0.05,
                         f"generic ResNet-20, {epochs} epochs (+ heads)", "tina_resnet20_epoch_s")

    MODELS: dict[str, Callable[["Planner", dict], Estimate]] = {
        "ddpm_train": ddpm_train, "ddpm_sample": ddpm_sample, "ddpm_bound": ddpm_bound, "fid_stats": fid_stats,
        "autopalette_expert": autopalette_expert, "autopalette_select": autopalette_select,
        "autopalette_run": autopalette_run, "strainer_inits": strainer_inits, "strainer_fit": strainer_fit,
        "strainer_shape3d": strainer_shape3d,
        "tina_generator": tina_generator, "tina_zoo": tina_zoo,
    }

    def estimate(self, rule: str, wildcards: dict, gpus: int = 0) -> Estimate:
        """The job's estimate; a rule without a model is a small CPU job (figures, tables, merges)."""
        if rule in self.MODELS:
            return self.MODELS[rule](self, wildcards)
        if rule in ("prepare_cifar",):
            return self._est(self.v("cpu_job_min") * 60, 0, self.dataset_gb.get(wildcards.get("dataset"), 0),
                             "data preparation", "cpu_job_min")
        if rule == "fetch":
            return self._est(self.v("cpu_job_min") * 60, 0, self.dataset_gb.get(wildcards.get("key"), 0) / 2,
                             "download", "cpu_job_min")
        return self._est(self.v("cpu_job_min") * 60, gpus, 0.0, "not modelled (small job)", "cpu_job_min")

    def runtime(self, rule: str, default: int) -> Callable:
        """A Snakemake `runtime` resource (minutes): the rule's estimate with margin at the GPU scales, else
        `default`."""
        if self.scale == "smoke" or rule not in self.MODELS:
            return default

        def minutes(wildcards) -> int:
            est = self.estimate(rule, dict(wildcards.items()))
            return int(math.ceil(est.hours * 60 * self.margin["factor"] + self.margin["slack_min"]))

        return minutes


# --- the DAG and the report -----------------------------------------------------------------------------------------

def paper_of(job: Job) -> str:
    if job.rule == "merge_metrics":
        return job.wildcards.get("paper", SHARED)
    if job.rule.startswith("tables_"):
        return job.rule[len("tables_"):]
    for p in PAPER_PREFIXES:
        if job.rule.startswith(p + "_"):
            return p
    return SHARED


def parse_dry_run(text: str) -> list[Job]:
    """Jobs of `snakemake --dry-run` output: the `rule NAME:` header, its `wildcards:` and `resources:` lines."""
    jobs: list[Job] = []
    rule, wc, gpus = None, {}, 0

    def flush():
        if rule is not None:
            jobs.append(Job(rule, dict(wc), gpus))

    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            flush()
            rule, wc, gpus = m.group(1), {}, 0
            continue
        if rule is None:
            continue
        s = line.strip()
        if s.startswith("wildcards:"):
            wc = dict(kv.split("=", 1) for kv in s[len("wildcards:"):].strip().split(", ") if "=" in kv)
        elif s.startswith("resources:"):
            m = re.search(r"\bgpu=(\d+)", s)
            gpus = int(m.group(1)) if m else 0
        elif s.startswith("Job stats:"):
            flush()
            rule = None
    flush()
    return [j for j in jobs if j.rule != "all"]


def dag_jobs(config_args: Sequence[str], root: Path) -> list[Job]:
    cmd = [sys.executable, "-m", "snakemake", "--dry-run", "--forceall", "--cores", "1"]
    if config_args:
        cmd += ["--config", *config_args]
    print(f"[plan] building the DAG: snakemake --dry-run --forceall --config {' '.join(config_args)}",
          file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:]) or proc.stdout.strip().splitlines()[-1]
        raise SystemExit(f"error: the DAG did not build (snakemake exit {proc.returncode}); fix the config:\n{tail}")
    return parse_dry_run(proc.stdout)


def scale_of(config_args: Sequence[str], root: Path) -> str:
    for a in config_args:
        if a.startswith("scale="):
            return a.split("=", 1)[1]
    return str(read_yaml(root / "config" / "config.yaml")["scale"])


def budget(planner: Planner, jobs: Sequence[Job]) -> dict:
    """{paper: {rule: {jobs, gpu_hours, cpu_hours, wall_h_per_job, disk_gb, basis, measured}}} and totals."""
    rows: dict[str, dict[str, dict]] = defaultdict(dict)
    for job in jobs:
        est = planner.estimate(job.rule, job.wildcards, job.gpus)
        gpus = max(job.gpus, est.gpus) if job.gpus else 0
        if est.gpus and not job.gpus:      # priced at GPU speed, but the DAG runs it on the CPU at this scale
            est = Estimate(est.hours, 0, est.disk_gb, est.basis + " (GPU speed; runs on the CPU here)", False)
        r = rows[paper_of(job)].setdefault(job.rule, {"jobs": 0, "gpu_hours": 0.0, "cpu_hours": 0.0,
                                                      "max_wall_h": 0.0, "disk_gb": 0.0, "gpus": gpus,
                                                      "basis": est.basis, "measured": True})
        if est.hours >= r["max_wall_h"]:
            r["basis"] = est.basis          # the costliest job's
        r["jobs"] += 1
        r["gpu_hours" if gpus else "cpu_hours"] += est.hours * (gpus or 1)
        r["max_wall_h"] = max(r["max_wall_h"], est.hours)
        r["disk_gb"] += est.disk_gb
        r["measured"] = r["measured"] and est.measured
    totals = {p: {k: sum(r[k] for r in rs.values()) for k in ("jobs", "gpu_hours", "cpu_hours", "disk_gb")}
              for p, rs in rows.items()}
    return {"gpu": planner.gpu, "scale": planner.scale, "rules": dict(rows), "papers": totals,
            "total": {k: sum(t[k] for t in totals.values()) for k in ("jobs", "gpu_hours", "cpu_hours", "disk_gb")}}


def render(plan: dict) -> str:
    head = (f"Reproduction budget at scale '{plan['scale']}' on {plan['gpu']} "
            "(GPU-h = wall x GPUs; 'estimate' = priced with an assumed throughput, config/plan.yaml)")
    lines = [head, "", f"{'paper':<12} {'rule':<28} {'jobs':>5} {'GPUs':>4} {'GPU-h':>9} {'CPU-h':>7} "
             f"{'max h/job':>9} {'disk GB':>8}  basis", "-" * 120]
    order = [p for p in (*PAPER_PREFIXES, SHARED) if p in plan["rules"]]
    for p in order:
        for rule, r in sorted(plan["rules"][p].items(), key=lambda kv: -kv[1]["gpu_hours"]):
            mark = "" if r["measured"] else "  [estimate]"
            lines.append(f"{p:<12} {rule:<28} {r['jobs']:>5} {r['gpus']:>4} {r['gpu_hours']:>9.2f} "
                         f"{r['cpu_hours']:>7.2f} {r['max_wall_h']:>9.2f} {r['disk_gb']:>8.2f}  {r['basis']}{mark}")
        t = plan["papers"][p]
        lines.append(f"{p:<12} {'= ' + p + ' total':<28} {t['jobs']:>5} {'':>4} {t['gpu_hours']:>9.2f} "
                     f"{t['cpu_hours']:>7.2f} {'':>9} {t['disk_gb']:>8.2f}")
        lines.append("")
    t = plan["total"]
    lines.append(f"{'TOTAL':<12} {'':<28} {t['jobs']:>5} {'':>4} {t['gpu_hours']:>9.2f} {t['cpu_hours']:>7.2f} "
                 f"{'':>9} {t['disk_gb']:>8.2f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="./suite plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", nargs="*", default=[], help="as for snakemake: scale=paper papers='[ddpm]'")
    ap.add_argument("--json", action="store_true", help="print the budget as JSON instead of a table")
    args = ap.parse_args(argv)
    root = project_root()
    planner = Planner(scale_of(args.config, root), root)
    plan = budget(planner, dag_jobs(args.config, root))
    if args.json:
        import json

        print(json.dumps(plan, indent=2))
    else:
        print(render(plan))


if __name__ == "__main__":
    main()
