"""`./suite bench`: discovery of the papers' bench subcommands, their settings, and one real (tiny) bench run."""

from __future__ import annotations

import json
import os
import sys

import pytest

from repro.common import bench as B
from repro.common.config import read_yaml


def _env(root):
    return dict(os.environ, PYTHONPATH=str(root / "src"), REPRO_ROOT=str(root), REPRO_DEVICE="cpu",
                CUDA_VISIBLE_DEVICES="")


def test_settings_name_real_papers_and_fill_placeholders(root):
    settings = read_yaml(root / "config" / "bench.yaml")
    papers = B.candidate_papers(root)
    assert set(settings) <= set(papers)
    assert papers[:2] == ["selfcheck", "lowdim"]          # config/config.yaml's order first
    args = B.bench_args(settings, "ddpm", "cpu", 3, "/scratch/x")
    # issue 15's table: paper U-Net, training batch 8, network evaluation at batch 64, 2 (here 3) threads
    assert args[:2] == ["--scale", "paper"]
    assert args[args.index("--batch") + 1] == "8" and args[args.index("--sample-batch") + 1] == "64"
    assert args[args.index("--threads") + 1] == "3" and args[args.index("--ckpt-dir") + 1] == "/scratch/x"
    assert B.bench_args({}, "newpaper", "cpu", 2, "/t") == ["--scale", "smoke", "--threads", "2"]
    assert B.bench_args({}, "newpaper", "cuda", 2, "/t") == ["--scale", "smoke"]


def test_plan_runs_covers_every_paper_and_device(root):
    runs = B.plan_runs(root, None, ["cpu", "cuda"], 2, "/t")
    assert {(r.paper, r.device) for r in runs} == {(p, d) for p in B.candidate_papers(root) for d in ("cpu", "cuda")}
    assert all(r.argv[1:4] == ["-m", f"repro.{r.paper}", "bench"] for r in runs)


def test_parse_json_stdout_takes_the_last_object():
    assert B.parse_json_stdout('{"a": 1}\n') == {"a": 1}
    assert B.parse_json_stdout('loading ...\n{\n  "a": 2\n}\n') == {"a": 2}
    with pytest.raises(json.JSONDecodeError):
        B.parse_json_stdout("no json here")


def test_a_paper_without_bench_is_absent_and_a_failure_says_why(root):
    absent = B.run_one(B.BenchRun("selfcheck", "cpu", [sys.executable, "-m", "repro.selfcheck", "bench"]),
                       _env(root), root, 120)
    assert absent == {"status": "absent"}
    broken = B.run_one(B.BenchRun("tina", "cpu", [sys.executable, "-m", "repro.tina", "bench", "--scale", "nosuch"]),
                       _env(root), root, 120)
    assert broken["status"] == "error" and broken["error"].startswith("exit ")
    assert "nosuch" in broken["error"]                      # the paper's own one-line message comes through


def test_a_real_bench_run_prints_json_and_writes_nothing(root, tmp_path):
    """tina's smoke bench with a handful of steps: one JSON object with its timings, no file left in the cwd (an
    empty directory of its own: the project root may gain files from tests running beside this one)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = B.run_one(B.BenchRun("tina", "cpu", [sys.executable, "-m", "repro.tina", "bench", "--scale", "smoke",
                                               "--steps", "3", "--models", "2", "--generic-steps", "2",
                                               "--threads", "1"]), _env(root), cwd, 600)
    assert res["status"] == "ok", res
    assert isinstance(res["result"], dict) and res["result"]
    assert any(isinstance(v, (int, float)) and v > 0 for v in res["result"].values())
    assert list(cwd.iterdir()) == []


def test_ddpm_channels_last_is_the_same_network(root):
    """The CPU layout of training and evaluation (repro.ddpm.unet.cpu_layout) changes speed, not the function: the
    smoke U-Net's output, one reverse step and the gradient of a training loss agree with the contiguous layout to
    float rounding."""
    import copy

    import torch

    from repro.common.config import read_yaml
    from repro.ddpm.config import VARIANTS, DDPMConfig, DiffusionConfig
    from repro.ddpm.diffusion import Diffusion
    from repro.ddpm.train import build_model
    from repro.ddpm.unet import cpu_layout

    cfg = DDPMConfig.from_block("smoke", read_yaml(root / "config" / "ddpm.yaml")["smoke"])
    torch.manual_seed(0)
    plain = build_model(cfg, VARIANTS["eps_kl_learned"]).eval()
    fast = cpu_layout(copy.deepcopy(plain), torch.device("cpu")).eval()
    assert fast.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32)
    t = torch.tensor([0, 10, 25, 39])
    with torch.inference_mode():
        a, b = plain(x, t), fast(x, t)
        assert b.is_contiguous(memory_format=torch.channels_last)       # the layout propagates through the net
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        d = Diffusion(DiffusionConfig(steps=40, beta_start=cfg.diffusion.beta_start, beta_end=cfg.diffusion.beta_end),
                      VARIANTS["eps_kl_learned"])
        # x0 = sqrt(1/abar) x_t - sqrt(1/abar - 1) eps amplifies eps's rounding by up to sqrt(1/abar_T - 1) (~490 here)
        gain = float(d.sqrt_recipm1_abar.max())
        for m1, m2 in zip(d.p_mean_variance(plain, x, t, clip=True), d.p_mean_variance(fast, x, t, clip=True)):
            torch.testing.assert_close(m2, m1, rtol=0, atol=1e-5 * gain)
    plain.train(), fast.train()
    torch.manual_seed(1)
    loss_a = d.training_loss(plain, x, t, torch.randn_like(x)).mean()
    torch.manual_seed(1)
    loss_b = d.training_loss(fast, x, t, torch.randn_like(x)).mean()
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    loss_a.backward(), loss_b.backward()
    assert fast.conv_in.weight.grad.is_contiguous(memory_format=torch.channels_last)
    for (name, pa), pb in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_jobtimes_joins_a_jobs_outputs_and_its_own_computation(tmp_path):
    """Two output records of one job (same job_hash) are one job; its part's provenance gives the computation."""
    import base64

    from repro.common.jobtimes import read_jobs, summarise

    meta = tmp_path / ".snakemake" / "metadata"
    meta.mkdir(parents=True)

    def record(path, rule, job_hash, start, end):
        name = base64.b64encode(path.encode()).decode().replace("/", "@")
        (meta / name).write_text(json.dumps({"rule": rule, "job_hash": job_hash, "starttime": start,
                                             "endtime": end, "incomplete": False}))

    part = tmp_path / "results/smoke/x/parts/train_s0.csv"
    part.parent.mkdir(parents=True)
    part.write_text("paper\n")
    (part.parent / "train_s0.provenance.json").write_text(json.dumps({"total_wall_time_s": 6.5}))
    record("results/smoke/x/parts/train_s0.csv", "x_train", 11, 100.0, 110.2)
    record("results/smoke/x/runs/model.pt", "x_train", 11, 100.1, 110.0)
    record("figures/smoke/x_fig.pdf", "x_figure", 12, 111.0, 113.0)
    record("figures/smoke/old.pdf", "x_figure", 13, 50.0, 52.0)            # before --since: left out
    jobs = read_jobs(meta, tmp_path, since=90.0)
    assert [(j.rule, len(j.outputs), j.compute_s) for j in jobs] == [("x_train", 2, 6.5), ("x_figure", 1, None)]
    assert jobs[0].wall_s == pytest.approx(10.2)
    s = summarise(jobs)
    assert s["jobs"] == 2 and s["span_s"] == pytest.approx(13.0)
    assert s["their_compute_s"] == 6.5 and s["median_startup_s"] == pytest.approx(3.7)
    assert s["glue_wall_s"] == pytest.approx(2.0)
