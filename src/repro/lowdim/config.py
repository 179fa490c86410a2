"""Typed view of a validated `config/lowdim.yaml` block."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExactConfig:
    schedules: tuple[str, ...]
    designs: tuple[str, ...]
    dims: tuple[int, ...]
    steps: tuple[int, ...]
    c0: float
    c1: float


@dataclass(frozen=True)
class CurvedConfig:
    schedule: str
    dims: tuple[int, ...]
    steps: tuple[int, ...]
    anchors: int
    tangent_scale: float
    frequency: float
    units: int
    designs: tuple[str, ...]
    path_samples: int
    score_eps: tuple[float, ...]
    step_subsample: int | None
    marginal_designs: tuple[str, ...]
    samples: int
    knn: int


@dataclass(frozen=True)
class LowdimConfig:
    k: int
    exact: ExactConfig
    curved: CurvedConfig

    @classmethod
    def from_dict(cls, block: dict) -> "LowdimConfig":
        tup = lambda d: {key: tuple(v) if isinstance(v, list) else v for key, v in d.items()}  # noqa: E731
        exact, curved = ExactConfig(**tup(block["exact"])), CurvedConfig(**tup(block["curved"]))
        if 0.0 not in curved.score_eps:
            curved = CurvedConfig(**{**curved.__dict__, "score_eps": (0.0, *curved.score_eps)})
        return cls(k=block["k"], exact=exact, curved=curved)
