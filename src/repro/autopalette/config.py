"""Typed, frozen configuration of the AutoPalette reproduction (one block of config/autopalette.yaml).

The YAML block is validated against workflow/schemas/autopalette.schema.yaml first; `AutoPaletteConfig.from_dict`
then builds these dataclasses. A *run* is one distilled (or baseline) set plus its evaluation; its `outputs` say
which table cells its accuracy fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from repro.common.augment import DSAParams
from repro.common.errors import ConfigError

METHODS = ("real", "real_quantized", "mtt", "datm", "autopalette", "dm", "dm_autopalette")
TRAJECTORY_METHODS = ("mtt", "datm", "autopalette")
CROSS_ARCHITECTURES = ("VGG11", "AlexNet", "ResNet18")
INITS = ("random_real", "graphcut_real", "graphcut_quantized", "predicted_correctly")
QUANTIZERS = ("median_cut", "octree")


@dataclass(frozen=True)
class NetConfig:
    """ConvNet-D{depth}; the paper uses width 128, depth 3, instance norm, average pooling (sheet section 2)."""

    width: int = 128
    depth: int = 3
    norm: str = "instancenorm"
    pooling: str = "avgpool"
    depth_by_resolution: bool = False

    def depth_for(self, im_size: tuple[int, ...]) -> int:
        """`depth`, or with `depth_by_resolution` the literature's pairing 32 -> 3, 64 -> 4, 128 -> 5 (AutoPalette
        App. A.2: ConvNetD3 on CIFAR, ConvNetD5 on the 128x128 ImageNet subsets)."""
        if not self.depth_by_resolution:
            return self.depth
        from repro.common.nets import depth_for_resolution
        return depth_for_resolution(int(im_size[0]))


@dataclass(frozen=True)
class DataConfig:
    """Which real images are used. `train_per_class`: a class-balanced subset (null: the whole train split).
    `test_per_class`: the images evaluation tests on, a class-balanced subset of the test split (null: all of it, as
    the paper; smoke tests on fewer, for its CPU budget).

    `zca`: ZCA whitening (eps 0.1, as kornia's ZCAWhitening in the MTT/AutoPalette code), applied as a fixed
    linear map *after* colour quantisation, so stored images keep exactly K colours.
    """

    datasets: tuple[str, ...] = ("cifar10",)
    train_per_class: int | None = None
    test_per_class: int | None = None
    zca: bool = True
    zca_eps: float = 0.1
    no_zca: tuple[str, ...] = ()

    def zca_for(self, dataset: str) -> bool:
        """`zca`, except for the datasets in `no_zca` (Table 10: ZCA False on ImageNette)."""
        return self.zca and dataset not in self.no_zca


@dataclass(frozen=True)
class ExpertConfig:
    """Expert trajectories (MTT `buffer.py`): SGD, lr 0.01, momentum 0, no weight decay, batch 256, DSA.

    `sam_rho` (null: plain SGD): flat-trajectory experts of DATM/AutoPalette (`buffer/buffer_FTD.py`): GSAM with a
    constant radius rho (rho_max = rho_min) and `sam_alpha` (DATM README: rho 0.01, alpha 0.3).
    """

    num_experts: int = 100
    epochs: int = 50
    lr: float = 0.01
    batch_size: int = 256
    momentum: float = 0.0
    weight_decay: float = 0.0
    dsa: bool = True
    sam_rho: float | None = None
    sam_alpha: float = 0.0


@dataclass(frozen=True)
class SelectionConfig:
    """Colour-guided initialisation (AutoPalette section 3.4, App. A.3; code `selection/`).

    A selection net is trained on the Median-Cut-quantised candidate pool for `epochs` (SGD momentum 0.9, wd 5e-4,
    `lr`: the code's `--selection_lr`, default 0.1; the README's `--lr 0.001` is never read by the selection);
    per class, images are picked to maximise the generalised graph cut (lambda `lam`) under the similarity
    0.5 + 0.5 cos of last-layer gradients, with the code's stochastic greedy (`epsilon` 0.9) or the exact greedy.
    `pool_per_class`: candidates per class (null: every training image of the class, as the code). A selection is
    made for every images-per-class count the runs need.
    """

    pool_per_class: int | None = None
    epochs: int = 50
    lr: float = 0.1
    batch_size: int = 128
    lam: float = 1.0
    greedy: str = "stochastic"
    epsilon: float = 0.9


@dataclass(frozen=True)
class PaletteConfig:
    """Palette network and its losses (AutoPalette sections 3.3-3.5, App. A.2; sheet section 1).

    alpha/beta/gamma weigh the maximum-colour, palette-balance and Median-Cut alignment losses (paper: 1, 1, 3).
    `loss_images`: the palette losses use a random subset of this many synthetic images per iteration (code: 50).
    `lr_decay_at`: fraction of the iterations after which the palette lr is multiplied by 0.1 (code: 0.5).
    """

    hidden: int = 256
    lr: float = 0.05
    momentum: float = 0.5
    weight_decay: float = 5e-4
    lr_decay_at: float | None = 0.5
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 3.0
    sample_ratio: float = 0.3
    loss_images: int = 50


@dataclass(frozen=True)
class DistillConfig:
    """Trajectory matching (MTT; sheet sections 4 and 8.2) with a learnable student learning rate, and the DATM
    additions the official AutoPalette code runs (KeViNYuAn0314/AutoPalette `distill/distill_quant.py`, `utils/cfg.py`,
    commit 4b74b140; sheet sections 1 and 9). Every DATM addition is off by default (= vanilla MTT):

    `soft_labels`: learnable label logits, initialised from the logits of the *final* snapshot of one expert's full
    trajectory on the initial images (code: `buffer[0][-1]`), trained with SGD(lr_y, momentum_y) and used with the
    soft cross-entropy in the inner loop and again at evaluation. AutoPalette keeps them; its section 4.1 drops only
    DATM's selection of correctly predicted images.
    `current_max_start_epoch` (null: off): the start-epoch window widens from this bound to `max_start_epoch` over
    `expansion_end_epoch` iterations (code: `Sequential_Generation`); see `distill.start_epoch_upper_bound`.
    `threshold` (null: off): an iteration whose matching loss exceeds it updates nothing (code: `grand_loss <=
    threshold`), and the lr schedules count only the iterations that updated.
    `img_lr_decay_at`: fraction of the iterations after which (counted in updating iterations) the image lr is
    multiplied by 0.1 (code: Iteration // 3; MTT: null, no decay).
    """

    iterations: int = 5000
    syn_steps: int = 80
    expert_epochs: int = 2
    min_start_epoch: int = 0
    max_start_epoch: int = 15
    current_max_start_epoch: int | None = None
    expansion_end_epoch: int = 3000
    threshold: float | None = None
    batch_syn: int | None = None
    lr_img: float = 500.0
    lr_lr: float = 1e-7
    lr_teacher: float = 0.01
    momentum_img: float = 0.5
    momentum_lr: float = 0.5
    img_lr_decay_at: float | None = None
    soft_labels: bool = False
    lr_y: float = 2.0
    momentum_y: float = 0.9
    dsa: bool = True


@dataclass(frozen=True)
class DMConfig:
    """Distribution matching (Zhao & Bilen, WACV 2023; official VICO-UoE/DatasetCondensation `main_DM.py` @ 306245d):
    every iteration a freshly initialised ConvNet (not trained, parameters frozen) embeds, per class, `batch_real`
    random real images and that class's synthetic images, both under the same DSA draw; the loss is the sum over
    classes of the squared distance of the two mean embeddings; images: SGD(lr_img, momentum 0.5); official
    Iteration 20000, lr_img 1.0, batch_real 256; evaluation with hard labels at lr_net 0.01.

    DM + AutoPalette (official KeViNYuAn0314/AutoPalette `distill/dm_quant.py` @ 1989301; Table 9): the synthetic
    images pass through the palette net (soft assignment) before the embedding; the per-class loss is divided by the
    number of classes (`class_mean`); real and synthetic batches are augmented with independent DSA draws (`siamese`
    false: its DiffAugment calls carry no shared seed); the palette losses use `palette_images` (64) random images;
    labels are the final expert's logits on the initial images (not learned) and evaluation trains at the teacher
    lr (0.01), both as that file does. `lr_net`: the evaluation lr of vanilla DM.
    """

    iterations: int = 20000
    lr_img: float = 1.0
    momentum: float = 0.5
    batch_real: int = 256
    batch_syn: int | None = None
    class_mean: bool = False
    siamese: bool = True
    palette_images: int = 64
    lr_net: float = 0.01


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (sheet section 5): fresh nets, SGD momentum 0.9, wd 5e-4, lr x0.1 halfway, DSA, final-epoch
    test accuracy on the test split (`DataConfig.test_per_class`); mean and (population) std over `num_nets` nets.
    Distilled sets are trained with their learned lr; real-image baselines with `lr_real`.
    `official_protocol_every` (null: off): also evaluate the set every this many distillation iterations (and at 0
    and the end) and report the best mean, as the official code logs it (`Max_Accuracy`, eval_it 500) -- a number
    selected on the test set, written to table `table1_official` only, never to the honest tables.
    """

    num_nets: int = 5
    epochs: int = 1000
    batch_size: int = 256
    lr_real: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dsa: bool = True
    official_protocol_every: int | None = None


@dataclass(frozen=True)
class Output:
    """One table cell a run's accuracy fills."""

    table: str
    row: str
    column: str


@dataclass(frozen=True)
class ArchOutput:
    """A cross-architecture cell (Table 6): the run's stored set evaluated on `arch` (VGG11, AlexNet or ResNet18)
    instead of the ConvNet, with the same protocol; `shifted`: the negative-control cell, the same evaluation with
    every label moved to the next class."""

    arch: str
    table: str
    row: str
    column: str
    shifted: bool = False


@dataclass(frozen=True)
class Variant:
    """A further evaluation of a run's stored set after a classical quantiser at `n_colors` (Table 8: Median Cut
    and Octree on the synthetic set); the set is distilled once."""

    quantizer: str
    n_colors: int
    outputs: tuple[Output, ...]
    shifted_label_outputs: tuple[Output, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    """One distilled (or baseline) set and its evaluation.

    `ipc`: the storage budget in 8-bit images per class. `images_per_class`: how many images are actually kept
    (null: as many as the budget holds at `n_colors`, see `palette.images_per_class`; the ablations fix it).
    `loss_weights`: overrides of alpha/beta/gamma (ablation of the loss terms).
    Methods: `real` (random real images), `real_quantized` (real images through a classical quantiser), `mtt` and
    `datm` (trajectory matching; `datm` = the same code with the DATM additions of the block's `distill` switched on
    by the run's `distill` overrides -- the method name only labels the row), `autopalette` (palette network).
    `quantizer` (with n_colors < 256, for `real_quantized`, `mtt`, `datm`): the classical quantiser applied to the
    stored images (PIL Median Cut or Octree, Table 8); then the budget holds 2**(8 - ceil(log2 K)) x ipc images, as
    for AutoPalette, so "MTT on Median-Cut images" is compared at the same storage.
    `palette`: overrides of the palette block (Table 10's per-dataset palette lr). `zca` (null: the block's
    data.zca for the dataset): a run without experts may differ (vanilla DM, whose official code has no ZCA).
    `dm`: overrides of the block's dm settings (DM runs). `cross_arch_outputs`: Table 6 cells, the stored set
    evaluated on VGG11 / AlexNet / ResNet18.
    `quantized_variants`: further evaluations of the stored set after a classical quantiser (Table 8).
    `shifted_label_outputs`: negative-control cells: the same stored set evaluated with every label moved to the
    next class (c -> c + 1 mod C; soft labels rolled likewise), which must score near or below chance.
    `init` `predicted_correctly`: DATM's init -- random real images the first expert's final network classifies
    correctly, soft labels = the mean over experts of the logits of those experts that classify it correctly.
    """

    name: str
    dataset: str
    method: str
    ipc: int
    n_colors: int = 256
    images_per_class: int | None = None
    init: str = "random_real"
    quantizer: str | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    distill: dict[str, Any] = field(default_factory=dict)
    dm: dict[str, Any] = field(default_factory=dict)
    palette: dict[str, Any] = field(default_factory=dict)
    zca: bool | None = None
    outputs: tuple[Output, ...] = ()
    cross_arch_outputs: tuple[ArchOutput, ...] = ()
    shifted_label_outputs: tuple[Output, ...] = ()
    quantized_variants: tuple[Variant, ...] = ()

    def all_outputs(self) -> tuple[Output, ...]:
        """Every cell the run writes: its own, its quantised variants' and its controls'."""
        return (self.outputs + tuple(o for v in self.quantized_variants for o in v.outputs + v.shifted_label_outputs)
                + self.shifted_label_outputs + tuple(Output(o.table, o.row, o.column) for o in self.cross_arch_outputs))

    @property
    def uses_experts(self) -> bool:
        """Trajectory matching reads the experts; DM + AutoPalette reads one for its soft-label init."""
        return self.method in TRAJECTORY_METHODS or self.method == "dm_autopalette"


@dataclass(frozen=True)
class AutoPaletteConfig:
    net: NetConfig
    data: DataConfig
    experts: ExpertConfig
    selection: SelectionConfig
    palette: PaletteConfig
    distill: DistillConfig
    evaluation: EvalConfig
    dsa: DSAParams
    runs: dict[str, RunConfig]
    dm: DMConfig = DMConfig()
    figure_run: str | None = None

    @staticmethod
    def from_dict(d: dict) -> "AutoPaletteConfig":
        runs = {name: _run(name, spec) for name, spec in (d.get("runs") or {}).items()}
        cfg = AutoPaletteConfig(
            net=_build(NetConfig, d.get("net", {})),
            data=_build(DataConfig, {**d.get("data", {}),
                                     "datasets": tuple(d.get("data", {}).get("datasets", ("cifar10",))),
                                     "no_zca": tuple(d.get("data", {}).get("no_zca", ()))}),
            experts=_build(ExpertConfig, d.get("experts", {})),
            selection=_build(SelectionConfig, d.get("selection", {})),
            palette=_build(PaletteConfig, d.get("palette", {})),
            distill=_build(DistillConfig, d.get("distill", {})),
            evaluation=_build(EvalConfig, d.get("evaluation", {})),
            dm=_build(DMConfig, d.get("dm", {})),
            dsa=_build(DSAParams, d.get("dsa", {})),
            runs=runs,
            figure_run=d.get("figure_run"),
        )
        cfg.check()
        return cfg

    def check(self) -> None:
        d = self.distill
        if d.max_start_epoch + d.expert_epochs > self.experts.epochs:
            raise ConfigError(f"distill.max_start_epoch ({d.max_start_epoch}) + expert_epochs ({d.expert_epochs}) "
                              f"exceeds experts.epochs ({self.experts.epochs}); lower them or train longer experts")
        for run in self.runs.values():
            if run.dataset not in self.data.datasets:
                raise ConfigError(f"run '{run.name}': dataset '{run.dataset}' is not in data.datasets")
            if run.zca is not None and run.uses_experts and run.zca != self.data.zca_for(run.dataset):
                raise ConfigError(f"run '{run.name}': zca {run.zca} differs from its experts' preprocessing "
                                  f"(data.zca / data.no_zca); only runs without experts may override it")
            rd = replace_distill(self.distill, run.distill)
            if rd.max_start_epoch + rd.expert_epochs > self.experts.epochs:
                raise ConfigError(f"run '{run.name}': max_start_epoch + expert_epochs exceed experts.epochs")
        if self.figure_run is not None and self.figure_run not in self.runs:
            raise ConfigError(f"figure_run '{self.figure_run}' is not one of the runs: {sorted(self.runs)}")

    def run_distill(self, run: RunConfig) -> DistillConfig:
        return replace_distill(self.distill, run.distill)

    def run_dm(self, run: RunConfig) -> DMConfig:
        return _build(DMConfig, {**_asdict(self.dm), **run.dm})

    def run_palette(self, run: RunConfig) -> PaletteConfig:
        return _build(PaletteConfig, {**_asdict(self.palette), **run.palette, **run.loss_weights})


def replace_distill(base: DistillConfig, overrides: dict) -> DistillConfig:
    return _build(DistillConfig, {**_asdict(base), **overrides})


def _asdict(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _build(cls, d: dict):
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"config/autopalette.yaml: unknown key(s) {sorted(unknown)} for {cls.__name__}; "
                          f"allowed: {sorted(known)}")
    return cls(**d)


def _run(name: str, spec: dict) -> RunConfig:
    spec = dict(spec)
    if spec.get("method") not in METHODS:
        raise ConfigError(f"run '{name}': method must be one of {METHODS}")
    if spec.get("init", "random_real") not in INITS:
        raise ConfigError(f"run '{name}': init must be one of {INITS}")
    if spec.get("quantizer") is not None:
        if spec["quantizer"] not in QUANTIZERS:
            raise ConfigError(f"run '{name}': quantizer must be one of {QUANTIZERS}")
        if spec.get("method") not in ("real_quantized", "mtt", "datm") or spec.get("n_colors", 256) >= 256:
            raise ConfigError(f"run '{name}': a quantizer applies to real_quantized/mtt/datm runs with n_colors < 256")
    outputs = tuple(Output(**o) for o in spec.pop("outputs", []))
    cross = tuple(ArchOutput(**o) for o in spec.pop("cross_arch_outputs", []))
    if any(o.arch not in CROSS_ARCHITECTURES for o in cross):
        raise ConfigError(f"run '{name}': cross_arch_outputs arch must be one of {CROSS_ARCHITECTURES}")
    if spec.get("dm") and spec.get("method") not in ("dm", "dm_autopalette"):
        raise ConfigError(f"run '{name}': 'dm' overrides apply to dm/dm_autopalette runs only")
    shifted = tuple(Output(**o) for o in spec.pop("shifted_label_outputs", []))
    variants = []
    for v in spec.pop("quantized_variants", []):
        if v.get("quantizer") not in QUANTIZERS:
            raise ConfigError(f"run '{name}': a quantized variant's quantizer must be one of {QUANTIZERS}")
        variants.append(Variant(v["quantizer"], int(v["n_colors"]), tuple(Output(**o) for o in v["outputs"]),
                                tuple(Output(**o) for o in v.get("shifted_label_outputs", []))))
    return _build(RunConfig, {**spec, "name": name, "outputs": outputs, "shifted_label_outputs": shifted,
                              "cross_arch_outputs": cross,
                              "quantized_variants": tuple(variants)})
