"""The steps behind the CLI commands: tasks, text embeddings, zoo, generator training, evaluation.

Each function takes paths and a config and writes its outputs atomically; `cli.py` only parses arguments.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from repro.common.data.canonical import Split, load_split, subset
from repro.common.device import pick_device
from repro.common.errors import UserError
from repro.common.io import load_npz, save_npz, save_torch
from repro.common.results import ResultWriter
from repro.common.seeding import seed_everything
from repro.common.text import embed_texts
from repro.tina import zoo as Z
from repro.tina.baselines import retrieve_heads
from repro.tina.config import TinaConfig
from repro.tina.diffusion import GaussianDiffusion
from repro.tina.params import HeadLayout
from repro.tina.tasks import TaskSet, sample_tasks, slot_matrix
from repro.tina.train import HeadData, build_generator, generate_heads, train_generator

SPLITS = ("train", "id_test", "ood_test")


def _load(path: str, per_class: int, seed: int, dataset: str) -> Split:
    split = load_split(path)
    if split.name != dataset:
        raise UserError(f"{path} holds dataset '{split.name}' but config/tina.yaml data.dataset is '{dataset}'")
    return subset(split, n_per_class=per_class, seed=seed) if per_class else split


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
def make_zoo(cfg: TinaConfig, tasks_json: str, train_npz: str, test_npz: str, out: str) -> dict:
    """Generic model on the seen classes, then every task's p-model head (training and test tasks)."""
    tasks = TaskSet.load(tasks_json)
    device = pick_device()
    seed_everything(cfg.generic.seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train = _load(train_npz, cfg.data.train_per_class, cfg.data.subset_seed, cfg.data.dataset)
    test = _load(test_npz, cfg.data.test_per_class, cfg.data.subset_seed, cfg.data.dataset)
    x_train, x_test = Z.to_tensor(train.images), Z.to_tensor(test.images)
    y_train, y_test = torch.from_numpy(train.labels), torch.from_numpy(test.labels)
    timings["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    seen = torch.tensor(tasks.seen)
    on_seen = torch.isin(y_train, seen)
    remap = torch.full((len(tasks.class_names),), -1, dtype=torch.long)
    remap[seen] = torch.arange(len(seen))
    model = Z.build_classifier(cfg.classifier, len(seen), train.resolution)
    model = Z.train_generic(model, x_train[on_seen], remap[y_train[on_seen]], cfg.generic, device)
    timings["generic_train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    f_train = Z.extract_features(model, x_train, device)
    f_test = Z.extract_features(model, x_test, device)
    timings["features_s"] = time.perf_counter() - t0

    head = model.classifier.cpu()
    k_max = cfg.tasks.max_classes
    # All tasks of all splits are fine-tuned together in one batched problem (tasks are independent).
    t0 = time.perf_counter()
    slots = {name: torch.from_numpy(slot_matrix(getattr(tasks, name), k_max)) for name in SPLITS}
    all_slots = torch.cat(list(slots.values()))
    gw, gb, genabled = Z.generic_heads(head, tasks.seen, all_slots)
    w, b = Z.finetune_heads(f_train, y_train, all_slots, gw, gb, len(tasks.class_names), cfg.finetune, device)
    scores = Z.evaluate_heads(f_test, y_test, all_slots, w, b, len(tasks.class_names))
    splits, lo = {}, 0
    for name, sl in slots.items():
        part = slice(lo, lo + len(sl))
        lo += len(sl)
        splits[name] = {"slots": sl, "weight": w[part], "bias": b[part], "acc": scores.acc[part],
                        "generic_weight": gw[part], "generic_bias": gb[part], "generic_enabled": genabled[part]}
    timings["finetune_s"] = time.perf_counter() - t0
    n_models = sum(len(s["slots"]) for s in splits.values())
    generic_acc = _generic_accuracy(f_test, y_test, head, remap)
    zoo = {"feat_dim": int(f_test.shape[1]), "k_max": k_max, "seen": list(tasks.seen),
           "n_classes": len(tasks.class_names), "generic_state": {k: v.cpu() for k, v in model.state_dict().items()},
           "test_feats": f_test, "test_labels": y_test, "splits": splits, "timings": timings,
           "generic_seen_acc": generic_acc, "n_p_models": n_models}
    save_torch(out, zoo)
    return zoo


def _generic_accuracy(feats: torch.Tensor, labels: torch.Tensor, head: torch.nn.Linear, remap: torch.Tensor) -> float:
    keep = remap[labels] >= 0
    with torch.inference_mode():
        pred = head(feats[keep]).argmax(1)
    return float((pred == remap[labels[keep]]).float().mean())


def load_zoo(path: str) -> dict:
    if not Path(path).is_file():
        raise UserError(f"{path}: model zoo not found; run the tina_zoo rule (python -m repro.tina zoo)")
    return torch.load(path, map_location="cpu", weights_only=True)


# -- generator -----------------------------------------------------------------------------------------------------
def head_data(split: dict, text: torch.Tensor, limit: int | None = None) -> HeadData:
    slots = split["slots"][:limit]
    mask = slots >= 0
    return HeadData(split["weight"][:limit], split["bias"][:limit], text[slots.clamp(min=0)] * mask.unsqueeze(-1),
                    mask)


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


def make_generator(cfg: TinaConfig, zoo_path: str, text_path: str, variant: str, seed: int, out: str) -> dict:
    """Train one generator on the zoo's training tasks, then sample one head for every ID and OOD test task.

    Sampling happens here, beside training, so that the generators of a run sample in parallel; the evaluation only
    scores the stored heads. ID and OOD test tasks are sampled in one batch (one T-step chain).
    """
    zoo, text = load_zoo(zoo_path), load_text(text_path)
    conditional, n = parse_variant(variant, len(zoo["splits"]["train"]["slots"]))
    seed_everything(seed)
    device = pick_device()
    layout = HeadLayout(zoo["k_max"], zoo["feat_dim"])
    net = build_generator(cfg.generator, layout, text.shape[1] if conditional else None)
    res = train_generator(net, head_data(zoo["splits"]["train"], text, n), layout, cfg.generator, device, seed,
                          desc=f"generator {variant}", ckpt=f"{out}.resume", ckpt_every=cfg.generator.checkpoint_every)
    diffusion = GaussianDiffusion(cfg.generator.timesteps, cfg.generator.beta_start, cfg.generator.beta_end)
    parts = [head_data(zoo["splits"][split], text) for split in TEST_SPLITS]
    t0 = time.perf_counter()
    w, b = generate_heads(res.ema, res.normalizer, layout, diffusion, torch.cat([p.text for p in parts]),
                          torch.cat([p.mask for p in parts]), device, seed=seed, desc=f"sampling {variant}")
    gen_s = time.perf_counter() - t0
    samples, lo = {}, 0
    for split, part in zip(TEST_SPLITS, parts):
        samples[split] = {"weight": w[lo:lo + len(part)], "bias": b[lo:lo + len(part)]}
        lo += len(part)
    info = {"variant": variant, "conditional": conditional, "n_train_tasks": n, "seed": seed,
            "steps": cfg.generator.steps, "steps_per_s": res.steps_per_s, "train_s": res.train_s,
            "final_loss": res.final_loss, "n_params": sum(p.numel() for p in net.parameters()),
            "gen_s_per_model": gen_s / len(w), "n_generated": len(w), "device": str(device),
            "threads": torch.get_num_threads()}
    save_torch(out, {"state": {k: v.cpu() for k, v in res.ema.state_dict().items()},
                     "coeff": res.normalizer.coeff, "info": info, "samples": samples})
    return info


def load_generator(path: str) -> dict:
    """A generator file: EMA weights, normaliser coefficient, run info and the heads it sampled for the test tasks."""
    if not Path(path).is_file():
        raise UserError(f"{path}: generator file not found; run the tina_generator rule")
    return torch.load(path, map_location="cpu", weights_only=True)


# -- evaluation ----------------------------------------------------------------------------------------------------
METHODS = {"generic": "Generic (task classes)", "finetuned": "Fine-tuned p-model", "retrieval": "Nearest-text retrieval",
           "uncond": "Unconditional p-diff", "tina": "Tina (generated)", "chance": "Chance"}
TEST_SPLITS = {"id_test": "ID", "ood_test": "OOD"}


def evaluate(cfg: TinaConfig, scale: str, zoo_path: str, text_path: str, generators: dict[str, str], seed: int,
             out_csv: str, out_npz: str) -> None:
    zoo, text = load_zoo(zoo_path), load_text(text_path)
    n_classes, seen = zoo["n_classes"], set(zoo["seen"])
    feats, labels = zoo["test_feats"], zoo["test_labels"]
    train = zoo["splits"]["train"]
    per_task: dict[str, np.ndarray] = {}
    heads: dict[tuple[str, str], tuple] = {}
    with ResultWriter(paper="tina", part=Path(out_csv).stem, scale=scale, out_csv=out_csv,
                      config=cfg.to_dict()) as rw:
        rw.extra["zoo_timings_s"] = zoo["timings"]
        with rw.stage("baselines"):
            for split in TEST_SPLITS:
                s = zoo["splits"][split]
                heads[("finetuned", split)] = (s["weight"], s["bias"], None)
                heads[("generic", split)] = (s["generic_weight"], s["generic_bias"], s["generic_enabled"])
                w, b, _ = retrieve_heads(s["slots"], train["slots"], train["weight"], train["bias"], text)
                heads[("retrieval", split)] = (w, b, None)
        gen_info = {}
        for name, path in generators.items():
            ck = load_generator(path)
            gen_info[name] = ck["info"]
            for split in TEST_SPLITS:
                heads[(name, split)] = (ck["samples"][split]["weight"], ck["samples"][split]["bias"], None)
        rw.extra["generators"] = gen_info

        def score(method: str, split: str):
            w, b, enabled = heads[(method, split)]
            slots = zoo["splits"][split]["slots"]
            return Z.evaluate_heads(feats, labels, slots, w, b, n_classes, enabled=enabled)

        def add(table, row, column, acc: torch.Tensor):
            rw.add(table, row, column, float(acc.mean()) * 100, seed=seed, std=float(acc.std()) * 100 if len(acc) > 1
                   else None, n=len(acc))

        main_methods = [m for m in ("generic", "finetuned", "retrieval", "uncond", "tina") if (m, "id_test") in heads]
        for split, col in TEST_SPLITS.items():
            slots = zoo["splits"][split]["slots"]
            sizes = (slots >= 0).sum(1).float()
            add("main", METHODS["chance"], col, 1.0 / sizes)
            for m in main_methods:
                sc = score(m, split)
                per_task[f"{m}_{split}"] = sc.acc.numpy()
                add("main", METHODS[m], col, sc.acc)
                if split == "ood_test":
                    # Unseen classes: accuracy on the OOD tasks' images of held-out vs seen classes.
                    held = (slots >= 0) & ~torch.isin(slots, torch.tensor(sorted(seen)))
                    for col2, sel in (("held-out classes", held), ("seen classes", (slots >= 0) & ~held)):
                        acc = (sc.correct * sel).sum(1) / (sc.count * sel).sum(1).clamp(min=1)
                        add("unseen", METHODS[m], col2, acc[(sc.count * sel).sum(1) > 0])
            per_task[f"chance_{split}"] = (1.0 / sizes).numpy()
        chance_held = 1.0 / (zoo["splits"]["ood_test"]["slots"] >= 0).sum(1).float()
        add("unseen", METHODS["chance"], "held-out classes", chance_held)
        # Scaling with the number of training tasks (Tina variants cond_n{k} plus the full model).
        for name, info in gen_info.items():
            if not info["conditional"]:
                continue
            row = f"{info['n_train_tasks']} tasks" if name != "tina" else "all tasks"
            for split, col in TEST_SPLITS.items():
                add("scaling", row, col, score(name, split).acc)
        # Speed (excluded from the regression reference: timings vary by machine).
        t = zoo["timings"]
        rw.add("speed", "zoo: generic model", "seconds", t["generic_train_s"], seed=seed)
        rw.add("speed", "zoo: features", "seconds", t["features_s"], seed=seed)
        rw.add("speed", "zoo: p-model heads (all tasks)", "seconds", t["finetune_s"], seed=seed,
               n=zoo["n_p_models"])
        for name, info in gen_info.items():
            rw.add("speed", f"generator {name}", "train steps/s", info["steps_per_s"], seed=seed)
            rw.add("speed", f"generator {name}", "generation s/model", info["gen_s_per_model"], seed=seed)
        rw.add("zoo", "generic model", "seen-class test accuracy", zoo["generic_seen_acc"] * 100, seed=seed)
        add("zoo", "p-models (training tasks)", "task accuracy", zoo["splits"]["train"]["acc"])
    save_npz(out_npz, **per_task)


# -- speed benchmark -----------------------------------------------------------------------------------------------
def bench(cfg: TinaConfig, steps: int, n_models: int, generic_steps: int, out: str | None) -> dict:
    """Time the scale's generator (training steps/s, seconds per generated model with all T sampling steps) and
    generic-model training steps on synthetic inputs of the scale's shapes (the numbers do not depend on values)."""
    from dataclasses import replace

    from repro.common.io import save_json

    device = pick_device()
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    seed_everything(0)
    classifier = Z.build_classifier(cfg.classifier, cfg.tasks.max_classes).to(device)
    layout = HeadLayout(cfg.tasks.max_classes, classifier.num_feat)
    text_dim = {"minilm": 384, "clip-vit-b32": 512}[cfg.text.encoder]
    n = 256
    data = HeadData(torch.randn(n, layout.k_max, layout.feat_dim) * 0.1, torch.randn(n, layout.k_max) * 0.1,
                    torch.nn.functional.normalize(torch.randn(n, layout.k_max, text_dim), dim=-1),
                    torch.ones(n, layout.k_max, dtype=torch.bool))
    result: dict = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                    "head_params": layout.numel}
    gcfg = replace(cfg.generator, steps=steps, warmup_steps=min(cfg.generator.warmup_steps, steps),
                   log_every=max(1, steps // 4), checkpoint_every=0)
    net = build_generator(gcfg, layout, text_dim)
    result["generator_params"] = sum(p.numel() for p in net.parameters())
    train_generator(build_generator(replace(gcfg, steps=5), layout, text_dim), data, layout, replace(gcfg, steps=5),
                    device, 0, desc="warm-up")
    res = train_generator(net, data, layout, gcfg, device, 0, desc="bench generator")
    result["generator_steps_per_s"] = res.steps_per_s
    diffusion = GaussianDiffusion(gcfg.timesteps, gcfg.beta_start, gcfg.beta_end)
    sync()
    t0 = time.perf_counter()
    generate_heads(res.ema, res.normalizer, layout, diffusion, data.text[:n_models], data.mask[:n_models], device, 0)
    sync()
    result["sampling_s_per_model"] = (time.perf_counter() - t0) / n_models
    result["sampling_batch"] = n_models
    # Generic-model training throughput (stage 1 of the zoo) at the configured batch size, 32x32 inputs.
    x = torch.randn(cfg.generic.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, cfg.tasks.max_classes, (cfg.generic.batch_size,), device=device)
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
