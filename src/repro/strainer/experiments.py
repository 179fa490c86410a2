"""The paper's experiments: which initialisations are learned, which methods fit which test images, and what is
recorded (metrics rows for the tables, curves and reconstructions for the figures).

Methods (rows of the paper's Fig. 2 and Tables 1-2, sheet sections 3.1, 5):
  SIREN                 every weight freshly initialised
  SIREN fine-tuned      every weight from a SIREN fitted to one training image
  Meta-learned 5K       every weight from a MAML initialisation, adapted to each image by its inner loop first
  STRAINER (1 decoder)  encoder trained on 1 image, fresh head
  STRAINER-10           encoder trained on 10 images jointly, fresh head
  STRAINER-10 (Gray)    the same, trained on grayscale images (Table 2)
Negative controls (claims' `control:` evidence, issue 14; rows the claims must NOT confirm):
  STRAINER-10 (random encoder)   STRAINER-10's architecture with the encoder re-initialised at random (a fresh
                                 SIREN encoder from a seed of its own): what is left when nothing was learned
  Meta-learned 5K (untrained)    the MAML starting point (random SIREN) with the same per-image inner-loop steps
A fresh head for test image j is the head of the fresh SIREN for image j (same seed), so STRAINER and SIREN differ
only in the encoder. All methods and all test images form one stack of networks fitted in one batched computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from repro.common.errors import UserError
from repro.strainer.config import StrainerConfig, label  # noqa: F401 (label re-exported)
from repro.strainer.data import ImageSet, split_indices
from repro.strainer.fit import FitResult, fit_in_chunks
from repro.strainer.siren import Layer, SirenSpec, concat, init_networks, network_seed, repeat_stack, select
from repro.strainer.train import (STREAM_CONTROL, STREAM_META, STREAM_TEST, Init, adapt, fit_source_siren,
                                  meta_learn, split_layers, train_strainer)

@dataclass(frozen=True)
class Method:
    """A row: its label and the initialisation it starts from (None: fresh SIREN)."""

    label: str
    init: str | None


def strainer_key(n_images: int, shared: int, cfg: StrainerConfig, gray: bool = False) -> str:
    key = f"strainer{n_images}"
    if shared != cfg.model.shared_layers:
        key += f"_shared{shared}"
    return key + ("_gray" if gray else "")


def in_domain_methods(cfg: StrainerConfig, controls: bool = False) -> list[Method]:
    """The paper's Fig. 2 / Table 1 rows (STRAINER-N last), then, with `controls`, the negative controls."""
    n = cfg.train.images
    rows = [Method("SIREN", None), Method("SIREN fine-tuned", "siren_source"), Method("Meta-learned 5K", "meta"),
            Method("STRAINER (1 decoder)", strainer_key(1, cfg.model.shared_layers, cfg)),
            Method(f"STRAINER-{n}", strainer_key(n, cfg.model.shared_layers, cfg))]
    return rows + (control_methods(cfg, 3) if controls else [])


def control_methods(cfg: StrainerConfig, channels: int) -> list[Method]:
    n = cfg.train.images
    return [Method(f"STRAINER-{n} (random encoder)", "random_encoder"),
            Method("Meta-learned 5K (untrained)", "meta_untrained_gray" if channels == 1 else "meta_untrained")]


def ood_methods(cfg: StrainerConfig, channels: int) -> list[Method]:
    n, k = cfg.train.images, cfg.model.shared_layers
    # A 1-channel target needs a 1-channel meta-learned network: the MAML init learned on grayscale images.
    return [Method("SIREN", None), Method("Meta-learned 5K", "meta_gray" if channels == 1 else "meta"),
            Method(f"STRAINER-{n}", strainer_key(n, k, cfg)),
            Method(f"STRAINER-{n} (Gray)", strainer_key(n, k, cfg, gray=True))] + control_methods(cfg, channels)


def ablation_methods(cfg: StrainerConfig) -> tuple[list[Method], list[Method]]:
    """(shared-layer sweep at N images, training-image sweep at the default split) — the paper's Fig. 7 and the
    STRAINER-1 / STRAINER-10 comparison extended with the configured image counts."""
    n, k = cfg.train.images, cfg.model.shared_layers
    shared = [Method(f"{s} shared layers", strainer_key(n, s, cfg)) for s in sorted({*cfg.ablation.shared_layers, k})]
    images = [Method(f"STRAINER-{m}", strainer_key(m, k, cfg)) for m in sorted({*cfg.ablation.train_images, 1, n})]
    return shared, images


def init_plan(cfg: StrainerConfig, dataset: str) -> dict[str, dict]:
    """Every initialisation a dataset's experiments need: key -> how to learn it."""
    n, k = cfg.train.images, cfg.model.shared_layers
    plan = {"siren_source": {"kind": "source"}, "meta": {"kind": "meta", "gray": False},
            "random_encoder": {"kind": "random_encoder", "shared": k},
            "meta_untrained": {"kind": "meta_untrained", "gray": False}}
    for m in (1, n):
        plan[strainer_key(m, k, cfg)] = {"kind": "strainer", "images": m, "shared": k, "gray": False}
    if dataset == cfg.data.source:
        if cfg.data.ood_targets:
            plan[strainer_key(n, k, cfg, gray=True)] = {"kind": "strainer", "images": n, "shared": k, "gray": True}
            plan["meta_gray"] = {"kind": "meta", "gray": True}
            plan["meta_untrained_gray"] = {"kind": "meta_untrained", "gray": True}
        for s in cfg.ablation.shared_layers:
            plan[strainer_key(n, s, cfg)] = {"kind": "strainer", "images": n, "shared": s, "gray": False}
        for m in cfg.ablation.train_images:
            plan[strainer_key(m, k, cfg)] = {"kind": "strainer", "images": m, "shared": k, "gray": False}
    return plan


def learn_inits(cfg: StrainerConfig, dataset: str, color: ImageSet, gray: ImageSet, coords: Tensor,
                seed: int, only: Sequence[str] | None = None) -> dict[str, Init]:
    """Learn every initialisation of `init_plan` (or the keys `only`) from the dataset's training pool (never its
    test images)."""
    split = split_indices(len(color.names), cfg.data.n_test, cfg.train.images, dataset)
    plan = init_plan(cfg, dataset)
    unknown = sorted(set(only or ()) - set(plan))
    if unknown:
        raise UserError(f"unknown initialisation(s) {unknown} for {dataset}; known: {sorted(plan)}")
    out = {}
    for key, how in plan.items():
        if only and key not in only:
            continue
        images = (gray if how.get("gray") else color).targets[split.train].to(coords.device)
        spec = cfg.model.spec(images.shape[-1])
        if how["kind"] == "source":
            out[key] = fit_source_siren(spec, images[:1], coords, iters=cfg.fit.iters, lr=cfg.fit.lr, seed=seed,
                                        value_range=cfg.data.pixel_range)
        elif how["kind"] == "random_encoder":  # control: same shape as a learned encoder, nothing learned
            layers = init_networks(spec, [network_seed(seed, STREAM_CONTROL)], device=coords.device)
            out[key] = Init("encoder", split_layers(layers, how["shared"])[0], how["shared"], images.shape[-1], 0,
                            0.0, float("nan"))
        elif how["kind"] == "meta_untrained":  # control: MAML's starting point, adapted like the learned one
            layers = init_networks(spec, [network_seed(seed, STREAM_META)], device=coords.device)
            out[key] = Init("network", layers, spec.n_layers, images.shape[-1], 0, 0.0, float("nan"),
                            adapt_steps=cfg.meta.inner_steps, adapt_lr=cfg.meta.inner_lr)
        elif how["kind"] == "meta":
            m = cfg.meta
            out[key] = meta_learn(spec, images, coords, outer_iters=m.outer_iters, outer_lr=m.outer_lr,
                                  inner_lr=m.inner_lr, inner_steps=m.inner_steps, meta_batch=m.meta_batch,
                                  seed=seed, desc=f"{dataset} {key} (MAML)", value_range=cfg.data.pixel_range)
        else:
            out[key] = train_strainer(spec, images[:how["images"]], coords, shared_layers=how["shared"],
                                      iters=cfg.train.iters, lr=cfg.train.lr, seed=seed, desc=f"{dataset} {key}",
                                      value_range=cfg.data.pixel_range)
    return out


def initial_stack(method: Method, inits: dict[str, Init], spec: SirenSpec, n: int, seed: int, device,
                  observed: Tensor | None = None, observe: Callable[[Tensor], Tensor] | None = None,
                  coords: Tensor | None = None) -> list[Layer]:
    """The starting networks of `method` for test images 0..n-1. A MAML initialisation (`adapt_steps` > 0) is
    first adapted to each image's observation by its inner loop (train.adapt), as learnit evaluates it."""
    fresh = init_networks(spec, [network_seed(seed, STREAM_TEST, j) for j in range(n)], device=device)
    if method.init is None:
        return fresh
    if method.init not in inits:
        raise UserError(f"initialisation '{method.init}' missing from the inits file; re-run the strainer inits rule")
    init = inits[method.init]
    layers = [(w.to(device), b.to(device)) for w, b in init.layers]
    if init.kind == "network":
        if init.channels != spec.out_features:
            raise UserError(f"'{method.init}' outputs {init.channels} channels, the test images have "
                            f"{spec.out_features}")
        if init.adapt_steps > 0:
            if observed is None or coords is None:
                raise ValueError(f"'{method.init}' is adapted per image before the fit: pass observed and coords")
            return adapt(repeat_stack(layers, n), observed, coords, spec.omega0, init.adapt_steps, init.adapt_lr,
                         observe=observe)
        return repeat_stack(layers, n)
    return repeat_stack(layers, n) + split_layers(fresh, init.shared_layers)[1]


@dataclass
class MethodFits:
    """Fits of several methods on the same test images: PSNR [methods, iters + 1, images] and final outputs."""

    methods: list[Method]
    psnr: np.ndarray
    output: Tensor
    snapshots: dict[int, Tensor]
    seconds: float

    def curve(self, label_: str) -> np.ndarray:
        return self.psnr[[m.label for m in self.methods].index(label_)]


def fit_methods(methods: Sequence[Method], inits: dict[str, Init], clean: Tensor, coords: Tensor,
                cfg: StrainerConfig, seed: int, *, observed: Tensor | None = None,
                observe: Callable[[Tensor], Tensor] | None = None, iters: int | None = None,
                snapshot_iters: Sequence[int] = (), desc: str = "fit") -> MethodFits:
    """Fit every method to every image of `clean` [K, P, C] as one stack of len(methods) * K networks."""
    k, channels = clean.shape[0], clean.shape[-1]
    spec = cfg.model.spec(channels)
    observed = clean if observed is None else observed
    stack = concat([initial_stack(m, inits, spec, k, seed, coords.device, observed, observe, coords)
                    for m in methods])
    tile = lambda t: t.repeat(len(methods), *([1] * (t.dim() - 1)))  # noqa: E731
    res: FitResult = fit_in_chunks(lambda part: select(stack, part), len(methods) * k, cfg.fit.chunk, coords,
                                   tile(observed), tile(clean), omega0=spec.omega0,
                                   iters=cfg.fit.iters if iters is None else iters, lr=cfg.fit.lr, observe=observe,
                                   snapshot_iters=snapshot_iters, desc=desc, value_range=cfg.data.pixel_range)
    psnr = res.psnr.reshape(res.psnr.shape[0], len(methods), k).transpose(1, 0, 2)
    per_method = lambda t: t.reshape(len(methods), k, *t.shape[1:])  # noqa: E731
    return MethodFits(list(methods), psnr, per_method(res.output),
                      {t: per_method(v) for t, v in res.snapshots.items()}, res.seconds)


# ---- inverse problems (Table 6) -------------------------------------------------------------------------------

def downsample_operator(resolution: int, factor: int) -> Callable[[Tensor], Tensor]:
    """Render at full resolution, observe the box-downsampled image (area averaging to R // factor pixels a side,
    which also covers factors that do not divide R): [M, R*R, C] -> [M, (R // factor)^2, C]."""
    low_res = resolution // factor

    def observe(flat: Tensor) -> Tensor:
        m, _, c = flat.shape
        img = flat.reshape(m, resolution, resolution, c).permute(0, 3, 1, 2)
        low = F.adaptive_avg_pool2d(img, low_res)
        return low.permute(0, 2, 3, 1).reshape(m, -1, c)

    return observe


def noisy_copy(clean: Tensor, std: float, seed: int, value_range=(-1.0, 1.0)) -> Tensor:
    """Additive Gaussian noise of standard deviation `std` on the [0, 1] scale (2 * std on [-1, 1])."""
    gen = torch.Generator().manual_seed(network_seed(seed, 99))
    noise = torch.randn(clean.shape, generator=gen, dtype=clean.dtype).to(clean.device)
    return clean + (value_range[1] - value_range[0]) * std * noise


def iterations_to_reach(curve: np.ndarray, level: float) -> int | None:
    """First iteration at which a (mean) PSNR curve reaches `level`; None if it never does."""
    hit = np.nonzero(curve >= level)[0]
    return int(hit[0]) if hit.size else None


def test_split(cfg: StrainerConfig, images: ImageSet, dataset: str) -> ImageSet:
    return images.subset(split_indices(len(images.names), cfg.data.n_test, 0, dataset).test)
