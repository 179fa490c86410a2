"""The whole Tina pipeline on a tiny synthetic dataset (classes told apart by colour): tasks -> zoo -> generators
-> evaluation -> figures, through the same functions the CLI commands call, generating whole ConvNet5k networks."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from repro.common.data.canonical import Split, save_split
from repro.common.io import save_npz
from repro.tina import config as C
from repro.tina import pipeline as P
from repro.tina.figures import FIGURES

N_CLASSES = 6


def _split(n_per_class: int, seed: int, name: str) -> Split:
    rng = np.random.default_rng(seed)
    colours = np.random.default_rng(0).integers(30, 225, size=(N_CLASSES, 3))
    labels = np.repeat(np.arange(N_CLASSES), n_per_class)
    images = colours[labels][:, None, None, :] + rng.normal(0, 25, size=(len(labels), 32, 32, 3))
    return Split(np.clip(images, 0, 255).astype(np.uint8), labels, tuple(f"c{i}" for i in range(N_CLASSES)),
                 "cifar10", name)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("tina")
    save_split(d / "train.npz", _split(40, 1, "train"))
    save_split(d / "test.npz", _split(20, 2, "test"))
    cfg = C.load("smoke")
    cfg = replace(
        cfg,
        data=replace(cfg.data, train_per_class=30, test_per_class=0),
        tasks=replace(cfg.tasks, n_heldout=2, min_classes=2, max_classes=3, n_train_tasks=7, n_id_test=3,
                      n_ood_test=4),
        classifier=replace(cfg.classifier, arch="convnet5k"),
        generic=replace(cfg.generic, epochs=3, batch_size=32),
        finetune=replace(cfg.finetune, steps=15, batch_size=8, lr=0.01),
        generator=replace(cfg.generator, n_embd=16, n_layer=1, n_head=2, steps=20, batch_size=8, warmup_steps=5,
                          timesteps=20, sample_steps=20, log_every=10),
        eval=replace(cfg.eval, scaling_tasks=(4,), prompt_templates=("a photo of a {}.",), image_shots=()),
    )
    tasks = P.make_tasks(cfg, str(d / "train.npz"), str(d / "tasks.json"))
    emb = np.random.default_rng(0).normal(size=(N_CLASSES, 12)).astype(np.float32)
    save_npz(d / "text.npz", embeddings=emb / np.linalg.norm(emb, axis=1, keepdims=True),
             class_names=np.asarray([f"c{i}" for i in range(N_CLASSES)]))
    zoo = P.make_zoo(cfg, str(d / "tasks.json"), str(d / "train.npz"), str(d / "test.npz"), str(d / "zoo.pt"))
    gens = {}
    for name, variant in (("tina", "cond"), ("uncond", "uncond"), ("cond_n4", "cond_n4")):
        P.make_generator(cfg, str(d / "zoo.pt"), str(d / "text.npz"), variant, 0, str(d / f"{variant}.pt"))
        gens[name] = str(d / f"{variant}.pt")
    # The prompt study with a stand-in encoder (a fixed random map of the prompt text to 12 dims).
    def fake_embed(texts, encoder, cache=None, source=None):
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=12) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(P, "embed_texts", fake_embed)
        P.make_prompt_samples(cfg, str(d / "zoo.pt"), str(d / "text.npz"), gens["tina"], str(d / "train.npz"),
                              str(d / "test.npz"), 0, None, str(d / "prompts.pt"))
    P.evaluate(cfg, "smoke", str(d / "zoo.pt"), str(d / "text.npz"), str(d / "test.npz"), gens, 0,
               str(d / "eval_s0.csv"), str(d / "per_task_s0.npz"), prompts_path=str(d / "prompts.pt"))
    P.evaluate(cfg, "smoke", str(d / "zoo.pt"), str(d / "text.npz"), str(d / "test.npz"), {"tina": gens["tina"]}, 0,
               str(d / "study.csv"), str(d / "study.npz"), study=("sizes", "convnet5k"))
    return d, tasks, zoo


def test_zoo_holds_a_whole_network_per_task_and_learns_the_colours(run):
    d, tasks, zoo = run
    layout = P.zoo_layout(zoo)
    assert zoo["arch"] == "convnet5k" and zoo["whole"] and layout.numel == 432 + 4608 + 3 * 32 + 3
    generic_conv1 = zoo["generic_state"]["convs.0.weight"].flatten()
    for split in P.SPLITS:
        s = zoo["splits"][split]
        assert len(s["slots"]) == len(getattr(tasks, split))
        assert s["flat"].shape == (len(s["slots"]), layout.numel)
        w, b = layout.head(s["flat"])
        unused = s["slots"] < 0
        assert (w[unused] == 0).all() and (b[unused] == 0).all()
        # Whole-network p-models: the convolutions were fine-tuned too (they moved off the generic model's values).
        assert not torch.equal(s["flat"][:, :432], generic_conv1.expand(len(s["slots"]), -1))
    chance = 1.0 / (zoo["splits"]["id_test"]["slots"] >= 0).sum(1).float()
    assert (zoo["splits"]["id_test"]["acc"] > chance + 0.2).all()  # colours are easy: p-models far above chance


def test_evaluation_writes_every_table(run):
    d, tasks, _ = run
    df = pd.read_csv(d / "eval_s0.csv", keep_default_na=False)
    assert set(df["table"]) == {"main", "unseen", "scaling", "prompts", "zoo", "speed"}
    prompts = df[(df["table"] == "prompts") & (df["unit"] == "")]
    assert set(prompts["row"]) == {"text: a photo of a {}.", "class names (training prompt)"}
    # Per-task unit rows back every summary row of a comparison table.
    units = df[(df["table"] == "main") & (df["row"] == P.METHODS["tina"]) & (df["column"] == "ID") & (df["unit"] != "")]
    assert sorted(units["unit"]) == [P.unit_name(i) for i in range(len(tasks.id_test))]
    summary = df[(df["table"] == "main") & (df["row"] == P.METHODS["tina"]) & (df["column"] == "ID")
                 & (df["unit"] == "")]["value"].item()
    assert summary == pytest.approx(units["value"].mean())
    study = pd.read_csv(d / "study.csv", keep_default_na=False)
    assert set(study["table"]) == {"sizes"} and set(study["column"]) == {"convnet5k ID", "convnet5k OOD"}
    main = df[df["table"] == "main"]
    assert set(main["row"]) == set(P.METHODS.values())
    assert set(df[df["table"] == "scaling"]["row"]) == {"4 tasks", "all tasks"}
    assert df["value"].notna().all()
    # The generic model learnt every class (the whole dataset), held-out ones included: colours are easy.
    generic_unseen = df[(df["table"] == "unseen") & (df["row"] == P.METHODS["generic"])
                        & (df["column"] == "held-out classes")]["value"]
    assert generic_unseen.min() > 60.0
    per_task = np.load(d / "per_task_s0.npz")
    assert per_task["tina_ood_test"].shape == (len(tasks.ood_test),)


def test_generator_file_holds_samples_for_each_test_task(run):
    d, tasks, _ = run
    ck = P.load_generator(str(d / "cond.pt"))
    assert set(ck["samples"]) == {"generated", "shuffled", "resampled"}
    gen = ck["samples"]["generated"]
    assert gen["id_test"].shape == (len(tasks.id_test), ck["info"]["generated_numel"])
    assert ck["info"]["gen_s_per_model"] > 0 and torch.isfinite(gen["ood_test"]).all()
    # Controls are other samples, not copies.
    assert not torch.equal(gen["id_test"], ck["samples"]["resampled"]["id_test"])
    assert not torch.equal(gen["id_test"], ck["samples"]["shuffled"]["id_test"])
    unc = P.load_generator(str(d / "uncond.pt"))
    assert set(unc["samples"]) == {"generated"}


def test_derangement_moves_every_used_slot():
    mask = torch.tensor([[True, True, False], [True, True, True], [True, False, False]])
    for seed in range(20):
        idx = P.derange_slots(mask, seed)
        for t in range(2):
            used = mask[t].nonzero().squeeze(1)
            assert sorted(idx[t, used].tolist()) == used.tolist()       # a permutation of the used slots
            assert (idx[t, used] != used).all()                          # with no fixed point
        assert idx[0, 2] == 2 and idx[2].tolist() == [0, 1, 2]           # unused slots (and 1-class tasks) stay


def test_figures_render(run):
    d, _, _ = run
    for name, draw in FIGURES.items():
        draw([str(d / "per_task_s0.npz")], [str(d / "eval_s0.csv")], str(d / name))
        assert (d / f"{name}.pdf").stat().st_size > 1000 and (d / f"{name}.png").is_file()
