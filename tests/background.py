"""The session's shared DAG work, run once per test session in the background while the unit tests run.

Phase `data` prepares everything the smoke DAG reads (its jobs of the rules of workflow/rules/data.smk; the others
are left out with Snakemake's `--omit-from`); phase `smoke` runs the whole smoke DAG. Tests that run DAGs wait for
`data` before they start (two Snakemake runs preparing the same files at once would write over each other); tests
that read the smoke run wait for `smoke`. Under pytest-xdist every worker collects the same tests, and the first to
get the lock starts the one background run; the state lives in the session's shared temporary directory:

    <state>/driver.pid              the driver's pid (a process group of its own)
    <state>/data.json, smoke.json   {"rc": ..., "seconds": ...} once a phase ended (written atomically)
    <state>/data.log, smoke.log     Snakemake's output of each phase
    <state>/wf                      the smoke run's workflow copy (see tests/conftest.py: smoke_run)

The driver stops (and kills its Snakemake run) when the pytest process that owns the session is gone, so an
interrupted session leaves nothing running.

Run as a script: `python tests/background.py --state DIR --owner PID [--smoke]`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("data", "smoke")
CORES = "2"  # the smoke run's cores: its jobs' threads, and so its numbers, are those the references were made with
# (tests that remake its jobs use the same)


def rule_blocks(root: Path = ROOT) -> dict[str, str]:
    """Each rule of workflow/rules/*.smk by name: its text."""
    blocks: dict[str, str] = {}
    for f in sorted((root / "workflow/rules").glob("*.smk")):
        parts = re.split(r"^rule (\w+):", f.read_text(), flags=re.M)
        blocks.update(zip(parts[1::2], parts[2::2]))
    return blocks


def not_data_rules(root: Path = ROOT) -> list[str]:
    """Every rule but the data rules, those whose log goes under the data directory (`{DATA_LOGS}`: downloads,
    checks of the mirror, prepared datasets, weights, FID statistics). `--omit-from` these (and so `all`, which is
    downstream of them) leaves the data jobs of the whole DAG."""
    return sorted(name for name, text in rule_blocks(root).items() if "{DATA_LOGS}" not in text)


def _write_status(state: Path, phase: str, rc: int, seconds: float, why: str = "") -> None:
    tmp = state / f".{phase}.json.tmp"
    tmp.write_text(json.dumps({"rc": rc, "seconds": round(seconds, 1), "why": why}))
    os.replace(tmp, state / f"{phase}.json")


def drive(state: Path, owner: int, smoke: bool) -> int:
    """The driver process: run the phases one after the other; it stops everything once `owner` is gone."""
    from tests.conftest import make_scratch_workflow, scratch_env, snakemake_cmd

    wf = make_scratch_workflow(state / "wf")
    stop = threading.Event()

    def watch_owner() -> None:
        while not stop.wait(1.0):
            try:
                os.kill(owner, 0)
            except ProcessLookupError:         # the session is gone: so is everything it started
                os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch_owner, daemon=True).start()
    plan = {"data": ["--omit-from", *not_data_rules()], "smoke": []}
    for phase in PHASES if smoke else ("data",):
        t0 = time.perf_counter()
        with open(state / f"{phase}.log", "w") as log:
            # in the driver's process group (a session of its own, see start): one killpg reaches every job
            rc = subprocess.run(snakemake_cmd(wf, "--cores", CORES, *plan[phase]), stdout=log,
                                stderr=subprocess.STDOUT, env=scratch_env()).returncode
        _write_status(state, phase, rc, time.perf_counter() - t0)
        if rc != 0:
            for later in PHASES[PHASES.index(phase) + 1:]:
                _write_status(state, later, rc, 0.0, why=f"phase {phase} failed")
            break
    stop.set()
    return 0


def start(state: Path, owner: int, smoke: bool) -> None:
    """Start the driver unless this session already did (under a lock: xdist workers call this at once)."""
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (state / "driver.pid").exists():
            return
        path = (str(ROOT), str(ROOT / "src"), os.environ.get("PYTHONPATH"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--state", str(state),
                                 "--owner", str(owner), *(["--smoke"] if smoke else [])],
                                stdin=subprocess.DEVNULL, stdout=open(state / "driver.log", "w"),
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        (state / "driver.pid").write_text(str(proc.pid))


def wait(state: Path, phase: str, timeout: float = 2400) -> dict:
    """Block until `phase` has ended; its status. Raises RuntimeError (with the log's tail) if it failed or never
    started, or if it did not end within `timeout` seconds."""
    status = state / f"{phase}.json"
    deadline = time.monotonic() + timeout
    while not status.exists():
        if not (state / "driver.pid").exists():
            raise RuntimeError(f"the background {phase} run was never started (tests/background.py: start)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the background {phase} run did not end within {timeout:.0f} s; "
                               f"see {state}/{phase}.log")
        time.sleep(1.0)
    result = json.loads(status.read_text())
    if result["rc"] != 0:
        log = state / f"{phase}.log"
        tail = log.read_text(errors="replace")[-6000:] if log.exists() else (state / "driver.log").read_text()[-3000:]
        why = f", {result['why']}" if result["why"] else ""
        raise RuntimeError(f"the background {phase} run failed (exit {result['rc']}{why}); {log}:\n{tail}")
    return result


def stop(state: Path) -> None:
    """Kill the driver, its Snakemake run and their jobs (one process group) if still going (end of session)."""
    pid_file = state / "driver.pid"
    if not pid_file.exists():
        return
    try:
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    except (ProcessLookupError, ValueError):
        pass


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--owner", type=int, required=True, help="the pytest process owning the session")
    ap.add_argument("--smoke", action="store_true", help="after the data, run the whole smoke DAG")
    a = ap.parse_args()
    sys.exit(drive(a.state, a.owner, a.smoke))
