"""Reliability (issue 16): good data is never lost, runs never step on each other, every error is one line.

Each row of docs/bad-input.md is a trial here; its quoted text must appear in what the user sees. Trials that run
Snakemake or `./suite` are marked `dag` (seconds each; the lifecycle scenario about two minutes).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repro.common import suite
from repro.common.config import read_yaml
from repro.common.data.registry import entry
from repro.common.data.verify import read_manifest, verify_mirror_path
from repro.common.errors import ConfigError, UserError
from repro.common.workflow import configure
from tests.conftest import ROOT, make_scratch_workflow, scratch_env, snakemake_cmd

DOC = ROOT / "docs/bad-input.md"
PY = [sys.executable]


# -- the table ---------------------------------------------------------------------------------------------------
def doc_rows() -> dict[str, list[str]]:
    """id -> the quoted fragments of the 'what the user sees' column."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[a-z0-9-]+`", cells[0]):
            rows[cells[0].strip("`")] = re.findall(r"`([^`]+)`", cells[2])
    return rows


def assert_seen(trial: str, output: str) -> None:
    """Every quoted fragment of the trial's row appears in `output` (`<word>` stands for any text)."""
    for frag in doc_rows()[trial]:
        pattern = re.sub(r"<[^>]+>", ".+?", re.escape(frag).replace(r"\<", "<").replace(r"\>", ">"))
        assert re.search(pattern, output), f"{trial}: docs/bad-input.md says `{frag}`, the user saw:\n{output}"


def assert_one_line_error(stderr: str) -> None:
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr


def run(cmd, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env or scratch_env(), capture_output=True, text=True, timeout=timeout)


# -- helpers: a scratch checkout that ./suite can run in -----------------------------------------------------------
def suite_env(**extra) -> dict:
    """Environment for `./suite` in a scratch checkout, using this interpreter's virtual environment.

    `./suite` installs into its environment when the requirements' stamp differs: refuse to let a test do that."""
    stamp = Path(sys.prefix) / ".repro-installed"
    want = hashlib.sha256((ROOT / "requirements.txt").read_bytes() + (ROOT / "requirements.lock").read_bytes())
    if not stamp.is_file() or stamp.read_text().strip() != want.hexdigest()[:16]:
        pytest.fail(f"{sys.prefix} was not set up by ./suite for these requirements: run the tests with ./suite test")
    return {**scratch_env(), "REPRO_VENV": sys.prefix, **extra}


def scratch_checkout(dest: Path) -> Path:
    wf = make_scratch_workflow(dest)
    for name in ("suite", "requirements.txt", "requirements.lock"):
        shutil.copy2(ROOT / name, wf / name)
    return wf


# -- units -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, runs", [
    (["-n"], False), (["-np"], False), (["--dry-run"], False), (["--lint"], False), (["--until", "fetch"], False),
    (["--summary"], False), (["--unlock"], False), (["-t"], False), (["--list-changes", "code"], False),
    (["--cores", "2"], True), (["-j4"], True), (["-p", "--config", "papers=[lowdim]"], True),
    (["--rerun-incomplete"], True), (["--", "-n"], True),
])
def test_report_only_after_a_real_run(args, runs):
    assert suite.runs_anything(args) is runs


def test_scale_of_the_run(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text("scale: smoke\npapers: [lowdim]\n")
    assert suite.scale_of(["--config", "papers=[x]"], tmp_path) == "smoke"
    assert suite.scale_of(["--config", "scale=paper", "papers=[x]"], tmp_path) == "paper"


def test_failure_summary_names_the_rule_and_its_error_line(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs/a.log").write_text("INFO starting\nerror: /m/faces/afhq: 1 file(s) damaged or replaced\n")
    console = ("Error in rule verify_mirror:\n    message: None\n    jobid: 3\n    log: logs/a.log (check log file(s) "
               "for error details)\n    shell:\n        python -m x\n\nError in rule other:\n    jobid: 4\n\n")
    line = suite.failure_summary(console, tmp_path)
    assert line == "error: rule verify_mirror: /m/faces/afhq: 1 file(s) damaged or replaced; rule other"
    parse = 'ConfigError in file "/w/common.smk", line 10:\ndata directory x cannot be created\n  File "/w"'
    assert suite.failure_summary(parse, tmp_path) == "error: ConfigError: data directory x cannot be created"


def test_second_run_is_refused_with_the_holders_pid(tmp_path):
    """The lock is held by another process (as a running ./suite dag holds it); the second run starts nothing."""
    holder = subprocess.Popen([*PY, "-c", (
        "import sys, time; from pathlib import Path; from repro.common.suite import RunLock; "
        "lock = RunLock(Path(sys.argv[1])); lock.acquire({'pid': 4242, 'started': '2026-01-01 00:00:00 UTC', "
        "'command': './suite dag', 'log_dir': 'logs/runs/x'}); print('held', flush=True); time.sleep(60)"),
        str(tmp_path)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run([*PY, "-m", "repro.common.suite", "dag", "--cores", "1"], cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == suite.EXIT_BUSY
    assert_one_line_error(proc.stderr)
    assert "pid 4242, started 2026-01-01 00:00:00 UTC, `./suite dag`" in proc.stderr
    assert "unlock" not in proc.stderr.lower()
    assert not (tmp_path / "logs").exists(), "a refused run wrote a log"
    # the holder is gone: the kernel released its lock, and a new holder can take it
    lock = suite.RunLock(tmp_path)
    lock.acquire({"pid": os.getpid()})
    lock.release()


def test_mirror_manifest_agrees_with_the_registry_and_covers_every_verified_path():
    manifest = read_manifest()
    assert manifest["cifar10-jpeg.tar"] == entry("cifar10").file("cifar10-jpeg.tar").sha256
    for rel in ("faces/celebahq", "faces/afhq", "faces/ffhq"):
        assert sum(k.startswith(rel + "/") for k in manifest) > 0, rel
    assert {k for k in manifest if k.startswith("mri/")} == {
        "mri/t1_coronal_slice.npy", "mri/S0_10slices.nii.gz", "mri/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"}
    # counts stated by the mirror's README: 64 CelebA-HQ, 41 AFHQ, 8 FFHQ faces
    assert [sum(k.startswith(f"faces/{d}/") for k in manifest) for d in ("celebahq", "afhq", "ffhq")] == [64, 41, 8]


@pytest.fixture
def afhq_mirror(tmp_path, mirror) -> Path:
    dest = tmp_path / "mirror"
    shutil.copytree(mirror / "faces/afhq", dest / "faces/afhq")
    return dest


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_mirror_folder_verification(afhq_mirror):
    lines = verify_mirror_path(afhq_mirror, "faces/afhq")
    assert len(lines) == 41 and lines == sorted(lines, key=lambda s: s.split("  ")[1])
    jpeg = afhq_mirror / "faces/afhq/dog/flickr_dog_000094.jpg"
    flip_byte(jpeg)
    with pytest.raises(UserError, match=r"1 file\(s\) damaged or replaced: faces/afhq/dog/flickr_dog_000094\.jpg"):
        verify_mirror_path(afhq_mirror, "faces/afhq")
    flip_byte(jpeg)  # restored
    assert verify_mirror_path(afhq_mirror, "faces/afhq") == lines
    jpeg.unlink()
    with pytest.raises(UserError, match=r"1 missing \(faces/afhq/dog/flickr_dog_000094\.jpg\)"):
        verify_mirror_path(afhq_mirror, "faces/afhq")
    with pytest.raises(UserError, match="no checksums for <mirror>/faces/unknown"):
        verify_mirror_path(afhq_mirror, "faces/unknown")


def cli(module: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return run([*PY, "-m", module, *args], cwd=cwd, env={**scratch_env(), "PYTHONPATH": str(ROOT / "src")})


def trial_damaged_face(tmp_path, afhq_mirror) -> str:
    flip_byte(afhq_mirror / "faces/afhq/cat/pixabay_cat_000181.jpg", offset=5000)
    out = tmp_path / "verified/afhq.sha256"
    proc = cli("repro.common.data", "verify-mirror", "--mirror", str(afhq_mirror), "--path", "faces/afhq",
               "--out", str(out))
    assert proc.returncode == 2 and not out.exists()
    assert_one_line_error(proc.stderr)
    return proc.stderr


def trial_extra_face(tmp_path, afhq_mirror) -> str:
    shutil.copy(afhq_mirror / "faces/afhq/cat/pixabay_cat_000181.jpg", afhq_mirror / "faces/afhq/cat/new.jpg")
    proc = cli("repro.common.data", "verify-mirror", "--mirror", str(afhq_mirror), "--path", "faces/afhq",
               "--out", str(tmp_path / "s"))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr)
    assert "faces/afhq/cat/new.jpg" in proc.stderr
    return proc.stderr


def _selfcheck_with_stats(tmp_path, stats: Path) -> str:
    proc = cli("repro.selfcheck", "halves", "--scale", "smoke", "--stats", str(stats), "--data",
               str(tmp_path / "unused.npz"), "--out", str(tmp_path / "part.csv"), cwd=ROOT)
    assert proc.returncode == 2 and not (tmp_path / "part.csv").exists()
    assert_one_line_error(proc.stderr)
    return proc.stderr


def trial_stats_without_mu(tmp_path) -> str:
    stats = tmp_path / "stats.npz"
    np.savez(stats, sigma=np.eye(2), features=np.zeros((3, 2), np.float32), extractor=np.array(["inception-pool3"]))
    return _selfcheck_with_stats(tmp_path, stats)


def trial_text_as_npz(tmp_path) -> str:
    stats = tmp_path / "stats.npz"
    stats.write_text("mu,sigma\n1,2\n")
    return _selfcheck_with_stats(tmp_path, stats)


def _summary(tmp_path, exact: Path) -> str:
    curved = tmp_path / "curved.csv"
    pd.DataFrame({"design": ["proposed"], "eps": [0.0], "T": [10], "d": [4], "path_kl": [0.1]}).to_csv(curved)
    proc = cli("repro.lowdim", "summary", "--scale", "smoke", "--exact-grid", str(exact), "--curved-grid",
               str(curved), "--out", str(tmp_path / "summary.csv"), cwd=ROOT)
    assert proc.returncode == 2 and not (tmp_path / "summary.csv").exists()
    assert_one_line_error(proc.stderr)
    return proc.stderr


def trial_summary_missing_grid(tmp_path) -> str:
    return _summary(tmp_path, tmp_path / "no-such-grid.csv")


def trial_summary_wrong_columns(tmp_path) -> str:
    bad = tmp_path / "exact.csv"
    bad.write_text("eps,value\n0,1\n")
    return _summary(tmp_path, bad)


def trial_yaml_syntax(tmp_path) -> str:
    wf = make_scratch_workflow(tmp_path / "wf")
    (wf / "config/config.yaml").write_text("scale: smoke\npapers: [lowdim\nseeds: [0]\n")
    with pytest.raises(ConfigError, match=r"line 3, column 6: not valid YAML"):
        read_yaml(wf / "config/config.yaml")
    proc = run([*PY, "-m", "repro.common.suite", "dag", "-n"], cwd=wf,
               env={**scratch_env(), "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr)
    return proc.stderr


def _suite_dry_run(tmp_path, *args: str, **env) -> subprocess.CompletedProcess:
    wf = scratch_checkout(tmp_path / "wf")
    return run([str(wf / "suite"), "dag", "-n", *args], cwd=tmp_path, env=suite_env(**env))


def trial_data_dir_not_a_dir(tmp_path) -> str:
    proc = _suite_dry_run(tmp_path, "--config", "papers=[lowdim]", REPRO_DATA_DIR="/dev/null/data")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ConfigError: data directory /dev/null/data")
    return proc.stderr


def trial_mirror_missing(tmp_path) -> str:
    proc = _suite_dry_run(tmp_path, "--config", "papers=[lowdim]", REPRO_MIRROR="/nonexistent-mirror")
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def trial_relative_data_dir(tmp_path) -> str:
    typed_in = tmp_path / "elsewhere"
    typed_in.mkdir()
    wf = scratch_checkout(tmp_path / "wf")
    proc = run([str(wf / "suite"), "dag", "-n", "--config", "papers=[selfcheck]"], cwd=typed_in,
               env=suite_env(REPRO_DATA_DIR="reldata"))
    assert proc.returncode == 0, proc.stderr
    assert f"{typed_in}/reldata/prepared/cifar10/" in proc.stderr + proc.stdout
    assert f"{wf}/reldata" not in proc.stderr + proc.stdout
    return proc.stderr


def trial_dry_run(tmp_path) -> str:
    wf = scratch_checkout(tmp_path / "wf")
    proc = run([str(wf / "suite"), "dag", "-n", "--config", "papers=[lowdim]"], cwd=tmp_path, env=suite_env())
    assert proc.returncode == 0, proc.stderr
    assert "done:" not in proc.stderr and "--report" not in proc.stderr
    assert not (wf / "results").exists()
    runs = list((wf / "logs/runs").glob("*/run.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["exit_status"] == 0
    return proc.stderr + proc.stdout


QUICK = {  # trial -> (function, needs Snakemake)
    "damaged-face": (trial_damaged_face, False),
    "extra-face": (trial_extra_face, False),
    "stats-without-mu": (trial_stats_without_mu, False),
    "text-as-npz": (trial_text_as_npz, False),
    "summary-missing-grid": (trial_summary_missing_grid, False),
    "summary-wrong-columns": (trial_summary_wrong_columns, False),
    "yaml-syntax": (trial_yaml_syntax, True),
    "data-dir-not-a-dir": (trial_data_dir_not_a_dir, True),
    "mirror-missing": (trial_mirror_missing, True),
    "relative-data-dir": (trial_relative_data_dir, True),
    "dry-run": (trial_dry_run, True),
}
ARCHIVE = ("damaged-archive", "damaged-archive-old-mtime")
LIFECYCLE = ("concurrent-run", "unlock-while-running", "hard-kill-resume", "per-run-logs")


def test_every_row_of_the_bad_input_table_is_tried():
    assert set(doc_rows()) == set(QUICK) | set(ARCHIVE) | set(LIFECYCLE)
    assert all(doc_rows()[t] for t in doc_rows()), "a row without a quoted fragment checks nothing"


@pytest.mark.parametrize("trial", [pytest.param(t, marks=[pytest.mark.dag] if dag else []) for t, (_, dag)
                                   in QUICK.items()])
def test_bad_input(trial, tmp_path, request):
    fn = QUICK[trial][0]
    kwargs = {"afhq_mirror": request.getfixturevalue("afhq_mirror")} if "face" in trial else {}
    assert_seen(trial, fn(tmp_path, **kwargs))


def test_configure_warns_of_a_missing_mirror(tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.setenv("REPRO_MIRROR", str(tmp_path / "gone"))
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    for key in ("PYTHONPATH", "REPRO_ROOT", "PATH"):  # configure() sets these for the jobs
        monkeypatch.setenv(key, os.environ.get(key, ""))
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    settings = configure(config, root=ROOT)
    assert settings.data_dir == str(tmp_path / "data") and not (tmp_path / "data").exists()  # nothing created
    assert f"warning: the mirror {tmp_path / 'gone'} (env REPRO_MIRROR) does not exist" in capsys.readouterr().err
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "file" / "data"))
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=r"data directory .*/file/data \(env REPRO_DATA_DIR\) cannot be created"):
        configure(config, root=ROOT)


# -- a damaged mirror archive never costs the prepared data --------------------------------------------------------
@pytest.mark.dag
@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_damaged_archive_keeps_the_prepared_data(tmp_path, mirror, damage):
    wf = make_scratch_workflow(tmp_path / "wf")
    data, mirror_copy = tmp_path / "data", tmp_path / "mirror"
    mirror_copy.mkdir()
    tar = mirror_copy / "cifar10-jpeg.tar"
    good = (mirror / "cifar10-jpeg.tar").read_bytes()
    tar.write_bytes(good)
    # the state after a good run: verified stamp, then prepared data made from it (placeholders: never read here)
    stamp = data / "verified/cifar10-jpeg.tar.sha256"
    stamp.parent.mkdir(parents=True)
    stamp.write_text(f"{read_manifest()['cifar10-jpeg.tar']}  cifar10-jpeg.tar\n")
    prepared = {name: data / f"prepared/cifar10/{name}.npz" for name in ("train", "test")}
    prepared["train"].parent.mkdir(parents=True)
    for name, path in prepared.items():
        path.write_bytes(f"prepared {name} split".encode())
    t0 = time.time() - 3600
    for i, path in enumerate([tar, stamp, *prepared.values()]):
        os.utime(path, (t0 + 10 * i, t0 + 10 * i))
    before = {p: p.read_bytes() for p in prepared.values()}
    env = {**scratch_env(), "REPRO_MIRROR": str(mirror_copy), "REPRO_DATA_DIR": str(data)}
    target = str(prepared["train"])

    def snakemake():
        return run(snakemake_cmd(wf, "--cores", "1", "--config", "papers=[lowdim]", "--", target), env=env)

    bad = good[: len(good) // 3] if damage == "truncated" else bytearray(good)
    if damage == "flipped":
        bad[len(good) // 2] ^= 0x01
    # the damage with the old mtime kept: nothing reruns, nothing is lost
    tar.write_bytes(bytes(bad))
    os.utime(tar, (t0, t0))
    kept = snakemake()
    assert kept.returncode == 0, kept.stderr
    assert_seen("damaged-archive-old-mtime", kept.stdout + kept.stderr)
    assert {p: p.read_bytes() for p in prepared.values()} == before
    # the damage with a new mtime: the verify job fails, the prepare job never starts, the prepared data stays
    os.utime(tar, None)
    failed = snakemake()
    assert failed.returncode != 0
    assert "rule prepare_cifar" not in failed.stderr, "the prepare job was started"
    assert {p: p.read_bytes() for p in prepared.values()} == before
    summary = suite.failure_summary(failed.stderr, wf)
    assert_seen("damaged-archive", summary + "\n" + failed.stderr)
    assert not stamp.exists(), "a failed check left the stamp that a later run would trust"


# -- one run per checkout; a hard kill is resumed with the same config and gives the same numbers ------------------
@pytest.fixture(scope="class")
def lifecycle(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("lifecycle")
    wf = scratch_checkout(tmp / "wf")
    env = suite_env()
    seen = {}
    first = subprocess.Popen([str(wf / "suite"), "dag", "--cores", "1", "--config", "papers=[lowdim]"], cwd=tmp,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    # held in the curved job (about 11 s on a quiet 2-core machine, its first "path KL" progress line at its start,
    # d = 16 first): time for the refused second run and unlock, which took 0.05 s each (measured)
    log = wf / "logs/smoke/lowdim/curved_s0.log"
    deadline = time.time() + 240
    while time.time() < deadline and not (log.is_file() and "path KL" in log.read_text()):
        time.sleep(0.5)
    assert log.is_file() and "path KL" in log.read_text(), "the curved job never started"
    second = run([str(wf / "suite"), "dag", "--config", "papers=[lowdim]"], cwd=tmp, env=env)
    seen["concurrent-run"] = (second, first.pid)
    seen["unlock-while-running"] = run([str(wf / "suite"), "snakemake", "--unlock"], cwd=tmp, env=env)
    seen["locks-after-unlock"] = sorted(p.name for p in (wf / ".snakemake/locks").iterdir())
    assert first.poll() is None, "the first run ended before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)  # the whole run dies at once, as on a pre-empted node
    first.wait(timeout=30)
    part = wf / "results/smoke/lowdim/parts/curved_s0.csv"
    assert not part.exists() and not (part.parent / "curved_s0.provenance.json").exists(), \
        "a killed job left its output"
    assert any((wf / ".snakemake/locks").iterdir()), "the hard kill left no Snakemake lock (nothing to test)"
    resumed = run([str(wf / "suite"), "resume"], cwd=tmp, env=env, timeout=900)
    seen["hard-kill-resume"] = resumed
    seen["wf"] = wf
    return seen


@pytest.mark.dag
class TestLifecycle:
    """One scenario (a run, a refused second run and unlock, a hard kill, the resume), checked four ways; the class
    keeps the four on one xdist worker, which builds the scenario once."""

    def test_a_second_run_is_refused_while_one_runs(self, lifecycle):
        second, pid = lifecycle["concurrent-run"]
        assert second.returncode == suite.EXIT_BUSY
        assert_one_line_error(second.stderr)
        assert f"pid {pid}," in second.stderr and "--unlock" not in second.stderr
        assert_seen("concurrent-run", second.stderr)


    def test_unlock_is_refused_while_a_run_holds_the_checkout(self, lifecycle):
        proc = lifecycle["unlock-while-running"]
        assert proc.returncode == suite.EXIT_BUSY
        assert_one_line_error(proc.stderr)
        assert_seen("unlock-while-running", proc.stderr)
        assert lifecycle["locks-after-unlock"], "Snakemake's lock of the running DAG was removed"


    def test_hard_kill_resumes_with_the_same_config_and_numbers(self, lifecycle, smoke_run):
        resumed, wf = lifecycle["hard-kill-resume"], lifecycle["wf"]
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert_seen("hard-kill-resume", resumed.stderr)
        assert "resuming: ./suite dag --cores 1 --config papers=[lowdim] --rerun-incomplete" in resumed.stderr
        assert sorted(p.name for p in (wf / "results/smoke").iterdir() if p.is_dir()) == ["lowdim", "tables"]
        # every number of the resumed job equals an uninterrupted run of the same job: the session's smoke run's
        # (the same config and seed, one thread; it is the last test of the class, so the class waits for it last)
        for name in ("parts/curved_s0.csv", "curved_grid_s0.csv"):
            resumed_df = pd.read_csv(wf / "results/smoke/lowdim" / name)
            uninterrupted = pd.read_csv(smoke_run / "results/smoke/lowdim" / name)
            assert len(resumed_df) > 0 and resumed_df["path_kl" if "grid" in name else "value"].notna().all(), name
            pd.testing.assert_frame_equal(resumed_df, uninterrupted, check_exact=True)


    def test_every_run_keeps_its_own_log(self, lifecycle):
        resumed, wf = lifecycle["hard-kill-resume"], lifecycle["wf"]
        assert_seen("per-run-logs", resumed.stderr)
        runs = sorted((wf / "logs/runs").iterdir())
        assert len(runs) == 2, runs  # the killed run and the resume; the refused one left nothing
        killed, resume = (json.loads((r / "run.json").read_text()) for r in runs)
        assert "exit_status" not in killed and resume["exit_status"] == 0  # the killed run never wrote its end
        assert killed["args"] == ["--cores", "1", "--config", "papers=[lowdim]"]
        killed_console = (runs[0] / "console.log").read_text()
        assert "rule lowdim_curved" in killed_console and "resuming" not in killed_console  # its own log, kept
        done = [ln for ln in resumed.stderr.splitlines() if ln.startswith("done: ")]
        assert done and Path(done[0].split()[1]).is_absolute() and Path(done[0].split()[1]).is_dir()
        assert (wf / "results/smoke/report.html").stat().st_size > 10_000
