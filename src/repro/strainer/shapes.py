"""3D shapes as INR targets (the paper's Fig. 12: STRAINER trained on ten ShapeNet chairs, transferred to the Thai
statue, 150 iterations; sheet section 3.4).

What the paper fitted in 3D (occupancy or signed distance, grid size, loss) is not known (UNVERIFIED). Here a shape
is an **occupancy grid**: a watertight triangle mesh, normalised into [-1, 1]^3, sampled at the centres of a G^3
grid (inside = 1). The INR is the suite's SIREN with 3 input coordinates and 1 output, fitted like the images
(targets in the configured pixel range, mean squared error, Adam), so STRAINER's shared-encoder transfer is the 2D
code unchanged; the metric is the IoU of the thresholded output (> the range's midpoint) against the grid.

Meshes: Wavefront OBJ (ShapeNet) and PLY (ascii or binary little-endian; the Stanford repository's Thai statue).
Inside/outside by ray parity along +z: for every grid column (x, y) the z of every triangle crossing it is found,
and a voxel centre is inside when an odd number of crossings lie above it.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np

from repro.common.errors import UserError


# ---- analytic shapes (tests, and a cheap stand-in where no mesh is available) ----------------------------------

def sphere_sdf(points: np.ndarray, radius: float, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Signed distance to a sphere: negative inside."""
    return np.linalg.norm(points - np.asarray(centre), axis=-1) - radius


def torus_sdf(points: np.ndarray, major: float, minor: float) -> np.ndarray:
    """Signed distance to a torus around the z axis (ring radius `major`, tube radius `minor`)."""
    ring = np.sqrt(points[..., 0] ** 2 + points[..., 1] ** 2) - major
    return np.sqrt(ring ** 2 + points[..., 2] ** 2) - minor


def grid_points(g: int) -> np.ndarray:
    """Centres of a g^3 grid on [-1, 1]^3, [g, g, g, 3] indexed (x, y, z)."""
    axis = (np.arange(g) + 0.5) / g * 2 - 1
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)


def occupancy_from_sdf(sdf: np.ndarray) -> np.ndarray:
    return (sdf < 0).astype(np.uint8)


# ---- meshes --------------------------------------------------------------------------------------------------

def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_obj(path: str | Path, text: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] and triangles [F, 3] of an OBJ file (polygons fanned into triangles); `text`: the file's
    bytes when it was read from an archive (`path` then only names it in errors)."""
    verts, faces = [], []
    with (io.BytesIO(text) if text is not None else _open(Path(path))) as fh:
        for raw in fh:
            parts = raw.decode("utf-8", "replace").split()
            if not parts:
                continue
            if parts[0] == "v":
                verts.append([float(v) for v in parts[1:4]])
            elif parts[0] == "f":
                idx = [int(p.split("/")[0]) for p in parts[1:]]
                idx = [i - 1 if i > 0 else len(verts) + i for i in idx]
                faces += [[idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1)]
    if not verts or not faces:
        raise UserError(f"{path}: no vertices or faces found; is it an OBJ mesh?")
    return np.asarray(verts, dtype=np.float64), np.asarray(faces, dtype=np.int64)


_PLY_TYPES = {"char": "i1", "uchar": "u1", "int8": "i1", "uint8": "u1", "short": "i2", "ushort": "u2",
              "int16": "i2", "uint16": "u2", "int": "i4", "uint": "u4", "int32": "i4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [V, 3] and triangles [F, 3] of a PLY file (ascii or binary_little_endian; faces must be
    triangles, as in the Stanford scans)."""
    with _open(Path(path)) as fh:
        data = fh.read()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise UserError(f"{path}: not a PLY file (no 'ply' magic or 'end_header')")
    body = data[data.index(b"\n", end) + 1:]
    fmt, elements = None, []
    for line in data[:end].decode("ascii", "replace").splitlines():
        p = line.split()
        if not p:
            continue
        if p[0] == "format":
            fmt = p[1]
        elif p[0] == "element":
            elements.append([p[1], int(p[2]), []])
        elif p[0] == "property":
            elements[-1][2].append(p[1:])
    if fmt not in ("ascii", "binary_little_endian"):
        raise UserError(f"{path}: PLY format {fmt} not supported (ascii or binary_little_endian)")
    verts = faces = None
    if fmt == "ascii":
        rows = iter(body.decode("ascii").splitlines())
        for name, count, props in elements:
            lines = [next(rows).split() for _ in range(count)]
            if name == "vertex":
                names = [pr[-1] for pr in props]
                cols = [names.index(c) for c in "xyz"]
                verts = np.asarray([[float(r[c]) for c in cols] for r in lines])
            elif name == "face":
                if any(int(r[0]) != 3 for r in lines):
                    raise UserError(f"{path}: only triangle faces are supported")
                faces = np.asarray([[int(v) for v in r[1:4]] for r in lines], dtype=np.int64)
    else:
        offset = 0
        for name, count, props in elements:
            if props and props[0][0] == "list":
                count_t, index_t = _PLY_TYPES[props[0][1]], _PLY_TYPES[props[0][2]]
                if len(props) != 1:
                    raise UserError(f"{path}: face elements with extra properties are not supported")
                dt = np.dtype([("n", "<" + count_t), ("i", "<" + index_t, 3)])
                arr = np.frombuffer(body, dtype=dt, count=count, offset=offset)
                if (arr["n"] != 3).any():
                    raise UserError(f"{path}: only triangle faces are supported")
                if name == "face":
                    faces = arr["i"].astype(np.int64)
            else:
                dt = np.dtype([(pr[1], "<" + _PLY_TYPES[pr[0]]) for pr in props])
                arr = np.frombuffer(body, dtype=dt, count=count, offset=offset)
                if name == "vertex":
                    verts = np.stack([arr[c].astype(np.float64) for c in "xyz"], axis=1)
            offset += dt.itemsize * count
    if verts is None or faces is None:
        raise UserError(f"{path}: no vertex or face element")
    return verts, faces


def read_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(".obj"):
        return read_obj(path)
    if name.endswith(".ply"):
        return read_ply(path)
    raise UserError(f"{path}: unknown mesh format (expected .obj or .ply, optionally .gz)")


def normalise(verts: np.ndarray, margin: float = 0.9) -> np.ndarray:
    """Centre the bounding box at the origin and scale its longest side to 2 * margin (inside [-1, 1]^3)."""
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    return (verts - (lo + hi) / 2) * (2 * margin / max(float((hi - lo).max()), 1e-12))


def occupancy_grid(verts: np.ndarray, faces: np.ndarray, g: int, chunk: int = 200_000) -> np.ndarray:
    """uint8 [g, g, g] (indexed x, y, z like `grid_points`): 1 where the voxel centre is inside the closed mesh
    (`verts` already in [-1, 1]^3), by ray parity along +z."""
    centres = (np.arange(g) + 0.5) / g * 2 - 1
    count = np.zeros((g * g, g + 1), dtype=np.int32)  # per column: crossings above each voxel, as a difference array
    tri = verts[faces]  # [F, 3, 3]
    for start in range(0, len(tri), chunk):
        t = tri[start:start + chunk]
        # columns whose centre can fall in the triangle's xy bounding box
        lo = np.clip(np.ceil((t[:, :, :2].min(axis=1) + 1) * g / 2 - 0.5), 0, g).astype(np.int64)
        hi = np.clip(np.floor((t[:, :, :2].max(axis=1) + 1) * g / 2 - 0.5), -1, g - 1).astype(np.int64)
        nx, ny = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0), np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
        n = nx * ny
        keep = n > 0
        if not keep.any():
            continue
        owner = np.repeat(np.nonzero(keep)[0], n[keep])
        local = np.arange(owner.size) - np.repeat(np.cumsum(n[keep]) - n[keep], n[keep])
        ix = lo[owner, 0] + local // ny[owner]
        iy = lo[owner, 1] + local % ny[owner]
        px, py = centres[ix], centres[iy]
        a, b, c = t[owner, 0], t[owner, 1], t[owner, 2]
        # barycentric coordinates of (px, py) in the projected triangle
        det = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
        ok = np.abs(det) > 1e-18
        det = np.where(ok, det, 1.0)
        l1 = ((b[:, 1] - c[:, 1]) * (px - c[:, 0]) + (c[:, 0] - b[:, 0]) * (py - c[:, 1])) / det
        l2 = ((c[:, 1] - a[:, 1]) * (px - c[:, 0]) + (a[:, 0] - c[:, 0]) * (py - c[:, 1])) / det
        l3 = 1 - l1 - l2
        # half-open edges so that a ray through a shared edge or vertex is counted once
        inside = ok & (l1 >= 0) & (l2 >= 0) & (l3 > 0)
        z = l1 * a[:, 2] + l2 * b[:, 2] + l3 * c[:, 2]
        col = (ix * g + iy)[inside]
        k = np.searchsorted(centres, z[inside], side="left")  # voxels [0, k) lie below the crossing
        np.add.at(count, (col, np.zeros_like(col)), 1)
        np.add.at(count, (col, k), -1)
    above = np.cumsum(count[:, :g], axis=1)
    return (above % 2 == 1).astype(np.uint8).reshape(g, g, g)


def robust_occupancy(verts: np.ndarray, faces: np.ndarray, g: int) -> np.ndarray:
    """Majority vote of ray parity along z, y and x: a hole in a mesh that is not watertight (ShapeNet's often
    are not) flips one axis's columns, rarely two."""
    votes = occupancy_grid(verts, faces, g).astype(np.int16)
    votes += occupancy_grid(verts[:, [0, 2, 1]], faces, g).transpose(0, 2, 1)  # rays along y
    votes += occupancy_grid(verts[:, [2, 1, 0]], faces, g).transpose(2, 1, 0)  # rays along x
    return (votes >= 2).astype(np.uint8)


def mesh_occupancy(path: str | Path, g: int) -> np.ndarray:
    verts, faces = read_mesh(path)
    return robust_occupancy(normalise(verts), faces, g)


def shapenet_occupancies(archive: str | Path, n: int, g: int) -> tuple[np.ndarray, list[str]]:
    """The first `n` models (sorted by id) of a ShapeNetCore v2 category archive (`<synset>.zip` holding
    `<synset>/<id>/models/model_normalized.obj`) as occupancy grids [n, g, g, g]."""
    from repro.common.progress import progress

    with zipfile.ZipFile(archive) as zf:
        members = sorted(m for m in zf.namelist() if m.endswith("models/model_normalized.obj"))
        if len(members) < n:
            raise UserError(f"{archive}: {len(members)} models found, {n} needed; is it a ShapeNetCore v2 "
                            f"category zip?")
        grids, names = [], []
        for m in progress(members[:n], desc="ShapeNet occupancy", total=n):
            verts, faces = read_obj(m, zf.read(m))
            grids.append(robust_occupancy(normalise(verts), faces, g))
            names.append(m.split("/")[-3])
    return np.stack(grids), names


# ---- metric --------------------------------------------------------------------------------------------------

def iou(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Intersection over union of boolean occupancies, per leading index: [..., V] x [..., V] -> [...]."""
    p, t = np.asarray(pred, dtype=bool), np.asarray(target, dtype=bool)
    inter = np.logical_and(p, t).sum(axis=-1)
    union = np.logical_or(p, t).sum(axis=-1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
