"""The whole Tina pipeline on a tiny synthetic dataset (classes told apart by colour): tasks -> zoo -> generators
-> evaluation -> figures, through the same functions the CLI commands call, generating whole ConvNet5k networks."""

import re
import zlib
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
COLOURS = np.random.default_rng(0).integers(30, 225, size=(N_CLASSES, 3))
SHOTS = (1, 5)


def _split(n_per_class: int, seed: int, name: str) -> Split:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(N_CLASSES), n_per_class)
    images = COLOURS[labels][:, None, None, :] + rng.normal(0, 25, size=(len(labels), 32, 32, 3))
    return Split(np.clip(images, 0, 255).astype(np.uint8), labels, tuple(f"c{i}" for i in range(N_CLASSES)),
                 "cifar10", name)


class StandInEncoder:
    """A deterministic stand-in for CLIP with the project's encoder interface (`repro.common.text`): texts and
    images of class c{i} embed near one shared direction per class (a joint space, as CLIP's). A text's other words
    and an image's own mean colour move its embedding a little, so every prompt and every image embeds apart."""

    name = "stand-in"
    dim = 12

    def __init__(self):
        rng = np.random.default_rng(0)
        self.class_dirs = rng.normal(size=(N_CLASSES, self.dim))
        self.colour_proj = rng.normal(size=(3, self.dim)) / 25.0
        self.image_calls = 0

    @staticmethod
    def _unit(x):
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    def encode(self, texts):
        out = []
        for t in texts:
            c = int(re.search(r"\bc(\d+)\b", t).group(1))
            words = np.random.default_rng(zlib.crc32(t.encode())).normal(size=self.dim)
            out.append(self.class_dirs[c] + 0.2 * words)
        return self._unit(np.stack(out))

    def encode_images(self, images):
        self.image_calls += 1
        mean = images.reshape(len(images), -1, 3).mean(1)
        c = np.argmin(((mean[:, None, :] - COLOURS[None]) ** 2).sum(-1), axis=1)
        return self._unit(self.class_dirs[c] + (mean - COLOURS[c]) @ self.colour_proj)


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
        eval=replace(cfg.eval, scaling_tasks=(4,), prompt_templates=("a photo of a {}.",), image_shots=SHOTS),
    )
    tasks = P.make_tasks(cfg, str(d / "train.npz"), str(d / "tasks.json"))
    encoder = StandInEncoder()
    names = [f"c{i}" for i in range(N_CLASSES)]
    save_npz(d / "text.npz", embeddings=encoder.encode(names), class_names=np.asarray(names))
    zoo = P.make_zoo(cfg, str(d / "tasks.json"), str(d / "train.npz"), str(d / "test.npz"), str(d / "zoo.pt"))
    gens = {}
    for name, variant in (("tina", "cond"), ("uncond", "uncond"), ("cond_n4", "cond_n4")):
        P.make_generator(cfg, str(d / "zoo.pt"), str(d / "text.npz"), variant, 0, str(d / f"{variant}.pt"))
        gens[name] = str(d / f"{variant}.pt")
    # The prompt study with the stand-in encoder (text templates and image prompts); every conditioning tensor the
    # generator is given is recorded.
    calls = []
    real_generate = P.generate

    def recording_generate(net, normalizer, layout, diffusion, text, mask, device, seed=0, desc=""):
        calls.append({"desc": desc, "text": text.clone(), "mask": mask.clone(), "net": net})
        return real_generate(net, normalizer, layout, diffusion, text, mask, device, seed=seed, desc=desc)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(P, "generate", recording_generate)
        P.make_prompt_samples(cfg, str(d / "zoo.pt"), str(d / "text.npz"), gens["tina"], str(d / "train.npz"),
                              str(d / "test.npz"), 0, None, str(d / "prompts.pt"), encoder=encoder)
    P.evaluate(cfg, "smoke", str(d / "zoo.pt"), str(d / "text.npz"), str(d / "test.npz"), gens, 0,
               str(d / "eval_s0.csv"), str(d / "per_task_s0.npz"), prompts_path=str(d / "prompts.pt"))
    P.evaluate(cfg, "smoke", str(d / "zoo.pt"), str(d / "text.npz"), str(d / "test.npz"), {"tina": gens["tina"]}, 0,
               str(d / "study.csv"), str(d / "study.npz"), study=("sizes", "convnet5k"))
    return d, tasks, zoo, cfg, encoder, calls


def test_zoo_holds_a_whole_network_per_task_and_learns_the_colours(run):
    d, tasks, zoo, *_ = run
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
    d, tasks, *_ = run
    df = pd.read_csv(d / "eval_s0.csv", keep_default_na=False)
    assert set(df["table"]) == {"main", "unseen", "scaling", "prompts", "zoo", "speed"}
    prompts = df[(df["table"] == "prompts") & (df["unit"] == "")]
    assert set(prompts["row"]) == {"text: a photo of a {}.", "class names (training prompt)",
                                   "image: zero-shot (1 image)", "image: 5-shot"}
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
    d, tasks, *_ = run
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
    d, *_ = run
    for name, draw in FIGURES.items():
        draw([str(d / "per_task_s0.npz")], [str(d / "eval_s0.csv")], str(d / name))
        assert (d / f"{name}.pdf").stat().st_size > 1000 and (d / f"{name}.png").is_file()


IMAGE_ROWS = {1: "image: zero-shot (1 image)", 5: "image: 5-shot"}


def test_image_prompts_are_k_images_of_the_right_class(run):
    """Zero-shot: the embedding of one training image of the class; few-shot: the normalised mean of exactly k
    distinct training images of that class (recomputed here with the stand-in encoder)."""
    d, _, _, cfg, encoder, _ = run
    pr = torch.load(d / "prompts.pt", weights_only=True)
    assert pr["not_run"] == {}
    train, _ = P.load_data(cfg, str(d / "train.npz"), str(d / "test.npz"))
    names = [f"c{i}" for i in range(N_CLASSES)]
    for k, label in IMAGE_ROWS.items():
        picks, emb = pr["image_picks"][label].numpy(), pr["embeddings"][label]
        assert picks.shape == (N_CLASSES, k) and emb.shape == (N_CLASSES, encoder.dim)
        for c, name in enumerate(names):
            assert len(set(picks[c].tolist())) == k                                  # k distinct images ...
            assert (train.labels[picks[c]] == train.class_names.index(name)).all()   # ... all of class c
            own = torch.from_numpy(encoder.encode_images(train.images[picks[c]]))
            want = own[0] if k == 1 else torch.nn.functional.normalize(own.mean(0), dim=0)
            assert torch.allclose(emb[c], want, atol=1e-6)
        # a prompt is near its class's text embedding and nearer to it than to any other class (a shared space)
        sims = emb @ torch.from_numpy(encoder.encode(names)).T
        assert (sims.argmax(1) == torch.arange(N_CLASSES)).all()
    # the 5-shot prompt is not the zero-shot image repeated: the two differ for every class
    assert not torch.allclose(pr["embeddings"][IMAGE_ROWS[1]], pr["embeddings"][IMAGE_ROWS[5]], atol=1e-3)


def test_image_prompts_condition_the_generator_in_its_slot_layout(run):
    """The conditioning tensor given to the generator for each image-prompt row: [tasks, k_max, text_dim], slot j of
    a task holding the prompt of its j-th class, empty slots zero; the mask marks the used slots."""
    d, _, zoo, _, encoder, calls = run
    pr = torch.load(d / "prompts.pt", weights_only=True)
    slots = torch.cat([zoo["splits"][s]["slots"] for s in P.TEST_SPLITS])
    by_desc = {c["desc"]: c for c in calls}
    assert set(by_desc) == {f"sampling '{label}'" for label in ["text: a photo of a {}.", *IMAGE_ROWS.values()]}
    for label in IMAGE_ROWS.values():
        call = by_desc[f"sampling '{label}'"]
        text, mask, net = call["text"], call["mask"], call["net"]
        assert text.shape == (len(slots), zoo["k_max"], encoder.dim)
        assert net.slot_proj.shape[:2] == (zoo["k_max"], encoder.dim)      # Tina's per-slot projections read it
        assert torch.equal(mask, slots >= 0)
        emb = pr["embeddings"][label]
        for t in range(len(slots)):
            for j in range(zoo["k_max"]):
                want = emb[slots[t, j]] if slots[t, j] >= 0 else torch.zeros(encoder.dim)
                assert torch.equal(text[t, j], want), (label, t, j)
    # One generated whole network per test task and prompt, each of its own conditioning (same noise, other text).
    layout = P.zoo_layout(zoo)
    for label in IMAGE_ROWS.values():
        for split, n in (("id_test", len(zoo["splits"]["id_test"]["slots"])),
                         ("ood_test", len(zoo["splits"]["ood_test"]["slots"]))):
            flat = pr["samples"][label][split]
            assert flat.shape == (n, layout.numel) and torch.isfinite(flat).all()
    assert not torch.equal(pr["samples"][IMAGE_ROWS[1]]["id_test"], pr["samples"][IMAGE_ROWS[5]]["id_test"])


def test_image_prompt_rows_are_scored_per_task(run):
    d, tasks, *_ = run
    df = pd.read_csv(d / "eval_s0.csv", keep_default_na=False)
    for label in IMAGE_ROWS.values():
        for col, n in (("ID", len(tasks.id_test)), ("OOD", len(tasks.ood_test))):
            cell = df[(df["table"] == "prompts") & (df["row"] == label) & (df["column"] == col)]
            summary, units = cell[cell["unit"] == ""], cell[cell["unit"] != ""]
            assert len(units) == n and float(summary["n"].item()) == n
            values = units["value"].astype(float)
            assert values.between(0, 100).all()
            assert float(summary["value"].item()) == pytest.approx(values.mean())


def test_without_an_image_tower_the_image_rows_are_not_run_with_the_reason(run, tmp_path):
    """The smoke case: MiniLM has no image tower (and no CLIP weights are offline), so the image rows are written
    as not run (NaN) with the reason, and nothing is loaded to find that out."""
    d, _, _, cfg, *_ = run
    cfg = replace(cfg, eval=replace(cfg.eval, prompt_templates=(), image_shots=SHOTS))
    assert cfg.text.encoder == "minilm"
    P.make_prompt_samples(cfg, str(d / "zoo.pt"), str(d / "text.npz"), str(d / "cond.pt"), str(d / "train.npz"),
                          str(d / "test.npz"), 0, None, str(tmp_path / "prompts.pt"))
    pr = torch.load(tmp_path / "prompts.pt", weights_only=True)
    assert pr["samples"] == {} and set(pr["not_run"]) == set(IMAGE_ROWS.values())
    P.evaluate(cfg, "smoke", str(d / "zoo.pt"), str(d / "text.npz"), str(d / "test.npz"),
               {"tina": str(d / "cond.pt")}, 0, str(tmp_path / "eval.csv"), str(tmp_path / "eval.npz"),
               prompts_path=str(tmp_path / "prompts.pt"))
    df = pd.read_csv(tmp_path / "eval.csv")
    rows = df[(df["table"] == "prompts") & df["row"].isin(list(IMAGE_ROWS.values()))]
    assert len(rows) == 4 and rows["value"].isna().all() and set(rows["column"]) == {"ID", "OOD"}
    assert rows["note"].str.startswith("not_run: the text encoder 'minilm' has no image tower").all()
