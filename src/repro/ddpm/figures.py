"""DDPM figures redrawn from our runs (they read only the arrays the compute rules saved).

- `sample_grid`: uncurated samples (paper Fig. 1 / 13 style);
- `variant_samples`: one row of samples per Table 2 configuration;
- `rate_distortion`: Fig. 5's three panels: distortion vs reverse steps, rate vs reverse steps, distortion vs rate;
- `progressive_generation`: Fig. 6: the predicted x̂0 along the reverse chain, one row per chain.
"""

from __future__ import annotations

import numpy as np

from repro.common.figures import new_figure, save_figure


def tile(images: np.ndarray, ncols: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> one uint8 mosaic [rows·(H+1)-1, ncols·(W+1)-1, C] with 1-pixel white gutters."""
    n, h, w, c = images.shape
    rows = -(-n // ncols)
    out = np.full((rows * (h + 1) - 1, ncols * (w + 1) - 1, c), 255, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, ncols)
        out[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = img
    return out


def _no_samples(ax, why: str) -> None:
    """The panel of a variant without samples (its training diverged): says so instead of an image."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=7, transform=ax.transAxes)


def sample_grid(images: np.ndarray, stem: str, *, n: int = 64, why_empty: str = "no samples") -> None:
    n = min(n, len(images))
    fig, ax = new_figure(width=4.0, height=4.0)
    ax = ax[0, 0]
    if n == 0:
        _no_samples(ax, why_empty)
    else:
        ax.imshow(tile(images[:n], int(np.ceil(np.sqrt(n)))), interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{n} uncurated samples")
    save_figure(fig, stem)


def variant_samples(images: list[np.ndarray], labels: list[str], stem: str, *, per_row: int = 10,
                    why_empty: list[str] | None = None) -> None:
    fig, axes = new_figure(nrows=len(images), width=6.0, height=0.75)
    for i, (ax, imgs, label) in enumerate(zip(axes[:, 0], images, labels)):
        if len(imgs):
            ax.imshow(tile(imgs[:per_row], per_row), interpolation="nearest")
            ax.set_axis_off()
        else:
            _no_samples(ax, why_empty[i] if why_empty else "no samples")
        ax.set_title(label, fontsize=7, loc="left")
    save_figure(fig, stem)


def rate_distortion(curves: list[dict], stem: str) -> None:
    """Each curve: the arrays `repro.ddpm.cli bound` saved (steps, rate, rmse, label)."""
    fig, axes = new_figure(ncols=3, width=2.6, height=2.3)
    a, b, c = axes[0]
    for cur in curves:
        label = str(cur["label"][0])
        steps = cur["steps"]
        a.plot(steps, cur["rmse"], label=label)
        b.plot(steps, cur["rate"], label=label)
        c.plot(cur["rate"], cur["rmse"], label=label)
    a.set(xlabel="Reverse process steps (T − t + 1)", ylabel="Distortion (RMSE [0, 255])")
    b.set(xlabel="Reverse process steps (T − t + 1)", ylabel="Rate (bits/dim)")
    c.set(xlabel="Rate (bits/dim)", ylabel="Distortion (RMSE [0, 255])")
    if len(curves) > 1:
        c.legend()
    save_figure(fig, stem)


def progressive_generation(samples: dict, stem: str) -> None:
    frames = samples["x0_frames"]                 # [chains, frames, H, W, C]
    if "status" in samples and str(samples["status"][0]) == "diverged":
        fig, axes = new_figure(width=4.0, height=1.0)
        _no_samples(axes[0, 0], f"L_simple model {samples['note'][0]}: no reverse chains")
        save_figure(fig, stem)
        return
    if frames.ndim != 5 or frames.shape[0] == 0:
        raise ValueError("the samples file holds no x̂0 frames (sample.progressive = 0 in config/ddpm.yaml)")
    chains, nf = frames.shape[:2]
    steps = samples["frame_steps"]
    fig, axes = new_figure(width=0.62 * nf + 0.4, height=0.62 * chains + 0.5)
    ax = axes[0, 0]
    ax.imshow(tile(frames.reshape(-1, *frames.shape[2:]), nf), interpolation="nearest")
    h = frames.shape[3] + 1
    ax.set_xticks([h * j + h / 2 - 1 for j in range(nf)], [str(int(s)) for s in steps], fontsize=6)
    ax.set_yticks([])
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel(f"reverse step T − t + 1 (T = {int(samples['num_steps'])}): predicted x̂0")
    save_figure(fig, stem)
