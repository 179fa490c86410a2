import gzip
import io
import struct
import tarfile

import numpy as np
import pytest

from repro.common.data.mri import read_mri_slices, read_neurite_oasis
from repro.common.data.nifti import parse_nifti, read_nifti
from repro.common.errors import UserError


def nifti_bytes(data: np.ndarray, code: int, endian: str = "<", slope: float = 0.0, inter: float = 0.0) -> bytes:
    """A single-file NIfTI-1 image written field by field from the nifti1.h layout."""
    hdr = bytearray(352)
    struct.pack_into(endian + "i", hdr, 0, 348)
    dims = [data.ndim, *data.shape] + [1] * (7 - data.ndim)
    struct.pack_into(endian + "8h", hdr, 40, *dims)
    struct.pack_into(endian + "h", hdr, 70, code)
    struct.pack_into(endian + "h", hdr, 72, data.dtype.itemsize * 8)
    struct.pack_into(endian + "8f", hdr, 76, 1.0, 2.0, 2.0, 3.0, 1, 1, 1, 1)
    struct.pack_into(endian + "f", hdr, 108, 352.0)
    struct.pack_into(endian + "2f", hdr, 112, slope, inter)
    hdr[344:348] = b"n+1\x00"
    return bytes(hdr) + data.astype(data.dtype.newbyteorder(endian)).tobytes(order="F")


@pytest.mark.parametrize("endian", ["<", ">"])
def test_nifti_roundtrip(tmp_path, endian):
    vol = np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 7
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress(nifti_bytes(vol, 512, endian)))
    n = read_nifti(tmp_path / "v.nii.gz")
    assert np.array_equal(n.data, vol) and n.pixdim == (2.0, 2.0, 3.0)


def test_nifti_scaling_and_errors():
    vol = np.array([[1, 2], [3, 4]], dtype=np.int16)
    n = parse_nifti(nifti_bytes(vol, 4, slope=0.5, inter=1.0))
    assert np.allclose(n.data, vol * 0.5 + 1.0)
    with pytest.raises(UserError, match="not a NIfTI-1"):
        parse_nifti(b"\x00" * 400)
    with pytest.raises(UserError, match="datatype code 32"):
        parse_nifti(nifti_bytes(vol, 32))
    with pytest.raises(UserError, match="truncated"):
        parse_nifti(nifti_bytes(vol, 4)[:-2])


def test_neurite_oasis_tar(tmp_path):
    rng = np.random.default_rng(0)
    with tarfile.open(tmp_path / "neurite-oasis.2d.v1.0.tar", "w") as tar:
        for sub in ("OASIS_OAS1_0002_MR1", "OASIS_OAS1_0001_MR1"):
            data = gzip.compress(nifti_bytes(rng.random((160, 192, 1)).astype(np.float32), 16))
            info = tarfile.TarInfo(f"{sub}/slice_norm.nii.gz")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    s = read_neurite_oasis(tmp_path / "neurite-oasis.2d.v1.0.tar")
    assert s.images.shape == (2, 256, 256, 1) and s.images.dtype == np.uint8
    assert s.names[0].startswith("OASIS_OAS1_0001")
    # 160 x 192 -> padded to 192 x 192 (16 zero columns on each side after transposition) -> 256
    assert s.images[0, :, :10].max() == 0 and s.images[0, 100:150, 100:150].mean() > 60


def test_mirror_mri_slices(mirror):
    s = read_mri_slices(mirror / "mri")
    assert s.images.shape == (17, 256, 256, 1) and s.images.dtype == np.uint8
    assert s.names[0] == "t1_coronal_slice.npy" and s.names[1].endswith("z=0") and s.names[-1].endswith("z=120")
    t1 = np.load(mirror / "mri" / "t1_coronal_slice.npy")
    assert np.abs(s.images[0, ..., 0] / 255.0 - t1).max() <= 0.5 / 255 + 1e-9  # the 256^2 slice only quantised
    assert all(img.max() > 200 for img in s.images)  # every slice uses the range


def test_missing_mri_files_are_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="missing MRI files"):
        read_mri_slices(tmp_path)
