"""A minimal NIfTI-1 reader (single-file `.nii` / `.nii.gz`), enough for the suite's MRI slices.

Implements the parts of the NIfTI-1 header (https://nifti.nimh.nih.gov/pub/dist/src/niftilib/nifti1.h) needed to
get the voxel array: `sizeof_hdr` (offset 0, int32 = 348, also tells the byte order), `dim` (offset 40, 8 x int16),
`datatype` (offset 70, int16), `vox_offset` (offset 108, float32), `scl_slope` / `scl_inter` (offsets 112 / 116,
float32) and `magic` (offset 344, `n+1\\0`). Voxels are stored with the first index varying fastest (Fortran
order). nibabel is not a dependency of the suite; this covers the files it reads.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.common.errors import UserError

DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}


@dataclass(frozen=True)
class Nifti:
    data: np.ndarray          # voxel values, shape dim[1:dim[0]+1], scaled by scl_slope/scl_inter when set
    pixdim: tuple[float, ...]  # voxel sizes (mm) of the same axes


def read_nifti(path: str | os.PathLike) -> Nifti:
    """Read a `.nii` or `.nii.gz` file."""
    return parse_nifti(Path(path).read_bytes(), str(path))


def parse_nifti(raw: bytes, path: str = "<bytes>") -> Nifti:
    """Parse the bytes of a `.nii` file (gzip-compressed or not); `path` names it in error messages."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise UserError(f"{path}: corrupt gzip stream ({err}); replace the file") from None
    if len(raw) < 348:
        raise UserError(f"{path}: too short to be a NIfTI-1 file ({len(raw)} bytes)")
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    if struct.unpack(endian + "i", raw[:4])[0] != 348:
        raise UserError(f"{path}: not a NIfTI-1 file (sizeof_hdr != 348)")
    magic = raw[344:348]
    if magic != b"n+1\x00":
        raise UserError(f"{path}: magic {magic!r}; only single-file NIfTI-1 ('n+1') is supported")
    dim = struct.unpack(endian + "8h", raw[40:56])
    ndim = dim[0]
    if not 1 <= ndim <= 7:
        raise UserError(f"{path}: invalid dim[0] = {ndim}")
    shape = tuple(int(d) for d in dim[1:ndim + 1])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    if datatype not in DTYPES:
        raise UserError(f"{path}: NIfTI datatype code {datatype} is not supported (supported: {sorted(DTYPES)})")
    pixdim = struct.unpack(endian + "8f", raw[76:108])[1:ndim + 1]
    vox_offset = int(struct.unpack(endian + "f", raw[108:112])[0])
    slope, inter = struct.unpack(endian + "2f", raw[112:120])
    dtype = np.dtype(DTYPES[datatype]).newbyteorder(endian)
    count = int(np.prod(shape))
    if vox_offset + count * dtype.itemsize > len(raw):
        raise UserError(f"{path}: truncated ({len(raw)} bytes, header says {vox_offset + count * dtype.itemsize})")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=vox_offset).reshape(shape, order="F")
    data = data.astype(dtype.newbyteorder("="))
    if slope not in (0.0, 1.0) or inter != 0.0:
        data = data.astype(np.float64) * (slope if slope != 0.0 else 1.0) + inter
    return Nifti(data=data, pixdim=tuple(float(p) for p in pixdim))
