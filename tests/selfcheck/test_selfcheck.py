import math

import numpy as np
import pandas as pd
import pytest

from repro.common.config import load_claims, load_paper_config
from repro.common.data import Split, save_split
from repro.common.errors import UserError
from repro.common.metrics.fidelity import FidStats
from repro.selfcheck.cli import main


def test_config_and_claims_validate():
    for scale in ("smoke", "mid", "paper"):
        block = load_paper_config("selfcheck", scale)
        assert block["n"] % 2 == 0
    claims = load_claims("selfcheck")
    assert {c["id"] for c in claims["claims"]} >= {"selfcheck.kid_random_halves_null", "selfcheck.kid_shift_detected"}


def _write_inputs(tmp_path, n, shift):
    """Synthetic 'Inception features': classes 0-4 and 5-9 differ by `shift` in the mean."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10
    feats = rng.standard_normal((n, 32)).astype(np.float32)
    feats[labels < 5, :4] += shift
    order = rng.permutation(n)  # stats hold a random subset, in random order
    FidStats.from_features(feats[order], "inception-pool3", index=order).save(tmp_path / "stats.npz")
    save_split(tmp_path / "test.npz", Split(images=np.zeros((n, 2, 2, 3), np.uint8), labels=labels,
                                            class_names=tuple(map(str, range(10))), name="cifar10", split="test"))


def test_halves_detects_equal_and_shifted(tmp_path):
    n = load_paper_config("selfcheck", "smoke")["n"]
    _write_inputs(tmp_path, n, shift=1.0)
    out = tmp_path / "parts" / "fid_halves.csv"
    main(["halves", "--scale", "smoke", "--stats", str(tmp_path / "stats.npz"), "--data", str(tmp_path / "test.npz"),
          "--out", str(out)])
    df = pd.read_csv(out).set_index(["row", "column"])["value"]
    assert abs(df[("random halves", "KID z")]) < 3
    assert df[("class-disjoint halves", "KID z")] > 3
    assert df[("class-disjoint halves", "FID")] > df[("random halves", "FID")]
    assert math.isnan(df[("random halves", "IS")])
    assert pd.read_csv(out).query("column == 'IS'")["note"].iloc[0].startswith("not_available:")
    assert (out.parent / "fid_halves.provenance.json").is_file()


def test_halves_refuses_stats_of_another_size(tmp_path):
    _write_inputs(tmp_path, 40, shift=0.0)
    with pytest.raises(UserError, match="asks for"):
        main(["halves", "--scale", "smoke", "--stats", str(tmp_path / "stats.npz"),
              "--data", str(tmp_path / "test.npz"), "--out", str(tmp_path / "o.csv")])
    assert not (tmp_path / "o.csv").exists()
