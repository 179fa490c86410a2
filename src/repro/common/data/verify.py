"""Checksums of the offline mirror's files, verified in a rule of their own before any prepare rule reads them.

The mirror's face folders, MRI files and CIFAR-10 JPEG tar are read in place (never copied into the data
directory). They are checked against `mirror.sha256` (beside this module, sha256sum format, provenance in its
header) by rule `verify_mirror`, whose output is a stamp (`{data_dir}/verified/<path>.sha256`, the verified lines).
The prepare rules take the stamp as their input, so a damaged mirror file fails the *verify* job and never reaches
the rule that owns the prepared data: Snakemake deletes a job's old outputs only when it starts that job, and a job
whose input failed is never started.
"""

from __future__ import annotations

import os
from pathlib import Path

from repro.common.errors import UserError

MANIFEST = Path(__file__).with_name("mirror.sha256")
# Mirror paths the data rules read in place, each verified as a whole (a file, or every file of a folder).
VERIFIED_PATHS = ("cifar10-jpeg.tar", "faces/celebahq", "faces/afhq", "faces/ffhq", "mri")


def read_manifest(path: str | os.PathLike = MANIFEST) -> dict[str, str]:
    """`relative path -> sha256` from a sha256sum-format file (comments and blank lines skipped)."""
    out = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        sha, sep, rel = line.partition("  ")
        if not sep or len(sha) != 64:
            raise UserError(f"{path}, line {n}: expected '<sha256>  <path>' (sha256sum format)")
        out[rel.removeprefix("./").removeprefix("*")] = sha.lower()
    return out


def expected_files(rel: str, manifest: dict[str, str]) -> dict[str, str]:
    """The manifest entries of `rel`: the file itself, or every file under the folder `rel`."""
    rel = rel.strip("/")
    if rel in manifest:
        return {rel: manifest[rel]}
    return {k: v for k, v in manifest.items() if k.startswith(rel + "/")}


def present_files(mirror: Path, rel: str) -> list[str]:
    """Files of `rel` in the mirror (relative paths; hidden files ignored)."""
    target = mirror / rel
    if target.is_file():
        return [rel]
    return sorted(str(p.relative_to(mirror)) for p in target.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(target).parts))


def verify_mirror_path(mirror: str | os.PathLike, rel: str, manifest_path: str | os.PathLike = MANIFEST,
                       progress_desc: str | None = None) -> list[str]:
    """Check `<mirror>/<rel>` against the manifest; return the verified `sha256  path` lines, or raise UserError.

    Refused: a missing file, a file whose SHA-256 differs, and a file the manifest does not list (it would be read
    unverified)."""
    from repro.common.data.download import digest
    from repro.common.progress import progress

    mirror = Path(mirror)
    manifest = read_manifest(manifest_path)
    expected = expected_files(rel, manifest)
    if not expected:
        raise UserError(f"no checksums for <mirror>/{rel} in {manifest_path}; add its sha256sum lines there "
                        "(with their provenance) before the suite reads it")
    if not (mirror / rel).exists():
        raise UserError(f"{mirror / rel}: not found; check the mirror setting (config 'mirror' or env REPRO_MIRROR)")
    present = present_files(mirror, rel)
    extra = sorted(set(present) - set(expected))
    missing = sorted(set(expected) - set(present))
    fix = (f"restore the mirror's copy (its README names the source) or remove what was added; checksums: "
           f"{manifest_path}")
    if missing or extra:
        what = ([f"{len(missing)} missing ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"]
                if missing else []) + \
            ([f"{len(extra)} not in the manifest ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})"]
             if extra else [])
        raise UserError(f"{mirror / rel}: {' and '.join(what)}; {fix}")
    bad = []
    for path in progress(sorted(expected), desc=progress_desc or f"sha256 {rel}"):
        actual = digest(mirror / path).sha256
        if actual != expected[path]:
            bad.append(f"{path} (sha256 {actual[:12]}..., expected {expected[path][:12]}...)")
    if bad:
        raise UserError(f"{mirror / rel}: {len(bad)} file(s) damaged or replaced: {'; '.join(bad[:3])}"
                        f"{'; ...' if len(bad) > 3 else ''}; {fix}")
    return [f"{expected[p]}  {p}" for p in sorted(expected)]
