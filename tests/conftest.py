"""Shared fixtures: the project root, and a scratch copy of the workflow for DAG-level tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


# The test modules that run DAGs (marked `dag`, or using the session's smoke run). Under pytest-xdist (`./suite test`
# runs `-n auto`) they all go to one worker, in their collected order: they share one smoke run and the machine's
# prepared data, which two concurrent runs would both prepare. The other modules are spread over the other workers.
# (xdist's own `xdist_group` does not work with pytest 9: it renames `item._nodeid`, which pytest 9 no longer has.)
DAG_MODULES = frozenset({
    "tests/test_dag.py", "tests/test_faults.py", "tests/test_planted_bugs.py", "tests/test_reliability.py",
    "tests/test_plan.py", "tests/backbone/test_config.py", "tests/ddpm/test_released_path.py",
    "tests/strainer/test_workflow.py", "tests/tina/test_tina_mini_imagenet.py",
})


def pytest_collection_modifyitems(config, items):
    stray = sorted({item.nodeid.split("::")[0] for item in items
                    if (item.get_closest_marker("dag") or "smoke_run" in getattr(item, "fixturenames", ()))
                    and item.nodeid.split("::")[0] not in DAG_MODULES})
    if stray:
        raise pytest.UsageError(f"{', '.join(stray)} run DAGs (marked dag or using smoke_run) but are not in "
                                "DAG_MODULES of tests/conftest.py: add them there, so that they run on the DAG worker")


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class DagModulesTogether(LoadScopeScheduling):
        """Every test of DAG_MODULES in one scope (one worker, in order); every other test a scope of its own."""

        def _split_scope(self, nodeid: str) -> str:
            return "dag" if nodeid.split("::")[0] in DAG_MODULES else nodeid

    return DagModulesTogether(config, log)


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


def snakemake(workdir: Path, *args: str, timeout: float = 1200, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--snakefile", str(workdir / "Snakefile"), *args],
                          capture_output=True, text=True, env=scratch_env(), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke DAG (all papers of config/config.yaml) run once per session on a scratch copy of the workflow;
    tests/test_dag.py checks its outputs, tests/test_planted_bugs.py remakes parts of it with planted bugs and under
    other numerics, tests/test_faults.py kills and resumes its longest jobs."""

    wf = make_scratch_workflow(tmp_path_factory.mktemp("smoke") / "wf")
    t0 = time.perf_counter()
    snakemake(wf, "--cores", "2", timeout=2400)
    print(f"smoke DAG: {time.perf_counter() - t0:.0f} s")
    return wf
