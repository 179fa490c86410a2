"""Personalisation tasks: sets of classes named by text.

A task is n of the dataset's N classes (Tina: 10 of CIFAR-100's 100, which makes C(100, 10) ~ 1.73e13 tasks; paper
sheet section 2). The classes are split once into *seen* and *held-out* classes. The generic model and every
training task use seen classes only. Test tasks are of two kinds (paper sheet section 2, "Analyses"; the exact
ID/OOD definitions of the paper are UNVERIFIED, open item 7):

* in-distribution (ID): seen classes only, in combinations that are not training tasks;
* out-of-distribution (OOD): at least one held-out class, whose name the generator never saw in training.

Everything is drawn from `numpy.random.default_rng` seeded by the config, so the same config gives the same tasks on
every machine. A task is a sorted tuple of class indices; its order is the order of the classifier's output slots.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.common.errors import UserError
from repro.common.io import save_json
from repro.tina.config import TaskConfig

Task = tuple[int, ...]


@dataclass(frozen=True)
class TaskSet:
    class_names: tuple[str, ...]
    seen: tuple[int, ...]
    heldout: tuple[int, ...]
    train: tuple[Task, ...]
    id_test: tuple[Task, ...]
    ood_test: tuple[Task, ...]

    @property
    def max_classes(self) -> int:
        return max(len(t) for t in self.train + self.id_test + self.ood_test)

    def to_json(self) -> dict:
        return {"class_names": list(self.class_names), "seen": list(self.seen), "heldout": list(self.heldout),
                "train": [list(t) for t in self.train], "id_test": [list(t) for t in self.id_test],
                "ood_test": [list(t) for t in self.ood_test]}

    @classmethod
    def from_json(cls, obj: dict) -> "TaskSet":
        tup = lambda ts: tuple(tuple(int(c) for c in t) for t in ts)  # noqa: E731
        return cls(tuple(obj["class_names"]), tuple(obj["seen"]), tuple(obj["heldout"]), tup(obj["train"]),
                   tup(obj["id_test"]), tup(obj["ood_test"]))

    def save(self, path: str | Path) -> None:
        save_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "TaskSet":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: task file not found; run the tina_tasks rule (python -m repro.tina tasks)")
        return cls.from_json(json.loads(path.read_text()))


def split_classes(n_classes: int, n_heldout: int, seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Seen and held-out class indices (each sorted), drawn once from `seed`."""
    if not 0 < n_heldout < n_classes:
        raise UserError(f"tasks.n_heldout = {n_heldout}: must be between 1 and {n_classes - 1} "
                        f"(the dataset has {n_classes} classes)")
    perm = np.random.default_rng([seed, 0]).permutation(n_classes)
    return tuple(sorted(int(c) for c in perm[n_heldout:])), tuple(sorted(int(c) for c in perm[:n_heldout]))


def _count_id(n_seen: int, sizes: range) -> int:
    return sum(math.comb(n_seen, k) for k in sizes)


def _count_ood(n_seen: int, n_held: int, sizes: range) -> int:
    return sum(math.comb(n_seen + n_held, k) - math.comb(n_seen, k) for k in sizes)


def _draw_unique(rng: np.random.Generator, draw, count: int, exclude: set[Task], what: str) -> list[Task]:
    """`count` distinct tasks from `draw(rng)`, none in `exclude` (rejection sampling with an attempt cap)."""
    out: list[Task] = []
    taken = set(exclude)
    for _ in range(1000 * max(count, 1)):
        if len(out) == count:
            return out
        task = draw(rng)
        if task not in taken:
            taken.add(task)
            out.append(task)
    if len(out) == count:
        return out
    raise UserError(f"could not draw {count} distinct {what} tasks; lower the task counts in config/tina.yaml")


def sample_tasks(cfg: TaskConfig, class_names: list[str] | tuple[str, ...]) -> TaskSet:
    """Draw the seen/held-out split, the training tasks and the ID and OOD test tasks from `cfg.seed`."""
    n = len(class_names)
    if not 2 <= cfg.min_classes <= cfg.max_classes:
        raise UserError(f"tasks: need 2 <= min_classes ({cfg.min_classes}) <= max_classes ({cfg.max_classes})")
    seen, held = split_classes(n, cfg.n_heldout, cfg.seed)
    if cfg.max_classes > len(seen):
        raise UserError(f"tasks.max_classes = {cfg.max_classes} exceeds the {len(seen)} seen classes; "
                        "lower max_classes or n_heldout")
    sizes = range(cfg.min_classes, cfg.max_classes + 1)
    need_id = cfg.n_train_tasks + cfg.n_id_test
    if need_id > _count_id(len(seen), sizes):
        raise UserError(f"tasks: {need_id} seen-class tasks requested (n_train_tasks + n_id_test) but only "
                        f"{_count_id(len(seen), sizes)} exist with {len(seen)} seen classes and sizes "
                        f"{cfg.min_classes}..{cfg.max_classes}; lower the counts")
    if cfg.n_ood_test > _count_ood(len(seen), len(held), sizes):
        raise UserError(f"tasks.n_ood_test = {cfg.n_ood_test} exceeds the "
                        f"{_count_ood(len(seen), len(held), sizes)} tasks that contain a held-out class")
    seen_arr, held_arr = np.asarray(seen), np.asarray(held)

    def draw_id(rng: np.random.Generator) -> Task:
        k = int(rng.integers(cfg.min_classes, cfg.max_classes + 1))
        return tuple(sorted(int(c) for c in rng.choice(seen_arr, k, replace=False)))

    def draw_ood(rng: np.random.Generator) -> Task:
        k = int(rng.integers(cfg.min_classes, cfg.max_classes + 1))
        h = int(rng.integers(1, min(k, len(held)) + 1))
        picked = np.concatenate([rng.choice(held_arr, h, replace=False), rng.choice(seen_arr, k - h, replace=False)])
        return tuple(sorted(int(c) for c in picked))

    id_tasks = _draw_unique(np.random.default_rng([cfg.seed, 1]), draw_id, need_id, set(), "seen-class")
    ood = _draw_unique(np.random.default_rng([cfg.seed, 2]), draw_ood, cfg.n_ood_test, set(), "out-of-distribution")
    return TaskSet(tuple(class_names), seen, held, tuple(id_tasks[:cfg.n_train_tasks]),
                   tuple(id_tasks[cfg.n_train_tasks:]), tuple(ood))


def slot_matrix(tasks: list[Task] | tuple[Task, ...], k_max: int) -> np.ndarray:
    """[T, k_max] int64: the class in each output slot of each task, -1 in unused slots."""
    out = np.full((len(tasks), k_max), -1, dtype=np.int64)
    for i, t in enumerate(tasks):
        if len(t) > k_max:
            raise ValueError(f"task {t} has more than {k_max} classes")
        out[i, :len(t)] = t
    return out
