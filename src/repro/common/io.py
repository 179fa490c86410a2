"""Atomic output writing: a file appears at its final path complete, or not at all.

Every writer goes through `atomic_path`: the data is written to a temporary file in the same directory and
renamed over the target (`os.replace`, atomic on POSIX) only after it was written and flushed without error.
A killed process leaves at most a `.tmp-*` file, never a half-written output at the path a later step trusts.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it to `path`, on error delete it.

    `suffix` keeps the extension for writers that dispatch on it (matplotlib, numpy).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}.", suffix=suffix if suffix is not None else target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_json(path: str | os.PathLike, obj: Any) -> None:
    save_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def save_npz(path: str | os.PathLike, *, compressed: bool = True, **arrays: Any) -> None:
    """Save arrays (zlib-compressed unless `compressed=False`); `np.savez[_compressed]` writes to the open handle,
    so the name is kept."""
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All arrays of an `.npz`; a file that is missing, not an `.npz` archive or damaged raises a UserError."""
    import zipfile

    from repro.common.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found; make it with the rule that writes it (snakemake --cores 2 {path})")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not an .npz archive (a zip of .npy arrays); delete it and re-run the rule that "
                        "writes it")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f"{path}: damaged .npz ({err}); delete it and re-run the rule that writes it") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
