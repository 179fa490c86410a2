"""What the experiments write: Table 6 at a fixed budget (no ground-truth early stopping), per-image unit rows,
the pixel range as a pure change of coordinates for the metric, and the speed table's repeats and control."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from repro.common.results import ResultWriter
from repro.strainer import runs
from repro.strainer.config import load_config
from repro.strainer.data import ImageSet, coord_grid, to_targets
from repro.strainer.experiments import iterations_to_reach, learn_inits, noisy_copy
from repro.strainer.fit import fit_stack, psnr_from_mse
from repro.strainer.siren import SirenSpec, init_networks


def _tiny_cfg(**data):
    cfg, _ = load_config("smoke")
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, width=16, n_layers=4, shared_layers=3),
        data=dataclasses.replace(cfg.data, **{"resolution": 8, "n_test": 3, **data}),
        fit=dataclasses.replace(cfg.fit, iters=20),
        train=dataclasses.replace(cfg.train, images=3, iters=15),
        meta=dataclasses.replace(cfg.meta, outer_iters=3),
        inverse=dataclasses.replace(cfg.inverse, n_images=3, iters=12),
        speed=dataclasses.replace(cfg.speed, n_images=2, iters=3, repeats=2))


def _images(cfg, n=8):
    g = torch.Generator().manual_seed(5)
    low = (torch.rand(n, 3, 3, 3, generator=g) * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    big = np.repeat(np.repeat(low, 4, axis=1), 4, axis=2)  # 12x12 blocky images
    t = to_targets(big, cfg.data.resolution, value_range=cfg.data.pixel_range)
    return ImageSet("celebahq", t, [str(i) for i in range(n)], cfg.data.resolution, cfg.data.pixel_range)


def _frame(rw: ResultWriter) -> pd.DataFrame:
    return pd.DataFrame(rw.rows)


def test_table6_reports_the_fixed_budget_and_iterations_to_sirens_psnr(tmp_path):
    cfg = _tiny_cfg()
    images = _images(cfg)
    coords = coord_grid(cfg.data.resolution)
    inits = learn_inits(cfg, "celebahq", images, images, coords, seed=0, only=["strainer3", "random_encoder"])
    rw = ResultWriter("strainer", "inverse_s0", "smoke", tmp_path / "p.csv")
    arrays = runs.inverse(cfg, 0, images, inits, torch.device("cpu"), rw)
    df = _frame(rw)
    budget = cfg.inverse.iters
    psnr = arrays["t0_psnr"]  # [methods, iters + 1, images], SR task
    methods = [str(m) for m in arrays["methods"]]
    assert methods == ["SIREN", "STRAINER-3", "STRAINER-3 (random encoder)"]
    task = f"SR x{cfg.inverse.sr_factor}"
    summary = df[df["unit"] == ""].set_index(["row", "column"])["value"]
    units = df[df["unit"] != ""]
    for i, m in enumerate(methods):
        # the primary number is the PSNR at the budget, not the best over the run
        assert summary[(m, f"{task} PSNR@{budget}")] == pytest.approx(psnr[i, budget].mean(), abs=1e-4)
        assert summary[(m, f"{task} best PSNR (oracle stop)")] == pytest.approx(psnr[i].max(axis=0).mean(),
                                                                                 abs=1e-4)
        per_image = units[(units["row"] == m) & (units["column"] == f"{task} PSNR@{budget}")]
        assert sorted(per_image["unit"]) == ["img0", "img1", "img2"]
        np.testing.assert_allclose(per_image.sort_values("unit")["value"], psnr[i, budget], atol=1e-4)
    mean = psnr.mean(axis=2)
    level = mean[0, budget]
    siren_reach = iterations_to_reach(mean[0], level)
    reach = iterations_to_reach(mean[1], level)
    if reach is not None:
        assert summary[(methods[1], f"{task} iterations to SIREN@{budget}")] == reach
        assert summary[(methods[1], f"{task} speed-up")] == pytest.approx(siren_reach / max(reach, 1))


def test_noise_and_psnr_are_the_same_on_either_pixel_range():
    """The range is a change of coordinates: the noise is the same on [0, 1], and a fit's PSNR (on [0, 1]) of the
    same relative error is the same."""
    x01 = torch.rand(2, 16, 3, generator=torch.Generator().manual_seed(0))
    pm = x01 * 2 - 1
    n01 = noisy_copy(x01, 0.1, seed=3, value_range=(0.0, 1.0))
    npm = noisy_copy(pm, 0.1, seed=3, value_range=(-1.0, 1.0))
    torch.testing.assert_close((npm + 1) / 2, n01)
    mse01 = ((n01 - x01) ** 2).mean().item()
    msepm = ((npm - pm) ** 2).mean().item()
    assert psnr_from_mse(mse01, (0.0, 1.0)) == pytest.approx(psnr_from_mse(msepm, (-1.0, 1.0)), abs=1e-9)
    assert psnr_from_mse(0.01, (0.0, 1.0)) == pytest.approx(20.0)  # peak 1 on [0, 1]


def test_a_random_siren_scores_far_lower_on_zero_one_targets():
    """Why the range is the anchor's choice: a random SIREN outputs about 0, mid-gray on [-1, 1] but black on
    [0, 1], so the same network starts several dB lower on [0, 1] targets of mid-tone images."""
    spec = SirenSpec(width=32, n_layers=4, out_features=3)
    coords = coord_grid(16)
    img = (128 + np.random.default_rng(0).integers(-40, 40, (1, 16, 16, 3))).astype(np.uint8)  # mid-tones
    res = {}
    for vr in ((-1.0, 1.0), (0.0, 1.0)):
        t = to_targets(img, 16, value_range=vr)
        res[vr] = fit_stack(init_networks(spec, [1]), coords, t, t, omega0=30.0, iters=0, lr=1e-4,
                            value_range=vr).psnr[0, 0]
    assert res[(-1.0, 1.0)] - res[(0.0, 1.0)] > 3.0, res


def test_speed_writes_timed_repeats_and_a_failing_control(tmp_path):
    cfg = _tiny_cfg()
    images = _images(cfg)
    coords = coord_grid(cfg.data.resolution)
    inits = learn_inits(cfg, "celebahq", images, images, coords, seed=0, only=["strainer3"])
    path = tmp_path / "celebahq_s0.pt"
    torch.save({"inits": {k: v.to_dict() for k, v in inits.items()}}, path)
    rw = ResultWriter("strainer", "speed_s0", "smoke", tmp_path / "p.csv")
    runs.speed(cfg, 0, images, inits, torch.device("cpu"), rw, {"celebahq": str(path)})
    df = _frame(rw)
    for row in ("one image at a time", "all test images batched"):
        reps = df[(df["table"] == "speed") & (df["row"] == row) & (df["unit"] != "")]
        assert sorted(reps["unit"]) == ["rep0", "rep1"] and (reps["value"] > 0).all()
    check = df[df["table"] == "batched_check"].set_index("row")["value"]
    assert check["batched vs one at a time"] <= 0.01
    assert check["batched vs one at a time (images shuffled)"] > 1.0
    t5 = df[df["table"] == "table5"].set_index("column")["value"]
    assert t5["gradient updates"] == cfg.train.iters and t5["per-image gradient evaluations"] == 3 * cfg.train.iters


def test_table4_fits_wider_sirens_on_every_kodak_image(tmp_path):
    from repro.strainer.config import Table4Config

    cfg = _tiny_cfg(ood_targets=("kodak",), resolution=12)  # SSIM's 11x11 window
    cfg = dataclasses.replace(cfg, table4=Table4Config("kodak", (16, 24)))
    images = _images(cfg)
    coords = coord_grid(cfg.data.resolution)
    inits = learn_inits(cfg, "celebahq", images, images, coords, seed=0,
                        only=["meta", "meta_gray", "strainer3", "strainer3_gray", "random_encoder", "meta_untrained"])
    kodak = _images(cfg, n=5)  # fewer images than n_test would allow: all are test images
    kodak = ImageSet("kodak", kodak.targets, kodak.names, kodak.resolution, kodak.value_range)
    rw = ResultWriter("strainer", "ood_s0", "smoke", tmp_path / "p.csv")
    arrays = runs.out_of_domain(cfg, 0, {"kodak": kodak}, inits, torch.device("cpu"), rw)
    df = _frame(rw)
    t4 = df[(df["table"] == "table4") & (df["unit"] == "")].set_index(["row", "column"])
    assert set(t4.index.get_level_values(0)) == {"SIREN (width 16)", "STRAINER-3 (width 16)", "SIREN (width 24)"}
    assert (t4.xs("PSNR", level="column")["n"] == 5).all()
    assert t4.xs("LPIPS", level="column")["value"].isna().all()
    assert t4.xs("LPIPS", level="column")["note"].str.contains("not available").all()
    # the width-16 rows are the out-of-domain fit's own SIREN and STRAINER rows
    psnr = arrays["kodak_psnr"]
    assert t4.loc[("SIREN (width 16)", "PSNR"), "value"] == pytest.approx(psnr[0, -1].mean(), abs=1e-4)
    assert arrays["kodak_psnr"].shape[2] == 5
