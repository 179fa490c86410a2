"""`python -m repro.tina {tasks,text,zoo,train,prompts,evaluate,figure,bench}`: one command per rule of workflow/rules/tina.smk."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from repro.common.device import set_threads
from repro.common.errors import UserError
from repro.tina import config as C


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", required=True, help="block of config/tina.yaml (smoke, mid, paper)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--run", default=C.MAIN, help="pipeline of the block: main, size_<arch> or data_<name>")


def cmd_tasks(a) -> None:
    from repro.tina.pipeline import make_tasks

    make_tasks(C.load(a.scale, a.run), a.train, a.out)


def cmd_text(a) -> None:
    from repro.tina.pipeline import make_text

    make_text(C.load(a.scale, a.run), a.tasks, a.out, a.cache, a.source)


def cmd_zoo(a) -> None:
    from repro.tina.pipeline import make_zoo

    make_zoo(C.load(a.scale, a.run), a.tasks, a.train, a.test, a.out)


def cmd_train(a) -> None:
    from repro.tina.pipeline import make_generator

    make_generator(C.load(a.scale, a.run), a.zoo, a.text, a.variant, a.seed, a.out)


def _named(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep:
            raise UserError(f"--gen {pair}: expected NAME=PATH")
        out[name] = path
    return out


def cmd_evaluate(a) -> None:
    from repro.tina.pipeline import evaluate

    study = tuple(a.study.split("=", 1)) if a.study else None
    evaluate(C.load(a.scale, a.run), a.scale, a.zoo, a.text, a.test, _named(a.gen), a.seed, a.out, a.out_npz,
             prompts_path=a.prompts, study=study)


def cmd_prompts(a) -> None:
    from repro.tina.pipeline import make_prompt_samples

    make_prompt_samples(C.load(a.scale, a.run), a.zoo, a.text, a.gen, a.train, a.test, a.seed, a.cache, a.out)


def cmd_figure(a) -> None:
    from repro.tina.figures import FIGURES

    FIGURES[a.name](a.per_task, a.metrics, a.out_stem)


def cmd_bench(a) -> None:
    import json

    from repro.tina.pipeline import bench

    print(json.dumps(bench(C.load(a.scale, a.run), a.steps, a.models, a.generic_steps, a.out), indent=2))


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m repro.tina", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("tasks", help="split classes into seen/held-out and draw the personalisation tasks")
    _common(s)
    s.add_argument("--train", required=True, help="prepared training split (.npz), for the class names")
    s.add_argument("--out", required=True, help="tasks .json")
    s.set_defaults(fn=cmd_tasks)

    s = sub.add_parser("text", help="embed every class name with the configured text encoder")
    _common(s)
    s.add_argument("--tasks", required=True)
    s.add_argument("--cache", help="per-encoder embedding cache (.npz), shared across runs")
    s.add_argument("--source", help="where the encoder's weights are (a directory), overriding the default")
    s.add_argument("--out", required=True, help="class-name embeddings (.npz)")
    s.set_defaults(fn=cmd_text)

    s = sub.add_parser("zoo", help="train the generic model and fine-tune one p-model per task")
    _common(s)
    s.add_argument("--tasks", required=True)
    s.add_argument("--train", required=True)
    s.add_argument("--test", required=True)
    s.add_argument("--out", required=True, help="zoo (.pt)")
    s.set_defaults(fn=cmd_zoo)

    s = sub.add_parser("train", help="train a parameter generator on the zoo")
    _common(s)
    s.add_argument("--zoo", required=True)
    s.add_argument("--text", required=True)
    s.add_argument("--variant", required=True, help="cond | uncond | cond_n<K> (first K training tasks)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="generator checkpoint (.pt)")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("evaluate", help="score the generated models of the test tasks beside the baselines")
    _common(s)
    s.add_argument("--zoo", required=True)
    s.add_argument("--text", required=True)
    s.add_argument("--test", required=True, help="prepared test split (.npz): whole generated networks run on it")
    s.add_argument("--gen", nargs="+", required=True, help="NAME=PATH of generator checkpoints (tina, uncond, ...)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="metrics part (.csv)")
    s.add_argument("--out-npz", required=True, help="per-task accuracies (.npz), for the figures")
    s.add_argument("--prompts", help="models sampled from other prompts (python -m repro.tina prompts)")
    s.add_argument("--study", help="TABLE=LABEL: write the main rows to TABLE, columns prefixed by LABEL")
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("prompts", help="sample the test tasks' models from other prompts (templates, images)")
    _common(s)
    s.add_argument("--zoo", required=True)
    s.add_argument("--text", required=True, help="class-name embeddings (for the class names and the width)")
    s.add_argument("--gen", required=True, help="the main conditional generator (.pt)")
    s.add_argument("--train", required=True, help="prepared training split (image prompts are drawn from it)")
    s.add_argument("--test", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--cache", help="per-encoder embedding cache (.npz)")
    s.add_argument("--out", required=True, help="sampled models per prompt (.pt)")
    s.set_defaults(fn=cmd_prompts)

    s = sub.add_parser("figure", help="draw one figure from the evaluation results")
    s.add_argument("--name", required=True, choices=["acc_distribution", "scaling"])
    s.add_argument("--per-task", nargs="+", required=True, help="per-task accuracy .npz files (one per seed)")
    s.add_argument("--metrics", nargs="+", required=True, help="evaluation parts (.csv), one per seed")
    s.add_argument("--out-stem", required=True, help="figure path without extension (PDF and PNG are written)")
    s.set_defaults(fn=cmd_figure)

    s = sub.add_parser("bench", help="time the scale's generator and generic model on synthetic inputs")
    _common(s)
    s.add_argument("--steps", type=int, default=200, help="generator training steps timed")
    s.add_argument("--models", type=int, default=64, help="models generated in one batch (full T-step sampling)")
    s.add_argument("--generic-steps", type=int, default=50)
    s.add_argument("--out", help="JSON with the timings")
    s.set_defaults(fn=cmd_bench)

    args = p.parse_args(argv)
    set_threads(getattr(args, "threads", None))
    args.fn(args)
