"""One pending wake-up for Snakemake's scheduling loop, not one per event (the workflow applies it: common.smk).

Snakemake 9's job scheduler (`snakemake/scheduling/job_scheduler.py`, checked on 9.27.1, the pinned version) ends
every pass of its loop that still has jobs waiting by arming a `threading.Timer` of the job-rate limiter's timespan
(`--max-jobs-per-timespan`, default 100/1s), which wakes the loop once more. Every other wake-up (a job starts or
ends) makes a pass too, and that pass arms a timer of its own: the timers are never de-duplicated, so each event
starts a chain of 1-second wake-ups that lives as long as jobs wait for a core. Over the smoke DAG (85 jobs, 2 cores)
the loop made 7,172 passes in 250 s, each validating the ready jobs and stat-ing their inputs: 15.8 CPU-s of the
Snakemake process (cProfile and /proc, measured on the 2-core machine; an open upstream pull request,
snakemake/snakemake#3744, describes the same repeated passes from the rate limiter's side).

`coalesce_reevaluations` keeps at most one pending timer per scheduler: a request due no earlier than the pending
timer is already covered by it (the pass that timer causes re-arms one if jobs still wait), one due earlier gets a
timer of its own. So the loop still wakes at least as soon as the rate limiter asks, and a run still exits within
one timespan of its last job, as before; it only stops re-doing the same pass many times a second.
"""

from __future__ import annotations

import threading
import time

PATCHED = "_repro_coalesced"


def coalesce_reevaluations(scheduler_cls=None) -> bool:
    """Replace `scheduler_cls._schedule_reevalutation` (Snakemake's spelling) by the coalescing version. Returns
    whether the class is patched now; False (nothing changed) where Snakemake's internals are not the known ones."""
    if scheduler_cls is None:
        try:
            from snakemake.scheduling.job_scheduler import JobScheduler as scheduler_cls
        except ImportError:
            return False
    original = getattr(scheduler_cls, "_schedule_reevalutation", None)
    if original is None:
        return False
    if getattr(original, PATCHED, False):
        return True
    lock = threading.Lock()

    def _schedule_reevalutation(self, delay) -> None:
        due = time.monotonic() + delay
        with lock:
            pending = getattr(self, "_repro_reevaluation", None)
            if pending is not None and pending[1] <= due:
                return                          # the pending wake-up comes first; its pass re-arms if needed
            entry: list = []

            def fire() -> None:
                with lock:                      # cleared before the release: the pass it wakes may re-arm
                    if getattr(self, "_repro_reevaluation", None) is entry:
                        self._repro_reevaluation = None
                self._open_jobs.release()

            entry.extend((threading.Timer(delay, fire), due))
            self._repro_reevaluation = entry
        entry[0].start()

    setattr(_schedule_reevalutation, PATCHED, True)
    _schedule_reevalutation.__wrapped__ = original
    scheduler_cls._schedule_reevalutation = _schedule_reevalutation
    return True
