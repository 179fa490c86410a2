"""The data rules' path and source policy (repro.common.data.workflow.DataLayout)."""

from pathlib import Path

from repro.common.data.workflow import DataLayout


def make_mirror(tmp_path, *files):
    for rel in files:
        p = tmp_path / "mirror" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return str(tmp_path / "mirror")


def test_paths():
    d = DataLayout("data", None, "smoke")
    assert d.prepared("cifar10", "test") == "data/prepared/cifar10/test.npz"
    assert d.fid_stats("cifar10", "test-n400", 32) == "data/fid_stats/cifar10_test-n400_32_inception-pool3.npz"
    assert d.download("cifar10") == "data/downloads/cifar10/cifar-10-python.tar.gz"
    assert d.inception_weights() == "data/weights/inception-v3-pool3-tfidelity.pth"


def test_cifar_sources(tmp_path):
    mirror = make_mirror(tmp_path, "cifar10-jpeg.tar")
    smoke, paper = DataLayout("data", mirror, "smoke"), DataLayout("data", mirror, "paper")
    assert smoke.cifar_source("cifar10").endswith("mirror/cifar10-jpeg.tar")
    # the mirror tar is read in place, so the prepare rule's input is the verify stamp (its own rule), not the tar
    assert smoke.cifar_input("cifar10") == "data/verified/cifar10-jpeg.tar.sha256"
    assert smoke.mirror_files("cifar10-jpeg.tar") == [str((tmp_path / "mirror/cifar10-jpeg.tar").resolve())]
    assert paper.cifar_source("cifar10") == "data/downloads/cifar10/cifar-10-python.tar.gz"  # never JPEG for paper
    assert paper.cifar_input("cifar10") == paper.cifar_source("cifar10")  # fetched archives: verified by fetch
    official = DataLayout("data", make_mirror(tmp_path, "cifar-10-python.tar.gz"), "smoke")
    assert official.cifar_source("cifar10") == "data/downloads/cifar10/cifar-10-python.tar.gz"  # fetch copies it
    assert DataLayout("data", None, "smoke").cifar_source("cifar100").endswith("cifar-100-python.tar.gz")


def test_extractor_faces_and_mri(tmp_path):
    mirror = make_mirror(tmp_path, "faces/afhq/cat/a.jpg", "mri/t1_coronal_slice.npy", "mri/S0_10slices.nii.gz",
                         "mri/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    d = DataLayout("data", mirror, "smoke")
    assert d.fid_extractor == "inception-pool3"
    assert d.face_source("afhq").endswith("faces/afhq") and d.face_split_args("afhq") == ""
    assert d.face_source("celebahq") == "data/downloads/celebahq/celeba_hq.zip"
    assert d.face_split_args("celebahq") == "--split val"
    assert len(d.mri_sources()) == 3 and d.mri_src_arg(d.mri_sources()).endswith("mirror/mri")
    assert d.face_input("afhq") == "data/verified/faces/afhq.sha256"
    assert d.face_input("celebahq") == d.face_source("celebahq")
    assert d.mri_inputs() == ["data/verified/mri.sha256"]
    assert d.mirror_files("faces/afhq") == [str((tmp_path / "mirror/faces/afhq/cat/a.jpg").resolve())]
    paper = DataLayout("data", mirror, "paper")
    assert paper.fid_extractor == "inception-full"
    assert paper.inception_weights().endswith("weights-inception-2015-12-05-6726825d.pth")
    assert paper.mri_sources() == ["data/downloads/oasis_mri/neurite-oasis.2d.v1.0.tar"]
    assert paper.mri_inputs() == paper.mri_sources()
    with_full = DataLayout("data", make_mirror(tmp_path, "pt_inception-2015-12-05-6726825d.pth"), "smoke")
    assert with_full.fid_extractor == "inception-full"


def test_mini_imagenet_source(tmp_path):
    mirror = make_mirror(tmp_path, "mini-imagenet/train.csv")
    assert DataLayout("data", mirror, "paper").mini_imagenet_source().endswith("mirror/mini-imagenet")
    assert DataLayout("data", mirror, "paper").mini_imagenet_inputs() == [str(Path(mirror, "mini-imagenet").resolve())]
    # Without a mirror folder: the registry's three caches and three split files, fetched to the download folder.
    plain = DataLayout("data", None, "paper")
    assert plain.mini_imagenet_source() == "data/downloads/mini_imagenet"
    assert plain.mini_imagenet_inputs() == [f"data/downloads/mini_imagenet/{f}" for f in (
        "mini-imagenet-cache-train.pkl", "mini-imagenet-cache-val.pkl", "mini-imagenet-cache-test.pkl",
        "train.csv", "val.csv", "test.csv")]
