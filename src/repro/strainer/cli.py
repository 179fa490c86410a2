"""`python -m repro.strainer <command>`: the commands the strainer rules call (see workflow/rules/strainer.smk).

  inits    learn the initialisations of one dataset (STRAINER encoders, MAML, a fitted SIREN)
  fit      run one experiment (in-domain, out-of-domain, ablation, inverse, speed) and write its metrics part
  shape3d  the 3D experiment (Fig. 12): encoder on ShapeNet chairs, transferred to the Thai statue
  prepare-shapes  meshes (a ShapeNet category zip, or PLY/OBJ files) -> occupancy grids (.npz)
  figures  draw the paper's figures from the experiments' arrays
  bench    time test-time fitting per image-iteration, one image at a time vs N batched (JSON on stdout)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from repro.common.device import pick_device, set_threads
from repro.common.errors import UserError
from repro.common.results import ResultWriter
from repro.common.seeding import seed_everything

EXPERIMENTS = ("in_domain", "ood", "ablation", "inverse", "speed")


def _pairs(values: Sequence[str] | None, what: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        if "=" not in v:
            raise UserError(f"--{what} expects NAME=PATH, got '{v}'")
        k, path = v.split("=", 1)
        out[k] = path
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro.strainer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--scale", required=True)
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        sp.add_argument("--device", default=None, help="torch device (default: CUDA if available, else CPU)")

    sp = sub.add_parser("inits", help="learn the initialisations of one dataset")
    common(sp)
    sp.add_argument("--dataset", required=True)
    sp.add_argument("--data", required=True, help="prepared dataset file (.npz)")
    sp.add_argument("--out", required=True, help="output .pt")
    sp.add_argument("--only", nargs="+", metavar="KEY", help="learn only these initialisations (default: all the "
                    "experiments need), e.g. for a partial run on a lent GPU")

    sp = sub.add_parser("fit", help="run one experiment")
    common(sp)
    sp.add_argument("--experiment", required=True, choices=EXPERIMENTS)
    sp.add_argument("--dataset", help="test dataset (in_domain)")
    sp.add_argument("--data", nargs="+", required=True, metavar="NAME=PATH", help="prepared dataset files")
    sp.add_argument("--inits", nargs="+", required=True, metavar="NAME=PATH", help="inits files per dataset")
    sp.add_argument("--out", required=True, help="metrics part .csv")
    sp.add_argument("--arrays", required=True, help="curves and reconstructions .npz")

    sp = sub.add_parser("shape3d", help="the 3D experiment (Fig. 12)")
    common(sp)
    sp.add_argument("--data", nargs="+", required=True, metavar="NAME=PATH", help="prepared occupancy grids")
    sp.add_argument("--out", required=True, help="metrics part .csv")
    sp.add_argument("--arrays", required=True, help="IoU curves .npz")

    sp = sub.add_parser("prepare-shapes", help="meshes -> occupancy grids")
    sp.add_argument("--src", nargs="+", required=True, help="a ShapeNetCore v2 category .zip, or .ply/.obj(.gz) files")
    sp.add_argument("--n", type=int, default=10, help="models taken from a ShapeNet zip (first by id)")
    sp.add_argument("--grid", type=int, required=True, help="grid side G (G^3 voxels)")
    sp.add_argument("--out", required=True, help="output .npz (occupancy uint8 [N, G, G, G], names)")

    sp = sub.add_parser("bench", help="per-image-iteration fitting time, sequential vs batched (JSON)")
    sp.add_argument("--n", type=int, nargs="+", default=[1, 6, 50], help="numbers of images fitted together")
    sp.add_argument("--resolution", type=int, default=64, help="image side in pixels (the paper's is 178)")
    sp.add_argument("--width", type=int, default=256)
    sp.add_argument("--iters", type=int, default=5, help="timed iterations per fit")
    sp.add_argument("--warmup", type=int, default=2, help="untimed iterations before each timed fit")
    sp.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    sp.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    sp.add_argument("--tf32", action="store_true", help="allow TF32 matmuls on CUDA")

    sp = sub.add_parser("figures", help="draw the figures")
    common(sp)
    sp.add_argument("--arrays", nargs="+", required=True, metavar="NAME=PATH")
    sp.add_argument("--out", nargs="+", required=True, metavar="NAME=STEM", help="figure name=output stem")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "bench":  # no config: a property of the code and the machine
        import time

        from repro.strainer import bench

        args.t0 = time.perf_counter()
        set_threads(args.threads)
        if any(n < 1 for n in args.n) or min(args.iters, args.resolution, args.width) < 1 or args.warmup < 0:
            raise UserError("bench: --n, --iters, --resolution and --width must be positive, --warmup >= 0")
        bench.main(args)
        return
    if args.command == "prepare-shapes":
        _prepare_shapes(args)
        return
    from repro.strainer.config import load_config

    cfg, raw = load_config(args.scale)
    if args.command == "figures":  # numpy + matplotlib only
        from repro.strainer.figures import draw_all

        draw_all(cfg, _pairs(args.arrays, "arrays"), _pairs(args.out, "out"))
        return
    set_threads(args.threads)
    seed_everything(args.seed)
    device = pick_device(args.device)
    from repro.strainer import runs

    if args.command == "inits":
        runs.learn_inits_command(cfg, raw, args.scale, args.seed, args.dataset, args.data, args.out, device,
                                 only=args.only)
        return
    if args.command == "shape3d":
        _shape3d(args, cfg, raw, device, _pairs(args.data, "data"))
        return
    data, init_files = _pairs(args.data, "data"), _pairs(args.inits, "inits")
    _fit(args, cfg, raw, device, data, init_files)


def _prepare_shapes(args) -> None:
    import numpy as np

    from repro.common.io import save_npz
    from repro.strainer.shapes import mesh_occupancy, shapenet_occupancies

    if len(args.src) == 1 and args.src[0].endswith(".zip"):
        grids, names = shapenet_occupancies(args.src[0], args.n, args.grid)
    else:
        grids = np.stack([mesh_occupancy(p, args.grid) for p in args.src])
        names = [p.rsplit("/", 1)[-1] for p in args.src]
    if not grids.any(axis=(1, 2, 3)).all():
        raise UserError(f"prepare-shapes: an empty occupancy grid from {args.src}; the mesh may not be closed or "
                        f"--grid {args.grid} is too coarse")
    save_npz(args.out, occupancy=grids, names=np.array(names))


def _shape3d(args, cfg, raw, device, data: dict[str, str]) -> None:
    from repro.common.io import load_npz
    from repro.strainer import runs

    s3 = cfg.shape3d
    if s3 is None:
        raise UserError(f"shape3d: config/strainer.yaml has no shape3d block at scale {args.scale}")
    for need in (s3.source, s3.target):
        if need not in data:
            raise UserError(f"shape3d: no --data given for '{need}'")
    source, target = load_npz(data[s3.source])["occupancy"], load_npz(data[s3.target])["occupancy"]
    if source.shape[0] < s3.shapes or source.shape[1:] != target.shape[1:] or source.shape[-1] != s3.grid:
        raise UserError(f"shape3d: grids {source.shape} / {target.shape} do not match shape3d (shapes {s3.shapes}, "
                        f"grid {s3.grid}); re-run the prepare rules")
    with ResultWriter(paper=runs.PAPER, part=f"shape3d_s{args.seed}", scale=args.scale, out_csv=args.out,
                      config=raw) as rw:
        arrays = runs.shape3d(cfg, args.seed, source, target[0], device, rw)
        runs.save_arrays(args.arrays, arrays)


def _fit(args, cfg, raw, device, data: dict[str, str], init_files: dict[str, str]) -> None:
    from repro.strainer import runs
    from repro.strainer.data import load_image_set

    res = cfg.data.resolution
    source = args.dataset if args.experiment == "in_domain" else cfg.data.source
    if source is None:
        raise UserError("fit --experiment in_domain needs --dataset")
    for need in [source] + (list(cfg.data.ood_targets) if args.experiment == "ood" else []):
        if need not in data:
            raise UserError(f"fit --experiment {args.experiment}: no --data given for dataset '{need}'")
    if source not in init_files:
        raise UserError(f"fit --experiment {args.experiment}: no --inits given for dataset '{source}'")
    inits = runs.load_inits(init_files[source], res)
    name = args.experiment if args.experiment != "in_domain" else f"in_domain_{source}"
    part = f"{name}_s{args.seed}"  # as the rule names it: results/{scale}/strainer/parts/{part}.csv
    with ResultWriter(paper=runs.PAPER, part=part, scale=args.scale, out_csv=args.out, config=raw) as rw:
        if args.experiment == "ood":
            targets = {d: load_image_set(data[d], d, res, value_range=cfg.data.pixel_range) for d in cfg.data.ood_targets}
            arrays = runs.out_of_domain(cfg, args.seed, targets, inits, device, rw,
                                        hypernets=runs.load_hypernets(init_files[source]))
        else:
            images = load_image_set(data[source], source, res, value_range=cfg.data.pixel_range)
            if args.experiment == "in_domain":
                arrays = runs.in_domain(cfg, args.seed, source, images, inits, device, rw,
                                        hypernets=runs.load_hypernets(init_files[source]))
            elif args.experiment == "ablation":
                arrays = runs.ablation(cfg, args.seed, images, inits, device, rw)
            elif args.experiment == "inverse":
                arrays = runs.inverse(cfg, args.seed, images, inits, device, rw)
            else:
                arrays = runs.speed(cfg, args.seed, images, inits, device, rw, init_files)
        runs.save_arrays(args.arrays, arrays)
