"""Loading and validating the suite's configuration.

`config/config.yaml` holds the run-wide settings; `config/<paper>.yaml` one block per scale. Both are validated
against JSON Schemas (written in YAML) in `workflow/schemas/`, when the DAG is built and again when a CLI loads a
block, so a misspelt key, an unknown scale or a wrong type stops with one message naming file, key and fix.
"""

from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from repro.common.errors import ConfigError

SCALES = ("smoke", "mid", "paper")


def project_root() -> Path:
    """The directory holding `config/` and `workflow/`: env REPRO_ROOT, else the working directory."""
    return Path(os.environ.get("REPRO_ROOT", ".")).resolve()


# libyaml's parser where PyYAML was built with it (the wheels are): the same documents, about 10x faster to read.
# The paper DAGs read config files in their rules' input functions, hundreds of times per dry run.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (run from the project root, or set REPRO_ROOT to it)")
    try:
        with open(path) as fh:
            return yaml.load(fh, Loader=_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(p) for p in (getattr(err, "context", None), getattr(err, "problem", None)) if p)
        raise ConfigError(f"{path}{where}: not valid YAML ({problem or str(err).splitlines()[0]}); "
                          "fix the file (indentation, brackets, quotes)") from None


@functools.lru_cache(maxsize=None)
def _schema(path: str) -> dict:
    return read_yaml(path)


def validate(obj: Any, schema_path: str | os.PathLike, source: str) -> None:
    """Validate `obj` against the schema file; raise ConfigError naming `source`, the key path and a fix."""
    import jsonschema

    schema = _schema(str(schema_path))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    lines = [_describe(err, source) for err in errors[:5]]
    more = f"\n  (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines) + more)


def _describe(err, source: str) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        unexpected = sorted(set(err.instance) - set(allowed))
        hints = []
        for key in unexpected:
            close = difflib.get_close_matches(key, allowed, n=1)
            hints.append(f"unknown key '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        prefix = f"{where}." if where != "(top level)" else ""
        return f"{source}: {prefix}{', '.join(hints)}; allowed keys here: {', '.join(allowed)}"
    return f"{source}: key '{where}': {err.message}"


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-able object (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def validate_run_config(config: dict, root: Path | None = None) -> dict:
    """Validate the run-wide config (config.yaml merged with --config overrides); return it."""
    root = root or project_root()
    # `--config seeds=[1,2]` reaches us as strings: whole numbers written on the command line are seeds all the same
    if isinstance(config.get("seeds"), list):
        config["seeds"] = [int(s) if isinstance(s, str) and s.strip().lstrip("-").isdigit() else s
                           for s in config["seeds"]]
    validate(config, root / "workflow/schemas/config.schema.yaml", "config/config.yaml (or --config)")
    return config


def load_paper_config(paper: str, scale: str, root: Path | None = None) -> dict:
    """The validated block of `config/<paper>.yaml` for `scale`."""
    root = root or project_root()
    if scale not in SCALES:
        raise ConfigError(f"unknown scale '{scale}': use one of {', '.join(SCALES)}")
    path = root / "config" / f"{paper}.yaml"
    doc = _validated_paper_doc(str(path), _file_stamp(path), paper, str(root))
    if scale not in doc:
        raise ConfigError(
            f"config/{paper}.yaml has no block for scale '{scale}' (it has: {', '.join(sorted(doc))}); "
            f"add one, or run another scale with --config scale=...")
    return copy.deepcopy(doc[scale])


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=64)
def _validated_paper_doc(path: str, stamp: tuple[int, int] | None, paper: str, root: str) -> dict:
    """config/<paper>.yaml read and validated once per version of the file (`stamp`: its mtime and size); a
    Snakemake DAG asks for it in every job's input functions."""
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with one block per scale")
    validate(doc, Path(root) / "workflow" / "schemas" / f"{paper}.schema.yaml", f"config/{paper}.yaml")
    return doc


def load_claims(paper: str, root: Path | None = None) -> dict:
    """The validated claims registry `config/claims/<paper>.yaml`."""
    root = root or project_root()
    path = root / "config" / "claims" / f"{paper}.yaml"
    doc = read_yaml(path)
    validate(doc, root / "workflow" / "schemas" / "claims.schema.yaml", f"config/claims/{paper}.yaml")
    if doc["paper"] != paper:
        raise ConfigError(f"config/claims/{paper}.yaml: key 'paper' is '{doc['paper']}', expected '{paper}'")
    return doc
