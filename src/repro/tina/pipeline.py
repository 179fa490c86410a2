"""The steps behind the CLI commands: tasks, text embeddings, zoo, generator training, evaluation.

Each function takes paths and a config and writes its outputs atomically; `cli.py` only parses arguments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from repro.common.data.canonical import Split, load_split, subset
from repro.common.device import pick_device
from repro.common.errors import UserError
from repro.common.io import load_npz, save_npz, save_torch
from repro.common.progress import progress
from repro.common.results import ResultWriter
from repro.common.seeding import seed_everything
from repro.common.text import (IMAGE_ENCODERS, EmbeddingCache, ImageTextEncoder, TextEncoder, embed_texts,
                               get_encoder, has_image_tower)
from repro.tina import archs as A
from repro.tina import zoo as Z
from repro.tina.baselines import retrieve
from repro.tina.config import TinaConfig
from repro.tina.tasks import TaskSet, sample_tasks, slot_matrix
from repro.tina.train import ParamData, build_generator, generate, make_diffusion, train_generator

SPLITS = ("train", "id_test", "ood_test")


def _load(path: str, per_class: int, seed: int, dataset: str) -> Split:
    split = load_split(path)
    if split.name != dataset:
        raise UserError(f"{path} holds dataset '{split.name}' but config/tina.yaml data.dataset is '{dataset}'")
    return subset(split, n_per_class=per_class, seed=seed) if per_class else split


def load_data(cfg: TinaConfig, train_npz: str, test_npz: str) -> tuple[Split, Split]:
    """The training and test images of the run: the prepared splits, or (`data.source_split`) one prepared split
    cut per class into `test_per_class` test images and the rest (or `train_per_class`) for training: Caltech-101
    has no official split, and Mini-ImageNet's splits are class-disjoint."""
    d = cfg.data
    if not d.source_split:
        return (_load(train_npz, d.train_per_class, d.subset_seed, d.dataset),
                _load(test_npz, d.test_per_class, d.subset_seed, d.dataset))
    full = _load(train_npz, 0, d.subset_seed, d.dataset)
    if not d.test_per_class:
        raise UserError("config/tina.yaml: data.source_split needs test_per_class > 0 (the per-class test cut)")
    rng = np.random.default_rng([d.subset_seed, 7])
    train_idx, test_idx = [], []
    for c in range(full.num_classes):
        idx = rng.permutation(np.flatnonzero(full.labels == c))
        if len(idx) <= d.test_per_class:
            raise UserError(f"{train_npz}: class {full.class_names[c]} has {len(idx)} images, not more than "
                            f"data.test_per_class = {d.test_per_class}; lower it")
        test_idx.append(idx[:d.test_per_class])
        rest = idx[d.test_per_class:]
        train_idx.append(rest[:d.train_per_class] if d.train_per_class else rest)
    return full.take(np.sort(np.concatenate(train_idx))), full.take(np.sort(np.concatenate(test_idx)))


# -- tasks and text ------------------------------------------------------------------------------------------------
def make_tasks(cfg: TinaConfig, train_npz: str, out: str) -> TaskSet:
    names = load_split(train_npz).class_names
    tasks = sample_tasks(cfg.tasks, names)
    tasks.save(out)
    return tasks


def make_text(cfg: TinaConfig, tasks_json: str, out: str, cache: str | None, source: str | None) -> None:
    tasks = TaskSet.load(tasks_json)
    prompts = [cfg.text.template.format(n.replace("_", " ")) for n in tasks.class_names]
    emb = embed_texts(prompts, cfg.text.encoder, cache=cache, source=source)
    save_npz(out, class_names=np.asarray(tasks.class_names), prompts=np.asarray(prompts), embeddings=emb,
             encoder=np.asarray(cfg.text.encoder))


def load_text(path: str) -> torch.Tensor:
    return torch.from_numpy(load_npz(path)["embeddings"]).float()


# -- zoo -----------------------------------------------------------------------------------------------------------
@torch.inference_mode()
def clip_image_features(images: np.ndarray, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """CLIP ViT-B/32 image embeddings (`get_image_features`, 512-d, not normalised) of uint8 [N, H, W, 3] images,
    resized to 224 (bicubic) and standardised as CLIP does. Weights: REPRO_CLIP_DIR or the Hugging Face hub."""
    import os

    from repro.common.text import CLIP_HUB_ID, clip_pixels

    source = os.environ.get("REPRO_CLIP_DIR") or CLIP_HUB_ID
    try:
        from transformers import CLIPVisionModelWithProjection

        model = CLIPVisionModelWithProjection.from_pretrained(source).to(device).eval()
    except OSError as e:
        raise UserError(f"CLIP ViT-B/32 image tower not found at '{source}' ({e.__class__.__name__}); put the "
                        f"files of {CLIP_HUB_ID} in a directory and set REPRO_CLIP_DIR to it") from None
    out = []
    for i in progress(range(0, len(images), batch_size), desc="CLIP image features"):
        pixels = clip_pixels(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])), device)
        out.append(model(pixel_values=pixels).image_embeds.float().cpu())
    return torch.cat(out)


def build_generic(arch: str, n_classes: int) -> torch.nn.Module:
    """Stage 1's model: the whole ConvNet, ResNet-20 (backbone of `resnet20_after`) or a linear probe on CLIP."""
    s = A.spec(arch)
    if s.whole:
        return A.build_generated(arch, n_classes)
    if s.backbone == "resnet20":
        from repro.common.resnet import resnet20

        return resnet20(n_classes)
    return A.Head(s.feat_dim, n_classes)


def make_zoo(cfg: TinaConfig, tasks_json: str, train_npz: str, test_npz: str, out: str) -> dict:
    """Generic model on every class of the dataset, then every task's p-model (training and test tasks) and, as a
    baseline, every test task's directly fine-tuned head."""
    tasks = TaskSet.load(tasks_json)
    arch = A.spec(cfg.classifier.arch)
    device = pick_device()
    seed_everything(cfg.generic.seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train, test = load_data(cfg, train_npz, test_npz)
    y_train, y_test = torch.from_numpy(train.labels).long(), torch.from_numpy(test.labels).long()
    if arch.backbone == "clip-vit-b32":
        x_train, x_test = clip_image_features(train.images, device), clip_image_features(test.images, device)
    else:
        x_train, x_test = Z.to_tensor(train.images), Z.to_tensor(test.images)
    timings["load_s"] = time.perf_counter() - t0

    # Stage 1: the generic model learns every class of the dataset (the paper's generic model; sheet section 2).
    t0 = time.perf_counter()
    n_classes = len(tasks.class_names)
    model = Z.train_generic(build_generic(arch.name, n_classes), x_train, y_train, cfg.generic, device)
    timings["generic_train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    f_train = Z.extract_features(model, x_train, device)
    f_test = Z.extract_features(model, x_test, device)
    timings["features_s"] = time.perf_counter() - t0

    k_max = cfg.tasks.max_classes
    module = A.build_generated(arch.name, k_max)
    layout = A.ParamLayout.of(module)
    head_module = A.Head(f_test.shape[1], k_max)
    head_layout = A.ParamLayout.of(head_module)
    p_inputs = (x_train, x_test) if arch.whole else (f_train, f_test)
    # Stage 2: all tasks of all splits are fine-tuned together in one batched problem (tasks are independent).
    t0 = time.perf_counter()
    slots = {name: torch.from_numpy(slot_matrix(getattr(tasks, name), k_max)) for name in SPLITS}
    all_slots = torch.cat(list(slots.values()))
    flat0 = Z.initial_models(model.cpu(), layout, all_slots)         # p-model starts (whole network or head)
    generic_heads = Z.initial_models(model.cpu(), head_layout, all_slots)   # the generic baseline's heads
    flat = Z.finetune_models(module, layout, flat0, p_inputs[0], y_train, all_slots, n_classes, cfg.finetune,
                             device)
    scores = Z.evaluate_models(module, layout, flat, p_inputs[1], y_test, all_slots, n_classes, device,
                               desc="scoring p-models")
    timings["finetune_s"] = time.perf_counter() - t0
    # Direct fine-tuning (the baseline a reviewer asked for): the generic model's head fine-tuned on each test
    # task's classes, features frozen. For head archs this is the p-model recipe itself.
    t0 = time.perf_counter()
    n_test = sum(len(slots[s]) for s in TEST_SPLITS)
    test_slots = all_slots[-n_test:]
    direct = (Z.finetune_models(head_module, head_layout, generic_heads[-n_test:], f_train, y_train, test_slots,
                                n_classes, cfg.finetune, device, desc="direct fine-tuning (head)")
              if arch.whole else flat[-n_test:])
    timings["direct_s"] = time.perf_counter() - t0
    splits, lo = {}, 0
    for name, sl in slots.items():
        part = slice(lo, lo + len(sl))
        lo += len(sl)
        splits[name] = {"slots": sl, "flat": flat[part], "acc": scores.acc[part], "generic": generic_heads[part]}
    lo = 0
    for name in TEST_SPLITS:
        splits[name]["direct"] = direct[lo:lo + len(slots[name])]
        lo += len(slots[name])
    n_models = sum(len(s["slots"]) for s in splits.values())
    gw, gb = Z.generic_classifier(model)
    generic_acc = float(((f_test @ gw.T + gb).argmax(1) == y_test).float().mean())
    zoo = {"arch": arch.name, "whole": arch.whole, "k_max": k_max, "numel": layout.numel, "seen": list(tasks.seen),
           "n_classes": n_classes, "generic_state": {k: v.cpu() for k, v in model.state_dict().items()},
           "test_feats": f_test, "test_labels": y_test, "splits": splits, "timings": timings,
           "generic_acc": generic_acc, "n_p_models": n_models}
    save_torch(out, zoo)
    return zoo


def load_zoo(path: str) -> dict:
    if not Path(path).is_file():
        raise UserError(f"{path}: model zoo not found; run the tina_zoo rule (python -m repro.tina zoo)")
    return torch.load(path, map_location="cpu", weights_only=True)


# -- generator -----------------------------------------------------------------------------------------------------
def param_data(split: dict, text: torch.Tensor, limit: int | None = None) -> ParamData:
    slots = split["slots"][:limit]
    mask = slots >= 0
    return ParamData(split["flat"][:limit], text[slots.clamp(min=0)] * mask.unsqueeze(-1), mask)


def zoo_layout(zoo: dict) -> A.ParamLayout:
    layout = A.ParamLayout.for_arch(zoo["arch"], zoo["k_max"])
    if layout.numel != zoo["numel"]:
        raise UserError(f"zoo holds {zoo['numel']}-value models but {zoo['arch']} has {layout.numel}; rerun tina_zoo")
    return layout


def parse_variant(variant: str, n_train: int) -> tuple[bool, int]:
    """'cond' | 'uncond' | 'cond_n{k}' -> (conditional, number of training tasks)."""
    if variant in ("cond", "uncond"):
        return variant == "cond", n_train
    if variant.startswith("cond_n") and variant[6:].isdigit():
        k = int(variant[6:])
        if not 0 < k <= n_train:
            raise UserError(f"generator variant {variant}: needs 1..{n_train} training tasks")
        return True, k
    raise UserError(f"unknown generator variant '{variant}' (use cond, uncond or cond_n<K>)")


def derange_slots(mask: torch.Tensor, seed: int) -> torch.Tensor:
    """[T, K] index: per task a random permutation of its used slots with no fixed point (unused slots stay).

    Giving slot j the text of another of the task's classes is the "wrong text" control: a generator that reads the
    text then puts each class's classifier row in the wrong slot."""
    gen = torch.Generator().manual_seed(seed)
    T, K = mask.shape
    idx = torch.arange(K).expand(T, K).clone()
    for t in range(T):
        used = torch.nonzero(mask[t]).squeeze(1)
        n = len(used)
        # A uniformly drawn cyclic order of length n is a derangement (a random n-cycle).
        order = used[torch.randperm(n, generator=gen)]
        idx[t, order] = order.roll(1)
    return idx


def make_generator(cfg: TinaConfig, zoo_path: str, text_path: str, variant: str, seed: int, out: str) -> dict:
    """Train one generator on the zoo's training tasks, then sample one model for every ID and OOD test task.

    Sampling happens here, beside training, so that the generators of a run sample in parallel; the evaluation only
    scores the stored models. All test tasks are sampled in one batch (one T-step chain). The full conditional
    generator (`cond`) also samples two controls in the same chain: every task with its class texts deranged over
    the slots ("shuffled"), and every task again with fresh noise ("resampled").
    """
    zoo, text = load_zoo(zoo_path), load_text(text_path)
    conditional, n = parse_variant(variant, len(zoo["splits"]["train"]["slots"]))
    seed_everything(seed)
    device = pick_device()
    layout = zoo_layout(zoo)
    net = build_generator(cfg.generator, layout, text.shape[1] if conditional else None)
    res = train_generator(net, param_data(zoo["splits"]["train"], text, n), layout, cfg.generator, device, seed,
                          desc=f"generator {variant}", ckpt=f"{out}.resume", ckpt_every=cfg.generator.checkpoint_every)
    parts = [param_data(zoo["splits"][split], text) for split in TEST_SPLITS]
    cond_text, mask = torch.cat([p.text for p in parts]), torch.cat([p.mask for p in parts])
    kinds = {"generated": cond_text}
    if variant == "cond":
        perm = derange_slots(mask, seed)
        kinds["shuffled"] = cond_text.gather(1, perm.unsqueeze(-1).expand(-1, -1, cond_text.shape[-1]))
        kinds["resampled"] = cond_text
    t0 = time.perf_counter()
    flat = generate(res.ema, res.normalizer, layout, make_diffusion(cfg.generator),
                    torch.cat(list(kinds.values())), mask.repeat(len(kinds), 1), device, seed=seed,
                    desc=f"sampling {variant}")
    gen_s = time.perf_counter() - t0
    samples, lo = {}, 0
    for kind in kinds:
        samples[kind] = {}
        for split, part in zip(TEST_SPLITS, parts):
            samples[kind][split] = flat[lo:lo + len(part)]
            lo += len(part)
    info = {"variant": variant, "conditional": conditional, "n_train_tasks": n, "seed": seed,
            "steps": cfg.generator.steps, "steps_per_s": res.steps_per_s, "train_s": res.train_s,
            "final_loss": res.final_loss, "n_params": sum(p.numel() for p in net.parameters()),
            "gen_s_per_model": gen_s / len(flat), "n_generated": len(flat), "device": str(device),
            "threads": torch.get_num_threads(), "arch": zoo["arch"], "generated_numel": layout.numel}
    save_torch(out, {"state": {k: v.cpu() for k, v in res.ema.state_dict().items()},
                     "coeff": res.normalizer.coeff, "info": info, "samples": samples})
    return info


def restore_generator(cfg: TinaConfig, ck: dict, layout: A.ParamLayout, text_dim: int | None):
    """The EMA generator and its normaliser from a generator file."""
    from repro.tina.params import ScalarNormalizer

    net = build_generator(cfg.generator, layout, text_dim)
    net.load_state_dict(ck["state"])
    return net.eval(), ScalarNormalizer(ck["coeff"])


def prompt_labels(cfg: TinaConfig) -> list[str]:
    """The prompt study's rows: each natural-language template, then each image-prompt shot count."""
    return [f"text: {t}" for t in cfg.eval.prompt_templates] + [
        f"image: {k}-shot" if k > 1 else "image: zero-shot (1 image)" for k in cfg.eval.image_shots]


@dataclass(frozen=True)
class ImagePrompts:
    """Image prompts of a set of classes: one embedding per class (the mean of `shots` image embeddings, unit
    normalised like the text embeddings the generator learnt from) and which training images made it."""

    embeddings: torch.Tensor     # [n_classes, dim]
    picks: np.ndarray            # [n_classes, shots] indices into the training split


def image_prompts(train: Split, class_names: list[str], shots: int, seed: int,
                  encoder: ImageTextEncoder) -> ImagePrompts:
    """Per class of `class_names` (the order of the text embeddings), `shots` distinct training images of that class
    drawn with `seed` and embedded by the encoder's image tower; zero-shot (1 image) is that image's embedding,
    few-shot the mean of k (CLIP's joint space makes an image a prompt for its class)."""
    if not has_image_tower(encoder):
        raise UserError(f"image prompts need an encoder with an image tower in its text space (one of "
                        f"{', '.join(IMAGE_ENCODERS)}); '{encoder.name}' has none")
    index = {n: i for i, n in enumerate(train.class_names)}
    missing = [n for n in class_names if n not in index]
    if missing:
        raise UserError(f"image prompts: classes {missing[:3]} of the text embeddings are not in the training split "
                        f"{train.name}/{train.split}; rerun tina_tasks and tina_text on this dataset")
    rng = np.random.default_rng([seed, shots])
    picks = []
    for name in class_names:
        pool = np.flatnonzero(train.labels == index[name])
        if len(pool) < shots:
            raise UserError(f"image prompts: class {name} has {len(pool)} training images, fewer than {shots} shots; "
                            "lower eval.image_shots")
        picks.append(rng.choice(pool, shots, replace=False))
    picks = np.stack(picks)
    feats = torch.from_numpy(np.asarray(encoder.encode_images(train.images[picks.reshape(-1)]), dtype=np.float32))
    if feats.shape != (picks.size, encoder.dim):
        raise UserError(f"encoder '{encoder.name}' returned image embeddings of shape {tuple(feats.shape)}, expected "
                        f"({picks.size}, {encoder.dim})")
    mean = feats.view(len(class_names), shots, -1).mean(1)
    return ImagePrompts(torch.nn.functional.normalize(mean, dim=1), picks)


def image_prompt_problem(cfg: TinaConfig, encoder: TextEncoder | None) -> str | None:
    """Why the image-prompt rows cannot run with this encoder (the row's note), or None."""
    if encoder is not None and has_image_tower(encoder):
        return None
    name = encoder.name if encoder is not None else cfg.text.encoder
    if encoder is None and name in IMAGE_ENCODERS:
        return None
    return (f"not_run: the text encoder '{name}' has no image tower sharing its embedding space (only "
            f"{', '.join(IMAGE_ENCODERS)} has; no CLIP weights are offline, see the mirror README)")


def make_prompt_samples(cfg: TinaConfig, zoo_path: str, text_path: str, gen_path: str, train_npz: str,
                        test_npz: str, seed: int, cache: str | None, out: str,
                        encoder: TextEncoder | None = None) -> None:
    """The prompt study: the main generator, trained on class names, given other prompts for the test tasks'
    classes (natural-language templates; zero- and few-shot image prompts) samples one model per test task.

    `encoder` (default: the configured one, built when first needed) embeds the templates and, if it has an image
    tower, the image prompts; without one the image rows are recorded as not run, with the reason."""
    zoo, names_text = load_zoo(zoo_path), load_text(text_path)
    ck = load_generator(gen_path)
    layout = zoo_layout(zoo)
    net, normalizer = restore_generator(cfg, ck, layout, names_text.shape[1])
    class_names = [str(n) for n in load_npz(text_path)["class_names"]]
    built: list[TextEncoder] = [encoder] if encoder is not None else []

    def get() -> TextEncoder:
        if not built:
            built.append(get_encoder(cfg.text.encoder))
        return built[0]

    prompts: dict[str, torch.Tensor] = {}
    for template, label in zip(cfg.eval.prompt_templates, prompt_labels(cfg)):
        texts = [template.format(n.replace("_", " ")) for n in class_names]
        name = encoder.name if encoder is not None else cfg.text.encoder
        emb = EmbeddingCache(cache, name, get).embed(texts) if cache else get().encode(texts)
        prompts[label] = torch.from_numpy(np.asarray(emb)).float()
    picks, not_run = {}, {}
    image_labels = prompt_labels(cfg)[len(cfg.eval.prompt_templates):]
    problem = image_prompt_problem(cfg, encoder) if image_labels else None
    if image_labels and problem is None:
        train, _ = load_data(cfg, train_npz, test_npz)
        for k, label in zip(cfg.eval.image_shots, image_labels):
            ip = image_prompts(train, class_names, k, seed, get())
            prompts[label], picks[label] = ip.embeddings, torch.from_numpy(ip.picks)
    elif problem:
        not_run = {label: problem for label in image_labels}
        print(f"image prompts {image_labels}: {problem}")
    device = pick_device()
    samples = {}
    for label, emb in prompts.items():
        if emb.shape[1] != names_text.shape[1]:
            raise UserError(f"prompt '{label}' embeds to {emb.shape[1]} dims, the generator reads {names_text.shape[1]}")
        parts = [param_data(zoo["splits"][split], emb) for split in TEST_SPLITS]
        flat = generate(net, normalizer, layout, make_diffusion(cfg.generator), torch.cat([p.text for p in parts]),
                        torch.cat([p.mask for p in parts]), device, seed=seed, desc=f"sampling '{label}'")
        samples[label], lo = {}, 0
        for split, part in zip(TEST_SPLITS, parts):
            samples[label][split] = flat[lo:lo + len(part)]
            lo += len(part)
    save_torch(out, {"samples": samples, "arch": zoo["arch"], "embeddings": prompts, "image_picks": picks,
                     "not_run": not_run})


def load_generator(path: str) -> dict:
    """A generator file: EMA weights, normaliser coefficient, run info and the models it sampled for the test tasks."""
    if not Path(path).is_file():
        raise UserError(f"{path}: generator file not found; run the tina_generator rule")
    return torch.load(path, map_location="cpu", weights_only=True)


# -- evaluation ----------------------------------------------------------------------------------------------------
METHODS = {"generic": "Generic (task classes)", "direct": "Direct fine-tuning (head)",
           "finetuned": "Fine-tuned p-model", "retrieval": "Nearest-text retrieval", "uncond": "Unconditional p-diff",
           "tina": "Tina (generated)", "shuffled": "Tina (shuffled text)", "resampled": "Tina (resampled)",
           "chance": "Chance"}
TEST_SPLITS = {"id_test": "ID", "ood_test": "OOD"}
HEAD_METHODS = ("generic", "direct")   # scored as heads on the generic model's frozen features


def unit_name(i: int) -> str:
    """The unit of a per-task row: the task's index in its split (ID and OOD are separate columns)."""
    return f"task{i:03d}"


def evaluate(cfg: TinaConfig, scale: str, zoo_path: str, text_path: str, test_npz: str, generators: dict[str, str],
             seed: int, out_csv: str, out_npz: str, prompts_path: str | None = None,
             study: tuple[str, str] | None = None) -> None:
    """Score every method on the test tasks. The main run writes the tables main, unseen, scaling, prompts, zoo
    and speed; a study run (`study` = (table, label), e.g. ("sizes", "convnet33k")) writes its main-table rows to
    that table, columns prefixed by its label."""
    zoo, text = load_zoo(zoo_path), load_text(text_path)
    n_classes, seen = zoo["n_classes"], set(zoo["seen"])
    feats, labels = zoo["test_feats"], zoo["test_labels"]
    device = pick_device()
    layout = zoo_layout(zoo)
    module = A.build_generated(zoo["arch"], zoo["k_max"])
    head_module = A.Head(feats.shape[1], zoo["k_max"])
    head_layout = A.ParamLayout.of(head_module)
    if zoo["whole"]:
        d = cfg.data  # with a source split, the rule passes that split as the test file
        test = (load_data(cfg, test_npz, test_npz)[1] if d.source_split
                else _load(test_npz, d.test_per_class, d.subset_seed, d.dataset))
        if not torch.equal(torch.from_numpy(test.labels).long(), labels):
            raise UserError(f"{test_npz} is not the test split the zoo was built from; rerun tina_zoo")
        inputs = Z.to_tensor(test.images)
    else:
        inputs = feats
    train = zoo["splits"]["train"]
    per_task: dict[str, np.ndarray] = {}
    models: dict[tuple[str, str], torch.Tensor] = {}
    with ResultWriter(paper="tina", part=Path(out_csv).stem, scale=scale, out_csv=out_csv,
                      config=cfg.to_dict()) as rw:
        rw.extra["zoo_timings_s"] = zoo["timings"]
        with rw.stage("baselines"):
            for split in TEST_SPLITS:
                s = zoo["splits"][split]
                models[("finetuned", split)] = s["flat"]
                models[("generic", split)] = s["generic"]
                if zoo["whole"]:
                    models[("direct", split)] = s["direct"]
                chosen, idx = retrieve(s["slots"], train["slots"], text)
                models[("retrieval", split)] = layout.select_classes(train["flat"][chosen], idx)
        gen_info = {}
        for name, path in generators.items():
            ck = load_generator(path)
            if ck["info"].get("arch") != zoo["arch"]:
                raise UserError(f"{path} generates {ck['info'].get('arch')} models, the zoo holds {zoo['arch']}; "
                                "rerun its tina_generator rule")
            gen_info[name] = ck["info"]
            for kind, by_split in ck["samples"].items():
                key = name if kind == "generated" else kind
                for split in TEST_SPLITS:
                    models[(key, split)] = by_split[split]
        rw.extra["generators"] = gen_info
        prompt_rows = []
        if prompts_path:
            pr = torch.load(prompts_path, map_location="cpu", weights_only=True)
            for label, by_split in pr["samples"].items():
                prompt_rows.append(label)
                for split in TEST_SPLITS:
                    models[(label, split)] = by_split[split]
            prompt_not_run = dict(pr.get("not_run", {}))
        else:
            prompt_not_run = {}

        cache: dict[tuple[str, str], Z.HeadScores] = {}

        def score(method: str, split: str) -> Z.HeadScores:
            if (method, split) not in cache:
                slots = zoo["splits"][split]["slots"]
                with rw.stage(f"score {method}"):
                    if method in HEAD_METHODS:
                        sc = Z.evaluate_models(head_module, head_layout, models[(method, split)], feats, labels,
                                               slots, n_classes, device)
                    else:
                        sc = Z.evaluate_models(module, layout, models[(method, split)], inputs, labels, slots,
                                               n_classes, device, desc=f"scoring {method} {TEST_SPLITS[split]}")
                cache[(method, split)] = sc
            return cache[(method, split)]

        def add(table, row, column, acc: torch.Tensor, units: list[str]):
            """The cell's summary row, then one row per task (unit) for paired comparisons."""
            if study:
                if table != "main":
                    return
                table, column = study[0], f"{study[1]} {column}"
            rw.add(table, row, column, float(acc.mean()) * 100, seed=seed,
                   std=float(acc.std()) * 100 if len(acc) > 1 else None, n=len(acc))
            add_units(rw, table, row, column, acc, units, seed)

        order = ("generic", "direct", "finetuned", "retrieval", "uncond", "tina", "shuffled", "resampled")
        main_methods = [m for m in order if (m, "id_test") in models]
        for split, col in TEST_SPLITS.items():
            slots = zoo["splits"][split]["slots"]
            units = [unit_name(i) for i in range(len(slots))]
            sizes = (slots >= 0).sum(1).float()
            add("main", METHODS["chance"], col, 1.0 / sizes, units)
            per_task[f"chance_{split}"] = (1.0 / sizes).numpy()
            held = (slots >= 0) & ~torch.isin(slots, torch.tensor(sorted(seen)))
            for m in main_methods:
                sc = score(m, split)
                per_task[f"{m}_{split}"] = sc.acc.numpy()
                add("main", METHODS[m], col, sc.acc, units)
                if split == "ood_test":
                    # Unseen classes: accuracy on the OOD tasks' images of held-out vs seen classes.
                    for col2, sel in (("held-out classes", held), ("seen classes", (slots >= 0) & ~held)):
                        acc = (sc.correct * sel).sum(1) / (sc.count * sel).sum(1).clamp(min=1)
                        has = (sc.count * sel).sum(1) > 0
                        add("unseen", METHODS[m], col2, acc[has], [u for u, h in zip(units, has) if h])
            if split == "ood_test":
                has = held.any(1)
                add("unseen", METHODS["chance"], "held-out classes", (1.0 / sizes)[has],
                    [u for u, h in zip(units, has) if h])
        # Prompt study: the same generator given other prompts for the test tasks' classes.
        for label in prompt_rows:
            for split, col in TEST_SPLITS.items():
                units = [unit_name(i) for i in range(len(zoo["splits"][split]["slots"]))]
                add("prompts", label, col, score(label, split).acc, units)
        for label, why in prompt_not_run.items():
            for col in TEST_SPLITS.values():
                if not study:
                    rw.add("prompts", label, col, None, seed=seed, note=why)
        if prompt_rows:
            for split, col in TEST_SPLITS.items():
                units = [unit_name(i) for i in range(len(zoo["splits"][split]["slots"]))]
                add("prompts", "class names (training prompt)", col, score("tina", split).acc, units)
        # Scaling with the number of training tasks (Tina variants cond_n{k} plus the full model).
        for name, info in gen_info.items():
            if not info["conditional"]:
                continue
            row = f"{info['n_train_tasks']} tasks" if name != "tina" else "all tasks"
            for split, col in TEST_SPLITS.items():
                units = [unit_name(i) for i in range(len(zoo["splits"][split]["slots"]))]
                add("scaling", row, col, score(name, split).acc, units)
        if study:
            save_npz(out_npz, **per_task)
            return
        # Speed (excluded from the regression reference: timings vary by machine).
        t = zoo["timings"]
        rw.add("speed", "zoo: generic model", "seconds", t["generic_train_s"], seed=seed)
        rw.add("speed", "zoo: features", "seconds", t["features_s"], seed=seed)
        rw.add("speed", "zoo: p-models (all tasks)", "seconds", t["finetune_s"], seed=seed, n=zoo["n_p_models"])
        rw.add("speed", "zoo: direct fine-tuning (test tasks)", "seconds", t["direct_s"], seed=seed)
        for name, info in gen_info.items():
            rw.add("speed", f"generator {name}", "train steps/s", info["steps_per_s"], seed=seed)
            rw.add("speed", f"generator {name}", "generation s/model", info["gen_s_per_model"], seed=seed)
        rw.add("zoo", "generic model", "test accuracy (all classes)", zoo["generic_acc"] * 100, seed=seed)
        acc = zoo["splits"]["train"]["acc"]
        rw.add("zoo", "p-models (training tasks)", "task accuracy", float(acc.mean()) * 100, seed=seed,
               std=float(acc.std()) * 100, n=len(acc))
        rw.add("zoo", f"generated part ({zoo['arch']})", "parameters", layout.numel, seed=seed)
    save_npz(out_npz, **per_task)


def add_units(rw: ResultWriter, table: str, row: str, column: str, acc: torch.Tensor, units: list[str],
              seed: int) -> None:
    """One metric row per task (the `unit` of the paired comparisons in the claims), beside the cell's summary."""
    for u, a in zip(units, acc.tolist()):
        rw.add(table, row, column, a * 100, seed=seed, unit=u)


# -- speed benchmark -----------------------------------------------------------------------------------------------
def bench(cfg: TinaConfig, steps: int, n_models: int, generic_steps: int, out: str | None) -> dict:
    """Time the scale's generator (training steps/s, seconds per generated model with all T sampling steps) and
    generic-model training steps on synthetic inputs of the scale's shapes (the numbers do not depend on values)."""
    from dataclasses import replace

    from repro.common.io import save_json

    device = pick_device()
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    seed_everything(0)
    k = cfg.tasks.max_classes
    layout = A.ParamLayout.for_arch(cfg.classifier.arch, k)
    text_dim = {"minilm": 384, "clip-vit-b32": 512}[cfg.text.encoder]
    n = 256
    data = ParamData(torch.randn(n, layout.numel) * 0.1,
                     torch.nn.functional.normalize(torch.randn(n, k, text_dim), dim=-1), torch.ones(n, k, dtype=torch.bool))
    result: dict = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "arch": cfg.classifier.arch, "generated_params": layout.numel}
    gcfg = replace(cfg.generator, steps=steps, warmup_steps=min(cfg.generator.warmup_steps, steps),
                   log_every=max(1, steps // 4), checkpoint_every=0)
    net = build_generator(gcfg, layout, text_dim)
    result["generator_params"] = sum(p.numel() for p in net.parameters())
    train_generator(build_generator(replace(gcfg, steps=5), layout, text_dim), data, layout, replace(gcfg, steps=5),
                    device, 0, desc="warm-up")
    res = train_generator(net, data, layout, gcfg, device, 0, desc="bench generator")
    result["generator_steps_per_s"] = res.steps_per_s
    sync()
    t0 = time.perf_counter()
    generate(res.ema, res.normalizer, layout, make_diffusion(gcfg), data.text[:n_models], data.mask[:n_models],
             device, 0)
    sync()
    result["sampling_s_per_model"] = (time.perf_counter() - t0) / n_models
    result["sampling_batch"] = n_models
    # Generic-model training throughput (stage 1 of the zoo) at the configured batch size, 32x32 inputs.
    spec = A.spec(cfg.classifier.arch)
    classifier = build_generic(cfg.classifier.arch, 100).to(device)
    shape = (3, 32, 32) if spec.whole or spec.backbone == "resnet20" else (spec.feat_dim,)
    x = torch.randn(cfg.generic.batch_size, *shape, device=device)
    y = torch.randint(0, 100, (cfg.generic.batch_size,), device=device)
    opt = torch.optim.SGD(classifier.parameters(), lr=0.01, momentum=0.9)
    for i in range(generic_steps + 3):
        if i == 3:
            sync()
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(classifier(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    result["generic_steps_per_s"] = generic_steps / (time.perf_counter() - t0)
    result["generic_batch"] = cfg.generic.batch_size
    if out:
        save_json(out, result)
    return result
