"""Typed, frozen configuration of the Tina pipeline, built from the validated block of `config/tina.yaml`.

Every key is documented in `workflow/schemas/tina.schema.yaml`; the schema is the single source of the allowed
keys, so `from_dict` only converts (the loader already rejected unknown or mistyped keys).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from repro.common.config import load_paper_config
from repro.common.errors import UserError


@dataclass(frozen=True)
class DataConfig:
    dataset: str                 # prepared dataset name (cifar10 at smoke, cifar100 at paper scale)
    train_per_class: int         # training images kept per class (0 = all)
    test_per_class: int          # test images kept per class (0 = all)
    subset_seed: int
    source_split: str = ""       # "": the prepared train/test splits; else one prepared split (Caltech-101's
                                 # `all`, Mini-ImageNet's `train`) cut per class into test_per_class test images
                                 # and train_per_class (0 = the rest) training images


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
    split_policy: str            # "chunk_within_layer" (G.pt/Tina), "class_rows" (heads only) or
                                 # "layer_chunks_class_rows" (layer chunks, the classifier as one token per class)
    chunk_size: int
    conditioning: str            # "tina" (per-slot bias-free projection, LN on all tokens) or "shared" (ablation)
    normalizer: str              # "openai" (Tina/G.pt: x * 1.646) or "std" (x / std of the zoo)
    sampler_variance: str        # "fixed_large" (Tina: beta_t) or "fixed_small" (posterior variance)
    sample_steps: int            # ancestral sampling steps: `timesteps` (Tina: the full chain) or fewer, respaced
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
    prompt_templates: tuple[str, ...] = ()   # natural-language prompts for the test tasks ("{}" = class name)
    image_shots: tuple[int, ...] = ()        # image prompts: mean CLIP image embedding of k training images


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


MAIN = "main"


def runs(block: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The block's pipelines: `main`, one per size-study arch (`size_<arch>`), one per extra dataset
    (`data_<name>`) and one per generator ablation (`abl_<name>`, which reuses the main run's zoo), each as the
    overrides it applies to the block's sections."""
    studies = block.get("studies", {})
    out: dict[str, dict[str, Any]] = {MAIN: {}}
    for arch in studies.get("sizes", []):
        out[f"size_{arch}"] = {"classifier": {"arch": arch}}
    for name, overrides in studies.get("datasets", {}).items():
        out[f"data_{name}"] = overrides
    for name, overrides in studies.get("ablations", {}).items():
        out[f"abl_{name}"] = overrides
    return out


def zoo_run(run: str) -> str:
    """The run whose tasks, text and zoo `run` uses: ablations change only the generator."""
    return MAIN if run.startswith("abl_") else run


def resolve(block: dict[str, Any], run: str = MAIN) -> dict[str, Any]:
    """The block with the overrides of `run` merged into its sections (one level deep)."""
    all_runs = runs(block)
    if run not in all_runs:
        raise UserError(f"tina run '{run}' is not in this scale's block (runs: {', '.join(all_runs)})")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in block.items() if k != "studies"}
    for section, values in all_runs[run].items():
        out[section] = {**out[section], **values}
    return out


def from_dict(block: dict[str, Any], run: str = MAIN) -> TinaConfig:
    """A `TinaConfig` from one validated scale block (and one of its runs)."""
    block = resolve(block, run)
    parts = {}
    for name, cls in _TYPES.items():
        values = dict(block[name])
        if cls is EvalConfig:
            for key in ("scaling_tasks", "prompt_templates", "image_shots"):
                values[key] = tuple(values.get(key, ()))
        parts[name] = cls(**values)
    g = parts["generator"]
    if g.sample_steps > g.timesteps:
        raise UserError(f"config/tina.yaml generator.sample_steps = {g.sample_steps} exceeds timesteps = "
                        f"{g.timesteps}; sampling walks a subset of the training chain")
    if g.checkpoint_every and g.checkpoint_every % g.log_every:
        # the running loss is summed between log steps and not checkpointed: a resume elsewhere would log a partial
        # mean and leave a final_loss that an uninterrupted run does not
        raise UserError(f"config/tina.yaml generator.checkpoint_every = {g.checkpoint_every} is not a multiple of "
                        f"log_every = {g.log_every}; a resumed training would differ from an uninterrupted one")
    return TinaConfig(**parts)


def load(scale: str, run: str = MAIN) -> TinaConfig:
    return from_dict(load_paper_config("tina", scale), run)
