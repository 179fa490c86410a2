"""The steps a rule runs: train an expert, rank the graph-cut selection, build/distil/evaluate one run.

Each function takes the typed config and explicit paths, and writes its outputs atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from repro.common.errors import UserError
from repro.common.io import load_npz, save_npz, save_torch
from repro.common.results import ResultWriter
from repro.common.train import TrainSpec, train_classifier
from repro.autopalette.config import AutoPaletteConfig, RunConfig
from repro.autopalette.data import Preprocess, Split, balanced_subset, load_split
from repro.autopalette.distill import distill, store_palette_images
from repro.autopalette.evaluate import evaluate_set
from repro.autopalette.experts import make_net, train_expert
from repro.autopalette.palette import images_per_class, median_cut, storage_bits
from repro.autopalette.selection import rank_per_class

log = logging.getLogger("repro.autopalette")
DATA_SEED = 0   # the class-balanced training subset is the same for experts, selection and runs


def _train_data(cfg: AutoPaletteConfig, dataset: str, train_path, device) -> tuple[Split, np.ndarray, Preprocess]:
    train = load_split(train_path)
    sub = balanced_subset(train.labels, cfg.data.train_per_class, DATA_SEED)
    pre = Preprocess.for_dataset(dataset, train.images[sub], cfg.data.zca, cfg.data.zca_eps, device)
    return train, sub, pre


def _tensors(pre: Preprocess, images: np.ndarray, labels: np.ndarray, device):
    return pre.net_input(pre.to_net(images, device)), torch.from_numpy(labels).to(device)


# -- experts -------------------------------------------------------------------------------------------------------

def run_expert(cfg: AutoPaletteConfig, dataset: str, index: int, train_path, out: Path, device) -> dict:
    train, sub, pre = _train_data(cfg, dataset, train_path, device)
    x, y = _tensors(pre, train.images[sub], train.labels[sub], device)
    traj = train_expert(x, y, train.num_classes, cfg.net, cfg.experts, cfg.dsa, seed=10_000 + index)
    meta = {"dataset": dataset, "index": index, "seconds_per_epoch": traj.seconds_per_epoch,
            "epochs": cfg.experts.epochs, "num_params": int(traj.params.shape[1]), "train_images": int(len(sub))}
    save_torch(out, {"trajectory": traj.params, **meta})
    log.info("expert %d: %.2f s per epoch over %d images", index, traj.seconds_per_epoch, len(sub))
    return meta


def load_trajectories(paths: list[str], length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `length` snapshots of every expert, [n_experts, length, P] on `device`, and the *final* snapshot
    of the first expert's full trajectory (the official soft-label init, `buffer[0][-1]`)."""
    out = []
    final = None
    for p in paths:
        obj = torch.load(p, map_location="cpu", weights_only=True)
        traj = obj["trajectory"]
        if traj.shape[0] < length:
            raise UserError(f"{p}: expert trajectory has {traj.shape[0] - 1} epochs but distillation needs "
                            f"{length - 1}; delete it and re-run the expert rule with the current config")
        if final is None:
            final = traj[-1].clone()
        out.append(traj[:length])
    return torch.stack(out).to(device), final.to(device)


# -- selection ---------------------------------------------------------------------------------------------------

def run_selection(cfg: AutoPaletteConfig, dataset: str, n_colors: int, train_path, out: Path, device) -> None:
    """Rank `select_per_class` images per class by greedy graph cut; `n_colors` 256 = on 8-bit images."""
    sc = cfg.selection
    train, sub, pre = _train_data(cfg, dataset, train_path, device)
    pool = sub[balanced_subset(train.labels[sub], sc.pool_per_class, DATA_SEED + 1)]
    images = train.images[pool]
    if n_colors < 256:
        images = median_cut(images, n_colors)[1]
    x, y = _tensors(pre, images, train.labels[pool], device)
    torch.manual_seed(20_000 + n_colors)
    net = make_net(cfg.net, train.num_classes, tuple(x.shape[2:]), device)
    train_classifier(net, x, y, TrainSpec(sc.epochs, sc.lr, sc.batch_size, 0.9, 5e-4),
                     generator=torch.Generator().manual_seed(n_colors), desc=f"selection net ({n_colors} colours)")
    ranking = rank_per_class(net, x, y, pool, sc.select_per_class, sc.lam)
    save_npz(out, ranking=ranking, n_colors=np.int64(n_colors))


# -- one run: initial set -> (distillation) -> stored set -> evaluation -----------------------------------------

def stored_images_per_class(run: RunConfig) -> int:
    if run.images_per_class is not None:
        return run.images_per_class
    if run.method in ("real_quantized", "autopalette"):
        return images_per_class(run.ipc, run.n_colors)
    return run.ipc


def initial_indices(run: RunConfig, labels: np.ndarray, candidates: np.ndarray, count: int, seed: int,
                    selection: Path | None) -> np.ndarray:
    """Dataset indices of the initial images, class by class.

    Graph-cut inits select on (quantised) images but start the synthetic set from the selected *original* 8-bit
    images; AutoPalette's palette net then does the colour reduction (our reading of Algorithm 1).
    """
    if run.init == "random_real":
        rng = np.random.default_rng(seed)
        return np.concatenate([rng.choice(candidates[labels[candidates] == c], count, replace=False)
                               for c in np.unique(labels)])
    if selection is None:
        raise UserError(f"run '{run.name}': init '{run.init}' needs the selection ranking (--selection PATH)")
    ranking = load_npz(selection)["ranking"]
    if ranking.shape[1] < count:
        raise UserError(f"{selection}: ranks {ranking.shape[1]} images per class, run '{run.name}' needs {count}; "
                        f"raise selection.select_per_class in config/autopalette.yaml")
    return ranking[:, :count].reshape(-1)


def execute_run(cfg: AutoPaletteConfig, run: RunConfig, seed: int, scale: str, train_path, test_path,
                expert_paths: list[str], selection: Path | None, out_set: Path, out_csv: Path, device) -> None:
    with ResultWriter(paper="autopalette", part=f"{run.name}-s{seed}", scale=scale, out_csv=out_csv,
                      config={"run": run.name, "seed": seed, "block": _plain(cfg)}) as rw:
        with rw.stage("load"):
            train, sub, pre = _train_data(cfg, run.dataset, train_path, device)
            test = load_split(test_path)
            test_x, test_y = _tensors(pre, test.images, test.labels, device)
        count = stored_images_per_class(run)
        idx = initial_indices(run, train.labels, sub, count, seed, selection)
        init_u8, labels = train.images[idx], train.labels[idx]
        extra: dict = {"images_per_class": count, "n_colors": run.n_colors}
        arrays: dict = {"labels": labels, "init_indices": idx}
        lr, targets = cfg.evaluation.lr_real, None
        if run.method == "real":
            stored = init_u8
        elif run.method == "real_quantized":
            index, stored = median_cut(init_u8, run.n_colors)
            arrays["index"] = index
        else:
            dcfg = cfg.run_distill(run)
            trajs, final = load_trajectories(expert_paths, dcfg.max_start_epoch + dcfg.expert_epochs, device)
            net = make_net(cfg.net, train.num_classes, init_u8.shape[1:3], device)
            pal_cfg = cfg.run_palette(run) if run.method == "autopalette" else None
            with rw.stage("distill"):
                res = distill(pre.to_net(init_u8, device), torch.from_numpy(labels).to(device), trajs, net, pre,
                              dcfg, cfg.dsa, seed, palette=pal_cfg, n_colors=run.n_colors, label_params=final,
                              desc=f"distill {run.name}")
            if res.palette_net is not None:
                packed = store_palette_images(res.images, res.palette_net, pre)
                stored = packed.pop("images")
                arrays.update(packed)
            else:
                stored = pre.to_uint8(res.images)
            lr = res.syn_lr
            if res.label_logits is not None:
                targets = res.label_logits
                arrays["label_logits"] = res.label_logits.cpu().numpy()
            arrays["matching_loss"] = np.asarray(res.losses, np.float32)
            extra.update(seconds_per_distill_iteration=res.seconds_per_iteration, learned_lr=res.syn_lr,
                         distill_updates=res.updates,
                         matching_loss_first=res.losses[0], matching_loss_last=res.losses[-1])
            log.info("%s: %.3f s per distillation iteration, learned lr %.4g, matching loss %.4f -> %.4f",
                     run.name, res.seconds_per_iteration, res.syn_lr, res.losses[0], res.losses[-1])
        h, w = stored.shape[1:3]
        colours = [len(np.unique(im.reshape(-1, 3), axis=0)) for im in stored]
        extra.update(max_colours_per_image=int(max(colours)), mean_colours_per_image=float(np.mean(colours)),
                     storage_bits_per_class_paper=8 * run.ipc * 3 * h * w,
                     storage_bits_per_class_with_palettes=storage_bits(count, run.n_colors, h, w))
        save_npz(out_set, images=stored, lr=np.float64(lr), **arrays)
        with rw.stage("evaluate"):
            x, y = _tensors(pre, stored, labels, device)
            result = evaluate_set(x, targets if targets is not None else y, lr, test_x, test_y, train.num_classes,
                                  cfg.net, cfg.evaluation, cfg.dsa, seed)
        log.info("%s: accuracy %.2f +- %.2f over %d nets", run.name, result.mean, result.std, len(result.accuracies))
        extra["accuracies"] = list(result.accuracies)
        rw.extra.update(extra)
        for o in run.outputs:
            rw.add(table=o.table, row=o.row, column=o.column, value=result.mean, seed=seed, std=result.std,
                   n=len(result.accuracies))


def _plain(obj):
    """Dataclasses -> plain dicts for the provenance record."""
    from dataclasses import fields, is_dataclass
    if is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
