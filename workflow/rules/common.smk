# Config validation, scale and paths, and the registration every paper's rule file uses.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from repro.common.config import config_hash, load_claims, load_paper_config  # noqa: E402
from repro.common.plan import Planner  # noqa: E402
from repro.common.scheduling import coalesce_reevaluations  # noqa: E402
from repro.common.workflow import configure  # noqa: E402

coalesce_reevaluations()  # one pending wake-up of Snakemake's scheduling loop, not a chain per job event
SETTINGS = configure(config, root=workflow.basedir)  # validates; sets PYTHONPATH, PATH, REPRO_MIRROR for jobs
ROOT = SETTINGS.root
SCALE = SETTINGS.scale
SELECTED = list(SETTINGS.papers)
SEEDS = list(SETTINGS.seeds)
THREADS = SETTINGS.threads
RESULTS = SETTINGS.results
FIGURES = SETTINGS.figures
LOGS = SETTINGS.logs
DATA_DIR = SETTINGS.data_dir
MIRROR = SETTINGS.mirror
# `runtime` requests of the GPU rules at mid/paper scale: estimate x margin from config/plan.yaml (./suite plan)
PLANNER = Planner(SCALE, ROOT)

PAPERS = {}  # key -> {"parts": [...], "figures": [...], "tables": [...]} filled by register_paper
ENV_TORCH = "../../envs/torch.yaml"
ENV_REPORT = "../../envs/report.yaml"
ENV_NUMPY = "../../envs/numpy.yaml"


def paper_cfg(paper):
    """The validated config block of `paper` at the run's scale."""
    return load_paper_config(paper, SCALE, root=ROOT)


def cfg_hash(paper):
    """Pass as a `params:` so that a change of the paper's block at this scale reruns its rules.

    Papers not selected need no block at this scale (their rules are defined, never run)."""
    return config_hash(paper_cfg(paper)) if paper in SELECTED else "not-selected"


def register_paper(paper, parts, figures):
    """Declare what a paper's rules produce: metric parts and figures (see docs/extending.md)."""
    claims = load_claims(paper, root=ROOT)
    if paper in SELECTED:
        paper_cfg(paper)  # the scale block must exist and be valid before anything runs
    PAPERS[paper] = {"parts": list(parts), "figures": list(figures), "tables": list(claims["tables"])}


def part_path(paper, part):
    return f"{RESULTS}/{paper}/parts/{part}.csv"


def figure_outputs(paper, name):
    """Named outputs of a figure rule: the PDF, and the PNG that the HTML report shows with `params.caption`."""
    return {
        "pdf": f"{FIGURES}/{paper}_{name}.pdf",
        "png": report(f"{FIGURES}/{paper}_{name}.png", caption="../report/figure.rst", category=paper,
                      subcategory="figures", labels={"figure": name}),
    }


def paper_targets(paper):
    spec = PAPERS[paper]
    return ([f"{RESULTS}/{paper}/metrics.csv", f"{RESULTS}/{paper}/provenance.json"]
            + [f"{RESULTS}/tables/{paper}_{t}.{ext}" for t in spec["tables"] for ext in ("tex", "html")]
            + [f"{FIGURES}/{paper}_{f}.{ext}" for f in spec["figures"] for ext in ("pdf", "png")])


def all_targets():
    unknown = [p for p in SELECTED if p not in PAPERS]
    if unknown:
        raise ValueError(f"config papers: {unknown} have no rule file registered")
    targets = [t for p in SELECTED for t in paper_targets(p)]
    return targets + [f"{RESULTS}/claims.csv", f"{RESULTS}/claims.md", f"{RESULTS}/claims.html"]


wildcard_constraints:
    scale="smoke|mid|paper",
    seed=r"\d+",


# The warm interpreter (src/repro/common/warm.py): on local runs one process imports torch & co. once, and each
# job's `python -m repro...` is forked from it (start-up in milliseconds instead of seconds). A job it cannot take
# exactly as a fresh interpreter would (other thread or kernel settings, other PYTHONPATH, not `-m`) starts its own
# interpreter, as every job does with REPRO_WARM=0 or on a cluster.
shell.prefix(
    "set -euo pipefail; "
    'python() {{ if [[ -n "${{REPRO_WARM_DIR:-}}" ]]; then command python -S -m repro.common.warm "$@"; '
    'else command python "$@"; fi; }}; '
)
WARM = {}


onstart:
    import repro.common.warm as _warm

    # a server per thread count of at least 2 jobs that import torch & co. (warm.server_threads): below that its
    # imports (~4 CPU-s) cost more than they save
    if workflow.local_exec and os.environ.get("REPRO_WARM", "1") != "0":
        try:
            _threads = _warm.server_threads(workflow.dag.needrun_jobs())
        except Exception as _e:  # noqa: BLE001 - Snakemake internals: the rules' thread counts will do, from 4 jobs on
            print(f"warm: cannot read the run's jobs ({type(_e).__name__}: {_e}); a server per thread count if 4 "
                  "jobs or more", file=sys.stderr)
            _threads = {1, min(THREADS, workflow.cores or THREADS)} if len(workflow.dag) >= 4 else set()
        if _threads:
            WARM["server"] = _warm.start(os.getcwd(), f"{LOGS}/warm.log", _threads)


onsuccess:
    import repro.common.warm as _warm

    _warm.stop(WARM.pop("server", None))


onerror:
    import repro.common.warm as _warm

    _warm.stop(WARM.pop("server", None))
