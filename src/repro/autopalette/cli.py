"""`python -m repro.autopalette <command>`: the commands the autopalette rules call (workflow/rules/autopalette.smk).

  expert   train one expert and save its parameter trajectory
  select   rank per class the graph-cut selection on (Median-Cut-quantised) candidates
  run      build one set (real baseline, quantised real, MTT or AutoPalette), evaluate it, write its metrics part
  bench    time an expert epoch and distillation iterations (random data of the real shapes)
  figure   distilled images with their palettes, or accuracy against the number of colours
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from repro.common.config import load_paper_config
from repro.common.device import pick_device, set_threads
from repro.common.errors import UserError
from repro.common.seeding import seed_everything
from repro.autopalette.config import AutoPaletteConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro.autopalette", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--scale", required=True)
        sp.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        sp.add_argument("--device", default=None, help="torch device (default: CUDA if available, else CPU)")

    sp = sub.add_parser("expert", help="train one expert trajectory")
    common(sp)
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--index", type=int, required=True, help="expert number (its seed)")
    sp.add_argument("--train", required=True, help="prepared train split (.npz)")
    sp.add_argument("--out", required=True, help="trajectory (.pt)")

    sp = sub.add_parser("select", help="graph-cut selection ranking")
    common(sp)
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--colors", type=int, required=True, help="Median-Cut colours (256: 8-bit images)")
    sp.add_argument("--train", required=True)
    sp.add_argument("--out", required=True, help="ranking (.npz)")

    sp = sub.add_parser("run", help="build, distil and evaluate one run")
    common(sp)
    sp.add_argument("--run", required=True, help="run name (a key of runs: in config/autopalette.yaml)")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--train", required=True)
    sp.add_argument("--test", required=True)
    sp.add_argument("--experts", nargs="*", default=[], help="expert trajectories (.pt)")
    sp.add_argument("--selection", default=None, help="graph-cut ranking (.npz), for graph-cut inits")
    sp.add_argument("--out-set", required=True, help="stored set (.npz)")
    sp.add_argument("--out", required=True, help="metrics part (.csv)")

    sp = sub.add_parser("bench", help="time an expert epoch and distillation iterations on random data")
    common(sp)
    sp.add_argument("--runs", nargs="+", required=True, help="run names whose settings are timed")
    sp.add_argument("--train-images", type=int, default=10000, help="images in the timed expert epochs")
    sp.add_argument("--iterations", type=int, default=6, help="distillation iterations per run (first is warm-up)")
    sp.add_argument("--syn-steps", type=int, default=None, help="inner steps per iteration (default: the run's)")
    sp.add_argument("--batch-syn", type=int, default=None, help="images per inner step (default: the run's)")
    sp.add_argument("--out", default=None, help="results (.json)")

    sp = sub.add_parser("figure", help="draw one figure")
    common(sp)
    sp.add_argument("--name", required=True, choices=("palettes", "accuracy_vs_colours"))
    sp.add_argument("--set", help="stored AutoPalette set (.npz), for palettes")
    sp.add_argument("--class-names", help="prepared split whose class names label the palettes figure")
    sp.add_argument("--parts", nargs="*", default=[], help="metrics parts (.csv) with table7, for accuracy_vs_colours")
    sp.add_argument("--out-stem", required=True, help="output stem (.pdf and .png are written)")
    return p


def load_config(scale: str) -> AutoPaletteConfig:
    return AutoPaletteConfig.from_dict(load_paper_config("autopalette", scale))


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    set_threads(args.threads)
    cfg = load_config(args.scale)
    device = pick_device(args.device)
    from repro.autopalette import pipeline

    if args.command == "expert":
        seed_everything(10_000 + args.index)
        pipeline.run_expert(cfg, args.dataset, args.index, args.train, Path(args.out), device)
    elif args.command == "select":
        seed_everything(0)
        pipeline.run_selection(cfg, args.dataset, args.colors, args.train, Path(args.out), device)
    elif args.command == "run":
        if args.run not in cfg.runs:
            raise UserError(f"run '{args.run}' is not defined at scale {args.scale}; "
                            f"defined: {', '.join(sorted(cfg.runs))}")
        seed_everything(args.seed)
        pipeline.execute_run(cfg, cfg.runs[args.run], args.seed, args.scale, args.train, args.test,
                             args.experts, Path(args.selection) if args.selection else None,
                             Path(args.out_set), Path(args.out), device)
    elif args.command == "bench":
        import json
        from repro.autopalette.bench import run_bench
        unknown = [r for r in args.runs if r not in cfg.runs]
        if unknown:
            raise UserError(f"runs {unknown} are not defined at scale {args.scale}")
        seed_everything(0)
        overrides = {k: v for k, v in (("syn_steps", args.syn_steps), ("batch_syn", args.batch_syn)) if v is not None}
        print(json.dumps(run_bench(cfg, args.runs, device, args.train_images, args.iterations, args.out,
                                   overrides=overrides), indent=2))
    elif args.command == "figure":
        from repro.autopalette import figures
        if args.name == "palettes":
            from repro.autopalette.data import load_split

            if not (args.set and args.class_names):
                raise UserError("figure palettes needs --set and --class-names")
            figures.draw_palettes(args.set, load_split(args.class_names).class_names, args.out_stem, args.scale)
        else:
            figures.draw_accuracy_vs_colours(args.parts, args.out_stem, args.scale)
