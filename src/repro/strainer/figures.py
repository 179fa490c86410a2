"""The paper's figures redrawn from our runs (they read only the experiments' .npz arrays).

  curves_id        Fig. 2: PSNR vs iteration per method, in-domain, one panel per dataset (mean +- std band)
  curves_ood       out-of-domain fits (Table 2's setting) as PSNR curves
  reconstructions  Fig. 1(c)-style: ground truth and every method's output, early and at the end of the fit
  ablation         Fig. 7 (number of shared layers) and the number of training images
  inverse          Fig. 10 / Table 6: super-resolution and denoising curves and reconstructions
  shape3d          Fig. 12: IoU of the occupancy fits of the Thai statue and middle slices (paper scale)
"""

from __future__ import annotations

import numpy as np

from repro.common.errors import UserError
from repro.common.figures import new_figure, save_figure
from repro.common.io import load_npz
from repro.strainer.config import StrainerConfig, label

# Colours of the paper's Fig. 2 legend (sheet section 3.2): SIREN blue, fine-tuned red, meta black,
# STRAINER-1 dark red, STRAINER-10 green.
COLOURS = {"SIREN": "tab:blue", "SIREN fine-tuned": "tab:red", "Meta-learned 5K": "black",
           "STRAINER (1 decoder)": "darkred"}


def _colour(name: str, fallback_index: int) -> str:
    if name in COLOURS:
        return COLOURS[name]
    if name.startswith("STRAINER") and "Gray" in name:
        return "tab:gray"
    if name.startswith("STRAINER-") and name[9:].isdigit() and int(name[9:]) >= 10:
        return "tab:green"
    return f"C{(fallback_index + 2) % 10}"


def _curves(ax, psnr: np.ndarray, names, title: str) -> None:
    """psnr [methods, iters + 1, images]: mean line and a +-1 std band per method."""
    it = np.arange(psnr.shape[1])
    for i, name in enumerate(names):
        mean, std = psnr[i].mean(axis=1), psnr[i].std(axis=1)
        c = _colour(str(name), i)
        # negative controls: thin gray, dotted (random encoder) or dash-dotted (untrained MAML start)
        control = str(name).endswith(("(random encoder)", "(untrained)"))
        style = ":" if str(name).endswith("(random encoder)") else "-." if control else "-"
        ax.plot(it, mean, color="0.45" if control else c, lw=0.9 if control else 1.2, ls=style, label=str(name))
        if not control:
            ax.fill_between(it, mean - std, mean + std, color=c, alpha=0.15, lw=0)
    ax.set_xlabel("iterations")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)


def _hyper_curves(ax, psnr: np.ndarray, names) -> None:
    """TransINR (purple) and IPC (orange) as in the paper's Fig. 2: solid flat line without TTO, dashed with."""
    it = np.arange(psnr.shape[1])
    for i, name in enumerate(str(n) for n in names):
        colour = "tab:purple" if name.startswith("TransINR") else "tab:orange"
        ax.plot(it, psnr[i].mean(axis=1), color=colour, lw=1.2, ls="--" if "w/ TTO" in name else "-", label=name)


def curves_id(arrays: dict[str, dict], stem: str) -> None:
    fig, axes = new_figure(ncols=len(arrays), width=3.4, height=2.8)
    for ax, (dataset, a) in zip(axes[0], arrays.items()):
        _curves(ax, a["psnr"], a["methods"], f"{label(dataset)}, in-domain ({a['psnr'].shape[2]} test images)")
        if "hyper_psnr" in a:
            _hyper_curves(ax, a["hyper_psnr"], a["hyper_methods"])
    axes[0][0].legend(loc="lower right")
    save_figure(fig, stem)


def curves_ood(a: dict, source: str, stem: str) -> None:
    datasets = [str(d) for d in a["datasets"]]
    fig, axes = new_figure(ncols=len(datasets), width=3.4, height=2.8)
    for ax, d in zip(axes[0], datasets):
        _curves(ax, a[f"{d}_psnr"], a[f"{d}_methods"], f"trained on {label(source)}, fitted to {label(d)}")
    axes[0][0].legend(loc="lower right")
    save_figure(fig, stem)


def _show(ax, img: np.ndarray, title: str) -> None:
    img = np.asarray(img, dtype=np.float32)
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=6)
    ax.set_axis_off()


def reconstructions(a: dict, dataset: str, stem: str) -> None:
    """Rows: test images x (early snapshot, final); columns: ground truth then each method, PSNR in the titles."""
    names = [str(m) for m in a["methods"]]
    snaps = sorted(int(k[4:]) for k in a if k.startswith("snap"))
    stages = [(f"it {t}", a[f"snap{t}"], t) for t in snaps] + [("final", a["final"], a["psnr"].shape[1] - 1)]
    n_img = a["gt"].shape[0]
    fig, axes = new_figure(ncols=len(names) + 1, nrows=n_img * len(stages), width=1.15, height=1.25)
    for j in range(n_img):
        for s, (stage, out, t) in enumerate(stages):
            r = j * len(stages) + s
            _show(axes[r][0], a["gt"][j], f"ground truth ({stage})")
            for i, name in enumerate(names):
                _show(axes[r][i + 1], out[i, j], f"{name}\n{stage}: {a['psnr'][i, t, j]:.1f} dB")
    fig.suptitle(f"{label(dataset)} test images", fontsize=8)
    save_figure(fig, stem)


def ablation(a: dict, stem: str) -> None:
    inits = [str(x) for x in a["inits"]]
    fig, axes = new_figure(ncols=2, width=3.4, height=2.8)
    for ax, (lab_key, init_key, title) in zip(axes[0], (("shared_labels", "shared_inits", "shared encoder layers"),
                                                      ("count_labels", "count_inits", "training images"))):
        idx = [inits.index("None")] + [inits.index(str(k)) for k in a[init_key]]
        names = ["SIREN"] + [str(x) for x in a[lab_key]]
        _curves(ax, a["psnr"][idx], names, f"ablation: {title}")
        ax.legend(loc="lower right")
    save_figure(fig, stem)


def inverse(a: dict, stem: str) -> None:
    tasks, names = [str(t) for t in a["tasks"]], [str(m) for m in a["methods"]]
    fig, axes = new_figure(ncols=2 + len(names), nrows=len(tasks), width=2.4, height=2.4)
    for r, task in enumerate(tasks):
        psnr = a[f"t{r}_psnr"]
        _curves(axes[r][0], psnr, names, task)
        axes[r][0].legend(loc="lower right")
        _show(axes[r][1], a[f"t{r}_observed"][0], f"observed ({task})")
        for i, name in enumerate(names):
            _show(axes[r][2 + i], a[f"t{r}_final"][i, 0], f"{name}: {psnr[i, -1, 0]:.1f} dB (final)")
    save_figure(fig, stem)


def shape3d(a: dict, stem: str) -> None:
    """Fig. 12: IoU against iterations per method (left), then the middle z-slice of the ground truth and of each
    method's occupancy at every reported iteration."""
    names, iters = [str(m) for m in a["methods"]], [int(t) for t in a["report_iters"]]
    fig, axes = new_figure(ncols=1 + len(iters), nrows=len(names), width=1.4, height=1.4)
    for i, name in enumerate(names):
        ax = axes[i][0]
        if i == 0:
            for k, n in enumerate(names):
                ax.plot(iters, a["iou"][k], marker="o", ms=2, color=_colour(n, k), label=n)
            ax.set_xlabel("iterations")
            ax.set_ylabel("IoU")
            ax.legend(fontsize=5)
        else:
            _show(ax, a["truth_slice"][..., None].astype(np.float32), "ground truth (middle slice)")
        for j, t in enumerate(iters):
            _show(axes[i][1 + j], a["slices"][i, j][..., None].astype(np.float32),
                  f"{name}\nit {t}: IoU {a['iou'][i, j]:.3f}")
    save_figure(fig, stem)


def draw_all(cfg: StrainerConfig, arrays: dict[str, str], outs: dict[str, str]) -> None:
    """`arrays`: experiment name -> .npz (in_domain_<dataset>, ood, ablation, inverse); `outs`: figure -> stem."""
    def need(key: str) -> dict:
        if key not in arrays:
            raise UserError(f"strainer figures: no --arrays {key}=PATH given")
        return load_npz(arrays[key])

    known = {"curves_id", "curves_ood", "reconstructions", "ablation", "inverse", "shape3d"}
    unknown = set(outs) - known
    if unknown:
        raise UserError(f"strainer figures: unknown figure(s) {sorted(unknown)}; known: {sorted(known)}")
    if "curves_id" in outs:
        curves_id({d: need(f"in_domain_{d}") for d in cfg.data.datasets}, outs["curves_id"])
    if "curves_ood" in outs:
        curves_ood(need("ood"), cfg.data.source, outs["curves_ood"])
    if "reconstructions" in outs:
        reconstructions(need(f"in_domain_{cfg.data.source}"), cfg.data.source, outs["reconstructions"])
    if "ablation" in outs:
        ablation(need("ablation"), outs["ablation"])
    if "inverse" in outs:
        inverse(need("inverse"), outs["inverse"])
    if "shape3d" in outs:
        shape3d(need("shape3d"), outs["shape3d"])
