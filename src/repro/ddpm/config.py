"""Typed configuration of the DDPM runs, and Table 2's rows as configurations of one model.

`config/ddpm.yaml` holds one block per scale (validated against `workflow/schemas/ddpm.schema.yaml`);
`DDPMConfig.from_block` turns it into frozen dataclasses. Every Table 2 row is a `Variant`: a choice of what the
network predicts (mean type), which reverse variance it uses (var type) and which objective it is trained with
(loss type), as in the official code's `GaussianDiffusion2(model_mean_type, model_var_type, loss_type)`
(hojonathanho/diffusion@c461299 diffusion_tf/diffusion_utils_2.py; ddpm sheet §1 Table 2 and §3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from repro.common.config import config_hash, load_paper_config
from repro.common.errors import UserError

MeanType = Literal["eps", "xprev"]          # ε prediction (ours) | μ̃ prediction (baseline: the network outputs μ)
VarType = Literal["fixedlarge", "fixedsmall", "learned"]   # σ² = β_t | σ² = β̃_t | learned diagonal Σ
LossType = Literal["mse", "kl"]             # unweighted MSE on the prediction | the true variational bound L


@dataclass(frozen=True)
class Variant:
    """One row of Table 2: a configuration of the one model, trained with `train_key`'s run."""

    key: str
    mean_type: MeanType
    var_type: VarType
    loss_type: LossType
    row: str                 # the row label in our tables
    train_key: str = ""      # the training run whose weights it samples from (default: its own)
    table1_row: str = ""     # the Table 1 row it also fills ("" if none)

    @property
    def trained_by(self) -> str:
        return self.train_key or self.key

    @property
    def learned_var(self) -> bool:
        return self.var_type == "learned"


# Table 2 (ddpm sheet §1). CIFAR-10's fixed isotropic Σ is σ² = β_t ("fixedlarge", sheet §3 and pitfall 2). The
# μ̃-prediction network outputs the posterior mean directly (official mean type 'xprev'). `eps_simple_small`
# is not a row of the paper: it samples the L_simple model with σ² = β̃_t, the other fixed variance of §3.2,
# which needs no training of its own (the L_simple objective does not involve σ).
VARIANTS: dict[str, Variant] = {v.key: v for v in (
    Variant("mu_kl_learned", "xprev", "learned", "kl", "μ prediction (baseline), L, learned diagonal Σ"),
    Variant("mu_kl_fixed", "xprev", "fixedlarge", "kl", "μ prediction (baseline), L, fixed isotropic Σ"),
    Variant("mu_mse", "xprev", "fixedlarge", "mse", "μ prediction (baseline), MSE on μ"),
    Variant("eps_kl_learned", "eps", "learned", "kl", "ε prediction (ours), L, learned diagonal Σ"),
    Variant("eps_kl_fixed", "eps", "fixedlarge", "kl", "ε prediction (ours), L, fixed isotropic Σ",
            table1_row="Ours (L, fixed isotropic Σ)"),
    Variant("eps_simple", "eps", "fixedlarge", "mse", "ε prediction (ours), L_simple",
            table1_row="Ours (L_simple)"),
    Variant("eps_simple_small", "eps", "fixedsmall", "mse", "ε prediction (ours), L_simple, posterior variance (not in paper)",
            train_key="eps_simple"),
)}
RELEASED_ROW = "Ours (L_simple), released checkpoint"


@dataclass(frozen=True)
class ModelConfig:
    """The U-Net of the official code (`diffusion_tf/models/unet.py`; ddpm sheet §3)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    resolution: int = 32
    in_channels: int = 3
    norm_groups: int = 32
    init: str = "official"   # 'official': nn.default_init of the official code (unet.py docstring) | 'pytorch'


@dataclass(frozen=True)
class DiffusionConfig:
    """Linear β schedule; `steps` = T. Smoke runs use fewer steps with β rescaled by 1000 / T (so ᾱ_T stays tiny)."""

    steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02


@dataclass(frozen=True)
class TrainConfig:
    """Trainer settings (paper §4 and App. B; official defaults in scripts/run_cifar.py, ddpm sheet §3)."""

    steps: int = 800_000
    batch_size: int = 128
    lr: float = 2e-4
    warmup: int = 5000
    grad_clip: float = 1.0
    clip_microbatch: int = 16    # clip each 16-image micro-batch's gradient, then average (official, 8 x 16 on TPU)
                                 # 0: clip the gradient of the whole batch once (train.py docstring)
    ema_decay: float = 0.9999
    flip: bool = True
    train_subset: int = 0        # 0: the whole train split
    ckpt_every: int = 10_000
    log_every: int = 1000
    amp: bool = False            # bf16 autocast on CUDA (ignored on CPU)
    gpus: int = 0                # processes of the training job: > 1 runs it under torchrun, one rank per GPU
    compile: bool = False        # torch.compile the network on CUDA (fewer kernel launches; ignored on CPU)
    select: str = "last"         # which EMA checkpoint the evaluation uses: 'last' | 'best_fid' (paper App. B: the
                                 # checkpoint of minimum FID), by an in-training FID of select_n samples vs the train
                                 # reference every select_every steps (and at the last step)
    select_every: int = 0
    select_n: int = 0


@dataclass(frozen=True)
class SampleConfig:
    n: int = 50_000              # samples per variant (paper: 50k for IS/FID, App. B)
    batch_size: int = 256
    clip_denoised: bool = True   # official p_sample: predicted x0 clipped to [-1, 1] (sheet pitfall 1)
    grid: int = 64               # images in the PNG grid
    progressive: int = 8         # chains whose x̂0 predictions are kept for the progressive-generation figure
    progressive_frames: int = 10


@dataclass(frozen=True)
class FidConfig:
    n: int = 50_000              # samples that enter FID/KID/IS
    train_ref: str = "train"     # fid_stats split spec of the train reference (paper: FID against train, §4.1)
    test_ref: str = "test"       # ... and of the test reference (5.24 in §4.1)
    kid_subsets: int = 100
    batch_size: int = 200


@dataclass(frozen=True)
class BpdConfig:
    test_n: int = 10_000         # 0 or the split size: all of it
    train_n: int = 10_000        # train subset for the "(train)" NLL
    batch_size: int = 250
    coding_rows: tuple[int, ...] = (1000, 900, 800, 700, 600, 500, 400, 300, 200, 100)   # Table 4 rows


@dataclass(frozen=True)
class DDPMConfig:
    scale: str
    dataset: str
    train_variants: tuple[str, ...]
    eval_variants: tuple[str, ...]
    bpd_variants: tuple[str, ...]
    released: bool
    model: ModelConfig
    diffusion: DiffusionConfig
    train: TrainConfig
    sample: SampleConfig
    fid: FidConfig
    bpd: BpdConfig
    block: dict
    train_overrides: dict = field(default_factory=dict)   # variant -> {train key: value}
    released_net: str = "paper"  # 'paper': the released CIFAR-10 U-Net, T = 1000 | 'scale': this scale's model
                                 # and diffusion (a synthetic checkpoint in the released layout, for tests)

    @classmethod
    def from_block(cls, scale: str, block: dict) -> "DDPMConfig":
        def tuples(d: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}

        evals = tuple(block["variants"])
        unknown = [v for v in evals if v not in VARIANTS]
        if unknown:
            raise UserError(f"config/ddpm.yaml ({scale}): unknown variants {unknown}; known: {sorted(VARIANTS)}")
        trains = tuple(dict.fromkeys(VARIANTS[v].trained_by for v in evals))
        bpd = tuple(v for v in block["bpd"]["variants"])
        if not set(bpd) <= set(evals):
            raise UserError(f"config/ddpm.yaml ({scale}): bpd.variants {bpd} must be among variants {evals}")
        bpd_block = {k: v for k, v in block["bpd"].items() if k != "variants"}
        overrides = block.get("train_overrides") or {}
        stray = [v for v in overrides if v not in trains]
        if stray:
            raise UserError(f"config/ddpm.yaml ({scale}): train_overrides for {stray}, which are not trained at this "
                            f"scale; trained: {list(trains)}")
        return cls(scale=scale, dataset=block["dataset"], train_variants=trains, eval_variants=evals,
                   bpd_variants=bpd, released=bool(block.get("released", False)),
                   model=ModelConfig(**tuples(block["model"])), diffusion=DiffusionConfig(**block["diffusion"]),
                   train=TrainConfig(**block["train"]), sample=SampleConfig(**block["sample"]),
                   fid=FidConfig(**block["fid"]), bpd=BpdConfig(**tuples(bpd_block)), block=block,
                   train_overrides={k: dict(v) for k, v in overrides.items()},
                   released_net=block.get("released_net", "paper"))

    def train_for(self, variant: str) -> TrainConfig:
        """The training settings of the run that trains `variant`: `train` with its `train_overrides` entry."""
        return replace(self.train, **self.train_overrides.get(VARIANTS[variant].trained_by, {}))

    def train_hash(self, variant: str) -> str:
        """What determines a training run's weights: a resumed run must match it."""
        v = VARIANTS[variant]
        train = asdict(replace(self.train_for(variant), log_every=0, ckpt_every=0))
        if train["select"] == "last":     # the selection settings only matter where a selection is made
            train.update(select_every=0, select_n=0)
        train.pop("compile")   # compiling changes the kernels, not the computation
        return config_hash({"model": asdict(self.model), "diffusion": asdict(self.diffusion), "train": train,
                            "variant": [v.mean_type, v.var_type, v.loss_type], "dataset": self.dataset})


def load_config(scale: str) -> DDPMConfig:
    return DDPMConfig.from_block(scale, load_paper_config("ddpm", scale))
