"""The steps a rule runs: train an expert, rank the graph-cut selection, build/distil/evaluate one run.

Each function takes the typed config and explicit paths, and writes its outputs atomically.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch

from repro.common.errors import UserError
from repro.common.io import load_npz, save_npz, save_torch
from repro.common.results import ResultWriter
from repro.common.train import TrainSpec, train_classifier
from repro.autopalette.config import AutoPaletteConfig, RunConfig
from repro.autopalette.data import Preprocess, Split, balanced_subset, load_split
from repro.autopalette.distill import _palette_aux_losses, distill, initial_label_logits, store_palette_images
from repro.autopalette.dm import distill_dm
from repro.autopalette.evaluate import evaluate_set
from repro.autopalette.experts import make_net, train_expert
from repro.autopalette.palette import images_per_class, median_cut, storage_bits
from repro.autopalette.selection import select_per_class

log = logging.getLogger("repro.autopalette")
DATA_SEED = 0   # the class-balanced training subset is the same for experts, selection and runs


def _train_data(cfg: AutoPaletteConfig, dataset: str, train_path, device, zca: bool | None = None
                ) -> tuple[Split, np.ndarray, Preprocess]:
    train = load_split(train_path)
    sub = balanced_subset(train.labels, cfg.data.train_per_class, DATA_SEED)
    zca = cfg.data.zca_for(dataset) if zca is None else zca
    pre = Preprocess.for_dataset(dataset, train.images[sub], zca, cfg.data.zca_eps, device)
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
    of every expert's full trajectory, [n_experts, P] (the official soft-label init uses the first: `buffer[0][-1]`;
    DATM's predicted-correctly init uses all)."""
    out, finals = [], []
    for p in paths:
        obj = torch.load(p, map_location="cpu", weights_only=True)
        traj = obj["trajectory"]
        if traj.shape[0] < length:
            raise UserError(f"{p}: expert trajectory has {traj.shape[0] - 1} epochs but distillation needs "
                            f"{length - 1}; delete it and re-run the expert rule with the current config")
        finals.append(traj[-1].clone())
        out.append(traj[:length])
    return torch.stack(out).to(device), torch.stack(finals).to(device)


# -- selection ---------------------------------------------------------------------------------------------------

def selection_colours(run: RunConfig) -> int | None:
    """The colours of the Median-Cut images a run's graph-cut init selects on (256: 8-bit); None: no selection."""
    if run.init not in ("graphcut_real", "graphcut_quantized"):
        return None
    return run.n_colors if run.init == "graphcut_quantized" else 256


def selection_budgets(cfg: AutoPaletteConfig, dataset: str, n_colors: int) -> list[int]:
    """Images per class of every run that initialises from the (dataset, n_colors) selection."""
    return sorted({stored_images_per_class(r) for r in cfg.runs.values()
                   if r.dataset == dataset and selection_colours(r) == n_colors})


def run_selection(cfg: AutoPaletteConfig, dataset: str, n_colors: int, train_path, out: Path, device) -> None:
    """Graph-cut selections per class for every budget the runs need; `n_colors` 256 = on 8-bit images."""
    sc = cfg.selection
    budgets = selection_budgets(cfg, dataset, n_colors)
    if not budgets:
        raise UserError(f"no run of config/autopalette.yaml initialises from the {dataset} selection at {n_colors} "
                        f"colours; nothing to select")
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
    picks = select_per_class(net, x, y, pool, budgets, sc.lam, sc.greedy, sc.epsilon, seed=n_colors)
    save_npz(out, budgets=np.asarray(budgets, np.int64), n_colors=np.int64(n_colors),
             **{f"selection_{b}": v for b, v in picks.items()})


# -- one run: initial set -> (distillation) -> stored set -> evaluation -----------------------------------------

def stored_images_per_class(run: RunConfig) -> int:
    if run.images_per_class is not None:
        return run.images_per_class
    if run.method in ("real_quantized", "autopalette", "dm_autopalette") or (run.quantizer is not None
                                                                            and run.n_colors < 256):
        return images_per_class(run.ipc, run.n_colors)
    return run.ipc


def storage_account(run: RunConfig, count: int, num_classes: int, h: int, w: int, soft_labels: bool,
                    palette_entry_bits: int) -> dict[str, int]:
    """Bits per class of a stored set, by part, beside the budget (AutoPalette section 3.6: 8 x IPC x C x H x W).

    images: a ceil(log2 K)-bit index per pixel for K < 256 colours, else 24 bits per pixel; palettes: K entries of 3
    channels at `palette_entry_bits` (8 for uint8 palettes, 32 for float32 ones); labels: C float32 logits per image
    for soft labels, ceil(log2 C) bits for hard ones. The paper counts only the images.
    """
    quantised = run.n_colors < 256 and run.method in ("real_quantized", "autopalette", "dm_autopalette") or (
        run.quantizer is not None and run.n_colors < 256)
    images = storage_bits(count, run.n_colors if quantised else 256, h, w, include_palette=False)
    palettes = count * run.n_colors * 3 * palette_entry_bits if quantised else 0
    labels = count * (num_classes * 32 if soft_labels else math.ceil(math.log2(num_classes)))
    return {"budget": 8 * run.ipc * 3 * h * w, "images": images, "palettes": palettes, "labels": labels}


def initial_indices(run: RunConfig, labels: np.ndarray, candidates: np.ndarray, count: int, seed: int,
                    selection: Path | None) -> np.ndarray:
    """Dataset indices of the initial images, class by class.

    Graph-cut inits select on (quantised) images but start the synthetic set from the selected *original* 8-bit
    images; AutoPalette's palette net then does the colour reduction (our reading of Algorithm 1).
    """
    if run.init in ("random_real", "predicted_correctly"):
        rng = np.random.default_rng(seed)
        return np.concatenate([rng.choice(candidates[labels[candidates] == c], count, replace=False)
                               for c in np.unique(labels)])
    if selection is None:
        raise UserError(f"run '{run.name}': init '{run.init}' needs the selection ranking (--selection PATH)")
    stored = load_npz(selection)
    if f"selection_{count}" not in stored:
        raise UserError(f"{selection}: has selections of {stored['budgets'].tolist()} images per class, run "
                        f"'{run.name}' needs {count}; delete it and re-run the autopalette_select rule")
    ranking = stored[f"selection_{count}"]
    return ranking[:, :count].reshape(-1)


@torch.no_grad()
def predicted_correctly(net, finals: torch.Tensor, x: torch.Tensor, y: torch.Tensor, candidates: np.ndarray,
                        count: int, seed: int, batch: int = 512) -> tuple[np.ndarray, torch.Tensor]:
    """DATM's init (`pix_init samples_predicted_correctly`): per class, `count` random candidates that the first
    expert's final network classifies correctly, and as soft-label init for each the mean of the logits of those
    experts' final networks that classify it correctly (the official average over correct experts).

    `x`, `y`: network inputs and labels of `candidates` (dataset indices)."""
    logits0 = torch.cat([net.forward_flat(finals[0], x[i:i + batch]) for i in range(0, len(x), batch)])
    ok = (logits0.argmax(1) == y).cpu().numpy()
    rng = np.random.default_rng(seed)
    rows = []
    for c in torch.unique(y).tolist():
        pos = rng.permutation(np.flatnonzero((y.cpu().numpy() == c) & ok))
        if len(pos) < count:
            raise UserError(f"predicted_correctly init: the first expert classifies {len(pos)} images of class {c} "
                            f"correctly, {count} are needed; train the experts longer or use another init")
        rows.append(pos[:count])
    pos = np.concatenate(rows)
    xs, ys = x[pos], y[pos]
    total = torch.zeros(len(pos), logits0.shape[1], device=x.device)
    hits = torch.zeros(len(pos), 1, device=x.device)
    for f in finals:
        lg = net.forward_flat(f, xs)
        right = (lg.argmax(1) == ys).unsqueeze(1).to(lg.dtype)
        total += lg * right
        hits += right
    return candidates[pos], total / hits          # hits >= 1: the first expert is right on every chosen image


def _stored_form(run: RunConfig, state, pre: Preprocess, device) -> tuple[torch.Tensor, dict]:
    """What is stored of a distilled state and what evaluation trains on: palette images (hard assignment) for
    AutoPalette, classically quantised images for runs with a quantizer, else the float images."""
    if state.palette_net is not None:
        packed = store_palette_images(state.images, state.palette_net, pre)
        packed.pop("images")                        # the 8-bit rendering is remade from the floats by the caller
        return torch.from_numpy(packed.pop("net_images")).to(device), packed
    if run.quantizer is not None:                   # a classical quantiser on the distilled images (Table 8)
        index, quantised = median_cut(pre.to_uint8(state.images), run.n_colors, run.quantizer)
        return pre.to_net(quantised, device), {"index": index}
    return state.images, {}


def shifted(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The negative control's labels: class c -> c + 1 (mod C); soft-label logits rolled by one class likewise."""
    if targets.dtype in (torch.int64, torch.int32):
        return (targets + 1) % num_classes
    return torch.roll(targets, shifts=1, dims=1)


def execute_run(cfg: AutoPaletteConfig, run: RunConfig, seed: int, scale: str, train_path, test_path,
                expert_paths: list[str], selection: Path | None, out_set: Path, out_csv: Path, device) -> None:
    with ResultWriter(paper="autopalette", part=f"{run.name}-s{seed}", scale=scale, out_csv=out_csv,
                      config={"run": run.name, "seed": seed, "block": _plain(cfg)}) as rw:
        with rw.stage("load"):
            train, sub, pre = _train_data(cfg, run.dataset, train_path, device, zca=run.zca)
            test = load_split(test_path)
            if cfg.data.test_per_class is not None:     # smoke; the paper tests on the whole split (no copy)
                test = test.take(balanced_subset(test.labels, cfg.data.test_per_class, DATA_SEED))
            test_x, test_y = _tensors(pre, test.images, test.labels, device)
        count = stored_images_per_class(run)
        net = make_net(cfg.net, train.num_classes, train.images.shape[1:3], device)
        distilled = run.method in ("mtt", "datm", "autopalette")
        label_init = None
        dcfg = cfg.run_distill(run)
        if distilled:
            trajs, finals = load_trajectories(expert_paths, dcfg.max_start_epoch + dcfg.expert_epochs, device)
        elif run.method == "dm_autopalette":
            _, finals = load_trajectories(expert_paths, 1, device)     # only the final snapshots (label init)
        if run.init == "predicted_correctly":
            if not distilled:
                raise UserError(f"run '{run.name}': init predicted_correctly needs experts (a mtt/datm/autopalette "
                                f"run)")
            cx, cy = _tensors(pre, train.images[sub], train.labels[sub], device)
            idx, label_init = predicted_correctly(net, finals, cx, cy, sub, count, seed)
        else:
            idx = initial_indices(run, train.labels, sub, count, seed, selection)
        init_u8, labels = train.images[idx], train.labels[idx]
        extra: dict = {"images_per_class": count, "n_colors": run.n_colors, "test_images": len(test)}
        arrays: dict = {"labels": labels, "init_indices": idx}
        lr, targets = cfg.evaluation.lr_real, None
        palette_entry_bits = 8
        if run.method == "real":
            net_images = pre.to_net(init_u8, device)
        elif run.method == "real_quantized":
            index, quantised = median_cut(init_u8, run.n_colors, run.quantizer or "median_cut")
            arrays["index"] = index
            net_images = pre.to_net(quantised, device)
        elif run.method in ("dm", "dm_autopalette"):
            net_images, lr, targets, palette_entry_bits = _run_dm(cfg, run, train, sub, pre, net, init_u8, labels,
                                                                  finals if run.method == "dm_autopalette" else None,
                                                                  dcfg.lr_teacher, seed, rw, arrays, extra, device)
        else:
            pal_cfg = cfg.run_palette(run) if run.method == "autopalette" else None
            official: list[tuple[int, float, float]] = []      # (iteration, mean, std) at each checkpoint

            def checkpoint(it: int, state) -> None:
                r = evaluate_set(_stored_form(run, state, pre, device)[0], state.label_logits
                                 if state.label_logits is not None else torch.from_numpy(labels).to(device),
                                 state.syn_lr, test_x, test_y, train.num_classes, cfg.net, cfg.evaluation, cfg.dsa,
                                 seed)
                official.append((it, r.mean, r.std))
                log.info("%s: official-protocol evaluation at iteration %d: %.2f +- %.2f", run.name, it, r.mean,
                         r.std)

            every = cfg.evaluation.official_protocol_every
            with rw.stage("distill"):
                res = distill(pre.to_net(init_u8, device), torch.from_numpy(labels).to(device), trajs, net, pre,
                              dcfg, cfg.dsa, seed, palette=pal_cfg, n_colors=run.n_colors,
                              label_params=finals[0], label_init=label_init, checkpoint_every=every,
                              on_checkpoint=checkpoint if every else None, desc=f"distill {run.name}")
            net_images, packed = _stored_form(run, res, pre, device)
            arrays.update(packed)
            if res.palette_net is not None:
                palette_entry_bits = 32
            if official:
                best = max(official, key=lambda t: t[1])
                extra["official_protocol"] = {"evaluations": official, "best_iteration": best[0]}
                for o in run.outputs:
                    if o.table == "table1":
                        rw.add(table="table1_official", row=o.row, column=o.column, value=best[1], seed=seed,
                               std=best[2], n=cfg.evaluation.num_nets,
                               note=f"best of {len(official)} test-set evaluations (official protocol)")
            lr = res.syn_lr
            if res.label_logits is not None:
                targets = res.label_logits
                arrays["label_logits"] = res.label_logits.cpu().numpy()
            arrays["matching_loss"] = np.asarray(res.losses, np.float32)
            extra.update(seconds_per_distill_iteration=res.seconds_per_iteration, learned_lr=res.syn_lr,
                         distill_updates=res.updates,
                         matching_loss_first=res.losses[0], matching_loss_last=res.losses[-1])
            log.info("%s: %.3f s per distillation iteration, learned lr %.4g, matching loss %.4f -> %.4f, "
                     "%d of %d iterations updated", run.name, res.seconds_per_iteration, res.syn_lr, res.losses[0],
                     res.losses[-1], res.updates, len(res.losses))
        stored = pre.to_uint8(net_images)
        h, w = stored.shape[1:3]
        colours = [len(np.unique(im.reshape(3, -1).T, axis=0)) for im in net_images.cpu().numpy()]
        extra.update(max_colours_per_image=int(max(colours)), mean_colours_per_image=float(np.mean(colours)))
        storage = storage_account(run, count, train.num_classes, h, w, targets is not None, palette_entry_bits)
        extra["storage_bits_per_class"] = storage
        y = torch.from_numpy(labels).to(device)
        train_targets = targets if targets is not None else y
        with rw.stage("evaluate"):
            result = evaluate_set(net_images, train_targets, lr, test_x, test_y, train.num_classes, cfg.net,
                                  cfg.evaluation, cfg.dsa, seed)
        log.info("%s: accuracy %.2f +- %.2f over %d nets", run.name, result.mean, result.std, len(result.accuracies))
        extra["accuracies"] = list(result.accuracies)
        for o in run.outputs:
            rw.add(table=o.table, row=o.row, column=o.column, value=result.mean, seed=seed, std=result.std,
                   n=len(result.accuracies))
            for part, bits in storage.items():
                rw.add(table="storage", row=o.row, column=f"{o.table} {o.column}: {part} bits per class",
                       value=float(bits), seed=seed)
        for v in run.quantized_variants:
            _, quantised = median_cut(stored, v.n_colors, v.quantizer)
            with rw.stage(f"evaluate_{v.quantizer}_k{v.n_colors}"):
                res_v = evaluate_set(pre.to_net(quantised, device), train_targets, lr, test_x, test_y,
                                     train.num_classes, cfg.net, cfg.evaluation, cfg.dsa, seed)
            log.info("%s after %s at %d colours: accuracy %.2f +- %.2f", run.name, v.quantizer, v.n_colors,
                     res_v.mean, res_v.std)
            extra[f"accuracies_{v.quantizer}_k{v.n_colors}"] = list(res_v.accuracies)
            for o in v.outputs:
                rw.add(table=o.table, row=o.row, column=o.column, value=res_v.mean, seed=seed, std=res_v.std,
                       n=len(res_v.accuracies))
            if v.shifted_label_outputs:
                ctl_v = evaluate_set(pre.to_net(quantised, device), shifted(train_targets, train.num_classes), lr,
                                     test_x, test_y, train.num_classes, cfg.net, cfg.evaluation, cfg.dsa, seed)
                for o in v.shifted_label_outputs:
                    rw.add(table=o.table, row=o.row, column=o.column, value=ctl_v.mean, seed=seed, std=ctl_v.std,
                           n=len(ctl_v.accuracies))
        for arch in dict.fromkeys(o.arch for o in run.cross_arch_outputs):     # Table 6: other architectures
            with rw.stage(f"evaluate_{arch}"):
                res_a = evaluate_set(net_images, train_targets, lr, test_x, test_y, train.num_classes, cfg.net,
                                     cfg.evaluation, cfg.dsa, seed, arch=arch)
            log.info("%s on %s: accuracy %.2f +- %.2f", run.name, arch, res_a.mean, res_a.std)
            extra[f"accuracies_{arch}"] = list(res_a.accuracies)
            res_c = None
            if any(o.arch == arch and o.shifted for o in run.cross_arch_outputs):
                with rw.stage(f"evaluate_{arch}_control"):
                    res_c = evaluate_set(net_images, shifted(train_targets, train.num_classes), lr, test_x, test_y,
                                         train.num_classes, cfg.net, cfg.evaluation, cfg.dsa, seed, arch=arch)
                extra[f"control_accuracies_{arch}"] = list(res_c.accuracies)
            for o in run.cross_arch_outputs:
                if o.arch == arch:
                    r = res_c if o.shifted else res_a
                    rw.add(table=o.table, row=o.row, column=o.column, value=r.mean, seed=seed, std=r.std,
                           n=len(r.accuracies), note=f"evaluated on {arch}")
        if run.shifted_label_outputs:
            with rw.stage("evaluate_control"):
                control = evaluate_set(net_images, shifted(train_targets, train.num_classes), lr, test_x, test_y,
                                       train.num_classes, cfg.net, cfg.evaluation, cfg.dsa, seed)
            log.info("%s, labels shifted by one class (control): accuracy %.2f +- %.2f", run.name, control.mean,
                     control.std)
            extra["control_accuracies"] = list(control.accuracies)
            for o in run.shifted_label_outputs:
                rw.add(table=o.table, row=o.row, column=o.column, value=control.mean, seed=seed, std=control.std,
                       n=len(control.accuracies))
        # the set is written with the metric part, once every evaluation is done: a job killed while evaluating leaves
        # no output behind (tests/test_faults.py kills one there)
        save_npz(out_set, images=stored, net_images=net_images.cpu().numpy().astype(np.float32), lr=np.float64(lr),
                 **arrays)
        rw.extra.update(extra)


def _run_dm(cfg: AutoPaletteConfig, run: RunConfig, train: Split, sub: np.ndarray, pre: Preprocess, net, init_u8,
            labels: np.ndarray, finals, lr_teacher: float, seed: int, rw, arrays: dict, extra: dict, device):
    """DM or DM + AutoPalette (see repro.autopalette.dm): returns (images evaluation trains on, evaluation lr, soft
    targets or None, palette entry bits). DM: hard labels at `dm.lr_net`; DM + AutoPalette: the stored palette images
    with the final expert's logits on the initial images as labels, at the teacher lr (dm_quant.py)."""
    import dataclasses

    dmc = cfg.run_dm(run)
    real_x, real_y = _tensors(pre, train.images[sub], train.labels[sub], device)
    im_size = tuple(init_u8.shape[1:3])
    pal_cfg = cfg.run_palette(run) if run.method == "dm_autopalette" else None
    aux = None
    if pal_cfg is not None:
        aux_cfg = dataclasses.replace(pal_cfg, loss_images=dmc.palette_images)

        def aux(pal, images, rng, gen):
            return _palette_aux_losses(pal, images, pre, aux_cfg, run.n_colors, rng, gen)
    init = pre.to_net(init_u8, device)
    with rw.stage("distill"):
        res = distill_dm(init, torch.from_numpy(labels).to(device), real_x, real_y,
                         lambda: make_net(cfg.net, train.num_classes, im_size, device), pre, dmc,
                         cfg.dsa if cfg.distill.dsa else None, seed, palette=pal_cfg, n_colors=run.n_colors,
                         palette_aux=aux, desc=f"DM {run.name}")
    del real_x, real_y
    arrays["dm_loss"] = np.asarray(res.losses, np.float32)
    extra.update(seconds_per_distill_iteration=res.seconds_per_iteration, dm_loss_first=res.losses[0],
                 dm_loss_last=res.losses[-1])
    log.info("%s: %.3f s per DM iteration, loss %.4f -> %.4f", run.name, res.seconds_per_iteration, res.losses[0],
             res.losses[-1])
    if res.palette_net is None:
        return res.images, dmc.lr_net, None, 8
    packed = store_palette_images(res.images, res.palette_net, pre)
    packed.pop("images")
    net_images = torch.from_numpy(packed.pop("net_images")).to(device)
    arrays.update(packed)
    logits = initial_label_logits(net, finals[0], pre.net_input(init))
    arrays["label_logits"] = logits.cpu().numpy()
    return net_images, lr_teacher, logits, 32


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
