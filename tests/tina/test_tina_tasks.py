"""Task sampling: deterministic, no class leakage between seen and held-out classes, ID tests unseen as tasks."""

import math
from dataclasses import replace

import pytest

from repro.common.errors import UserError
from repro.tina.config import TaskConfig
from repro.tina.tasks import TaskSet, sample_tasks, slot_matrix, split_classes

NAMES = [f"class{i}" for i in range(10)]
CFG = TaskConfig(n_heldout=3, min_classes=2, max_classes=5, n_train_tasks=80, n_id_test=24, n_ood_test=30, seed=0)


def test_same_seed_same_tasks_and_other_seed_differs():
    a, b = sample_tasks(CFG, NAMES), sample_tasks(CFG, NAMES)
    assert a == b
    c = sample_tasks(replace(CFG, seed=1), NAMES)
    assert (c.heldout, c.train) != (a.heldout, a.train)


def test_split_partitions_classes():
    seen, held = split_classes(100, 20, seed=3)
    assert len(held) == 20 and len(seen) == 80
    assert set(seen).isdisjoint(held) and set(seen) | set(held) == set(range(100))


def test_no_leakage_and_kinds():
    ts = sample_tasks(CFG, NAMES)
    held, seen = set(ts.heldout), set(ts.seen)
    for task in ts.train + ts.id_test:
        assert set(task) <= seen, f"held-out class leaked into a seen-class task {task}"
    for task in ts.ood_test:
        assert set(task) & held, f"OOD task {task} has no held-out class"
    assert set(ts.train).isdisjoint(ts.id_test), "an ID test task is also a training task"
    for group in (ts.train, ts.id_test, ts.ood_test):
        assert len(set(group)) == len(group)
        assert all(CFG.min_classes <= len(t) <= CFG.max_classes and list(t) == sorted(set(t)) for t in group)
    assert (len(ts.train), len(ts.id_test), len(ts.ood_test)) == (80, 24, 30)
    # The training tasks are a random draw, not the enumeration order: several sizes appear.
    assert len({len(t) for t in ts.train}) == 4


def test_exhausting_the_task_space_raises_a_clear_error():
    total = sum(math.comb(7, k) for k in range(2, 6))  # 112 seen-class tasks
    ok = sample_tasks(replace(CFG, n_train_tasks=total - 1, n_id_test=1), NAMES)
    assert len(set(ok.train + ok.id_test)) == total
    with pytest.raises(UserError, match="only 112 exist"):
        sample_tasks(replace(CFG, n_train_tasks=total, n_id_test=1), NAMES)
    with pytest.raises(UserError, match="max_classes"):
        sample_tasks(replace(CFG, max_classes=8), NAMES)


def test_json_round_trip(tmp_path):
    ts = sample_tasks(CFG, NAMES)
    ts.save(tmp_path / "tasks.json")
    assert TaskSet.load(tmp_path / "tasks.json") == ts
    with pytest.raises(UserError, match="not found"):
        TaskSet.load(tmp_path / "missing.json")


def test_slot_matrix_pads_with_minus_one():
    m = slot_matrix([(1, 4), (0, 2, 3)], 4)
    assert m.tolist() == [[1, 4, -1, -1], [0, 2, 3, -1]]
    with pytest.raises(ValueError):
        slot_matrix([(0, 1, 2)], 2)
