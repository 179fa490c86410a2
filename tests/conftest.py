"""Shared fixtures: the project root, and a scratch copy of the workflow for DAG-level tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from repro.common.memory import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

keep_freed_memory()  # the tests' own torch and numpy work, as every repro CLI runs it (repro.common.memory)
# The test command keeps more processes busy than there are cores (two workers beside the background DAG), where
# OpenMP threads that spin while they wait for a descheduled sibling burn the CPU the others need: Inception features
# of 40 images at 2 threads beside two busy processes took 10.7-11.2 CPU-s spinning, 7.7-8.0 CPU-s sleeping
# (OMP_WAIT_POLICY=PASSIVE; the same 4.8-4.9 s wall on an idle machine; issue 15). Set before any test imports torch,
# so the workers, the background DAG and every job they start inherit it; it changes when threads sleep, not a number.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# numpy's OpenBLAS (a pthreads build: OMP_WAIT_POLICY does not reach it) keeps a worker thread per core spinning for a
# while after each call. In the tests' own processes, beside two other busy ones: torch-fidelity's FID of 5 + 5 images
# took 9.96 CPU-s with the default 2 threads, 4.97 with one (np.linalg.eigvals of 2048 x 2048 on an idle machine:
# 6.13 CPU-s for 3.09 s wall at 2 threads, 3.91 / 3.91 at one; issue 15). Snakemake's jobs are not concerned: it sets
# OPENBLAS_NUM_THREADS (and OMP_, MKL_, ...) to each job's `threads` (snakemake/shell.py), so no smoke number moves.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


# The test modules that run DAGs (marked `dag`, or using the session's smoke run). Their tests wait, before they start,
# for the session's prepared data (tests/background.py runs the data rules once, in the background, from the start of
# the session): two Snakemake runs preparing the same files at once would write over each other.
DAG_MODULES = frozenset({
    "tests/test_dag.py", "tests/test_faults.py", "tests/test_planted_bugs.py", "tests/test_reliability.py",
    "tests/test_plan.py", "tests/backbone/test_config.py", "tests/ddpm/test_released_path.py",
    "tests/strainer/test_workflow.py", "tests/tina/test_tina_mini_imagenet.py", "tests/test_background.py",
})


# The tests reading the smoke run all start once it is done, at the end of the session: those that remake its jobs
# go first, the heaviest first (CPU seconds measured in a full test run at 20174f0 on the 2-core machine), so that
# the session ends on the short ones that only read it (tests/test_dag.py) instead of one worker finishing a long
# test alone while the other has nothing left. Each entry is a node id prefix.
SMOKE_TAIL_FIRST = (
    "tests/test_planted_bugs.py::test_other_numerics_stay_in_band[ddpm]",   # retrains a ddpm variant, 29 s
    "tests/test_faults.py",                       # kills and remakes a paper's longest job, 13-24 s each
    "tests/test_planted_bugs.py",                 # remakes one or two jobs, 6-21 s each
    "tests/ddpm/test_released_path.py",           # remakes one ddpm variant, 12 s
)


def _module(item_or_nodeid) -> str:
    return (item_or_nodeid if isinstance(item_or_nodeid, str) else item_or_nodeid.nodeid).split("::")[0]


def _uses_smoke_run(item) -> bool:
    return "smoke_run" in getattr(item, "fixturenames", ())


def background_state(config) -> Path:
    """The session's shared folder for tests/background.py: the session's base temporary directory, which under
    xdist is the parent of every worker's own (xdist's controller derives the workers' from the same factory)."""
    base = config._tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "background"


def pytest_collection_modifyitems(config, items):
    stray = sorted({_module(item) for item in items
                    if (item.get_closest_marker("dag") or _uses_smoke_run(item)) and _module(item) not in DAG_MODULES})
    if stray:
        raise pytest.UsageError(f"{', '.join(stray)} run DAGs (marked dag or using smoke_run) but are not in "
                                "DAG_MODULES of tests/conftest.py: add them there, so that they wait for the prepared "
                                "data")
    # Order: unit tests, then the tests running DAGs of their own, then those reading the smoke run, which the
    # background run is making meanwhile; of these, the ones remaking jobs first (SMOKE_TAIL_FIRST). Every worker
    # sorts the same way (xdist needs identical collections); the sort is stable.
    def rank(item) -> tuple[int, int]:
        if not _uses_smoke_run(item):
            return (1 if _module(item) in DAG_MODULES else 0, 0)
        first = [i for i, prefix in enumerate(SMOKE_TAIL_FIRST) if item.nodeid.startswith(prefix)]
        return (2, first[0] if first else len(SMOKE_TAIL_FIRST))

    items.sort(key=rank)
    if any(_module(item) in DAG_MODULES for item in items):
        from tests import background

        # the session's owner: xdist's controller for a worker (its parent), else this process
        owner = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
        background.start(background_state(config), owner, smoke=any(_uses_smoke_run(item) for item in items))


def pytest_runtest_setup(item):
    if _module(item) in DAG_MODULES:
        from tests import background

        background.wait(background_state(item.config), "data")


def pytest_sessionfinish(session):
    if not os.environ.get("PYTEST_XDIST_WORKER"):     # the session's owner: stop what is still running
        from tests import background

        background.stop(background_state(session.config))


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class OneTestAUnit(LoadScopeScheduling):
        """Every test a unit of its own, handed out in the collected order (not xdist's largest unit first), so that
        a worker that is free takes the next test; the tests of one class are one unit: a class shares a fixture too
        expensive to build on every worker (tests/test_reliability.py: TestLifecycle). (xdist's own `xdist_group`
        does not work with pytest 9: it renames `item._nodeid`, which pytest 9 no longer has.)"""

        def __init__(self, config, log=None):
            config.option.loadscopereorder = False
            super().__init__(config, log)

        def _split_scope(self, nodeid: str) -> str:
            parts = nodeid.split("::")
            return "::".join(parts[:2]) if len(parts) > 2 else nodeid

    return OneTestAUnit(config, log)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Unit tests keep torch to one thread: results do not depend on the machine's core count."""
    try:
        import torch
    except ImportError:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture()
def http_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www, in a thread; yields (www folder, base URL). Code that
    downloads is tested against it (no internet here)."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline mirror (REPRO_MIRROR, else ../shared/mirror beside the checkout)."""
    path = Path(os.environ.get("REPRO_MIRROR") or ROOT.parent / "shared" / "mirror")
    if not path.is_dir():
        pytest.fail(f"offline mirror not found at {path}: set REPRO_MIRROR to the mirror directory "
                    "(the README's test command needs it)")
    return path


def make_scratch_workflow(dest: Path) -> Path:
    """A copy of the workflow where a DAG can run from scratch (see `repro.report.spread.scratch_workflow`)."""
    from repro.report.spread import scratch_workflow

    return scratch_workflow(dest, root=ROOT)


def scratch_env(extra: dict | None = None) -> dict:
    from repro.report.spread import job_env

    env = job_env(extra)
    env["REPRO_DATA_DIR"] = os.environ.get("REPRO_DATA_DIR", str(ROOT / "data"))
    return env


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """The command line of a Snakemake run on the workflow copy `workdir`."""
    return [*SNAKEMAKE, "--directory", str(workdir), "--snakefile", str(workdir / "Snakefile"), *args]


def snakemake(workdir: Path, *args: str, timeout: float = 1200, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(snakemake_cmd(workdir, *args), capture_output=True, text=True, env=scratch_env(),
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_run(request) -> Path:
    """The smoke DAG (all papers of config/config.yaml), run once per session in the background (tests/background.py)
    on a scratch copy of the workflow, from the session's start; the fixture waits for it. Tests only read it:
    those that run Snakemake on it (tests/test_faults.py, tests/test_planted_bugs.py, the HTML report) work on a
    copy (`copy_smoke_run`), so that tests on other workers can read it meanwhile."""
    from tests import background

    state = background_state(request.config)
    result = background.wait(state, "smoke")
    print(f"smoke DAG: {result['seconds']:.0f} s")
    return state / "wf"


def copy_smoke_run(smoke_run: Path, dest: Path) -> Path:
    """A copy of the smoke run (results, logs and Snakemake's records, times kept) where Snakemake may run again."""
    import shutil

    shutil.copytree(smoke_run, dest, symlinks=True)
    return dest
