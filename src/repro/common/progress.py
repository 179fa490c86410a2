"""Progress bars for long loops, written to stderr (which each rule redirects to its log).

In a log file (not a terminal) tqdm rewrites nothing, so updates are throttled to one line every few seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None, **kwargs) -> tqdm:
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.5 if interactive else 5.0)
    kwargs.setdefault("dynamic_ncols", interactive)
    kwargs.setdefault("ascii", not interactive)
    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, **kwargs)
