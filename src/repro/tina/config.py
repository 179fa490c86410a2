"""Typed, frozen configuration of the Tina pipeline, built from the validated block of `config/tina.yaml`.

Every key is documented in `workflow/schemas/tina.schema.yaml`; the schema is the single source of the allowed
keys, so `from_dict` only converts (the loader already rejected unknown or mistyped keys).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from repro.common.config import load_paper_config


@dataclass(frozen=True)
class DataConfig:
    dataset: str                 # prepared dataset name (cifar10 at smoke, cifar100 at paper scale)
    train_per_class: int         # training images kept per class (0 = all)
    test_per_class: int          # test images kept per class (0 = all)
    subset_seed: int


@dataclass(frozen=True)
class TaskConfig:
    n_heldout: int               # classes held out of the generic model and of every training task
    min_classes: int             # a task names between min_classes and max_classes classes
    max_classes: int
    n_train_tasks: int           # tasks whose p-models train the generator (the zoo)
    n_id_test: int               # test tasks of seen classes only (class sets never trained on)
    n_ood_test: int              # test tasks with at least one held-out class
    seed: int


@dataclass(frozen=True)
class ClassifierConfig:
    arch: str                    # the generated network (repro.tina.archs.ARCHS): convnet5k/10k/33k/76k (whole),
                                 # resnet20_after, clip_vit_b32_after (head on a frozen backbone)


@dataclass(frozen=True)
class GenericTrainConfig:
    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    seed: int


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int                   # fine-tuning steps (all tasks at once, each on its own classes' images)
    batch_size: int              # examples per task per step
    lr: float
    weight_decay: float
    seed: int


@dataclass(frozen=True)
class TextConfig:
    encoder: str                 # "minilm" (offline, PyPI) or "clip-vit-b32"
    template: str                # prompt per class name, "{}" = the bare name as in the Tina code


@dataclass(frozen=True)
class GeneratorConfig:
    split_policy: str            # "class_rows" (heads only) or "chunk_within_layer" (G.pt)
    chunk_size: int
    conditioning: str            # "tina" (per-slot bias-free projection, LN on all tokens) or "shared" (ablation)
    normalizer: str              # "openai" (Tina/G.pt: x * 1.646) or "std" (x / std of the zoo)
    sampler_variance: str        # "fixed_large" (Tina: beta_t) or "fixed_small" (posterior variance)
    n_embd: int
    n_layer: int
    n_head: int
    num_frequencies: int
    max_freq_log2: float
    timesteps: int
    beta_start: float
    beta_end: float
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    grad_clip: float
    ema_decay: float
    permute_augment: bool
    log_every: int
    checkpoint_every: int        # steps between resumable checkpoints (0 = none)


@dataclass(frozen=True)
class EvalConfig:
    scaling_tasks: tuple[int, ...]   # generator training-set sizes of the scaling table (all tasks is added)


@dataclass(frozen=True)
class TinaConfig:
    data: DataConfig
    tasks: TaskConfig
    classifier: ClassifierConfig
    generic: GenericTrainConfig
    finetune: FinetuneConfig
    text: TextConfig
    generator: GeneratorConfig
    eval: EvalConfig

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TYPES = {"data": DataConfig, "tasks": TaskConfig, "classifier": ClassifierConfig, "generic": GenericTrainConfig,
          "finetune": FinetuneConfig, "text": TextConfig, "generator": GeneratorConfig, "eval": EvalConfig}


def from_dict(block: dict[str, Any]) -> TinaConfig:
    """A `TinaConfig` from one validated scale block."""
    parts = {}
    for name, cls in _TYPES.items():
        values = dict(block[name])
        if cls is EvalConfig:
            values["scaling_tasks"] = tuple(values["scaling_tasks"])
        parts[name] = cls(**values)
    return TinaConfig(**parts)


def load(scale: str) -> TinaConfig:
    return from_dict(load_paper_config("tina", scale))
