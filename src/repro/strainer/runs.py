"""The CLI commands' bodies: learn initialisations, run one experiment, write its metrics part and arrays.

Every number in a part is a mean over the test images with its standard deviation (`std`, ddof = 1) and count
(`n`); curves and reconstructions go to an `.npz` beside the part for the figure rule.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from repro.common.errors import UserError
from repro.common.io import load_npz, save_npz, save_torch
from repro.common.results import ResultWriter
from repro.strainer.config import StrainerConfig
from repro.strainer.data import ImageSet, coord_grid, load_image_set, split_indices, to_image
from repro.strainer.experiments import (Method, MethodFits, ablation_methods, control_methods, downsample_operator,
                                        fit_methods,
                                        in_domain_methods, iterations_to_reach, label, learn_inits, noisy_copy,
                                        ood_methods, test_split)
from repro.strainer.fit import fit_stack, per_image_mse, psnr_from_mse
from repro.strainer.siren import forward, init_networks, network_seed, repeat_stack
from repro.strainer.train import STREAM_HYPERNET, STREAM_TEST, Init, split_layers

PAPER = "strainer"
N_SHOW = 2  # test images shown in the reconstruction figures


# ---- I/O helpers ---------------------------------------------------------------------------------------------

def load_inits(path: str | Path, resolution: int) -> dict[str, Init]:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if blob.get("resolution") != resolution:
        raise UserError(f"{path} was learned at resolution {blob.get('resolution')}, the config asks for "
                        f"{resolution}; re-run the strainer inits rule")
    return {k: Init.from_dict(v) for k, v in blob["inits"].items()}


def _ssim(pred: torch.Tensor, clean: torch.Tensor, resolution: int, value_range) -> np.ndarray:
    """SSIM per image of [M, P, C] outputs against the clean images (shared metric, images mapped to [0, 1])."""
    from repro.common.metrics.image import ssim

    a, b = to_image(pred, resolution, value_range), to_image(clean, resolution, value_range)
    return np.asarray(ssim(a, b), dtype=np.float64).reshape(-1)


def _add_stats(rw: ResultWriter, table: str, row: str, column: str, values: np.ndarray, seed: int) -> None:
    """A cell: the mean over test images (with std, n) as its summary row, and each image's value as a unit row
    (`img<j>`, j the index in the fixed test split), so that claims pair methods image by image."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    rw.add(table, row, column, float(values.mean()), seed=seed,
           std=float(values.std(ddof=1)) if values.size > 1 else None, n=int(values.size))
    for j, v in enumerate(values):
        _add_unit(rw, table, row, column, v, seed, j)


def _add_unit(rw: ResultWriter, table: str, row: str, column: str, value: float, seed: int, index: int) -> None:
    """One test image's value of a cell (unit `img<index>`): claims compare methods paired over images."""
    rw.add(table, row, column, float(value), seed=seed, unit=f"img{index}")


def _report_iters(cfg: StrainerConfig, iters: int) -> list[int]:
    return [t for t in cfg.fit.report_iters if t <= iters]


def _curve_arrays(prefix: str, fits: MethodFits, clean: torch.Tensor, resolution: int,
                  value_range) -> dict[str, np.ndarray]:
    """Curves [methods, iters + 1, images] and, for the first N_SHOW images, snapshots and final outputs."""
    arrays = {f"{prefix}psnr": fits.psnr.astype(np.float32),
              f"{prefix}methods": np.array([m.label for m in fits.methods]),
              f"{prefix}gt": to_image(clean[:N_SHOW], resolution, value_range).astype(np.float16),
              f"{prefix}final": to_image(fits.output[:, :N_SHOW], resolution, value_range).astype(np.float16)}
    for t, out in fits.snapshots.items():
        arrays[f"{prefix}snap{t}"] = to_image(out[:, :N_SHOW], resolution, value_range).astype(np.float16)
    return arrays


def _write_fit_rows(rw: ResultWriter, table: str, column_prefix: str, fits: MethodFits, clean: torch.Tensor,
                    resolution: int, seed: int, value_range, *, ssim: bool = True) -> None:
    for i, m in enumerate(fits.methods):
        _add_stats(rw, table, m.label, f"{column_prefix}PSNR", fits.psnr[i, -1], seed)
        if ssim:
            _add_stats(rw, table, m.label, f"{column_prefix}SSIM", _ssim(fits.output[i], clean, resolution, value_range),
                       seed)


def _write_curve_rows(rw: ResultWriter, table: str, fits: MethodFits, iters: list[int], seed: int,
                      rows: dict[str, str] | None = None) -> None:
    for i, m in enumerate(fits.methods):
        for t in iters:
            _add_stats(rw, table, (rows or {}).get(m.label, m.label), f"PSNR@{t}", fits.psnr[i, t], seed)


# ---- commands ------------------------------------------------------------------------------------------------

def learn_inits_command(cfg: StrainerConfig, raw: dict, scale: str, seed: int, dataset: str, data: str, out: str,
                        device, only: list[str] | None = None) -> None:
    """Learn every initialisation a dataset's experiments need; save them (CPU tensors) with their costs."""
    res = cfg.data.resolution
    color = load_image_set(data, dataset, res, value_range=cfg.data.pixel_range)
    gray = load_image_set(data, dataset, res, gray=True, value_range=cfg.data.pixel_range)
    coords = coord_grid(res, device)
    inits = learn_inits(cfg, dataset, color, gray, coords, seed, only=only)
    hypernets = learn_hypernets(cfg, dataset, color, coords, seed, only=only)
    save_torch(out, {"dataset": dataset, "resolution": res, "seed": seed, "scale": scale, "config": raw,
                     "inits": {k: v.to_dict() for k, v in inits.items()},
                     "hypernets": {k: v.to_dict() for k, v in hypernets.items()}})


def learn_hypernets(cfg: StrainerConfig, dataset: str, color: ImageSet, coords: torch.Tensor, seed: int,
                    only: list[str] | None = None) -> dict:
    """TransINR and IPC (config `hypernet`), trained on the source dataset's whole training pool (every image
    outside the fixed test split): these baselines are trained on a dataset, not on a few images."""
    from repro.strainer.hypernet import train_hypernet

    if cfg.hypernet is None or dataset != cfg.data.source:
        return {}
    split = split_indices(len(color.names), cfg.data.n_test, cfg.train.images, dataset)
    images = color.targets[split.train]  # on the CPU: batches go to the device (the paper-scale pool is ~30k faces)
    return {kind: train_hypernet(kind, cfg.hypernet, images, coords, width=cfg.model.width,
                                 seed=network_seed(seed, STREAM_HYPERNET, i), value_range=cfg.data.pixel_range,
                                 desc=f"{dataset} {kind}")
            for i, kind in enumerate(cfg.hypernet.kinds) if not only or kind in only}


def load_hypernets(path: str | Path) -> dict:
    from repro.strainer.hypernet import TrainedHypernet

    blob = torch.load(path, map_location="cpu", weights_only=False)
    return {k: TrainedHypernet.from_dict(v) for k, v in blob.get("hypernets", {}).items()}


def _targets(images: ImageSet, cfg: StrainerConfig, dataset: str, device) -> ImageSet:
    test = test_split(cfg, images, dataset)
    return ImageSet(test.name, test.targets.to(device), test.names, test.resolution, test.value_range)


def in_domain(cfg, seed, dataset, images: ImageSet, inits, device, rw: ResultWriter,
              hypernets: dict | None = None) -> dict[str, np.ndarray]:
    """Table 1 (and, on the source dataset, the Fig. 2 curve readings, TransINR / IPC included, and Table 3):
    every method fitted to the test images."""
    test = _targets(images, cfg, dataset, device)
    coords = coord_grid(cfg.data.resolution, device)
    snaps = _report_iters(cfg, cfg.fit.iters)[1:2]
    with rw.stage("fit"):
        fits = fit_methods(in_domain_methods(cfg, controls=True), inits, test.targets, coords, cfg, seed,
                           snapshot_iters=snaps,
                           desc=f"{dataset} in-domain fit")
    _write_fit_rows(rw, "table1", f"{label(dataset)} ", fits, test.targets, cfg.data.resolution, seed,
                    cfg.data.pixel_range)
    if dataset == cfg.data.source:
        _write_curve_rows(rw, "fig2", fits, _report_iters(cfg, cfg.fit.iters), seed)
        _write_raw_meta_row(rw, cfg, inits, test.targets, coords, seed)
        arrays = _hypernet_rows(rw, cfg, hypernets or {}, fits, test.targets, coords, seed)
    else:
        arrays = {}
    return {**_curve_arrays("", fits, test.targets, cfg.data.resolution, cfg.data.pixel_range),
            "test_names": np.array(test.names), **arrays}


def hypernet_fits(cfg, hypernets: dict, clean: torch.Tensor, coords: torch.Tensor,
                  desc: str = "TransINR/IPC TTO") -> tuple[list[str], np.ndarray, torch.Tensor]:
    """Every hypernetwork's predicted INRs of the test images, without and with test-time optimisation.

    Returns (row labels, PSNR [rows, iters + 1, images], final outputs [rows, images, P, C]). Without TTO the
    prediction is the result at every iteration: its curve is the iteration-0 PSNR repeated (a flat line, by
    construction). With TTO the predicted explicit weights are fitted like every other method (Adam at fit.lr for
    fit.iters, all hypernetworks' INRs in one stack of at most fit.chunk networks: their hyponets share one
    shape). A 1-channel target is given to the (RGB) hypernetwork as a gray RGB image and its INR is read as luma.
    """
    from repro.strainer.fit import fit_in_chunks
    from repro.strainer.hypernet import LABELS, Renderer, predict
    from repro.strainer.siren import concat, select

    if not hypernets:
        return [], np.zeros((0, cfg.fit.iters + 1, clean.shape[0])), clean[:0]
    kinds = list(hypernets)
    hc = hypernets[kinds[0]].model.cfg
    gray = clean.shape[-1] == 1
    render = Renderer(coords, hc.ff_dim, hc.ff_sigma, cfg.data.pixel_range, gray=gray)
    shown = clean.expand(-1, -1, 3) if gray else clean
    stack = concat([predict(hypernets[k].model.to(coords.device), shown, cfg.data.pixel_range) for k in kinds])
    k = clean.shape[0]
    res = fit_in_chunks(lambda part: select(stack, part), len(kinds) * k, cfg.fit.chunk, coords,
                        clean.repeat(len(kinds), 1, 1), clean.repeat(len(kinds), 1, 1), omega0=cfg.model.omega0,
                        iters=cfg.fit.iters, lr=cfg.fit.lr, desc=desc, value_range=cfg.data.pixel_range,
                        render=render)
    with torch.no_grad():
        initial = render(stack, coords).clamp(*cfg.data.pixel_range)
    rows, psnr, outs = [], [], []
    for i, kind in enumerate(kinds):
        part = slice(i * k, (i + 1) * k)
        rows += [f"{LABELS[kind]} w/o TTO", f"{LABELS[kind]} w/ TTO"]
        psnr += [np.repeat(res.psnr[:1, part], res.psnr.shape[0], axis=0), res.psnr[:, part]]
        outs += [initial[part], res.output[part]]
    return rows, np.stack(psnr), torch.stack(outs)


def _table3_rows(rw: ResultWriter, cfg, hypernets: dict, fits: MethodFits, clean: torch.Tensor,
                 coords: torch.Tensor, seed: int, dataset: str, kind: str) -> tuple[list[str], np.ndarray]:
    """Table 3's column of one dataset (`kind` ID or OD): the hypernetwork baselines without and with TTO beside
    SIREN and STRAINER-N fitted to the same test images (final PSNR and SSIM)."""
    rows, psnr, outs = hypernet_fits(cfg, hypernets, clean, coords, desc=f"{dataset} TransINR/IPC TTO")
    if not rows:
        return rows, psnr
    res, vr, col = cfg.data.resolution, cfg.data.pixel_range, f"{label(dataset)} ({kind}) "
    labels = [m.label for m in fits.methods]
    for name in ("SIREN", f"STRAINER-{cfg.train.images}"):
        i = labels.index(name)
        _add_stats(rw, "table3", name, f"{col}PSNR", fits.psnr[i, -1], seed)
        _add_stats(rw, "table3", name, f"{col}SSIM", _ssim(fits.output[i], clean, res, vr), seed)
    for r, row in enumerate(rows):
        _add_stats(rw, "table3", row, f"{col}PSNR", psnr[r, -1], seed)
        _add_stats(rw, "table3", row, f"{col}SSIM", _ssim(outs[r], clean, res, vr), seed)
    return rows, psnr


def _hypernet_rows(rw: ResultWriter, cfg, hypernets: dict, fits: MethodFits, clean: torch.Tensor,
                   coords: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    """Fig. 2's TransINR / IPC rows (flat without TTO, a curve with it) and Table 3's in-domain column."""
    rows, psnr = _table3_rows(rw, cfg, hypernets, fits, clean, coords, seed, cfg.data.source, "ID")
    if not rows:
        return {}
    for r, row in enumerate(rows):
        for t in _report_iters(cfg, cfg.fit.iters):
            _add_stats(rw, "fig2", row, f"PSNR@{t}", psnr[r, t], seed)
    return {"hyper_psnr": psnr.astype(np.float32), "hyper_methods": np.array(rows)}


def _write_raw_meta_row(rw: ResultWriter, cfg, inits, clean: torch.Tensor, coords: torch.Tensor, seed: int) -> None:
    """The MAML initialisation's own PSNR, before the inner-loop steps it is evaluated after (Fig. 2 reads the
    adapted one at iteration 0): evidence that MAML learns the adaptation, not a mean image."""
    init = inits["meta"]
    lo, hi = cfg.data.pixel_range
    layers = [(w.to(coords.device), b.to(coords.device)) for w, b in init.layers]
    with torch.no_grad():
        mse = per_image_mse(forward(layers, coords, cfg.model.omega0).clamp(lo, hi).expand(clean.shape[0], -1, -1),
                            clean)
    _add_stats(rw, "fig2", "Meta-learned 5K", "PSNR@0 before inner steps", psnr_from_mse(mse.cpu().numpy(),
                                                                                      (lo, hi)), seed)


def out_of_domain(cfg, seed, targets: dict[str, ImageSet], inits, device, rw: ResultWriter,
                  hypernets: dict | None = None) -> dict[str, np.ndarray]:
    """Table 2: initialisations learned on the source dataset, fitted to other datasets' test images; Table 3's
    out-of-domain columns (the source's TransINR / IPC on the same images), Table 4 on Kodak."""
    coords = coord_grid(cfg.data.resolution, device)
    arrays = {}
    for dataset, images in targets.items():
        if cfg.table4 is not None and dataset == cfg.table4.dataset:  # never trained on: every image is a test image
            test = ImageSet(images.name, images.targets.to(device), images.names, images.resolution,
                            images.value_range)
        else:
            test = _targets(images, cfg, dataset, device)
        with rw.stage(f"fit {dataset}"):
            fits = fit_methods(ood_methods(cfg, test.targets.shape[-1]), inits, test.targets, coords, cfg, seed,
                               desc=f"{label(cfg.data.source)} -> {dataset} fit")
        _write_fit_rows(rw, "table2", f"{label(dataset)} ", fits, test.targets, cfg.data.resolution, seed,
                        cfg.data.pixel_range)
        arrays.update(_curve_arrays(f"{dataset}_", fits, test.targets, cfg.data.resolution, cfg.data.pixel_range))
        if cfg.table4 is not None and dataset == cfg.table4.dataset:
            _table4(cfg, seed, test, fits, inits, coords, rw)
        else:
            _table3_rows(rw, cfg, hypernets or {}, fits, test.targets, coords, seed, dataset, "OD")
    arrays["datasets"] = np.array(list(targets))
    return arrays


def _table4(cfg, seed, test: ImageSet, fits: MethodFits, inits, coords: torch.Tensor, rw: ResultWriter) -> None:
    """Table 4 (Kodak): STRAINER-N (the source dataset's encoder, model width) against SIREN at the model's width
    (both from the out-of-domain fit) and SIRENs of `table4.siren_widths`, fitted here. PSNR and SSIM; LPIPS is
    not available: the `lpips` package is not pinned, and its AlexNet backbone weights download at run time."""
    import dataclasses

    n = cfg.train.images
    rows = {f"SIREN (width {cfg.model.width})": fits.methods.index(Method("SIREN", None)),
            f"STRAINER-{n} (width {cfg.model.width})": [m.label for m in fits.methods].index(f"STRAINER-{n}")}
    res, vr = cfg.data.resolution, cfg.data.pixel_range
    for row, i in rows.items():
        _add_stats(rw, "table4", row, "PSNR", fits.psnr[i, -1], seed)
        _add_stats(rw, "table4", row, "SSIM", _ssim(fits.output[i], test.targets, res, vr), seed)
    for width in cfg.table4.siren_widths:
        if width == cfg.model.width:
            continue
        wide = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, width=width))
        with rw.stage(f"fit {test.name} SIREN width {width}"):
            w = fit_methods([Method("SIREN", None)], inits, test.targets, coords, wide, seed,
                            desc=f"{test.name} SIREN width {width}")
        row = f"SIREN (width {width})"
        rows[row] = -1
        _add_stats(rw, "table4", row, "PSNR", w.psnr[0, -1], seed)
        _add_stats(rw, "table4", row, "SSIM", _ssim(w.output[0], test.targets, res, vr), seed)
    for row in rows:
        rw.add("table4", row, "LPIPS", None, seed=seed,
               note="not available: the lpips package is not pinned and downloads its AlexNet weights at run time")


def ablation(cfg, seed, images: ImageSet, inits, device, rw: ResultWriter) -> dict[str, np.ndarray]:
    """Fig. 7 (number of shared layers) and the number of training images, on the source dataset's test images."""
    dataset = cfg.data.source
    test = _targets(images, cfg, dataset, device)
    coords = coord_grid(cfg.data.resolution, device)
    shared, counts = ablation_methods(cfg)
    methods = [Method("SIREN", None)] + list({m.init: m for m in shared + counts}.values())
    with rw.stage("fit"):
        fits = fit_methods(methods, inits, test.targets, coords, cfg, seed, desc=f"{dataset} ablation fit")
    iters = _report_iters(cfg, cfg.fit.iters)
    by_init = {m.init: i for i, m in enumerate(fits.methods)}
    for table, group in (("fig7", [Method("SIREN", None)] + shared), ("ablation_images", [Method("SIREN", None)] + counts)):
        for m in group:
            curve = fits.psnr[by_init[m.init]]
            for t in iters:
                _add_stats(rw, table, m.label, f"PSNR@{t}", curve[t], seed)
            _add_stats(rw, table, m.label, "PSNR final", curve[-1], seed)
    return {"psnr": fits.psnr.astype(np.float32), "inits": np.array([str(m.init) for m in fits.methods]),
            "shared_labels": np.array([m.label for m in shared]), "shared_inits": np.array([m.init for m in shared]),
            "count_labels": np.array([m.label for m in counts]), "count_inits": np.array([m.init for m in counts])}


def inverse(cfg, seed, images: ImageSet, inits, device, rw: ResultWriter) -> dict[str, np.ndarray]:
    """Table 6: super-resolution and denoising with SIREN and STRAINER-N (trained on clean source images).

    Primary numbers (issue 14): the PSNR against the clean image after a fixed budget of `inverse.iters`
    iterations, and the iterations each method needs to reach SIREN's PSNR at that budget (mean curve over the test
    images; per image as unit rows); the speed-up is SIREN's iterations over the method's. Nothing is picked with
    the ground truth: the best PSNR over the run (an oracle early stop that reads the clean image) is kept only as
    a secondary column, labelled as such.
    """
    dataset = cfg.data.source
    test = _targets(images, cfg, dataset, device).subset(range(min(cfg.inverse.n_images, cfg.data.n_test)))
    clean = test.targets
    coords = coord_grid(cfg.data.resolution, device)
    methods = [Method("SIREN", None), in_domain_methods(cfg)[-1], control_methods(cfg, 3)[0]]
    budget = cfg.inverse.iters
    tasks = {f"SR x{cfg.inverse.sr_factor}": (downsample_operator(cfg.data.resolution, cfg.inverse.sr_factor), None),
             f"Denoising s={cfg.inverse.noise_std:g}": (None, noisy_copy(clean, cfg.inverse.noise_std, seed,
                                                                               cfg.data.pixel_range))}
    arrays = {"tasks": np.array(list(tasks)), "methods": np.array([m.label for m in methods])}
    for t_index, (task, (observe, noisy)) in enumerate(tasks.items()):
        observed = observe(clean) if observe is not None else noisy
        with rw.stage(task):
            fits = fit_methods(methods, inits, clean, coords, cfg, seed, observed=observed, observe=observe,
                               iters=budget, desc=task)
        mean = fits.psnr.mean(axis=2)  # [methods, iters + 1]
        level = float(mean[0, budget])  # SIREN's PSNR at the fixed budget
        siren_reach = iterations_to_reach(mean[0], level)  # <= budget; earlier if SIREN peaked and fell back
        for i, m in enumerate(methods):
            _add_stats(rw, "table6", m.label, f"{task} PSNR@{budget}", fits.psnr[i, budget], seed)
            _add_stats(rw, "table6", m.label, f"{task} best PSNR (oracle stop)", fits.psnr[i].max(axis=0), seed)
            for j in range(len(test.names)):
                own = iterations_to_reach(fits.psnr[i, :, j], float(fits.psnr[0, budget, j]))
                if own is not None:
                    _add_unit(rw, "table6", m.label, f"{task} iterations to SIREN@{budget}", own, seed, j)
            reach = iterations_to_reach(mean[i], level)
            if reach is None:  # never gets there: no iteration count, and no speed-up (0)
                never = f"never reaches SIREN's PSNR@{budget} within {budget} iterations"
                rw.add("table6", m.label, f"{task} iterations to SIREN@{budget}", None, seed=seed, note=never)
                rw.add("table6", m.label, f"{task} speed-up", 0.0, seed=seed, note=never)
            else:
                rw.add("table6", m.label, f"{task} iterations to SIREN@{budget}", reach, seed=seed)
                rw.add("table6", m.label, f"{task} speed-up", siren_reach / max(reach, 1), seed=seed,
                       note="" if reach else "reached at initialisation")
        arrays[f"t{t_index}_psnr"] = fits.psnr.astype(np.float32)
        arrays[f"t{t_index}_final"] = to_image(fits.output[:, :N_SHOW], cfg.data.resolution,
                                               cfg.data.pixel_range).astype(np.float16)
        obs_img = observed[:N_SHOW]
        side = int(round(obs_img.shape[1] ** 0.5))
        arrays[f"t{t_index}_observed"] = to_image(obs_img, side, cfg.data.pixel_range).astype(np.float16)
    arrays["gt"] = to_image(clean[:N_SHOW], cfg.data.resolution, cfg.data.pixel_range).astype(np.float16)
    return arrays


def speed(cfg, seed, images: ImageSet, inits, device, rw: ResultWriter, init_files: dict[str, str]) -> dict:
    """Fitting speed, one image at a time vs the test images as one stack, and the cost of learning each init.

    Both start from STRAINER-N's encoder with fresh heads. Timings move by tens of percent between identical runs
    (issue 16), so they are measured `speed.repeats` times, sequential and batched interleaved, each repeat a unit
    row (`rep<r>`) for the claims' paired comparison. The batched PSNR curves must equal the sequential ones: the
    largest difference (dB) goes to the `batched_check` table, with its control (the curves paired with the wrong
    images), which is not a timing.
    """
    dataset = cfg.data.source
    k = min(cfg.speed.n_images, cfg.data.n_test)
    test = _targets(images, cfg, dataset, device).subset(range(k))
    coords = coord_grid(cfg.data.resolution, device)
    spec = cfg.model.spec(test.channels)
    enc = inits[in_domain_methods(cfg)[-1].init]
    heads = split_layers(init_networks(spec, [network_seed(seed, STREAM_TEST, j) for j in range(k)], device=device),
                         enc.shared_layers)[1]
    encoder = [(w.to(device), b.to(device)) for w, b in enc.layers]
    iters, vr, repeats = cfg.speed.iters, cfg.data.pixel_range, cfg.speed.repeats

    def one(j: int, desc: str):
        return fit_stack(repeat_stack(encoder, 1) + [(w[j:j + 1], b[j:j + 1]) for w, b in heads], coords,
                         test.targets[j:j + 1], test.targets[j:j + 1], omega0=spec.omega0, iters=iters,
                         lr=cfg.fit.lr, desc=desc, value_range=vr)

    def batched(desc: str):
        return fit_stack(repeat_stack(encoder, k) + heads, coords, test.targets, test.targets, omega0=spec.omega0,
                         iters=iters, lr=cfg.fit.lr, desc=desc, value_range=vr)

    fit_stack(repeat_stack(encoder, 1) + [(w[:1], b[:1]) for w, b in heads], coords, test.targets[:1],
              test.targets[:1], omega0=spec.omega0, iters=3, lr=cfg.fit.lr, desc="warm-up", value_range=vr)
    seq_ms, bat_ms = [], []
    for r in range(repeats):
        with rw.stage("sequential"):
            t0 = time.perf_counter()
            seq = [one(j, f"repeat {r}: one image {j}") for j in range(k)]
            seq_ms.append(1e3 * (time.perf_counter() - t0) / (k * iters))
        with rw.stage("batched"):
            t0 = time.perf_counter()
            bat = batched(f"repeat {r}: {k} images batched")
            bat_ms.append(1e3 * (time.perf_counter() - t0) / (k * iters))
        if r == 0:
            seq_psnr = np.stack([s_.psnr[:, 0] for s_ in seq], axis=1)
            bat_psnr = bat.psnr
    for row, values in (("one image at a time", seq_ms), ("all test images batched", bat_ms)):
        values = np.asarray(values)
        rw.add("speed", row, "ms per image-iteration", float(values.mean()), seed=seed,
               std=float(values.std(ddof=1)) if repeats > 1 else None, n=repeats, note=f"{k} images, {iters} its")
        for r, v in enumerate(values):
            rw.add("speed", row, "ms per image-iteration", float(v), seed=seed, unit=f"rep{r}")
    rw.add("speed", "batched vs one at a time", "speed-up per image", float(np.mean(seq_ms) / np.mean(bat_ms)),
           seed=seed)
    rw.add("batched_check", "batched vs one at a time", "max |PSNR difference| (dB)",
           float(np.abs(seq_psnr - bat_psnr).max()), seed=seed)
    # Control for the equality check: the same curves paired with the wrong image must differ by dB.
    rw.add("batched_check", "batched vs one at a time (images shuffled)", "max |PSNR difference| (dB)",
           float(np.abs(seq_psnr - np.roll(bat_psnr, 1, axis=1)).max()), seed=seed)
    for ds, path in init_files.items():
        blob = torch.load(path, map_location="cpu", weights_only=False)
        for key, d in blob["inits"].items():
            if d["train_images"] == 0:  # a negative control: nothing was learned, no cost to report
                continue
            row = f"{label(ds)} {key}"
            rw.add("table5", row, "training time (s)", d["seconds"], seed=seed)
            rw.add("table5", row, "training images", d["train_images"], seed=seed)
            rw.add("table5", row, "gradient updates", d.get("steps", 0), seed=seed)
            rw.add("table5", row, "per-image gradient evaluations", d.get("grad_evals", 0), seed=seed)
            rw.add("table5", row, "training PSNR", d["train_psnr"], seed=seed)
        for key, d in blob.get("hypernets", {}).items():
            row = f"{label(ds)} {key}"
            rw.add("table5", row, "training time (s)", d["seconds"], seed=seed)
            rw.add("table5", row, "training images", d["train_images"], seed=seed)
            rw.add("table5", row, "gradient updates", d["steps"], seed=seed)
            rw.add("table5", row, "per-image gradient evaluations",
                   d["steps"] * min(d["meta"]["cfg"]["batch"], d["train_images"]), seed=seed)
            rw.add("table5", row, "training PSNR", d["train_psnr"], seed=seed)
    rw.extra["speed"] = {"device": str(device), "images": k, "iters": iters, "repeats": repeats,
                         "resolution": cfg.data.resolution, "width": cfg.model.width}
    return {"seq_psnr": seq_psnr.astype(np.float32), "batched_psnr": bat_psnr.astype(np.float32)}


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    save_npz(path, **arrays)


def read_arrays(path: str | Path) -> dict[str, np.ndarray]:
    return load_npz(path)


# ---- 3D (Fig. 12) --------------------------------------------------------------------------------------------

def shape3d(cfg: StrainerConfig, seed: int, source: np.ndarray, target: np.ndarray, device,
            rw: ResultWriter) -> dict[str, np.ndarray]:
    """Fig. 12: a STRAINER encoder trained on `source` occupancy grids [N, G, G, G] (shared encoder, one head per
    shape, train.iters at train.lr), transferred to `target` [G, G, G] with a fresh head and fitted for
    `shape3d.iters` iterations at fit.lr, against a SIREN from its standard initialisation and the random-encoder
    control. IoU of the output thresholded at the range's midpoint, at `shape3d.report_iters` and at the end."""
    from repro.strainer.shapes import grid_points, iou
    from repro.strainer.siren import SirenSpec, concat
    from repro.strainer.train import STREAM_CONTROL, train_strainer

    s3 = cfg.shape3d
    g = target.shape[-1]
    lo, hi = cfg.data.pixel_range
    coords = torch.from_numpy(grid_points(g).reshape(-1, 3)).float().to(device)
    to_targets = lambda occ: (lo + (hi - lo) * torch.from_numpy(  # noqa: E731
        np.asarray(occ, dtype=np.float32).reshape(len(occ), -1, 1))).to(device)
    train, clean = to_targets(source[:s3.shapes]), to_targets(target[None])
    spec = SirenSpec(3, cfg.model.width, 1, cfg.model.n_layers, cfg.model.omega0)
    k, n = cfg.model.shared_layers, train.shape[0]
    with rw.stage("train encoder"):
        enc = train_strainer(spec, train, coords, shared_layers=k, iters=cfg.train.iters, lr=cfg.train.lr, seed=seed,
                             desc=f"STRAINER-{n} on {n} shapes", value_range=(lo, hi))
    fresh = init_networks(spec, [network_seed(seed, STREAM_TEST, 0)], device=device)
    random_enc = split_layers(init_networks(spec, [network_seed(seed, STREAM_CONTROL)], device=device), k)[0]
    head = split_layers(fresh, k)[1]
    rows = ["SIREN", f"STRAINER-{n}", f"STRAINER-{n} (random encoder)"]
    stack = concat([fresh, [(w.to(device), b.to(device)) for w, b in enc.layers] + head, random_enc + head])
    report = sorted({t for t in s3.report_iters if t <= s3.iters} | {s3.iters})
    with rw.stage("fit"):
        res = fit_stack(stack, coords, clean.expand(3, -1, -1), clean.expand(3, -1, -1), omega0=spec.omega0,
                        iters=s3.iters, lr=cfg.fit.lr, snapshot_iters=report, desc=f"fit {s3.target}",
                        value_range=(lo, hi))
    truth = target.reshape(1, -1).astype(bool)
    mid = (lo + hi) / 2
    ious = np.stack([iou(res.snapshots[t][:, :, 0].cpu().numpy() > mid, truth) for t in report], axis=1)
    for i, row in enumerate(rows):
        for j, t in enumerate(report):
            rw.add("fig12", row, f"IoU@{t}", float(ious[i, j]), seed=seed)
    rw.add("fig12", rows[1], "encoder training time (s)", enc.seconds, seed=seed)
    rw.add("fig12", rows[1], "encoder training PSNR on the occupancy targets (dB)", enc.train_psnr, seed=seed)
    rw.extra["shape3d"] = {"grid": g, "occupied_fraction": float(truth.mean()), "train_shapes": n}
    half = g // 2  # the middle slice along z of each reported occupancy, for the figure
    slices = np.stack([(res.snapshots[t][:, :, 0].cpu().numpy() > mid).reshape(3, g, g, g)[..., half]
                       for t in report], axis=1)
    return {"iou": ious.astype(np.float32), "report_iters": np.array(report), "methods": np.array(rows),
            "psnr": res.psnr.astype(np.float32), "slices": slices.astype(np.uint8),
            "truth_slice": target[..., half].astype(np.uint8)}
