"""FID/KID/IS arithmetic on synthetic features, pinned to closed forms (no Inception forward pass here)."""

import math

import numpy as np
import pytest

from repro.common.errors import UserError
from repro.common.metrics.fidelity import FidStats, fid, inception_score, kid


def test_fid_of_a_set_against_itself_is_zero():
    f = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    s = FidStats.from_features(f, "inception-pool3")
    assert abs(fid(s, s)) < 1e-6


def test_fid_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    a = FidStats(mu=mu1, sigma=np.diag(v1), features=np.zeros((0, 3), np.float32), extractor="x")
    b = FidStats(mu=mu2, sigma=np.diag(v2), features=np.zeros((2, 3), np.float32), extractor="x")  # not mu's rows
    expected = ((mu1 - mu2) ** 2).sum() + (v1 + v2 - 2 * np.sqrt(v1 * v2)).sum()  # = 5 + 1 + 1 + 4 = 11
    assert fid(a, b) == pytest.approx(expected, abs=1e-9) and expected == pytest.approx(11.0)


def _mmd2_unbiased(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731  (KID's cubic polynomial kernel)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m = len(x)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def test_kid_matches_the_unbiased_mmd_formula():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    y = (rng.standard_normal((40, 8)) + 0.5).astype(np.float32)
    # one subset holding every sample: KID is exactly the unbiased MMD^2 estimate (subset order does not matter)
    mean, std = kid(x, y, subsets=1, subset_size=40)
    assert mean == pytest.approx(_mmd2_unbiased(x.astype(np.float64), y.astype(np.float64)), rel=1e-5)
    assert std == 0.0 and mean > 0.05
    same_mean, same_std = kid(x, rng.standard_normal((40, 8)).astype(np.float32), subsets=50, subset_size=20)
    assert abs(same_mean) < 3 * same_std  # equal distributions: consistent with 0


def test_inception_score_known_values_and_not_available():
    feats = np.zeros((100, 4), np.float32)
    confident = np.tile(np.eye(10, dtype=np.float32) * 100.0, (10, 1))  # one-hot over 10 classes, uniform marginal
    s = FidStats.from_features(np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32), "inception-full",
                               logits=confident)
    m, sd, note = inception_score(s, splits=1)
    assert m == pytest.approx(10.0, rel=1e-6) and note == ""
    flat = FidStats.from_features(feats + np.arange(100)[:, None], "inception-full",
                                  logits=np.zeros((100, 1008), np.float32))
    assert inception_score(flat, splits=1)[0] == pytest.approx(1.0)
    pool3 = FidStats.from_features(feats + np.arange(100)[:, None], "inception-pool3")
    m, sd, note = inception_score(pool3)
    assert math.isnan(m) and note.startswith("not_available:")


def test_stats_roundtrip_and_mismatched_extractors(tmp_path):
    f = np.random.default_rng(2).standard_normal((10, 5)).astype(np.float32)
    s = FidStats.from_features(f, "inception-pool3", meta={"dataset": "toy", "n": 10})
    s.save(tmp_path / "s.npz")
    t = FidStats.load(tmp_path / "s.npz")
    assert np.array_equal(t.features, f) and np.allclose(t.sigma, np.cov(f, rowvar=False))
    assert t.meta == {"dataset": "toy", "n": "10"} and t.logits is None
    half = t.take(np.arange(0, 10, 2))
    assert half.n == 5 and np.allclose(half.mu, f[::2].mean(0))
    other = FidStats.from_features(f, "inception-full")
    with pytest.raises(UserError, match="different extractors"):
        fid(s, other)
    with pytest.raises(UserError, match="fid_stats rule"):
        FidStats.load(tmp_path / "missing.npz")


def test_kid_permutation_test_matches_the_loop_and_detects_shift():
    from repro.common.metrics.fidelity import kid_permutation_test, mmd2_unbiased, poly_kernel

    rng = np.random.default_rng(4)
    a = rng.standard_normal((30, 6))
    b = rng.standard_normal((25, 6))
    t = kid_permutation_test(a, b, permutations=200, seed=0)
    pooled = np.concatenate([a, b])
    assert t.kid == pytest.approx(mmd2_unbiased(poly_kernel(pooled, pooled), np.arange(30), np.arange(30, 55)),
                                  rel=1e-10)
    assert t.kid == pytest.approx(_mmd2_unbiased_unequal(a, b), rel=1e-10)
    assert abs(t.z) < 3 and 0 < t.p_value <= 1
    shifted = kid_permutation_test(a, b + 1.0, permutations=200, seed=0)
    assert shifted.z > 3 and shifted.p_value < 0.01


def _mmd2_unbiased_unequal(x, y):
    d = x.shape[1]
    k = lambda p, q: (p @ q.T / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * k(x, y).mean())


def test_split_spec_parsing():
    from repro.common.metrics.cli import parse_split_spec

    assert parse_split_spec("test") == ("test", None)
    assert parse_split_spec("train-n1000") == ("train", 1000)
    with pytest.raises(UserError, match="split spec"):
        parse_split_spec("test_1000")


def test_low_rank_fid_equals_torch_fidelity_formula():
    """The features path (n < d) and torch-fidelity's eigenvalue formula give the same FID."""
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 64)).astype(np.float32)
    y = (rng.standard_normal((30, 64)) * 1.3 + 0.2).astype(np.float32)
    a, b = FidStats.from_features(x, "e"), FidStats.from_features(y, "e")
    ref = fid_statistics_to_metric({"mu": a.mu, "sigma": a.sigma}, {"mu": b.mu, "sigma": b.sigma}, verbose=False)
    assert fid(a, b) == pytest.approx(ref["frechet_inception_distance"], rel=1e-6)
    big = FidStats.from_features(rng.standard_normal((100, 64)).astype(np.float32), "e")  # n >= d: eigen path
    ref2 = fid_statistics_to_metric({"mu": a.mu, "sigma": a.sigma}, {"mu": big.mu, "sigma": big.sigma}, verbose=False)
    assert fid(a, big) == pytest.approx(ref2["frechet_inception_distance"], rel=1e-9)
