"""Distribution matching (DM; Zhao & Bilen, WACV 2023), alone and with AutoPalette's palette network (Table 5).

One iteration (official VICO-UoE/DatasetCondensation `main_DM.py` @ 306245d; AutoPalette `distill/dm_quant.py`):
  1. a freshly initialised ConvNet (random weights, never trained, parameters frozen) is the embedding;
  2. per class c: `batch_real` random real images of c and the synthetic images of c (with AutoPalette: colour-
     reduced by the palette net's soft assignment) are augmented by DSA -- one shared draw (Siamese) in DM, two
     independent draws in `dm_quant.py` -- and embedded (the features before the classifier);
  3. loss = sum_c || mean_i f(real_c,i) - mean_j f(syn_c,j) ||^2 (DM); `dm_quant.py` divides each class's term by
     the number of classes C;
  4. one SGD step on the images (and on the palette net, which also takes alpha L_m + beta L_b + gamma L_a on a
     random subset of the images, as in trajectory matching).
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from repro.common.augment import DSA, DSAParams
from repro.common.errors import UserError
from repro.common.nets import ConvNet
from repro.common.progress import progress
from repro.autopalette.config import DMConfig, PaletteConfig
from repro.autopalette.data import Preprocess
from repro.autopalette.palette import PaletteNet, soft_quantize


def mean_embedding_loss(real_embeddings: list[Tensor], syn_embeddings: list[Tensor], class_mean: bool = False
                        ) -> Tensor:
    """DM's loss from per-class embeddings: sum over classes of ||mean(real_c) - mean(syn_c)||^2 ([n_c, D] each);
    with `class_mean` each term is divided by the number of classes (dm_quant.py)."""
    if len(real_embeddings) != len(syn_embeddings) or not real_embeddings:
        raise ValueError("mean_embedding_loss needs one real and one synthetic embedding batch per class")
    terms = [(r.mean(0) - s.mean(0)).pow(2).sum() for r, s in zip(real_embeddings, syn_embeddings)]
    loss = torch.stack(terms).sum()
    return loss / len(terms) if class_mean else loss


@dataclass
class DMResult:
    images: Tensor
    palette_net: PaletteNet | None
    losses: list[float] = field(default_factory=list)
    seconds_per_iteration: float = math.nan


def distill_dm(init_images: Tensor, labels: Tensor, real_images: Tensor, real_labels: Tensor, net_factory,
               pre: Preprocess, cfg: DMConfig, dsa: DSAParams | None, seed: int, *, palette: PaletteConfig | None = None,
               n_colors: int = 256, palette_aux=None, desc: str = "DM") -> DMResult:
    """Distil by distribution matching from `init_images` (network space, [N, 3, H, W], labels `labels`) against the
    real network inputs `real_images` / `real_labels`. `net_factory()` returns a freshly initialised ConvNet on the
    images' device. `palette` given: DM + AutoPalette with `n_colors` colours; `palette_aux(pal, images, rng, gen)`
    returns its auxiliary losses (alpha L_m + beta L_b + gamma L_a)."""
    if palette is not None and palette_aux is None:
        raise ValueError("distill_dm with a palette needs palette_aux (its alpha L_m + beta L_b + gamma L_a)")
    device = init_images.device
    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    images = init_images.detach().clone().requires_grad_(True)
    opts = [torch.optim.SGD([images], lr=cfg.lr_img, momentum=cfg.momentum)]
    pal = None
    if palette is not None:
        pal = PaletteNet(n_colors, images.shape[1], palette.hidden).to(device)
        opts.append(torch.optim.SGD(pal.parameters(), lr=palette.lr, momentum=palette.momentum,
                                    weight_decay=palette.weight_decay))
    # Siamese as the DSA code with a seed: one transform for the whole real batch and the synthetic batch alike
    aug = DSA(dataclasses.replace(dsa, batch_shared=cfg.siamese), seed=seed) if dsa is not None else None
    classes = torch.unique(labels).tolist()
    syn_idx = {c: torch.nonzero(labels == c).flatten() for c in classes}
    real_idx = {c: torch.nonzero(real_labels == c).flatten() for c in classes}
    for c in classes:
        if len(real_idx[c]) == 0:
            raise UserError(f"{desc}: class {c} has no real images to match; check the training split")
    losses: list[float] = []
    t_start = None
    bar = progress(range(cfg.iterations), desc=desc, total=cfg.iterations)
    for it in bar:
        if it == 1:
            t_start = time.perf_counter()
        net: ConvNet = net_factory()
        for p in net.parameters():
            p.requires_grad_(False)
        reals, syns = [], []
        for c in classes:
            ri = real_idx[c]
            pick = ri[torch.randperm(len(ri), generator=gen)[:cfg.batch_real].to(ri.device)]
            si = syn_idx[c]
            if cfg.batch_syn is not None and cfg.batch_syn < len(si):
                si = si[torch.randperm(len(si), generator=gen)[:cfg.batch_syn].to(si.device)]
            xs = images[si]
            if pal is not None:
                xs = soft_quantize(xs, pal(xs))[0]
            xr, xs = real_images[pick], pre.net_input(xs)
            if aug is not None:
                if cfg.siamese:
                    s = rng.randrange(2**62)
                    xr, xs = aug(xr, seed=s), aug(xs, seed=s)
                else:
                    xr, xs = aug(xr), aug(xs)
            reals.append(net.embed(xr).detach())
            syns.append(net.embed(xs))
        loss = mean_embedding_loss(reals, syns, cfg.class_mean)
        total = loss + palette_aux(pal, images, rng, gen) if pal is not None else loss
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in opts:
            opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise UserError(f"{desc} diverged: the loss is {value} at iteration {it + 1}; lower dm.lr_img in "
                            f"config/autopalette.yaml")
        losses.append(value)
        if (it + 1) % 10 == 0 or it + 1 == cfg.iterations:
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    per_it = (time.perf_counter() - t_start) / (cfg.iterations - 1) if t_start is not None else math.nan
    return DMResult(images.detach(), pal, losses, per_it)
