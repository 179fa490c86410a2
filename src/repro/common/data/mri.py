"""Brain MRI 2D slices in canonical form (uint8 [N, 256, 256, 1]) from the offline mirror's files.

STRAINER fits OASIS-MRI 2D slices (Vyas et al. 2024, Tables 1-2; strainer sheet section 6). OASIS cannot be
redistributed, so offline the suite uses the mirror's openly licensed brain MRI (mirror README, `mri/`):

1. `t1_coronal_slice.npy` (dipy): one 256 x 256 T1 slice in [0, 1], used as is;
2. `S0_10slices.nii.gz` (dipy): all 10 axial b0 slices (128 x 128, uint16), each volume scaled by its 99.9th
   percentile and clipped to [0, 1], then upsampled to 256 with a Lanczos filter;
3. `mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz` (nilearn): `MNI_SLICES` axial slices of the MNI152 2009a
   template (197 x 233 per slice), scaled by the volume maximum, zero-padded (background is 0) to a centred
   233 x 233 square and resized to 256 with a Lanczos filter.

Slices are shown in radiological display convention used by most viewers: rows run anterior (top) to posterior,
i.e. the NIfTI (x, y) plane transposed and flipped vertically. Every slice is quantised to uint8 (round(255 x)).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from repro.common.data.canonical import Split
from repro.common.data.nifti import parse_nifti, read_nifti
from repro.common.errors import UserError

SIZE = 256
MNI_SLICES = (60, 72, 84, 96, 108, 120)  # axial indices (of 189) spanning the cerebrum of the template
FILES = ("t1_coronal_slice.npy", "S0_10slices.nii.gz", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")


def _to_square(img: np.ndarray) -> np.ndarray:
    """Zero-pad a 2D float image to a centred square."""
    h, w = img.shape
    s = max(h, w)
    out = np.zeros((s, s), dtype=np.float32)
    top, left = (s - h) // 2, (s - w) // 2
    out[top:top + h, left:left + w] = img
    return out


def _resize(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    if img.shape == (size, size):
        return img.astype(np.float32)
    pil = Image.fromarray(img.astype(np.float32), mode="F").resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(pil, dtype=np.float32)


def _quantise(img: np.ndarray) -> np.ndarray:
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def _axial_display(vol_slice: np.ndarray) -> np.ndarray:
    """NIfTI (x: left->right, y: posterior->anterior) plane -> image rows anterior (top) to posterior."""
    return vol_slice.T[::-1]


def read_mri_slices(mri_dir: str | os.PathLike) -> Split:
    """The slices listed in the module docstring, in that order, as one single-class split `mri/all`."""
    mri_dir = Path(mri_dir)
    missing = [f for f in FILES if not (mri_dir / f).is_file()]
    if missing:
        raise UserError(f"{mri_dir}: missing MRI files {missing}; point the mirror setting (config 'mirror' or env "
                        "REPRO_MIRROR) at a mirror whose mri/ folder holds them (see the mirror README)")
    slices, names = [], []

    t1 = np.load(mri_dir / FILES[0], allow_pickle=False).astype(np.float64)
    if t1.ndim != 2 or t1.min() < 0 or t1.max() > 1:
        raise UserError(f"{mri_dir / FILES[0]}: expected one 2D slice in [0, 1], got {t1.shape} "
                        f"[{t1.min()}, {t1.max()}]")
    slices.append(_resize(_to_square(t1.astype(np.float32))))
    names.append(FILES[0])

    b0 = read_nifti(mri_dir / FILES[1]).data.astype(np.float64)
    b0 = b0.reshape(b0.shape[0], b0.shape[1], -1)
    b0 = b0 / np.percentile(b0, 99.9)
    for z in range(b0.shape[2]):
        slices.append(_resize(_to_square(_axial_display(b0[:, :, z]))))
        names.append(f"{FILES[1]}:z={z}")

    mni = read_nifti(mri_dir / FILES[2]).data.astype(np.float64)
    mni = mni / mni.max()
    for z in MNI_SLICES:
        slices.append(_resize(_to_square(_axial_display(mni[:, :, z]))))
        names.append(f"{FILES[2]}:z={z}")

    images = np.stack([_quantise(s) for s in slices])[..., None]
    return Split(images=images, labels=np.zeros(len(images), dtype=np.int64), class_names=("brain_mri",),
                 name="mri", split="all", names=tuple(names), source="mirror:mri/")


def read_neurite_oasis(archive: str | os.PathLike, *, limit: int | None = None) -> Split:
    """OASIS-1 2D slices from the neurite-oasis 2D release (`neurite-oasis.2d.v1.0.tar`).

    Each subject folder `OASIS_OAS1_XXXX_MR1/` holds `slice_norm.nii.gz`: one skull-stripped, intensity-normalised
    160 x 192 slice (adalca/medical-datasets neurite-oasis.md). Each slice is scaled by its maximum, zero-padded to
    a centred square and resized to 256 like the mirror's slices. Subjects are taken in sorted order.
    """
    import tarfile

    found: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                if m.isfile() and m.name.endswith("/slice_norm.nii.gz"):
                    found.append((m.name, tar.extractfile(m).read()))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserError(f"{archive}: cannot read the neurite-oasis archive ({err}); fetch it again") from None
    if not found:
        raise UserError(f"{archive}: no */slice_norm.nii.gz inside; is this neurite-oasis.2d.v1.0.tar?")
    found.sort()
    if limit is not None:
        found = found[:limit]
    slices, names = [], []
    for name, data in found:
        img = parse_nifti(data, f"{archive}:{name}").data.astype(np.float64)
        img = img.reshape(img.shape[0], img.shape[1])
        peak = img.max()
        img = img / peak if peak > 0 else img
        slices.append(_quantise(_resize(_to_square(_axial_display(img)))))
        names.append(name)
    return Split(images=np.stack(slices)[..., None], labels=np.zeros(len(slices), dtype=np.int64),
                 class_names=("brain_mri",), name="mri", split="all", names=tuple(names),
                 source=Path(archive).name)
