"""Fitting several images as one stacked computation reproduces fitting them one at a time."""

import numpy as np
import pytest
import torch

from repro.strainer.data import coord_grid
from repro.strainer.fit import fit_in_chunks, fit_stack
from repro.strainer.siren import SirenSpec, init_networks, repeat_stack, select
from repro.strainer.train import meta_learn, split_layers, train_strainer

SPEC = SirenSpec(width=32, n_layers=4, out_features=3)
RES = 12


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish random images in [-1, 1]
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    img = torch.nn.functional.interpolate(low, size=(RES, RES), mode="bilinear", align_corners=False)
    return img.permute(0, 2, 3, 1).reshape(n, RES * RES, 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_fit_equals_sequential(dtype):
    coords = coord_grid(RES).to(dtype)
    targets = _images(3).to(dtype)
    seeds = [11, 12, 13]
    batched = fit_stack(init_networks(SPEC, seeds, dtype=dtype), coords, targets, targets,
                        omega0=SPEC.omega0, iters=40, lr=1e-3)
    for i, s in enumerate(seeds):
        alone = fit_stack(init_networks(SPEC, [s], dtype=dtype), coords, targets[i:i + 1], targets[i:i + 1],
                          omega0=SPEC.omega0, iters=40, lr=1e-3)
        # identical up to floating-point reassociation inside the batched matmul
        tol = 1e-9 if dtype == torch.float64 else 2e-4
        np.testing.assert_allclose(batched.psnr[:, i], alone.psnr[:, 0], rtol=0, atol=tol * 100)
        for (wb, bb), (wa, ba) in zip(batched.layers, alone.layers):
            torch.testing.assert_close(wb[i], wa[0], rtol=tol, atol=tol)
            torch.testing.assert_close(bb[i], ba[0], rtol=tol, atol=tol)
    assert batched.psnr[-1].min() > batched.psnr[0].max()  # and it did fit


def test_strainer_init_batched_and_chunked_equal_one_at_a_time():
    """A learned encoder copied per image plus fresh heads: stacked, chunked and single fits agree."""
    coords = coord_grid(RES, ).double()
    train = _images(2, seed=1).double()
    enc = train_strainer(SPEC, train, coords, shared_layers=3, iters=5, lr=1e-3, seed=0, desc="t").layers
    test = _images(4, seed=2).double()
    heads = split_layers(init_networks(SPEC, [21, 22, 23, 24], dtype=torch.float64), 3)[1]

    def make(part: slice):
        idx = list(range(4))[part]
        return repeat_stack(enc, len(idx)) + select(heads, idx)

    whole = fit_in_chunks(make, 4, 0, coords, test, test, omega0=30.0, iters=15, lr=1e-4)
    chunked = fit_in_chunks(make, 4, 3, coords, test, test, omega0=30.0, iters=15, lr=1e-4)
    np.testing.assert_allclose(whole.psnr, chunked.psnr, atol=1e-8)
    one = fit_stack(make(slice(2, 3)), coords, test[2:3], test[2:3], omega0=30.0, iters=15, lr=1e-4)
    np.testing.assert_allclose(whole.psnr[:, 2], one.psnr[:, 0], atol=1e-8)
    torch.testing.assert_close(whole.output[2], one.output[0])


def test_fit_leaves_input_stack_untouched_and_records_iteration_zero():
    coords = coord_grid(RES)
    targets = _images(1)
    layers = init_networks(SPEC, [3])
    before = [w.clone() for w, _ in layers]
    res = fit_stack(layers, coords, targets, targets, omega0=30.0, iters=3, lr=1e-3)
    assert all(torch.equal(a, w) for a, (w, _) in zip(before, layers))
    assert res.psnr.shape == (4, 1)
    from repro.strainer.siren import forward
    mse0 = ((forward(layers, coords, 30.0).clamp(-1, 1) - targets) ** 2).mean().item()
    assert res.psnr[0, 0] == pytest.approx(-10 * np.log10(mse0 / 4), abs=1e-4)


def test_maml_improves_post_adaptation_fit():
    """MAML's objective is the loss after the inner SGD steps: it must drop from the initial network's, on
    held-out images of the same distribution."""
    from repro.strainer.fit import per_image_mse
    from repro.strainer.siren import forward, network_seed
    from repro.strainer.train import STREAM_META, _inner_adapt

    coords = coord_grid(RES)
    imgs = _images(6, seed=5)
    init = meta_learn(SPEC, imgs, coords, outer_iters=60, outer_lr=1e-3, inner_lr=1e-2, inner_steps=2,
                      meta_batch=3, seed=0)
    start = init_networks(SPEC, [network_seed(0, STREAM_META)])
    test = _images(3, seed=9)

    def adapted_mse(layers):
        flat = [t.clone().requires_grad_(True) for layer in layers for t in layer]
        phi = _inner_adapt(flat, test, coords, 30.0, 2, 1e-2, create_graph=False)
        stack = [(phi[2 * i], phi[2 * i + 1]) for i in range(len(phi) // 2)]
        return per_image_mse(forward(stack, coords, 30.0), test).mean().item()

    assert adapted_mse(init.layers) < 0.7 * adapted_mse(start)


def test_adam_matches_torch_optim():
    from repro.strainer.fit import Adam

    g = torch.Generator().manual_seed(0)
    a = [torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    b = [t.detach().clone().requires_grad_(True) for t in a]
    ours, ref = Adam(a, lr=1e-2), torch.optim.Adam(b, lr=1e-2)
    for step in range(20):
        for params, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            (params[0].sin().sum() + (params[1] ** 3).sum() * (step + 1)).backward()
            opt.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)


def test_recorded_psnr_matches_shared_metric():
    """The PSNR curve's last point is the shared metric's PSNR of the clamped final reconstruction in [0, 1]."""
    from repro.common.metrics.image import psnr
    from repro.strainer.data import to_image

    coords = coord_grid(RES)
    targets = _images(2, seed=4)
    res = fit_stack(init_networks(SPEC, [1, 2]), coords, targets, targets, omega0=30.0, iters=25, lr=1e-3)
    ref = psnr(to_image(res.output, RES), to_image(targets, RES)).numpy()
    np.testing.assert_allclose(res.psnr[-1], ref, atol=1e-3)


def test_downsample_operator_averages_blocks():
    from repro.strainer.experiments import downsample_operator

    img = torch.arange(16.0).reshape(1, 16, 1)  # 4x4 image, one channel
    low = downsample_operator(4, 2)(img)
    assert low.shape == (1, 4, 1)
    torch.testing.assert_close(low[0, :, 0], torch.tensor([2.5, 4.5, 10.5, 12.5]))


def test_split_is_disjoint_fixed_and_spread():
    from repro.common.errors import UserError
    from repro.strainer.data import split_indices

    a, b = split_indices(41, 6, 10, "afhq"), split_indices(41, 6, 10, "afhq")
    assert a == b and len(a.test) == 6 and not set(a.test) & set(a.train)
    assert sorted(a.test + a.train) == list(range(41))
    assert max(a.test) - min(a.test) > 12  # not just the last images of a class-sorted file
    with pytest.raises(UserError):
        split_indices(12, 3, 10, "mri")


def test_bench_cli_prints_json_with_every_n(capsys):
    """`python -m repro.strainer bench` prints one JSON document: per N, sequential and batched ms per
    image-iteration, and their ratio."""
    import json

    from repro.strainer.cli import main

    main(["bench", "--n", "1", "3", "--resolution", "8", "--width", "16", "--iters", "2", "--warmup", "1",
          "--devices", "cpu"])
    doc = json.loads(capsys.readouterr().out)
    rows = {r["n"]: r for r in doc["results"]}
    assert set(rows) == {1, 3} and doc["resolution"] == 8 and doc["model"]["width"] == 16
    assert rows[1]["batched_speedup"] == 1.0
    for r in rows.values():
        assert r["sequential_ms_per_image_iter"] > 0 and r["batched_ms_per_image_iter"] > 0
        assert r["batched_speedup"] == pytest.approx(r["sequential_ms_per_image_iter"]
                                                     / r["batched_ms_per_image_iter"], rel=1e-2)


def test_bench_rejects_bad_arguments():
    from repro.common.errors import UserError
    from repro.strainer.cli import main

    with pytest.raises(UserError, match="--n"):
        main(["bench", "--n", "0", "--devices", "cpu"])
