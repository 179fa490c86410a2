"""Where a DAG run's wall time went: each job's wall (Snakemake's own record) against its CLI's computation.

Snakemake keeps, per output file, the start and end time of the job that made it (`.snakemake/metadata/`, one
JSON record per output, named by the base64 of the path). A job whose CLI wrote a metrics part also recorded its
own computation (`total_wall_time_s` of the part's `.provenance.json`: from the ResultWriter's start, after the
imports, to the write). The difference is the job's start-up (interpreter, imports, torch, config and data
loading before the writer opens) plus Snakemake's bookkeeping. Jobs without a part count as start-up only
where they are pure glue (figures, tables, merges): reported separately.

    python -m repro.common.jobtimes [--since 2026-11-30T21:30] [--under results/smoke] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

from repro.common.results import provenance_path


@dataclass(frozen=True)
class JobTime:
    rule: str
    start: float
    end: float
    outputs: tuple[str, ...]
    compute_s: float | None      # the CLI's own computation where a part recorded it

    @property
    def wall_s(self) -> float:
        return self.end - self.start


def read_jobs(metadata_dir: Path, root: Path, since: float = 0.0, under: str = "") -> list[JobTime]:
    """One JobTime per job (the outputs sharing its rule and job_hash), started at or after `since`."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for f in metadata_dir.iterdir():
        try:
            path = base64.b64decode(f.name.replace("@", "/")).decode()
            rec = json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError, OSError):
            continue
        start, end = rec.get("starttime"), rec.get("endtime")
        if start is None or end is None or rec.get("incomplete") or start < since:
            continue
        if under and not path.startswith(under):
            continue
        # a record per output file: the outputs of one job share its job_hash (start and end differ slightly)
        groups[(rec["rule"], rec.get("job_hash", start))].append((path, start, end))
    jobs = []
    for (rule, _), recs in groups.items():
        outs, start, end = [p for p, _, _ in recs], min(s for _, s, _ in recs), max(e for _, _, e in recs)
        compute = None
        for o in outs:
            prov = root / provenance_path(o) if o.endswith(".csv") else None
            if prov is not None and prov.is_file():
                try:
                    compute = float(json.loads(prov.read_text())["total_wall_time_s"])
                except (KeyError, ValueError):
                    pass
        jobs.append(JobTime(rule, start, end, tuple(sorted(outs)), compute))
    return sorted(jobs, key=lambda j: j.start)


def summarise(jobs: Sequence[JobTime]) -> dict:
    if not jobs:
        raise SystemExit("error: no finished jobs in .snakemake/metadata match; run the DAG first or relax --since")
    by_rule: dict[str, list[JobTime]] = defaultdict(list)
    for j in jobs:
        by_rule[j.rule].append(j)
    timed = [j for j in jobs if j.compute_s is not None]
    rules = {}
    for rule, js in sorted(by_rule.items(), key=lambda kv: -sum(j.wall_s for j in kv[1])):
        t = [j for j in js if j.compute_s is not None]
        rules[rule] = {"jobs": len(js), "wall_s": round(sum(j.wall_s for j in js), 1),
                       "median_wall_s": round(statistics.median(j.wall_s for j in js), 2),
                       "compute_s": round(sum(j.compute_s for j in t), 1) if t else None,
                       "startup_s": round(sum(j.wall_s - j.compute_s for j in t), 1) if t else None}
    return {
        "jobs": len(jobs),
        "span_s": round(max(j.end for j in jobs) - min(j.start for j in jobs), 1),
        "job_wall_s": round(sum(j.wall_s for j in jobs), 1),
        "jobs_with_part": len(timed),
        "their_wall_s": round(sum(j.wall_s for j in timed), 1),
        "their_compute_s": round(sum(j.compute_s for j in timed), 1),
        "median_startup_s": round(statistics.median(j.wall_s - j.compute_s for j in timed), 2) if timed else None,
        "glue_jobs": len(jobs) - len(timed),
        "glue_wall_s": round(sum(j.wall_s for j in jobs if j.compute_s is None), 1),
        "rules": rules,
    }


def render(s: dict) -> str:
    lines = [f"{s['jobs']} jobs over {s['span_s']:.0f} s wall; summed job wall {s['job_wall_s']:.0f} s",
             f"  {s['jobs_with_part']} jobs with a metrics part: wall {s['their_wall_s']:.0f} s, of which their CLIs "
             f"computed {s['their_compute_s']:.0f} s (median start-up {s['median_startup_s']} s per job)",
             f"  {s['glue_jobs']} other jobs (data, figures, tables, merges, claims): wall {s['glue_wall_s']:.0f} s",
             "", f"{'rule':<28} {'jobs':>4} {'wall s':>8} {'median':>7} {'compute s':>9} {'start-up s':>10}"]
    for rule, r in s["rules"].items():
        comp = "" if r["compute_s"] is None else f"{r['compute_s']:.1f}"
        up = "" if r["startup_s"] is None else f"{r['startup_s']:.1f}"
        lines.append(f"{rule:<28} {r['jobs']:>4} {r['wall_s']:>8.1f} {r['median_wall_s']:>7.2f} {comp:>9} {up:>10}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m repro.common.jobtimes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="the project directory the DAG ran in (holds .snakemake/)")
    ap.add_argument("--since", default=None, help="only jobs started at or after this ISO time (local time)")
    ap.add_argument("--under", default="", help="only outputs under this path prefix, e.g. results/smoke/lowdim")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    root = Path(args.root)
    meta = root / ".snakemake" / "metadata"
    if not meta.is_dir():
        raise SystemExit(f"error: {meta} not found; run from the directory the DAG ran in or pass --root")
    since = datetime.fromisoformat(args.since).timestamp() if args.since else 0.0
    s = summarise(read_jobs(meta, root, since, args.under))
    print(json.dumps(s, indent=2) if args.json else render(s), file=sys.stdout)


if __name__ == "__main__":
    main()
