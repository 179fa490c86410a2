"""The reviewer's path, end to end: download -> checksum -> load -> sample -> FID/KID -> bound, for the released-
checkpoint rows, through the DAG.

A synthetic checkpoint in the released layout (pesser/pytorch_diffusion's bare state dict, our module names) of the
smoke-size U-Net is served from a local HTTP server on 127.0.0.1; env REPRO_REGISTRY_OVERRIDES points the registry
entry `ddpm_cifar10_ema` at it, with the file's own MD5 (an override must carry a checksum). The scratch config sets
`released: true, released_net: scale` (the smoke network and T in place of the paper's). A wrong checksum must stop
the DAG at the fetch with a message naming it and leave nothing behind; the right one must give numbers.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from repro.common.data.registry import OVERRIDES_ENV, entry
from repro.common.errors import UserError
from repro.common.results import read_metrics
from repro.ddpm.config import load_config
from repro.ddpm.released import load_released
from repro.ddpm.unet import UNet
from tests.conftest import ROOT, SNAKEMAKE, copy_smoke_run, make_scratch_workflow, scratch_env, snakemake_cmd

KEY = "ddpm_cifar10_ema"


def synthetic_release(folder: Path) -> tuple[Path, str]:
    """A smoke-size U-Net's weights saved as pesser's checkpoints are (a bare state dict); (path, md5)."""
    torch.manual_seed(123)
    net = UNet(load_config("smoke").model)
    # not the near-zero official init: a released model's output layers are trained, not 1e-10-scaled
    with torch.no_grad():
        for m in net.zero_init_layers():
            m.weight.normal_(0, 0.02)
    path = folder / "model-790000.ckpt"
    torch.save(net.state_dict(), path)
    return path, hashlib.md5(path.read_bytes()).hexdigest()


def test_an_override_points_the_entry_elsewhere_and_must_carry_a_checksum(tmp_path, monkeypatch):
    spec = tmp_path / "overrides.yaml"
    spec.write_text(yaml.safe_dump({KEY: {"urls": ["http://127.0.0.1:1/x.ckpt"], "md5": "0" * 32}}))
    monkeypatch.setenv(OVERRIDES_ENV, str(spec))
    rf = entry(KEY).files[0]
    assert rf.urls == ("http://127.0.0.1:1/x.ckpt",) and rf.md5 == "0" * 32 and rf.mirror == ()
    assert rf.filename == "ema_diffusion_cifar10_model-790000.ckpt"     # the DAG's path does not change
    assert entry("cifar10").files[0].md5 == "c58f30108f718f92721af3b95e74349a"   # other entries untouched
    spec.write_text(yaml.safe_dump({KEY: {"urls": ["http://127.0.0.1:1/x.ckpt"]}}))
    with pytest.raises(UserError, match="needs 'urls' and a checksum"):
        entry(KEY)


def test_the_loader_takes_a_checkpoint_of_the_released_layout_at_smoke_size(tmp_path):
    path, _ = synthetic_release(tmp_path)
    cfg = load_config("smoke")
    net = load_released(path, model_cfg=cfg.model)
    assert torch.equal(net.conv_out.weight, torch.load(path)["conv_out.weight"])
    with pytest.raises(UserError, match="does not match"):   # and it is not the paper's network
        load_released(path)


def run_released_rows(wf: Path, env: dict) -> subprocess.CompletedProcess:
    targets = ["results/smoke/ddpm/parts/sample_released_s0.csv", "results/smoke/ddpm/parts/bound_released_s0.csv"]
    return subprocess.run(snakemake_cmd(wf, "--cores", "1", "--config", "papers=[ddpm]", "--", *targets),
                          capture_output=True, text=True, env=env,
                          timeout=1200)


@pytest.mark.dag
def test_released_rows_through_the_dag(tmp_path, http_server):
    www, base = http_server
    ckpt, md5 = synthetic_release(www)
    wf = make_scratch_workflow(tmp_path / "wf")
    cfg_path = wf / "config/ddpm.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["smoke"].update(released=True, released_net="scale")
    # the path is under test, not the numbers: 16 samples through FID/KID/IS, the bound on 8 + 8 images
    cfg["smoke"]["sample"].update(n=16, batch_size=16)
    cfg["smoke"]["fid"].update(n=16)
    cfg["smoke"]["bpd"].update(test_n=8, train_n=8, batch_size=8)
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    # a data dir of its own for downloads (the synthetic file must never sit where the real one goes), sharing
    # the prepared data, weights and FID statistics of the project's data dir
    shared = Path(scratch_env()["REPRO_DATA_DIR"])
    data = tmp_path / "data"
    (data / "downloads").mkdir(parents=True)
    for sub in ("prepared", "weights", "fid_stats"):
        (shared / sub).mkdir(parents=True, exist_ok=True)
        (data / sub).symlink_to(shared / sub)
    for d in (shared / "downloads").glob("*"):
        if d.name != KEY:
            (data / "downloads" / d.name).symlink_to(d)
    overrides = tmp_path / "overrides.yaml"
    env = {**scratch_env(), "REPRO_DATA_DIR": str(data), OVERRIDES_ENV: str(overrides),
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    dest = data / "downloads" / KEY / entry(KEY).files[0].filename

    # 1. a wrong checksum: the fetch stops with the expected and the actual MD5; nothing is left behind
    overrides.write_text(yaml.safe_dump({KEY: {"urls": [f"{base}/{ckpt.name}"], "md5": "0" * 32}}))
    proc = run_released_rows(wf, env)
    assert proc.returncode != 0
    fetch_log = next((data / "logs").glob(f"fetch_{KEY}_*.log")).read_text()
    assert f"md5 {md5}, expected {'0' * 32}" in fetch_log and "could not obtain" in fetch_log
    assert not dest.exists() and not list(dest.parent.glob("*.part"))
    assert not (wf / "results/smoke/ddpm/parts/sample_released_s0.csv").exists()

    # 2. the right checksum: downloaded, verified, loaded, sampled, scored, bounded
    overrides.write_text(yaml.safe_dump({KEY: {"urls": [f"{base}/{ckpt.name}"], "md5": md5}}))
    proc = run_released_rows(wf, env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert hashlib.md5(dest.read_bytes()).hexdigest() == md5
    parts = wf / "results/smoke/ddpm/parts"
    sample = read_metrics(parts / "sample_released_s0.csv").set_index(["table", "row", "column"])["value"]
    row = "Ours (L_simple), released checkpoint"
    for column in ("FID", "FID (test)", "KID"):
        assert math.isfinite(sample[("table1", row, column)]), column
    assert sample[("table1", row, "FID")] > 0
    bound = read_metrics(parts / "bound_released_s0.csv")
    nll = bound[(bound["table"] == "table1") & (bound["column"] == "NLL test")]["value"].item()
    assert 0 < nll < 40                          # bits/dim: finite, below the decoder's floor of 39.9 per pixel
    t4 = bound[bound["table"] == "table4_released"]
    assert len(t4) == 40 and t4["value"].notna().all()

    # 3. the README's reviewer commands after the DAG: merge the two parts, judge the claims on them
    py = [str(Path(SNAKEMAKE[0])), "-m", "repro.report"]
    env = {**env, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])}
    merged = tmp_path / "released.csv"
    subprocess.run([*py, "merge", "--parts", str(parts / "sample_released_s0.csv"),
                    str(parts / "bound_released_s0.csv"), "--out-csv", str(merged),
                    "--out-json", str(tmp_path / "released.json")], check=True, env=env, cwd=wf, capture_output=True)
    subprocess.run([*py, "claims", "--scale", "smoke", "--papers", "ddpm", "--metrics", f"ddpm={merged}",
                    "--out-csv", str(tmp_path / "claims.csv"), "--out-md", str(tmp_path / "claims.md")], check=True,
                   env=env, cwd=wf, capture_output=True)
    assert "ddpm.t1.released.fid" in (tmp_path / "claims.md").read_text()


@pytest.mark.dag
def test_a_variant_forced_to_diverge_does_not_stop_the_dag(smoke_run, tmp_path):
    """Table 2's unstable rows as results: one variant forced to diverge (its own lr of 100), the DAG completes,
    reports it as diverged and fills the other rows, tables and figures.

    On a copy of the session's smoke run: the forced variant's training is remade with its new lr, and everything
    downstream of it (its sampling, the merged metrics, tables, figures, claims); the other variants keep the smoke
    run's numbers (Snakemake's params trigger is left out: the config's hash, a param of every ddpm job, changed)."""
    wf = copy_smoke_run(smoke_run, tmp_path / "wf")
    cfg_path = wf / "config/ddpm.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    smoke = cfg["smoke"]
    smoke["train_overrides"] = {"mu_mse": {"lr": 100.0}}
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    results = wf / "results/smoke/ddpm"
    for path in [*results.glob("parts/*_mu_mse_s0.*"), results / "runs/mu_mse_s0", results / "samples/mu_mse_s0.npz",
                 results / "metrics.csv", results / "provenance.json"]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    proc = subprocess.run(snakemake_cmd(wf, "--cores", "1", "--rerun-triggers", "mtime", "input", "code",
                                        "software-env", "--config", "papers=[ddpm]"),
                          capture_output=True, text=True, env=scratch_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    kept = sorted(p.name for p in (smoke_run / "results/smoke/ddpm/parts").glob("*.csv") if "mu_mse" not in p.name)
    assert kept and all((results / "parts" / name).stat().st_mtime
                        == (smoke_run / "results/smoke/ddpm/parts" / name).stat().st_mtime for name in kept), \
        "a variant other than the forced one was remade"
    df = read_metrics(results / "metrics.csv")
    cells = df.set_index(["table", "row", "column"])
    mu, eps = "μ prediction (baseline), MSE on μ", "ε prediction (ours), L_simple"
    assert cells.loc[("table2", mu, "diverged"), "value"] == 1
    assert cells.loc[("table2", eps, "diverged"), "value"] == 0
    step = cells.loc[("training", mu, "diverged at step"), "value"]
    assert 1 < step <= smoke["train"]["steps"]
    assert f"diverged at step {int(step)}" in cells.loc[("table2", mu, "FID"), "note"]
    assert math.isnan(cells.loc[("table2", mu, "FID"), "value"])
    assert math.isfinite(cells.loc[("table2", eps, "FID"), "value"])
    assert math.isfinite(cells.loc[("table1", "Ours (L_simple)", "NLL test"), "value"])
    tex = (wf / "results/smoke/tables/ddpm_table2.tex").read_text()
    assert "diverged" in tex
    figure = wf / "figures/smoke/ddpm_table2_samples.png"   # remade after the forced variant's training
    assert figure.stat().st_size > 1000
    assert figure.stat().st_mtime > (results / "runs/mu_mse_s0/model.pt").stat().st_mtime
