"""The warm interpreter (repro.common.warm): a job forked from it behaves as `python -m` in a fresh interpreter.

What a job can see of its interpreter is checked one by one against a fresh one: argv, cwd, environment, standard
streams, exit status, fresh random states, the numbers of a seeded computation; a job with other load-time settings
starts its own interpreter; a killed job's fork dies with it; planted `sitecustomize` patches keep the server off.
The DAG-level check (the smoke run's warm jobs remade cold give the same numbers) is in tests/test_planted_bugs.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from repro.common import warm
from tests.conftest import ROOT

JOB = textwrap.dedent("""
    import json, os, random, sys
    import numpy as np
    import torch
    fresh = [random.random(), float(np.random.rand()), torch.initial_seed()]  # unseeded: differ between runs
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 14 * 14, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
    print(json.dumps({
        "argv": sys.argv[1:], "cwd": os.getcwd(), "var": os.environ.get("JOB_VAR"), "stdin": sys.stdin.read(),
        "ppid": os.getppid(), "pid": os.getpid(), "name": __name__,
        "random": fresh,
        "numbers": [float(loss.detach())] + net[0].weight.detach().flatten()[:5].tolist(),
    }))
    print("to stderr", file=sys.stderr)
    if os.environ.get("JOB_SLEEP"):
        open("pid.txt", "w").write(str(os.getpid()))
        import time; time.sleep(float(os.environ["JOB_SLEEP"]))
    sys.exit(int(sys.argv[1]))
""")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server for one-thread jobs, started as `onstart` in common.smk starts it (from the jobs' environment)."""
    work = tmp_path_factory.mktemp("warm")
    (work / "warmjob.py").write_text(JOB)
    saved = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join((str(ROOT / "src"), str(work)))
    base = dict(os.environ)
    try:
        servers = warm.start(work, work / "warm.log", threads=[1])
        directory = os.environ[warm.ENV_DIR]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    path, pid = servers[0]
    deadline = time.time() + 300
    while not os.path.exists(path):
        assert time.time() < deadline, f"the server did not start: {(work / 'warm.log').read_text()}"
        time.sleep(0.2)
    yield {"dir": directory, "pid": pid, "work": work, "log": work / "warm.log", "env": base}
    warm.stop(servers)


def job_env(server, **extra) -> dict:
    """The environment Snakemake gives a one-thread job of that run."""
    return {**server["env"], **{var: "1" for var in warm.THREAD_VARS}, warm.ENV_DIR: server["dir"], **extra}


def run_job(server, *args, warm_client=True, stdin="", **extra) -> subprocess.CompletedProcess:
    env = job_env(server, **extra)
    cmd = ([sys.executable, "-S", "-m", "repro.common.warm"] if warm_client else [sys.executable])
    return subprocess.run([*cmd, "-m", "warmjob", *args], input=stdin, capture_output=True, text=True,
                          cwd=server["work"], env=env, timeout=300)


def parse(proc):
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])


class TestServer:
    """The tests sharing one server: a class is one unit of the test scheduler (tests/conftest.py), so the server
    (an interpreter that imported torch and repro) is started once per session, not on each worker."""

    def test_a_warm_job_is_a_fresh_interpreters_job(self, server):
        hot = run_job(server, "3", "x y", stdin="input text", JOB_VAR="seven")
        cold = run_job(server, "3", "x y", warm_client=False, stdin="input text", JOB_VAR="seven")
        assert hot.returncode == cold.returncode == 3, hot.stderr
        h, c = parse(hot), parse(cold)
        assert h["ppid"] == server["pid"] and c["ppid"] != server["pid"], "the warm job was not forked from the server"
        for key in ("argv", "cwd", "var", "stdin", "name", "numbers"):
            assert h[key] == c[key], key
        assert h["argv"] == ["3", "x y"] and h["stdin"] == "input text" and h["name"] == "__main__"
        assert hot.stderr.strip() == cold.stderr.strip() == "to stderr"
        assert f"job {h['pid']}: warmjob 3 x y" in server["log"].read_text()


    def test_each_fork_draws_fresh_random_states(self, server):
        a, b = parse(run_job(server, "0")), parse(run_job(server, "0"))
        assert a["ppid"] == b["ppid"] == server["pid"]
        assert all(x != y for x, y in zip(a["random"], b["random"])), "forks share the server's random states"


    @pytest.mark.parametrize("var,values", [("ATEN_CPU_CAPABILITY", ("avx2", "default")), ("OMP_NUM_THREADS", ("1 ",)),
                                            ("PYTHONHASHSEED", ("3", "4"))])
    def test_other_load_time_settings_start_their_own_interpreter(self, server, var, values):
        # (the tests may run under AVX2 kernels themselves)
        value = next(v for v in values if v != server["env"].get(var))
        proc = run_job(server, "0", **{var: value})
        assert proc.returncode == 0, proc.stderr
        assert parse(proc)["ppid"] != server["pid"], f"a job with {var}={value!r} was forked from the server"
        if var != "OMP_NUM_THREADS":  # (this one names another server's socket, which does not exist)
            assert f"differs in {var}" in server["log"].read_text()


    def test_a_killed_job_takes_its_fork_with_it(self, server):
        env = job_env(server, JOB_SLEEP="120")
        (server["work"] / "pid.txt").unlink(missing_ok=True)
        client = subprocess.Popen([sys.executable, "-S", "-m", "repro.common.warm", "-m", "warmjob", "0"],
                                  cwd=server["work"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid_file = server["work"] / "pid.txt"
        deadline = time.time() + 120
        while not pid_file.exists() or not pid_file.read_text():
            assert time.time() < deadline and client.poll() is None, "the job did not start"
            time.sleep(0.1)
        fork = int(pid_file.read_text())
        client.send_signal(signal.SIGKILL)
        client.wait()
        deadline = time.time() + 10
        while Path(f"/proc/{fork}").exists() and "zombie" not in Path(f"/proc/{fork}/status").read_text():
            assert time.time() < deadline, "the fork outlived its killed job"
            time.sleep(0.1)


    def test_without_a_server_the_client_is_the_plain_interpreter(self, server, tmp_path):
        proc = run_job(server, "5", **{warm.ENV_DIR: str(tmp_path)})  # a directory without sockets
        assert proc.returncode == 5 and parse(proc)["ppid"] != server["pid"]


def test_a_planted_sitecustomize_keeps_the_server_off(tmp_path):
    site = tmp_path / "plant"
    site.mkdir()
    (site / "sitecustomize.py").write_text("PATCHED = True\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "src"), str(site)))}
    path = tmp_path / "s.sock"
    proc = subprocess.run([sys.executable, "-m", "repro.common.warm", "--serve", str(path)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "not serving" in proc.stderr and not path.exists()


def test_a_server_only_for_thread_counts_of_two_jobs_that_import_torch():
    from types import SimpleNamespace

    def job(threads: int, cmd: str | None):  # what server_threads reads of a Snakemake job
        return SimpleNamespace(threads=threads, is_norun=cmd is None, rule=SimpleNamespace(shellcmd=cmd))

    fetch = job(1, "python -m repro.common.data fetch --entry cifar10 --out {output} > {log} 2>&1")
    fit = job(1, "python -m repro.strainer fit --experiment {wildcards.experiment} > {log} 2>&1")
    stats = job(2, "python -m repro.common.metrics fid-stats --threads {threads} --out {output}")
    target = job(1, None)                                                    # `rule all`: no command
    assert warm.server_threads([fetch] * 7) == set()                         # downloads and a preparation only
    assert warm.server_threads([fit]) == set()                               # one job: its own imports are cheaper
    assert warm.server_threads([fit, target]) == set()
    assert warm.server_threads([fit, fit, stats] + [fetch] * 5) == {1}
    assert warm.server_threads([fit, fetch, stats, stats]) == {2}
    assert warm.server_threads([job(1, "python -m repro.common.datasets x"), fit]) == {1}  # another module


def test_the_light_modules_import_no_heavy_library():
    """What LIGHT_MODULES claims: their CLIs load none of the libraries a server preloads for the other jobs."""
    heavy = [m for m in warm.PRELOAD if m.split(".")[0] in ("torch", "torchvision", "scipy", "pandas", "matplotlib")]
    code = ("import importlib, pkgutil, sys\n"
            f"for top in {list(warm.LIGHT_MODULES)!r}:\n"
            "    pkg = importlib.import_module(top)\n"
            "    for m in pkgutil.walk_packages(pkg.__path__, top + '.'):\n"
            "        if m.name.endswith('.__main__'): continue  # runs the CLI\n"
            "        importlib.import_module(m.name)\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"{warm.LIGHT_MODULES} import {proc.stdout.strip()}: remove them from " \
                                        "LIGHT_MODULES (their jobs then count for a warm server)"
