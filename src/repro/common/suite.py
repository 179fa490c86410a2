"""`./suite dag` and `./suite resume`: one guarded run of the DAG in a checkout, with its own log directory.

What this adds to a bare `snakemake` call:

- **one run per checkout**: the run holds an exclusive lock (`.snakemake/suite-run.lock`, released by the kernel
  when the process ends, however it ends). A second `./suite dag` is refused with the pid, start time and command of
  the run in progress, never with advice to unlock (unlocking under a live run breaks it);
- **a stale Snakemake lock** (left by a run that was killed hard) is removed only when this process holds the suite
  lock *and* no snakemake process runs in the checkout, and the console says so;
- **per-run logs**: `logs/runs/<UTC start>-<pid>/` holds `run.json` (pid, start, end, command, exit status) and
  `console.log` (everything Snakemake printed); runs never overwrite each other's;
- **the report** (a second Snakemake call with `--report`) only after a real, complete run: never after a dry run,
  a lint, a listing, `--until`/`--omit-from`, or a failure;
- **resume**: `./suite resume` repeats the last `./suite dag` of this checkout (its `--config` and targets) with
  `--rerun-incomplete`;
- **one line on failure**: the closing line names the failed rules and the `error:` line of each one's log;
- the closing `done:` line gives absolute paths.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

LOCK = ".snakemake/suite-run.lock"
RUNS = "logs/runs"
EXIT_BUSY = 3

# Snakemake options after which nothing is computed (or only part of the DAG is), so no report can be rendered.
_NO_RUN_LONG = {
    "--dry-run", "--dryrun", "--lint", "--summary", "--detailed-summary", "--list", "--list-rules",
    "--list-target-rules", "--lt", "--dag", "--rulegraph", "--filegraph", "--d3dag", "--unlock", "--cleanup-metadata",
    "--cm", "--touch", "--delete-all-output", "--delete-temp-output", "--list-changes", "--lc", "--list-input-changes",
    "--li", "--list-params-changes", "--lp", "--list-code-changes", "--list-version-changes", "--report",
    "--containerize", "--archive", "--cleanup-shadow", "--version", "--help", "--print-compilation",
    "--conda-create-envs-only", "--create-envs-only", "--conda-cleanup-envs", "--until", "--omit-from",
    "--generate-unit-tests", "--export-cwl", "--report-stylesheet",
}
_NO_RUN_SHORT = set("nStlDhv")  # -n dry run, -S summary, -t touch, -l list, -D detailed summary, -h help, -v version


def runs_anything(args: Sequence[str]) -> bool:
    """False when the Snakemake arguments ask for a dry run, a listing, a lint or a partial run (no report then)."""
    for a in args:
        if a == "--":
            break
        name = a.split("=", 1)[0]
        if name in _NO_RUN_LONG:
            return False
        if re.fullmatch(r"-[A-Za-z]+", a) and set(a[1:]) & _NO_RUN_SHORT:
            return False
    return True


def scale_of(args: Sequence[str], root: Path) -> str:
    """The run's scale: the last `scale=...` of the arguments (after --config), else config/config.yaml."""
    scale = None
    for a in args:
        if a.startswith("scale="):
            scale = a.split("=", 1)[1]
    if scale:
        return scale
    m = re.search(r"(?m)^scale:\s*(\S+)", (root / "config/config.yaml").read_text())
    return m.group(1) if m else "smoke"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


class Busy(Exception):
    """Another `./suite` run holds this checkout."""


class RunLock:
    """An exclusive flock on `.snakemake/suite-run.lock`; the file says who holds it (pid, start, command)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK
        self.fh = None

    def acquire(self, info: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read()
            fh.close()
            try:
                held = json.loads(text)
            except json.JSONDecodeError:
                held = {}
            raise Busy(held) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(info))
        fh.flush()
        self.fh = fh

    def release(self) -> None:
        if self.fh is not None:
            self.fh.seek(0)
            self.fh.truncate()
            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None


def busy_message(held: dict) -> str:
    if not held:
        return ("error: another ./suite run is starting in this checkout; wait for it to finish "
                f"(its details are in {LOCK})")
    return (f"error: another run is in progress in this checkout: pid {held.get('pid')}, started "
            f"{held.get('started')}, `{held.get('command')}` (log: {held.get('log_dir')}); wait for it to finish, "
            f"or stop it with `kill {held.get('pid')}` and then `./suite resume`")


def snakemake_processes(root: Path) -> list[int]:
    """Pids of live snakemake processes working in `root` (Linux /proc; empty where /proc is unavailable)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")).resolve() != root:
                continue
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"snakemake" in cmd and int(proc.name) != os.getpid():
            pids.append(int(proc.name))
    return pids


def clear_stale_snakemake_lock(root: Path, snakemake: Sequence[str]) -> str | None:
    """Remove Snakemake's lock if it is stale; return what was done (None: there was no lock).

    Called while holding the suite lock, so no `./suite` run is going; a snakemake started by hand is looked for in
    /proc and, if found, the lock is left alone."""
    locks = root / ".snakemake/locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return None
    others = snakemake_processes(root)
    if others:
        raise Busy({"pid": others[0], "started": "(not started by ./suite)", "command": "snakemake",
                    "log_dir": ".snakemake/log"})
    proc = subprocess.run([*snakemake, "--unlock"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"could not remove Snakemake's stale lock in {locks} ({last}); remove that folder by hand "
                           "if no snakemake runs in this checkout")
    return ("note: removed Snakemake's lock left by an earlier run that was stopped hard "
            "(no run is going in this checkout)")


def failure_summary(console: str, root: Path) -> str:
    """One line naming each failed rule and the `error:` line of its log (or the log's path)."""
    parts = []
    for m in re.finditer(r"Error in rule (\S+):(.*?)(?:\n\s*\n|\Z)", console, re.S):
        rule, block = m.group(1), m.group(2)
        log = re.search(r"log:\s*(\S+)", block)
        reason = ""
        if log and (root / log.group(1)).is_file():
            lines = [ln for ln in (root / log.group(1)).read_text(errors="replace").splitlines()
                     if ln.startswith("error:")]
            reason = lines[-1][len("error:"):].strip() if lines else f"see {log.group(1)}"
        elif log:
            reason = f"see {log.group(1)}"
        parts.append(f"rule {rule}: {reason}" if reason else f"rule {rule}")
    if parts:
        return "error: " + "; ".join(dict.fromkeys(parts))
    for pattern in (r"(\w*Error) in file [^\n]*\n([^\n]+)", r"^(\w*(?:Error|Exception)):?\s*([^\n]+)$"):
        m = re.search(pattern, console, re.M)
        if m:
            return f"error: {m.group(1)}: {m.group(2).strip()}"
    return "error: snakemake failed; see the console log"


def _stream(cmd: Sequence[str], root: Path, log) -> tuple[int, str]:
    """Run `cmd`, copying its output to the console and to `log`; forward SIGTERM/SIGHUP to it."""
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)

    def forward(signum, _frame):
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    old[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches snakemake directly
    seen = []
    try:
        for line in proc.stdout:
            sys.stderr.write(line)
            log.write(line)
            log.flush()
            seen.append(line)
        rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return rc, "".join(seen)


def last_dag_args(root: Path) -> list[str] | None:
    runs = sorted((root / RUNS).glob("*/run.json"))
    for path in reversed(runs):
        try:
            info = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("kind") == "dag":
            return list(info["args"])
    return None


def check_config_files(root: Path) -> None:
    """YAML syntax of the config files, with file and line (Snakemake itself names neither)."""
    from repro.common.config import read_yaml

    for path in [root / "config/config.yaml", *sorted((root / "config").glob("*.yaml")),
                 *sorted((root / "config/claims").glob("*.yaml"))]:
        read_yaml(path)


def run_dag(root: Path, args: list[str], command: str, snakemake: Sequence[str]) -> int:
    from repro.common.errors import UserError

    start = _now()
    run_dir = root / RUNS / f"{start:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    info = {"kind": "dag", "pid": os.getpid(), "started": f"{start:%Y-%m-%d %H:%M:%S} UTC", "command": command,
            "args": args, "log_dir": str(run_dir.relative_to(root))}
    lock = RunLock(root)
    try:
        lock.acquire(info)
    except Busy as err:
        print(busy_message(err.args[0]), file=sys.stderr)
        return EXIT_BUSY
    try:
        try:
            check_config_files(root)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        try:
            note = clear_stale_snakemake_lock(root, snakemake)
        except Busy as err:
            print(busy_message(err.args[0]), file=sys.stderr)
            return EXIT_BUSY
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / "run.json").write_text(json.dumps(info, indent=1) + "\n")
        with open(run_dir / "console.log", "w") as log:
            print(f"log: {run_dir.relative_to(root)}/console.log (pid {os.getpid()}, `{command}`)", file=sys.stderr)
            if note:
                print(note, file=sys.stderr)
                log.write(note + "\n")
            rc, console = _stream([*snakemake, "--cores", "all", *args], root, log)
            report = None
            if rc == 0 and runs_anything(args):
                scale = scale_of(args, root)
                report = root / f"results/{scale}/report.html"
                rc, more = _stream([*snakemake, "--cores", "all", "--report", str(report), *args], root, log)
                console += more
            if rc != 0:
                line = failure_summary(console, root)
                line += f" (run log: {run_dir.relative_to(root)}/console.log)"
                print(line, file=sys.stderr)
                log.write(line + "\n")
            elif report is not None:
                res = root / "results" / scale_of(args, root)
                print(f"done: {res}/ (claims.md, tables/), {root}/figures/{res.name}/, report {report}",
                      file=sys.stderr)
        info.update(ended=f"{_now():%Y-%m-%d %H:%M:%S} UTC", exit_status=rc)
        (run_dir / "run.json").write_text(json.dumps(info, indent=1) + "\n")
        return rc
    finally:
        lock.release()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("dag", "resume", "guard-unlock"):
        print("usage: python -m repro.common.suite {dag,resume,guard-unlock} [snakemake args...]", file=sys.stderr)
        return 2
    kind, args = argv[0], argv[1:]
    root = Path.cwd().resolve()
    if kind == "guard-unlock":  # `./suite snakemake --unlock` while a ./suite run holds the checkout: refuse
        lock = RunLock(root)
        try:
            lock.acquire({"pid": os.getpid(), "started": f"{_now():%Y-%m-%d %H:%M:%S} UTC",
                          "command": "./suite snakemake --unlock", "log_dir": ""})
        except Busy as err:
            print(busy_message(err.args[0]).replace("; wait for it", "; --unlock now would break it: wait for it"),
                  file=sys.stderr)
            return EXIT_BUSY
        lock.release()
        return 0
    snakemake = [sys.executable, "-m", "snakemake"]
    if kind == "resume":
        last = last_dag_args(root)
        if last is None:
            print(f"error: no earlier `./suite dag` recorded in {RUNS}/ of this checkout; start one with ./suite dag",
                  file=sys.stderr)
            return 2
        args = last + [a for a in ["--rerun-incomplete"] if a not in last] + args
        print(f"resuming: ./suite dag {' '.join(args)}", file=sys.stderr)
    return run_dag(root, args, " ".join(["./suite", kind, *argv[1:]]), snakemake)


if __name__ == "__main__":
    raise SystemExit(main())
