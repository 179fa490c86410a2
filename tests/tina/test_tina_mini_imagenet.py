"""Mini-ImageNet without a mirror folder: the registry's caches and Ravi & Larochelle split files are fetched,
checked and prepared by the data rules, and every paper-scale tina run is planned whatever the mirror holds.

A tiny Mini-ImageNet in the distributed format (pickled caches `mini-imagenet-cache-<split>.pkl` with `image_data`
and `class_dict`, and the split files `<split>.csv`) is written by the test and served from 127.0.0.1; env
REPRO_REGISTRY_OVERRIDES points each file of the registry entry at it, with the file's own SHA-256.
"""

from __future__ import annotations

import hashlib
import pickle
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from repro.common.data.canonical import load_split
from repro.common.data.download import fetch
from repro.common.data.formats import read_mini_imagenet
from repro.common.data.registry import OVERRIDES_ENV, entry
from repro.common.errors import UserError
from repro.tina import config as C
from repro.tina.pipeline import load_data
from tests.conftest import make_scratch_workflow, scratch_env, snakemake_cmd

KEY = "mini_imagenet"
# A few classes per split (class-disjoint, as in Ravi & Larochelle), in the wnid format of the real files.
CLASSES = {"train": ["n01532829", "n01558993", "n01704323"], "val": ["n01855672"], "test": ["n01930112", "n01981276"]}
PER_CLASS = 6


def tiny_split(split: str, seed: int) -> tuple[bytes, str, np.ndarray]:
    """(cache pickle, split-file text, images) of one split; images of a class are listed shuffled in the cache,
    as the real caches index them through class_dict."""
    rng = np.random.default_rng(seed)
    wnids = CLASSES[split]
    n = len(wnids) * PER_CLASS
    images = rng.integers(0, 256, (n, 84, 84, 3), dtype=np.uint8)
    order = rng.permutation(n)
    class_dict = {w: sorted(order[i * PER_CLASS:(i + 1) * PER_CLASS].tolist()) for i, w in enumerate(wnids)}
    rows = ["filename,label"] + [f"{w}{j + 1:08d}.jpg,{w}" for w in wnids for j in range(PER_CLASS)]
    return pickle.dumps({"image_data": images, "class_dict": class_dict}), "\n".join(rows) + "\n", images


def write_release(www: Path) -> dict[str, dict]:
    """The six files of the entry in `www`; {filename: {"sha256", "images"?, "class_dict"?}}."""
    files = {}
    for seed, split in enumerate(("train", "val", "test")):
        cache, csv_text, images = tiny_split(split, seed)
        (www / f"mini-imagenet-cache-{split}.pkl").write_bytes(cache)
        (www / f"{split}.csv").write_text(csv_text)
        files[f"mini-imagenet-cache-{split}.pkl"] = {"images": images, "class_dict": pickle.loads(cache)["class_dict"]}
        files[f"{split}.csv"] = {}
    for name, info in files.items():
        info["sha256"] = hashlib.sha256((www / name).read_bytes()).hexdigest()
    return files


def test_the_entry_lists_the_caches_and_the_checksummed_split_files():
    e = entry(KEY)
    names = [f.filename for f in e.files]
    assert names == ["mini-imagenet-cache-train.pkl", "mini-imagenet-cache-val.pkl", "mini-imagenet-cache-test.pkl",
                     "train.csv", "val.csv", "test.csv"]
    for f in e.files[:3]:   # no published checksum for the caches: trust on first use, then checked by content
        assert f.urls and not f.has_checksum
        assert f.urls[0].startswith("https://zenodo.org/record/7978538/files/mini-imagenet-cache-")
    assert e.files[1].urls[0].endswith("-validation.pkl")          # learn2learn's name of the val cache
    # The split files as committed at twitter/meta-learning-lstm@0df7fc74: 38,400 / 9,600 / 12,000 rows + header.
    assert {f.filename: f.size for f in e.files[3:]} == {"train.csv": 1228815, "val.csv": 307215,
                                                         "test.csv": 384015}
    assert all(len(f.sha256) == 64 and "0df7fc747a219b7dd04e846d75eb8164483b304b" in f.urls[0] for f in e.files[3:])


def test_a_cache_that_disagrees_with_its_split_file_is_refused(tmp_path):
    write_release(tmp_path)
    out = read_mini_imagenet(tmp_path)
    assert {s: out[s].class_names for s in out} == {s: tuple(sorted(c)) for s, c in CLASSES.items()}
    # The val cache of another split (test's classes) under val's split file: refused, naming both.
    (tmp_path / "mini-imagenet-cache-val.pkl").write_bytes(tiny_split("test", 9)[0])
    with pytest.raises(UserError, match=r"mini-imagenet-cache-val.pkl: does not match the val split file val.csv"):
        read_mini_imagenet(tmp_path)
    # One image fewer in a class than its split file lists: refused too.
    cache, _, _ = tiny_split("val", 1)
    d = pickle.loads(cache)
    d["class_dict"]["n01855672"] = d["class_dict"]["n01855672"][:-1]
    (tmp_path / "mini-imagenet-cache-val.pkl").write_bytes(pickle.dumps(d))
    with pytest.raises(UserError, match="belong to no class|other image counts"):
        read_mini_imagenet(tmp_path)


def test_learn2learns_validation_name_is_read_as_val(tmp_path):
    write_release(tmp_path)
    (tmp_path / "mini-imagenet-cache-val.pkl").rename(tmp_path / "mini-imagenet-cache-validation.pkl")
    assert read_mini_imagenet(tmp_path)["val"].class_names == ("n01855672",)


def test_a_cache_without_checksum_is_recorded_on_first_download_and_held_to_it(tmp_path, http_server):
    www, base = http_server
    write_release(www)
    rf = replace(entry(KEY).files[0], urls=(f"{base}/mini-imagenet-cache-train.pkl",))
    dest = tmp_path / "dl" / rf.filename
    fetch(rf, dest, retries=1)
    record = dest.with_name(dest.name + ".sha256").read_text().split()[0]
    assert record == hashlib.sha256(dest.read_bytes()).hexdigest()
    # Another file under the same URL later (a changed host copy): refused against the record, nothing replaced.
    dest.unlink()
    (www / rf.filename).write_bytes(tiny_split("train", 5)[0])
    with pytest.raises(UserError, match="but the first download recorded"):
        fetch(rf, dest, retries=1)
    assert not dest.exists()


def run_prepare(wf: Path, env: dict, data: Path):
    return subprocess.run(snakemake_cmd(wf, "--cores", "1", "--config", "papers=[tina]", "--",
                                        str(data / "prepared/mini_imagenet/train.npz")),
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.dag
def test_fetched_and_prepared_through_the_data_rules(tmp_path, http_server):
    """fetch (x6, checksums verified) -> prepare_mini_imagenet -> the canonical split tina's loader reads."""
    www, base = http_server
    files = write_release(www)
    wf = make_scratch_workflow(tmp_path / "wf")
    data, mirror = tmp_path / "data", tmp_path / "empty-mirror"
    mirror.mkdir()
    overrides = tmp_path / "overrides.yaml"
    env = {**scratch_env(), "REPRO_DATA_DIR": str(data), "REPRO_MIRROR": str(mirror), OVERRIDES_ENV: str(overrides),
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}

    # 1. one wrong checksum: its fetch stops naming both checksums, nothing is prepared or left behind.
    spec = {name: {"urls": [f"{base}/{name}"], "sha256": info["sha256"]} for name, info in files.items()}
    spec["val.csv"] = {**spec["val.csv"], "sha256": "0" * 64}
    overrides.write_text(yaml.safe_dump({KEY: {"files": spec}}))
    proc = run_prepare(wf, env, data)
    assert proc.returncode != 0
    log = (data / "logs" / f"fetch_{KEY}_val.csv.log").read_text()
    assert f"sha256 {files['val.csv']['sha256']}, expected {'0' * 64}" in log and "could not obtain" in log
    assert not (data / "downloads" / KEY / "val.csv").exists()
    assert not (data / "prepared" / "mini_imagenet").exists() or not any((data / "prepared/mini_imagenet").iterdir())

    # 2. the right checksums: fetched, verified, checked against the split files, prepared.
    spec["val.csv"]["sha256"] = files["val.csv"]["sha256"]
    overrides.write_text(yaml.safe_dump({KEY: {"files": spec}}))
    proc = run_prepare(wf, env, data)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name, info in files.items():
        assert hashlib.sha256((data / "downloads" / KEY / name).read_bytes()).hexdigest() == info["sha256"], name
    for split, wnids in CLASSES.items():
        s = load_split(data / "prepared" / "mini_imagenet" / f"{split}.npz")
        assert s.name == "mini_imagenet" and s.split == split and s.class_names == tuple(sorted(wnids))
        cache = files[f"mini-imagenet-cache-{split}.pkl"]
        for label, wnid in enumerate(s.class_names):   # each class's images are the cache's images of that wnid
            idx = cache["class_dict"][wnid]
            assert np.array_equal(s.images[s.labels == label], cache["images"][idx])

    # 3. tina's Mini-ImageNet run reads it: its class-disjoint train split cut per class into train and test.
    cfg = C.load("paper", "data_mini_imagenet")
    assert cfg.data.dataset == "mini_imagenet" and cfg.data.source_split == "train"
    cfg = replace(cfg, data=replace(cfg.data, test_per_class=2))
    train, test = load_data(cfg, str(data / "prepared/mini_imagenet/train.npz"), "unused")
    assert train.class_names == test.class_names == tuple(sorted(CLASSES["train"]))
    assert np.bincount(train.labels).tolist() == [PER_CLASS - 2] * 3 and np.bincount(test.labels).tolist() == [2] * 3


@pytest.mark.dag
@pytest.mark.parametrize("mirror", ["shared", "empty"])
def test_paper_dry_run_plans_every_dataset_and_study(tmp_path, mirror):
    """`snakemake -n --config scale=paper papers='[tina]'` builds CIFAR-100, Mini-ImageNet and Caltech-101 targets,
    the size study and the prompt study, with the shared mirror (no Mini-ImageNet there) and with an empty one."""
    wf = make_scratch_workflow(tmp_path / "wf")
    env = scratch_env()
    if mirror == "empty":
        (tmp_path / "empty").mkdir()
        env["REPRO_MIRROR"] = str(tmp_path / "empty")
    env["REPRO_DATA_DIR"] = str(tmp_path / "data")    # nothing prepared: every data rule must be planned
    proc = subprocess.run(snakemake_cmd(wf, "-n", "--config", "scale=paper", "papers=[tina]"), capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    for f in entry(KEY).files:
        assert f"downloads/{KEY}/{f.filename}" in out, f.filename
    for rule in ("prepare_mini_imagenet", "prepare_caltech101", "prepare_cifar", "tina_prompts"):
        assert f"rule {rule}:" in out, rule
    assert "downloads/cifar100/cifar-100-python.tar.gz" in out and "downloads/caltech101/caltech-101.zip" in out
    runs = ["main", "data_mini_imagenet", "data_caltech101", "size_convnet5k", "size_convnet33k", "size_convnet76k"]
    for run in runs:
        assert f"results/paper/tina/{run}/zoo.pt" in out, run
        part = "eval_s0" if run == "main" else f"{run}_eval_s0"
        assert f"results/paper/tina/parts/{part}.csv" in out, part
    assert "results/paper/tina/main/prompts_s0.pt" in out
    for table in ("main", "datasets", "sizes", "prompts"):
        assert f"results/paper/tables/tina_{table}.tex" in out, table
