"""Typed view of one scale block of `config/strainer.yaml` (validated against workflow/schemas/strainer.schema.yaml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from typing import TYPE_CHECKING

from repro.common.config import load_paper_config

if TYPE_CHECKING:  # keep this module torch-free: the figure rule imports it
    from repro.strainer.siren import SirenSpec

DATASET_LABELS = {"celebahq": "CelebA-HQ", "afhq": "AFHQ", "ffhq": "FFHQ", "mri": "MRI", "kodak": "Kodak",
                  "shapenet_chairs": "ShapeNet chairs", "thai_statue": "Thai statue"}


def label(dataset: str) -> str:
    """How a dataset is named in tables and figures."""
    return DATASET_LABELS.get(dataset, dataset)


@dataclass(frozen=True)
class ModelConfig:
    width: int
    n_layers: int
    shared_layers: int
    omega0: float

    def spec(self, out_features: int) -> "SirenSpec":
        from repro.strainer.siren import SirenSpec

        return SirenSpec(in_features=2, width=self.width, out_features=out_features, n_layers=self.n_layers,
                         omega0=self.omega0)


@dataclass(frozen=True)
class DataConfig:
    resolution: int
    n_test: int
    datasets: tuple[str, ...]
    source: str
    ood_targets: tuple[str, ...]
    pixel_range: tuple[float, float] = (-1.0, 1.0)


@dataclass(frozen=True)
class TrainConfig:
    """STRAINER encoder training (sheet section 2: 10 images, 5000 steps, Adam 1e-4, full batch)."""

    images: int
    iters: int
    lr: float


@dataclass(frozen=True)
class FitConfig:
    """Test-time fitting (sheet section 2: 2000 iterations, Adam 1e-4, all weights trained)."""

    iters: int
    lr: float
    report_iters: tuple[int, ...]
    chunk: int


@dataclass(frozen=True)
class MetaConfig:
    """MAML initialisation in the manner of Tancik et al.'s learnit (the paper's "Meta-Learned 5K", sheet
    section 5): a few inner SGD steps per image, an outer Adam step per meta-batch."""

    outer_iters: int
    outer_lr: float
    inner_lr: float
    inner_steps: int
    meta_batch: int


@dataclass(frozen=True)
class AblationConfig:
    shared_layers: tuple[int, ...]
    train_images: tuple[int, ...]


@dataclass(frozen=True)
class InverseConfig:
    n_images: int
    sr_factor: int
    noise_std: float
    iters: int


@dataclass(frozen=True)
class SpeedConfig:
    n_images: int
    iters: int
    repeats: int


@dataclass(frozen=True)
class Table4Config:
    """Kodak (paper Table 4): STRAINER-N against SIRENs of the model's width and of `siren_widths`; the dataset must
    be one of `data.ood_targets` (it is fitted with the out-of-domain experiment)."""

    dataset: str
    siren_widths: tuple[int, ...]


@dataclass(frozen=True)
class HypernetConfig:
    """TransINR / IPC baselines (Fig. 2, Table 3; repro.strainer.hypernet): transformer `dim`/`depth`/`heads`,
    patch tokens, the ReLU hyponet (`hyponet_layers`, Fourier features, width `model.width`), the modulation
    (TransINR weight groups, IPC rank and modulated layers) and training (Adam `lr`, `steps` of `batch` images)."""

    kinds: tuple[str, ...]
    dim: int
    depth: int
    heads: int
    patch: int
    padding: int
    dropout: float
    hyponet_layers: int
    ff_dim: int
    ff_sigma: float
    transinr_groups: int
    ipc_rank: int
    ipc_layers: tuple[int, ...]
    steps: int
    batch: int
    lr: float


@dataclass(frozen=True)
class Shape3DConfig:
    """The 3D experiment (paper Fig. 12; repro.strainer.shapes): a STRAINER encoder trained on `shapes` shapes of
    `source` (train.iters, train.lr), transferred to `target`, fitted for `iters` iterations (fit.lr) against a
    SIREN; occupancy grids of `grid`^3, IoU at `report_iters`."""

    source: str
    target: str
    shapes: int
    grid: int
    iters: int
    report_iters: tuple[int, ...]


@dataclass(frozen=True)
class StrainerConfig:
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    fit: FitConfig
    meta: MetaConfig
    ablation: AblationConfig
    inverse: InverseConfig
    speed: SpeedConfig
    table4: Table4Config | None = None
    hypernet: HypernetConfig | None = None
    shape3d: Shape3DConfig | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "StrainerConfig":
        def tup(block: dict) -> dict:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in block.items()}

        return cls(model=ModelConfig(**d["model"]), data=DataConfig(**tup(d["data"])),
                   train=TrainConfig(**d["train"]), fit=FitConfig(**tup(d["fit"])), meta=MetaConfig(**d["meta"]),
                   ablation=AblationConfig(**tup(d["ablation"])), inverse=InverseConfig(**d["inverse"]),
                   speed=SpeedConfig(**d["speed"]),
                   table4=Table4Config(**tup(d["table4"])) if d.get("table4") else None,
                   hypernet=HypernetConfig(**tup(d["hypernet"])) if d.get("hypernet") else None,
                   shape3d=Shape3DConfig(**tup(d["shape3d"])) if d.get("shape3d") else None)

    def as_dict(self) -> dict:
        return asdict(self)


def load_config(scale: str) -> tuple[StrainerConfig, dict]:
    """The validated block for `scale`, typed, plus the raw dict (for provenance)."""
    raw = load_paper_config("strainer", scale)
    return StrainerConfig.from_dict(raw), raw
