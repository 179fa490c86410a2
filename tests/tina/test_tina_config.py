"""The Tina config: every scale block loads, the paper block is Tina's cifar100_personalize10, study runs resolve, and
a single prepared split is cut per class into training and test images."""

import numpy as np
import pytest

from repro.common.config import load_paper_config
from repro.common.data.canonical import Split, save_split
from repro.common.errors import UserError
from repro.tina import config as C
from repro.tina.archs import ARCHS
from repro.tina.pipeline import load_data


def test_paper_block_is_tinas_cifar100_config():
    """aoliliao/Tina configs/train/cifar100_personalize10.yaml (sheet section 3)."""
    cfg = C.load("paper")
    g = cfg.generator
    assert cfg.classifier.arch == "convnet10k" and cfg.data.dataset == "cifar100"
    assert (g.n_embd, g.n_layer, g.n_head, g.chunk_size, g.split_policy) == (512, 12, 16, 576, "chunk_within_layer")
    assert (g.lr, g.weight_decay, g.batch_size, g.ema_decay, g.grad_clip) == (4e-4, 0.1, 32, 0.9999, 0.1)
    assert (g.conditioning, g.normalizer, g.sampler_variance) == ("tina", "openai", "fixed_large")
    assert g.sample_steps == g.timesteps == 1000
    assert g.steps == 400 * 100800 // 32 and g.warmup_steps == 5 * 100800 // 32


def test_smoke_generates_whole_networks():
    cfg = C.load("smoke")
    assert ARCHS[cfg.classifier.arch].whole


def test_study_runs_resolve_to_their_overrides():
    block = load_paper_config("tina", "paper")
    runs = C.runs(block)
    assert set(runs) == {"main", "size_convnet5k", "size_convnet33k", "size_convnet76k", "data_mini_imagenet",
                         "data_caltech101", "abl_project_conditioning"}
    assert C.load("paper", "size_convnet76k").classifier.arch == "convnet76k"
    cal = C.load("paper", "data_caltech101")
    assert cal.classifier.arch == "clip_vit_b32_after" and cal.data.source_split == "all"
    assert cal.generator.n_embd == 2048 and cal.generator.lr == C.load("paper").generator.lr  # merged, not replaced
    abl = C.load("paper", "abl_project_conditioning")
    assert (abl.generator.conditioning, abl.generator.normalizer) == ("shared", "std")
    assert abl.data == C.load("paper").data and C.zoo_run("abl_project_conditioning") == "main"
    assert C.zoo_run("size_convnet33k") == "size_convnet33k"
    with pytest.raises(UserError, match="not in this scale's block"):
        C.load("smoke", "size_convnet33k")


def test_one_split_is_cut_per_class(tmp_path):
    cfg = C.load("paper", "data_caltech101")
    labels = np.repeat(np.arange(4), [31, 40, 35, 50])
    images = np.random.default_rng(0).integers(0, 255, (len(labels), 8, 8, 3), dtype=np.uint8)
    save_split(tmp_path / "all.npz", Split(images, labels, ("a", "b", "c", "d"), "caltech101", "all"))
    train, test = load_data(cfg, str(tmp_path / "all.npz"), str(tmp_path / "all.npz"))
    assert np.bincount(test.labels).tolist() == [10] * 4
    assert np.bincount(train.labels).tolist() == [21, 30, 25, 40]
    # Disjoint images, and the same cut every time.
    both = np.concatenate([train.images.reshape(len(train), -1), test.images.reshape(len(test), -1)])
    assert len(np.unique(both, axis=0)) == len(labels)
    again = load_data(cfg, str(tmp_path / "all.npz"), str(tmp_path / "all.npz"))[1]
    assert np.array_equal(again.images, test.images)


def test_dag_layout_plans_every_run_whatever_the_mirror_holds(tmp_path):
    from repro.tina.workflow import TinaLayout

    block = load_paper_config("tina", "paper")
    prepared = lambda d, s: str(tmp_path / "prepared" / d / f"{s}.npz")  # noqa: E731
    tl = TinaLayout("res/tina", block, prepared)
    assert {"main", "data_mini_imagenet", "data_caltech101", "size_convnet76k"} <= set(tl.runs)
    assert tl.data("data_mini_imagenet", "test") == prepared("mini_imagenet", "train")  # its class-disjoint train split
    for run in tl.runs:
        for seed in (0, 3):
            assert tl.part_run_seed(tl.part(run, seed)) == (run, seed)
    # An ablation reads the main run's zoo; Caltech-101 reads its one `all` split as train and test.
    assert tl.zoo_dir("abl_project_conditioning") == "res/tina/main"
    assert tl.data("data_caltech101", "test") == tl.data("data_caltech101", "train") == prepared("caltech101", "all")
    assert tl.generators("main") == {"tina": "cond", "uncond": "uncond", "cond_n10": "cond_n10",
                                     "cond_n100": "cond_n100", "cond_n300": "cond_n300"}
    assert tl.generators("size_convnet5k") == {"tina": "cond"}


def test_image_prompts_need_an_image_tower_and_prompt_rows_are_labelled():
    from repro.tina.pipeline import image_prompt_problem, image_prompts, prompt_labels

    cfg = C.load("paper")
    assert prompt_labels(cfg) == [f"text: {t}" for t in cfg.eval.prompt_templates] + [
        "image: zero-shot (1 image)", "image: 5-shot"]
    assert image_prompt_problem(cfg, None) is None                     # CLIP ViT-B/32: text and image towers
    smoke = C.load("smoke")
    assert smoke.eval.image_shots == (1, 5)                            # the rows exist at smoke ...
    assert image_prompt_problem(smoke, None).startswith("not_run: the text encoder 'minilm' has no image tower")

    class TextOnly:
        name, dim = "text-only", 4

        def encode(self, texts):
            return np.ones((len(texts), 4), np.float32) / 2

    split = Split(np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 0, 1, 1]), ("a", "b"), "cifar10", "train")
    with pytest.raises(UserError, match="image prompts need an encoder with an image tower"):
        image_prompts(split, ["a", "b"], 1, 0, TextOnly())


@pytest.mark.parametrize("scale", ["smoke", "paper"])
def test_generator_checkpoints_fall_on_log_steps(scale):
    """The running loss restarts at log steps and is not checkpointed: a checkpoint elsewhere would make a resumed
    training log a partial mean (tests/test_faults.py compares a killed and resumed smoke generator exactly)."""
    block = load_paper_config("tina", scale)
    g = C.from_dict(block).generator
    assert g.checkpoint_every % g.log_every == 0
    bad = {**block, "generator": {**block["generator"], "checkpoint_every": g.log_every + 1}}
    with pytest.raises(UserError, match="not a multiple of log_every"):
        C.from_dict(bad)
