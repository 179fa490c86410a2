"""repro.common.scheduling: one pending wake-up of Snakemake's scheduling loop instead of a timer chain per event."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import threading
import time

from repro.common.scheduling import PATCHED, coalesce_reevaluations
from tests.conftest import ROOT


class Loop:
    """The part of Snakemake's JobScheduler the patch touches: a semaphore the loop waits on, and the timer."""

    def __init__(self):
        self._open_jobs = threading.Semaphore(0)

    def _schedule_reevalutation(self, delay):
        threading.Timer(delay, lambda: self._open_jobs.release()).start()


def wake_ups(loop: Loop, within: float) -> int:
    """How many times the loop is woken within `within` seconds from now."""
    n, end = 0, time.monotonic() + within
    while loop._open_jobs.acquire(timeout=max(end - time.monotonic(), 0.0)):
        n += 1
    return n


def test_the_installed_snakemake_arms_one_timer_per_pass():
    """The method replaced is the one the patch was written for (Snakemake 9.27.1): if an upgrade changes it, this
    fails and the patch is to be checked again (or dropped, if the timers are de-duplicated upstream)."""
    from snakemake.scheduling.job_scheduler import JobScheduler

    method = JobScheduler._schedule_reevalutation
    original = getattr(method, "__wrapped__", method)
    src = inspect.getsource(original)
    assert "threading.Timer(" in src and "_open_jobs.release()" in src
    assert "self._schedule_reevalutation(self.job_rate_limiter.timespan)" in inspect.getsource(JobScheduler.schedule)


def test_repeated_requests_give_one_wake_up_and_an_earlier_one_its_own():
    class Plain(Loop):
        pass

    plain = Plain()
    for _ in range(10):
        plain._schedule_reevalutation(0.2)
    assert wake_ups(plain, 0.6) == 10            # Snakemake's own: a timer per request

    class Coalesced(Loop):
        pass

    assert coalesce_reevaluations(Coalesced) and getattr(Coalesced._schedule_reevalutation, PATCHED)
    assert coalesce_reevaluations(Coalesced)      # a second call leaves the patched method as it is
    loop = Coalesced()
    for _ in range(10):
        loop._schedule_reevalutation(0.2)
    assert wake_ups(loop, 0.6) == 1
    loop._schedule_reevalutation(0.2)             # after a wake-up the pass that follows may arm the next one
    assert wake_ups(loop, 0.6) == 1
    loop._schedule_reevalutation(5.0)             # pending: due in 5 s
    t0 = time.monotonic()
    loop._schedule_reevalutation(0.2)             # due earlier: a timer of its own
    assert loop._open_jobs.acquire(timeout=2.0) and time.monotonic() - t0 < 1.5


SNAKEFILE = """
import os, sys
sys.path.insert(0, {src!r})
if os.environ.get("COALESCE") == "1":
    from repro.common.scheduling import coalesce_reevaluations
    coalesce_reevaluations()
rule all:
    input: expand("out/{{i}}.txt", i=range({jobs}))
rule one:
    output: "out/{{i}}.txt"
    shell: "sleep 0.5; touch {{output}}"
"""


def test_a_run_makes_a_pass_per_event_and_second_not_a_chain_per_event(tmp_path):
    """16 jobs of 0.5 s on one core: each pass of the loop logs 'Ready jobs' (--verbose). Coalesced, the passes are
    at most one per job event (start, end) plus one per second; Snakemake's own timers make more (measured 73 vs
    24 passes in 11 s on the 2-core machine)."""
    jobs = 16
    (tmp_path / "Snakefile").write_text(SNAKEFILE.format(src=str(ROOT / "src"), jobs=jobs))
    passes = {}
    for coalesce in ("0", "1"):
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--verbose", "--forceall"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "COALESCE": coalesce})
        assert proc.returncode == 0, proc.stderr[-3000:]
        passes[coalesce] = (len(re.findall(r"Ready jobs", proc.stdout + proc.stderr)), time.monotonic() - t0)
    bound = 2 * jobs + passes["1"][1] + 2
    assert passes["1"][0] <= bound, passes
    assert passes["0"][0] > bound, f"without the patch as few passes as with it: fixed upstream? {passes}"
