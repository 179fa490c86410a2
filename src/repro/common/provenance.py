"""What produced a result: commit, packages, device, config."""

from __future__ import annotations

import functools
from pathlib import Path
import platform
import subprocess
import sys
from importlib import metadata

from repro.common.device import describe_device

PACKAGES = ("torch", "torchvision", "torch-fidelity", "numpy", "scipy", "pandas", "matplotlib", "snakemake")


@functools.lru_cache(maxsize=1)
def git_commit(cwd: str | Path | None = None) -> str:
    """HEAD's commit (of the checkout at `cwd`, default the working directory), with '-dirty' when tracked files
    differ from it.

    Outside a git checkout (a copy sent to a GPU node, say) env REPRO_GIT_COMMIT names it, else 'unknown'.
    """
    import os

    if os.environ.get("REPRO_GIT_COMMIT"):
        return os.environ["REPRO_GIT_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=cwd).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True, cwd=cwd).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def package_versions(names=PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance_record() -> dict:
    return {
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": describe_device(),
    }
