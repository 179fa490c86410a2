"""The results contract: tidy metric rows plus the provenance of the run that made them.

A compute command writes one *part* of a paper's metrics through `ResultWriter`; the backbone's `merge` step
joins a paper's parts into `results/{scale}/{paper}/metrics.csv` and `provenance.json` (see docs/extending.md).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from repro.common.config import config_hash
from repro.common.errors import UserError
from repro.common.io import atomic_path, save_json
from repro.common.provenance import provenance_record

COLUMNS = ["paper", "table", "row", "column", "seed", "unit", "value", "std", "n", "scale", "part", "note"]
KEY = ["paper", "table", "row", "column", "seed", "unit"]
# `unit` names one natural unit of a cell (a task, an image) whose values a paired comparison uses; the cell's
# summary row (what tables and figures show) has unit "". Files written before the column existed read as all "".


def provenance_path(csv_path: str | Path) -> Path:
    path = Path(csv_path)
    return path.with_name(path.stem + ".provenance.json")


@dataclass
class ResultWriter:
    """Collect metric rows and stage timings; write the part's CSV and provenance atomically on success.

    Nothing is written if the `with` block raises, so a failed run never leaves a part a later step would trust.
    """

    paper: str
    part: str
    scale: str
    out_csv: str | Path
    config: Any = None
    rows: list[dict] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> "ResultWriter":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.write()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0

    def add(self, table: str, row: str, column: str, value: float | None, *, seed: int = 0,
            std: float | None = None, n: int | None = None, note: str = "", unit: str = "") -> None:
        value = float("nan") if value is None else float(value)
        if math.isnan(value) and not note:
            raise ValueError(f"{self.paper}/{table}/{row}/{column}: a missing value needs a note saying why")
        if math.isinf(value):
            raise UserError(f"{self.paper}/{table}/{row}/{column} is infinite: the run diverged; see the rule's log")
        self.rows.append({"paper": self.paper, "table": table, "row": str(row), "column": str(column),
                          "seed": int(seed), "unit": str(unit), "value": value, "std": std, "n": n, "scale": self.scale,
                          "part": self.part, "note": note})

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=COLUMNS)
        dup = df.duplicated(KEY, keep=False)
        if dup.any():
            raise ValueError(f"duplicate metric keys in part {self.part}:\n{df[dup][KEY]}")
        return df

    def write(self) -> None:
        df = self.frame()
        prov = {
            "paper": self.paper, "part": self.part, "scale": self.scale,
            "config_hash": config_hash(self.config), "config": self.config,
            "wall_time_s": {k: round(v, 3) for k, v in self.stages.items()},
            "total_wall_time_s": round(time.perf_counter() - self._t0, 3),
            **provenance_record(), **self.extra,
        }
        save_json(provenance_path(self.out_csv), prov)
        with atomic_path(self.out_csv) as tmp:
            df.to_csv(tmp, index=False)


def read_metrics(path: str | Path, *, units: bool = False) -> pd.DataFrame:
    """A metrics file's rows: the cells' summary rows, and with `units=True` also their per-unit rows."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: metrics file not found; run the DAG for this paper and scale first")
    try:
        df = pd.read_csv(path, keep_default_na=True,
                         dtype={"row": str, "column": str, "table": str, "note": str, "unit": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise UserError(f"{path}: not a readable metrics CSV ({exc}); delete it and rerun its rule") from exc
    if "unit" not in df.columns:
        df.insert(COLUMNS.index("unit"), "unit", "")
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise UserError(f"{path}: not a metrics file (missing columns {sorted(missing)})")
    df["note"] = df["note"].fillna("")
    df["unit"] = df["unit"].fillna("")
    df = df[COLUMNS]
    if not units:
        df = df[df["unit"] == ""].reset_index(drop=True)
    return df


def merge_parts(parts: list[str | Path], out_csv: str | Path, out_json: str | Path) -> pd.DataFrame:
    """Join a paper's parts into one tidy table plus one provenance record."""
    import json

    frames, provs = [], {}
    for part in parts:
        frames.append(read_metrics(part, units=True))
        prov_file = provenance_path(part)
        provs[Path(part).stem] = json.loads(prov_file.read_text()) if prov_file.is_file() else None
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    dup = df.duplicated(KEY, keep=False)
    if dup.any():
        raise UserError(f"two parts report the same metric:\n{df[dup][KEY + ['part']].to_string()}")
    known = [p for p in provs.values() if p]
    merged = {
        "paper": known[0]["paper"] if known else None,
        "scale": known[0]["scale"] if known else None,
        "config_hash": config_hash({k: (v or {}).get("config_hash") for k, v in provs.items()}),
        "git_commits": sorted({p["git_commit"] for p in known}),
        "wall_time_s": {f"{name}.{stage}": t for name, p in provs.items() if p
                        for stage, t in p["wall_time_s"].items()},
        "parts": provs,
    }
    save_json(out_json, merged)
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    return df
