"""The figure commands as the DAG's rules call them (`python -m repro.autopalette figure ...`), on small files."""

from __future__ import annotations

import numpy as np

from repro.autopalette.cli import main
from repro.common.io import save_npz
from tests.autopalette.test_runs_new_methods import _split


def test_palettes_figure_from_a_distilled_set(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 2)
    index = rng.integers(0, 4, (len(labels), 32, 32))                    # 4 colour buckets per image
    images = (index[..., None] * 60 + np.array([0, 20, 40])).astype(np.uint8)
    save_npz(tmp_path / "set.npz", images=images, labels=labels, index=index,
             palette=rng.normal(size=(len(labels), 4, 3)).astype(np.float32))
    _split(tmp_path / "test.npz", 1, 0)
    main(["figure", "--name", "palettes", "--scale", "smoke", "--set", str(tmp_path / "set.npz"),
          "--class-names", str(tmp_path / "test.npz"), "--out-stem", str(tmp_path / "palettes")])
    for suffix in (".png", ".pdf"):
        assert (tmp_path / f"palettes{suffix}").stat().st_size > 1000, suffix
