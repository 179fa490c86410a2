"""The converted pool3 Inception against the TorchScript original, and our staged FID/KID against torch-fidelity's
own end-to-end path. Few images: the Inception forward pass costs ~0.25-1 s per image on this CPU."""

import numpy as np
import pytest
import torch

from repro.common.data.registry import REGISTRY
from repro.common.metrics.fidelity import compute_stats, fid, kid
from repro.common.metrics.inception import (build_extractor, convert_pool3_torchscript, extract_features, has_logits,
                                            load_torchscript)


@pytest.fixture(scope="module")
def torchscript_path():
    import importlib.resources

    pkg, inner = REGISTRY["inception_v3_fid_pool3"].files[0].package
    return str(importlib.resources.files(pkg).joinpath(inner))


@pytest.fixture(scope="module")
def weights(tmp_path_factory, torchscript_path):
    path = tmp_path_factory.mktemp("inception") / "pool3.pth"
    torch.save(convert_pool3_torchscript(torchscript_path), path)
    return path


def test_conversion_gives_the_torchscript_features(weights, torchscript_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8, generator=g)
    ours = build_extractor(weights, logits=False)  # strict load into torch-fidelity's module
    original = load_torchscript(torchscript_path).eval()
    with torch.no_grad():
        a = ours(x)[0]
        b = original((x.to(torch.float32) - 128) / 128)  # its documented input: [-1, 1], 299 x 299
    assert a.shape == (2, 2048)
    assert torch.allclose(a, b, atol=1e-5, rtol=0), (a - b).abs().max()
    assert not has_logits(weights)  # the logits layer is a NaN placeholder: IS cannot be computed from it


def test_features_do_not_depend_on_batch_size(weights):
    imgs = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    one = extract_features(imgs, weights, batch_size=1, device="cpu")["features"]
    both = extract_features(imgs, weights, batch_size=2, device="cpu")["features"]
    assert np.allclose(one, both, atol=1e-5, rtol=0)
    grey = extract_features(imgs[:1, ..., :1], weights, device="cpu")["features"]  # 1 channel is repeated to 3
    rgb = extract_features(np.repeat(imgs[:1, ..., :1], 3, axis=-1), weights, device="cpu")["features"]
    assert np.allclose(grey, rgb, atol=1e-6)


def test_staged_fid_kid_agree_with_torch_fidelity(weights):
    """Same images, torch-fidelity's calculate_metrics (Dataset inputs) vs features -> statistics -> metric."""
    import torch_fidelity

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    ref = torch_fidelity.calculate_metrics(
        input1=Images(a), input2=Images(b), fid=True, kid=True, kid_subset_size=5, kid_subsets=20, cuda=False,
        cache=False, verbose=False, batch_size=5, save_cpu_ram=True, feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(weights))
    sa = compute_stats(a, weights, "inception-pool3", batch_size=3, device="cpu")
    sb = compute_stats(b, weights, "inception-pool3", batch_size=5, device="cpu")
    # our low-rank FID path (n < 2048) against torch-fidelity's eigenvalue formula on its own features: the
    # eigenvalue route carries ~1e-4 noise from the ~2042 zero eigenvalues of the rank-deficient product
    assert fid(sa, sb) == pytest.approx(ref["frechet_inception_distance"], rel=1e-4, abs=1e-3)
    k_mean, k_std = kid(sa, sb, subsets=20, subset_size=5)
    assert k_mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-4, abs=1e-6)
    assert fid(sa, sa) == pytest.approx(0.0, abs=1e-6)


def test_fid_stats_cli_on_an_image_folder(weights, tmp_path):
    from PIL import Image

    from repro.common.errors import UserError
    from repro.common.metrics.cli import main
    from repro.common.metrics.fidelity import FidStats

    rng = np.random.default_rng(3)
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "a" / f"{i}.png")
    args = ["fid-stats", "--data", str(tmp_path / "imgs"), "--extractor", "inception-pool3", "--weights", str(weights),
            "--threads", "2"]
    with pytest.raises(UserError, match="res=32"):
        main(args + ["--split", "all", "--res", "64", "--out", str(tmp_path / "x.npz")])
    main(args + ["--split", "all-n2", "--res", "32", "--out", str(tmp_path / "s.npz")])
    s = FidStats.load(tmp_path / "s.npz")
    assert s.features.shape == (2, 2048) and np.isfinite(s.features).all() and s.sigma.shape == (2048, 2048)
    assert sorted(s.index.tolist()) != [] and set(s.index.tolist()) <= {0, 1, 2} and s.meta["n"] == "2"
    assert not (tmp_path / "x.npz").exists()


def test_full_extractor_path_gives_logits_and_is(weights, tmp_path):
    """With a logits layer present (here random, for the test only), the full path returns logits and a finite IS;
    the real run uses torch-fidelity's released weights (registry inception_v3_fid_full)."""
    from repro.common.metrics.fidelity import inception_score

    sd = torch.load(weights, weights_only=True)
    g = torch.Generator().manual_seed(0)
    sd["fc.weight"] = torch.randn(sd["fc.weight"].shape, generator=g) * 0.01
    sd["fc.bias"] = torch.zeros_like(sd["fc.bias"])
    full = tmp_path / "full.pth"
    torch.save(sd, full)
    assert has_logits(full)
    imgs = np.random.default_rng(5).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    stats = compute_stats(imgs, full, "inception-full", device="cpu")
    assert stats.logits.shape == (2, 1008) and np.isfinite(stats.logits).all()
    m, s, note = inception_score(stats, splits=1)
    assert np.isfinite(m) and m >= 1.0 and note == ""
