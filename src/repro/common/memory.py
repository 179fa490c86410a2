"""The C allocator of every `python -m repro...` process: freed memory is kept for the next allocation.

glibc's malloc gives each allocation above its mmap threshold (128 KiB, rising with use to at most 32 MiB) pages of
its own and returns them to the kernel on free. A CPU training step allocates and frees tensors of tens of MB (one
MTT step on 100 CIFAR images holds 52 MB activations per conv layer); each one then costs an mmap, an munmap and a
page fault per 4 KiB touched, the kernel zeroing each page. With mmap off (M_MMAP_MAX 0) and a trim threshold of
1 GiB, every allocation comes from the heap and a freed block is reused as it is: the behaviour the caching
allocators (jemalloc, tcmalloc) that PyTorch's CPU tuning guide recommends would give, without a library to
install. Measured on the 2-core development machine (one MTT inner loop, ConvNetD3 width 128, 100 images, 3 steps,
2 threads): 3.86 s with glibc's defaults, 2.12 s with this.

The numbers do not change: torch aligns every CPU buffer to 64 bytes itself (c10 `alloc_cpu`), whichever way the
memory was obtained. tests/test_memory.py runs an unrolled MTT loop with its backward (torch) and FID and KID
(numpy, scipy) both ways and requires identical bytes.

The cost: memory freed in the middle of the heap is not returned to the system until the process ends; a process's
footprint is its peak. Env REPRO_MALLOC=system keeps glibc's defaults. Other C libraries (musl, macOS): nothing is
changed.
"""

from __future__ import annotations

import ctypes
import os

from repro.common.errors import UserError

ENV = "REPRO_MALLOC"
# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory(env: dict | None = None) -> bool:
    """Set glibc malloc to serve every allocation from its heap and keep freed memory (see the module's text);
    True if it was set. A no-op with REPRO_MALLOC=system or where the C library has no glibc `mallopt`."""
    mode = (os.environ if env is None else env).get(ENV, "keep")
    if mode == "system":
        return False
    if mode != "keep":
        raise UserError(f"{ENV}={mode!r}: use 'keep' (the default) or 'system' (glibc's own settings)")
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc: its mallopt parameters may mean other things
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
