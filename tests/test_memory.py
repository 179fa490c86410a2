"""The allocator setting of every repro CLI (repro.common.memory): it takes effect, and it changes no number."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

from repro.common.errors import UserError
from repro.common.memory import ENV, keep_freed_memory
from tests.conftest import ROOT

# Both kinds of work the suite does on a CPU: torch (an unrolled MTT inner loop and its backward to the images: convs,
# group norms, double backward) and numpy/scipy (FID's matrix square root and KID's kernel sums over BLAS products).
WORK = """
import sys
import numpy as np
import torch
import torch.nn.functional as F
from repro.common.memory import keep_freed_memory
from repro.common.metrics.fidelity import FidStats, fid, kid
from repro.common.nets import ConvNet, flatten_params

print(keep_freed_memory())
torch.set_num_threads(1)
torch.manual_seed(0)
net = ConvNet(3, 10, width=32, depth=3)
flat = flatten_params(net)
x = torch.randn(100, 3, 32, 32, requires_grad=True)
y = torch.arange(100) % 10
theta = flat.clone().requires_grad_(True)
for _ in range(3):
    g, = torch.autograd.grad(F.cross_entropy(net.forward_flat(theta, x), y), theta, create_graph=True)
    theta = theta - 0.01 * g
(theta - flat).pow(2).sum().backward()
rng = np.random.default_rng(0)
a, b = rng.standard_normal((700, 512)), 1.1 * rng.standard_normal((600, 512)) + 0.05
sa, sb = FidStats.from_features(a, "test"), FidStats.from_features(b, "test")
np.savez(sys.argv[1], theta=theta.detach().numpy(), image_grad=x.grad.numpy(),
         fid=np.float64(fid(sa, sb)), kid=np.asarray(kid(a, b, subsets=20), dtype=np.float64))
"""


def test_every_number_is_the_same_with_and_without_it(tmp_path):
    out = {}
    for mode in ("keep", "system"):
        env = {**os.environ, ENV: mode, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([sys.executable, "-c", WORK, str(tmp_path / f"{mode}.npz")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split() == [str(mode == "keep")]  # set only where asked (glibc here)
        out[mode] = np.load(tmp_path / f"{mode}.npz")
    for key in out["keep"].files:
        assert out["keep"][key].tobytes() == out["system"][key].tobytes(), f"{key} differs with the allocator setting"


def _mmapped_blocks() -> int:
    """glibc's count of blocks obtained with mmap (mallinfo2's hblks)."""
    libc = ctypes.CDLL(None)

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    libc.mallinfo2.restype = Mallinfo2
    return libc.mallinfo2().hblks


def test_large_allocations_come_from_the_heap_and_stay(tmp_path):
    """In a fresh interpreter: a 64 MB buffer is mmapped with glibc's defaults, not with the setting."""
    probe = ("import sys, ctypes; sys.path.insert(0, sys.argv[1]); from tests.test_memory import _mmapped_blocks; "
             "from repro.common.memory import keep_freed_memory; keep_freed_memory(); "
             "before = _mmapped_blocks(); buf = ctypes.create_string_buffer(64 << 20); "
             "print(_mmapped_blocks() - before)")
    seen = {}
    for mode in ("keep", "system"):
        env = {**os.environ, ENV: mode, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.run([sys.executable, "-c", probe, str(ROOT)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr[-2000:]
        seen[mode] = int(proc.stdout)
    assert seen == {"keep": 0, "system": 1}


def test_a_wrong_setting_is_one_clear_error():
    with pytest.raises(UserError, match="REPRO_MALLOC='jemalloc': use 'keep'"):
        keep_freed_memory({ENV: "jemalloc"})
    assert keep_freed_memory({ENV: "system"}) is False
