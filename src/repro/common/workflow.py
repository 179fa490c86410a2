"""What the Snakemake workflow needs at DAG-build time: validated settings and the jobs' environment.

Kept here (not in common.smk) so it is plain, testable Python and the rule files stay declarative.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from repro.common.config import validate_run_config
from repro.common.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    root: Path
    scale: str
    papers: tuple[str, ...]
    seeds: tuple[int, ...]
    threads: int
    data_dir: str
    mirror: str | None

    @property
    def results(self) -> str:
        return f"results/{self.scale}"

    @property
    def figures(self) -> str:
        return f"figures/{self.scale}"

    @property
    def logs(self) -> str:
        return f"logs/{self.scale}"


def configure(config: dict, root: str | os.PathLike) -> Settings:
    """Validate the run config and prepare the environment every job inherits.

    - `repro` is importable from `src/` (also inside conda environments, which do not install the package);
    - without --use-conda, jobs run with the interpreter running Snakemake (the project's virtual environment);
    - `threads` per compute job: env REPRO_THREADS over config `threads`;
    - the mirror (env REPRO_MIRROR over config `mirror`) and data directory (env REPRO_DATA_DIR over `data_dir`)
      are resolved once and passed on as absolute paths.
    """
    root = Path(root).resolve()
    validate_run_config(config, root=root)
    env = os.environ
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root / "src"), env.get("PYTHONPATH")) if p)
    env["REPRO_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join((os.path.dirname(sys.executable), env.get("PATH", "")))
    mirror_source = "env REPRO_MIRROR" if env.get("REPRO_MIRROR") else "config 'mirror' in config/config.yaml"
    mirror = env.get("REPRO_MIRROR") or config.get("mirror")
    if mirror:
        mirror = str((root / mirror).resolve()) if not os.path.isabs(mirror) else mirror
        env["REPRO_MIRROR"] = mirror
        if not os.path.isdir(mirror):
            print(f"warning: the mirror {mirror} ({mirror_source}) does not exist: data not yet prepared will be "
                  "downloaded from the official URLs; set REPRO_MIRROR to the mirror directory to work offline",
                  file=sys.stderr)
    data_source = "env REPRO_DATA_DIR" if env.get("REPRO_DATA_DIR") else "config 'data_dir' in config/config.yaml"
    data_dir = env.get("REPRO_DATA_DIR") or config["data_dir"]
    check_writable_dir(data_dir, data_source)
    threads = int(env.get("REPRO_THREADS") or config.get("threads", 2))  # env: run the tests under other numerics
    return Settings(root=root, scale=config["scale"], papers=tuple(config["papers"]), seeds=tuple(config["seeds"]),
                    threads=threads, data_dir=data_dir, mirror=mirror)


def check_writable_dir(path: str | os.PathLike, source: str) -> None:
    """Raise ConfigError unless `path` is, or can be created as, a writable directory (nothing is created).

    Relative paths are relative to the working directory (Snakemake's `--directory`, the project root by default)."""
    p = Path(path).absolute()
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    fix = f"set {source.split()[-1] if source.startswith('env') else 'data_dir'} to a writable directory"
    if not probe.is_dir():
        raise ConfigError(f"data directory {path} ({source}) cannot be created: {probe} is not a directory; {fix}")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "is not writable" if probe == p else f"cannot be created: {probe} is not writable"
        raise ConfigError(f"data directory {path} ({source}) {what}; {fix}")
