"""A warm interpreter for the DAG's jobs: one process imports torch and the other heavy libraries once per run,
and every `python -m repro...` job of that run is forked from it instead of starting an interpreter from scratch.

Why: on a 2-core machine a job spends 2-5 s importing torch, torchvision, scipy, pandas and matplotlib before it
computes anything, and the smoke DAG has ~90 jobs (measured for issue 15: start-up was a third of its wall time).
A forked job starts in milliseconds with those modules already loaded. It is the technique of Android's zygote
and of Python's own `multiprocessing` forkserver, applied to Snakemake's jobs.

How:
- `common.smk` starts the server in `onstart` (local execution only; `REPRO_WARM=0` turns it off) and stops it in
  `onsuccess`/`onerror`. Its socket path reaches the jobs in env `REPRO_WARM_DIR`.
- Every job's shell gets a `python` function (`shell.prefix` in `common.smk`) that runs this module's client with
  the job's arguments. The client asks the server to run `-m <module> <args>` with the job's working directory,
  environment and standard streams (passed as file descriptors), and exits with the job's exit status.
- The job runs exactly as `python -m <module> <args>` would: `runpy` as `__main__`, its own `sys.argv`, cwd,
  environment, stdin/stdout/stderr, exit status; the global generators that a fresh interpreter seeds from the OS
  (Python's `random`, numpy's, torch's default) are seeded from the OS again in each fork.
- A job that could differ from a fresh interpreter is not forked: the client falls back to a plain `exec` of the
  interpreter when there is no server (not started yet, stopped, or another machine), when the job is not `-m`,
  when the interpreter differs (a conda environment), or when any variable that libraries read once when they
  are loaded (threads and kernel selection of OpenMP/MKL/OpenBLAS/oneDNN/ATen, PYTHONPATH, ...) differs from the
  server's. The server does not start at all when a `sitecustomize` outside the interpreter is active (the
  planted-bug tests patch the jobs that way, and a patch applied once in the server is not a fresh import).
- Killing a job kills its fork: the fork stays in the server's process group, which is Snakemake's (a whole-run
  SIGKILL or a Ctrl-C reaches it as it reaches a plain job), and the server kills a fork whose client has gone.

Run by hand: `python -m repro.common.warm --serve SOCKET` (server), `python -m repro.common.warm -m MOD ARGS...`
(a job through it, with REPRO_WARM_DIR=DIR). Tests: tests/test_warm.py.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from collections.abc import Iterable

# Libraries read these when they are loaded (thread pools, kernel choice, import paths): a job whose values differ
# from the server's must start its own interpreter. Anything else in the environment is the job's own.
LOAD_TIME_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO", "BLIS_", "VECLIB_", "NUMEXPR_",
                      "ATEN_", "ONEDNN_", "DNNL_", "TORCH_", "PYTORCH_", "CUDA_", "NVIDIA_", "LD_", "PYTHON",
                      "MPLBACKEND", "MALLOC_", "LC_", "LANG", "TZ")
# What the server imports before it forks: the heavy third-party libraries the jobs use. Never `repro` itself
# (its modules read the environment and config at import, which differ between jobs). `torch._inductor`: every job
# that seeds (repro.common.seeding) calls torch.use_deterministic_algorithms, whose first call imports inductor and
# dynamo (1.1-1.7 s per job here); the import starts no thread and no process, so forks inherit it safely.
PRELOAD = ("numpy", "scipy", "scipy.linalg", "scipy.stats", "scipy.special", "pandas", "yaml", "PIL.Image", "torch",
           "torch.nn", "torch.nn.functional", "torch.optim", "torch._inductor", "torchvision",
           "torchvision.transforms", "matplotlib", "matplotlib.pyplot")
ENV_DIR = "REPRO_WARM_DIR"
# Snakemake gives each job these variables, all set to the job's `threads` (snakemake/shell.py): one server is
# started per thread count, with them set as the job has them, so that its libraries load as the job's would.
THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
FALLBACK, STARTED = b"F", b"S"
# Which jobs a server pays for. Its preload costs ~4 CPU-s, about what one job that imports torch spends on its own
# imports, so a thread count gets a server from MIN_JOBS such jobs on. The data CLI (`repro.common.data`: downloads,
# checksums, decoding archives) imports numpy and PIL only, 0.3 CPU-s from a cold start (measured; issue 15), so its
# jobs do not count: 6 fetches and a preparation started a server that cost more than the 7 jobs together.
LIGHT_MODULES = ("repro.common.data",)
MIN_JOBS = 2


def load_time_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(LOAD_TIME_PREFIXES)}


def socket_path(directory: str, threads: int | str) -> str:
    return os.path.join(directory, f"jobs-{threads}.sock")


# ------------------------------------------------------------------------------------------------ client

def _send_msg(sock: socket.socket, payload: dict, fds: list[int] = ()) -> None:
    data = json.dumps(payload).encode()
    msg = struct.pack("!I", len(data)) + data
    if fds:
        socket.send_fds(sock, [msg], list(fds))
    else:
        sock.sendall(msg)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the warm server closed the connection")
        buf += chunk
    return buf


def _exec_plain(args: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, *args])


def client(args: list[str]) -> int:
    """Run `python ARGS` through the warm server if it can take it, else exec a plain interpreter."""
    directory = os.environ.get(ENV_DIR)
    path = socket_path(directory, os.environ.get("OMP_NUM_THREADS", "default")) if directory else ""
    if not path or len(args) < 2 or args[0] != "-m" or not os.path.exists(path):
        _exec_plain(args)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        _send_msg(sock, {"argv": args[1:], "cwd": os.getcwd(), "env": dict(os.environ),
                         "executable": os.path.realpath(sys.executable)}, fds=[0, 1, 2])
        answer = _recv_exact(sock, 1)
    except OSError:
        sock.close()
        _exec_plain(args)
    if answer != STARTED:
        sock.close()
        _exec_plain(args)
    # from here the job runs in the fork; wait for its exit status (the connection closing early means the server
    # died: report it as a failed job, never as a success)
    try:
        (status,) = struct.unpack("!i", _recv_exact(sock, 4))
    except (OSError, ConnectionError) as exc:
        print(f"error: the warm job server went away while running {' '.join(args)} ({exc}); rerun the DAG, or set "
              "REPRO_WARM=0 to run jobs without it", file=sys.stderr)
        return 1
    return status


# ------------------------------------------------------------------------------------------------ server

def _foreign_sitecustomize() -> str | None:
    mod = sys.modules.get("sitecustomize")
    path = getattr(mod, "__file__", None)
    if path and not os.path.realpath(path).startswith((os.path.realpath(sys.base_prefix),
                                                        os.path.realpath(sys.prefix))):
        return path
    return None


def _run_child(conn: socket.socket, request: dict, fds: list[int], others: list[socket.socket]) -> None:
    """In the fork: become the job (streams, cwd, environment, argv) and run its module as __main__."""
    import atexit
    import random
    import runpy
    import signal
    import traceback

    for other in others:  # the listener and the other jobs' connections are the server's, not this job's
        other.close()
    for target, fd in zip((0, 1, 2), fds):
        os.dup2(fd, target)
        os.close(fd)
    conn.close()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=stream.isatty())
    sys.path[0] = request["cwd"]  # as `python -m` does
    random.seed()  # the generators a fresh interpreter seeds from the OS, seeded from the OS again
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
    module, *rest = request["argv"]
    sys.argv = [module, *rest]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:  # noqa: BLE001 - report it as the interpreter would, then exit 1
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def _status_of(wait_status: int) -> int:
    """The exit status a shell reports for the fork: its code, or 128 + the signal that ended it."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def serve(path: str, parent: int | None = None) -> int:
    """Preload, then fork one job per connection until stopped (SIGTERM), or until `parent` (Snakemake) is gone."""
    import importlib
    import selectors
    import signal
    import time

    foreign = _foreign_sitecustomize()
    if foreign:
        print(f"warm: not serving: a sitecustomize outside the interpreter is active ({foreign}); every job "
              "starts its own interpreter", file=sys.stderr)
        return 0
    t0 = time.perf_counter()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    import threading

    if threading.active_count() > 1:  # a fork keeps only the forking thread: a job could wait forever on the others
        print(f"warm: not serving: the preloaded libraries started threads ({threading.enumerate()}); every job "
              "starts its own interpreter", file=sys.stderr)
        return 0
    env = load_time_env(os.environ)
    executable = os.path.realpath(sys.executable)
    stopping = False

    def on_signal(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tmp = f"{path}.{os.getpid()}.tmp"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    listener.listen(64)
    os.replace(tmp, path)  # clients see the socket only once it accepts
    print(f"warm: serving on {path} (preloaded in {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}  # pid -> its client's connection
    served = 0
    try:
        while not stopping or children:
            if stopping and listener.fileno() >= 0:
                sel.unregister(listener)
                listener.close()
            for key, _ in sel.select(timeout=0.2):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    pid = _accept(conn, [listener, *children.values()], env, executable)
                    if pid:
                        children[pid] = conn
                        served += 1
                        sel.register(conn, selectors.EVENT_READ, pid)
                    else:
                        conn.close()
                else:  # a client's connection became readable: it went away (a killed job): kill its fork
                    try:
                        gone = not key.fileobj.recv(1, socket.MSG_PEEK)
                    except OSError:
                        gone = True
                    if gone:
                        sel.unregister(key.fileobj)
                        try:
                            os.kill(key.data, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            while children:
                pid, status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                if conn is not None:
                    try:
                        sel.unregister(conn)
                    except (KeyError, ValueError):
                        pass
                    try:
                        conn.sendall(struct.pack("!i", _status_of(status)))
                    except OSError:
                        pass
                    conn.close()
            if parent and not stopping and os.getppid() != parent:
                stopping = True  # Snakemake is gone: finish the running jobs, then exit
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    print(f"warm: served {served} jobs", file=sys.stderr, flush=True)
    return 0


def _accept(conn: socket.socket, others: list[socket.socket], env: dict, executable: str) -> int | None:
    """Read one request; fork its job and return the fork's pid, or answer FALLBACK and return None."""
    try:
        conn.settimeout(10)
        head, fds, _, _ = socket.recv_fds(conn, 4, 3)
        if len(head) < 4:
            raise ConnectionError("short header")
        (n,) = struct.unpack("!I", head)
        request = json.loads(_recv_exact(conn, n))
        conn.settimeout(None)
    except (OSError, ValueError, ConnectionError):
        return None
    job_env = load_time_env(request.get("env", {}))
    differs = sorted(k for k in set(job_env) | set(env) if job_env.get(k) != env.get(k))
    if request.get("executable") != executable:
        differs.append(f"interpreter {request.get('executable')}")
    if differs or len(fds) != 3:
        print(f"warm: {' '.join(request.get('argv', [])[:1])} starts its own interpreter: it differs in "
              f"{', '.join(differs) or 'its standard streams'}", file=sys.stderr, flush=True)
        try:
            conn.sendall(FALLBACK)
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _run_child(conn, request, fds, others)
    print(f"warm: job {pid}: {' '.join(request['argv'])[:300]}", file=sys.stderr, flush=True)
    for fd in fds:
        os.close(fd)
    conn.sendall(STARTED)
    return pid


# ------------------------------------------------------------------------------------------------ workflow side

def server_threads(jobs: Iterable) -> set[int]:
    """The thread counts to start a server for, given the Snakemake jobs the run will run: those of at least
    MIN_JOBS jobs that run a command (not a target rule such as `all`) and not a LIGHT_MODULES CLI."""
    from collections import Counter

    light = tuple(f"-m {m} " for m in LIGHT_MODULES)
    counts = Counter(job.threads for job in jobs
                     if not job.is_norun and not any(m in f"{job.rule.shellcmd or ''} " for m in light))
    return {threads for threads, n in counts.items() if n >= MIN_JOBS}


def start(directory: str | os.PathLike, log: str | os.PathLike, threads: Iterable[int],
          wait_s: float = 120.0) -> list[tuple[str, int]]:
    """Start a server per thread count for this Snakemake run (their parent) and return their (socket, pid) once
    they accept; the jobs find them through env REPRO_WARM_DIR, which this sets in the calling process."""
    import subprocess
    import tempfile
    import time

    sock_dir = tempfile.mkdtemp(prefix="repro-warm-")  # short: Unix socket paths are limited to ~100 bytes
    os.makedirs(os.path.dirname(os.path.abspath(log)) or ".", exist_ok=True)
    servers, procs = [], []
    with open(log, "ab") as out:
        for n in sorted(set(threads)):
            path = socket_path(sock_dir, n)
            env = {**os.environ, **{var: str(n) for var in THREAD_VARS}}
            proc = subprocess.Popen([sys.executable, "-m", "repro.common.warm", "--serve", path, "--parent",
                                     str(os.getpid())], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    cwd=directory, env=env)
            servers.append((path, proc.pid))
            procs.append(proc)
    # wait until they accept (a few seconds of imports, in parallel): every job of the run then starts warm, and
    # which jobs do no longer depends on the machine's load. A server that exits (it refused to serve) or is slow
    # leaves its jobs to start their own interpreters.
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(not os.path.exists(path) and proc.poll() is None
                                               for (path, _), proc in zip(servers, procs)):
        time.sleep(0.05)
    os.environ[ENV_DIR] = sock_dir
    return servers


def stop(servers: list[tuple[str, int]] | None) -> None:
    """Stop the servers: each lets its running jobs finish, then removes its socket."""
    import signal

    os.environ.pop(ENV_DIR, None)
    for path, pid in servers or ():
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    if servers:  # their common socket directory
        try:
            os.rmdir(os.path.dirname(servers[0][0]))
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--serve"]:
        path = args[1]
        parent = int(args[args.index("--parent") + 1]) if "--parent" in args else None
        return serve(path, parent=parent)
    return client(args)


if __name__ == "__main__":
    sys.exit(main())
