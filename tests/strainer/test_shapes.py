"""The 3D experiment's pieces (repro.strainer.shapes, runs.shape3d): meshes -> occupancy, IoU, fitting, transfer."""

import dataclasses
import gzip
import struct

import numpy as np
import pytest
import torch

from repro.common.config import load_paper_config
from repro.common.results import ResultWriter
from repro.strainer.config import Shape3DConfig, StrainerConfig
from repro.strainer.shapes import (grid_points, iou, mesh_occupancy, normalise, occupancy_from_sdf, occupancy_grid,
                                   read_obj, read_ply, robust_occupancy, sphere_sdf, torus_sdf)


def _octahedron(r: float = 0.8):
    """|x| + |y| + |z| <= r as a closed triangle mesh: 6 vertices, 8 faces."""
    verts = np.array([[r, 0, 0], [-r, 0, 0], [0, r, 0], [0, -r, 0], [0, 0, r], [0, 0, -r]], dtype=np.float64)
    faces = np.array([[ix, iy, iz] for ix in (0, 1) for iy in (2, 3) for iz in (4, 5)])
    return verts, faces


def test_iou_hand_worked():
    a = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    b = np.array([0, 1, 1, 1, 0, 0], dtype=bool)
    assert iou(a, b) == pytest.approx(2 / 4)  # intersection {1, 2}, union {0, 1, 2, 3}
    assert iou(a, a) == 1.0 and iou(a, ~a) == 0.0
    assert iou(np.zeros(4, bool), np.zeros(4, bool)) == 1.0  # both empty: identical
    # two boxes on a 4^3 grid: 2x4x4 = 32 voxels and 3x4x4 = 48 voxels overlapping in 1x4x4 = 16: IoU 16 / 64
    x = np.zeros((4, 4, 4), bool)
    y = np.zeros((4, 4, 4), bool)
    x[:2], y[1:] = True, True
    assert iou(x.ravel(), y.ravel()) == pytest.approx(16 / 64)
    np.testing.assert_allclose(iou(np.stack([a, b]), np.stack([b, b])), [0.5, 1.0])


def test_sdfs_signs():
    p = np.array([[0.0, 0, 0], [0.5, 0, 0], [0.7, 0, 0]])
    np.testing.assert_allclose(sphere_sdf(p, 0.6), [-0.6, -0.1, 0.1])
    np.testing.assert_allclose(torus_sdf(p, 0.5, 0.1), [0.4, -0.1, 0.1])


def test_octahedron_mesh_occupancy_is_exact():
    """On a 32^3 grid no voxel centre lies on the octahedron's faces (|x|+|y|+|z| = 0.8 needs odd/32 sums to hit
    0.8), so ray parity must agree with the analytic inside test on every voxel."""
    verts, faces = _octahedron()
    occ = occupancy_grid(verts, faces, 32)
    truth = occupancy_from_sdf(np.abs(grid_points(32)).sum(-1) - 0.8)
    assert truth.sum() > 1000
    np.testing.assert_array_equal(occ, truth)
    np.testing.assert_array_equal(robust_occupancy(verts, faces, 32), truth)


def test_a_hole_is_outvoted_by_the_other_axes():
    verts, faces = _octahedron()
    holed = faces[1:]  # drop one face: the mesh is no longer closed
    truth = occupancy_from_sdf(np.abs(grid_points(24)).sum(-1) - 0.8)
    z_only = occupancy_grid(verts, holed, 24)
    robust = robust_occupancy(verts, holed, 24)
    assert (z_only != truth).sum() > 0
    assert (robust != truth).sum() < (z_only != truth).sum()


def test_obj_and_binary_ply_written_here_read_back(tmp_path):
    verts, faces = _octahedron(1.0)
    obj = tmp_path / "octa.obj"
    obj.write_text("\n".join([f"v {x} {y} {z}" for x, y, z in verts] + [f"f {a + 1}/1 {b + 1} {c + 1}"
                                                                         for a, b, c in faces]))
    v, f = read_obj(obj)
    np.testing.assert_allclose(v, verts)
    np.testing.assert_array_equal(f, faces)
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(verts)}\nproperty float x\nproperty float y\n"
              f"property float z\nproperty uchar red\nelement face {len(faces)}\nproperty list uchar int vertex_indices\n"
              "end_header\n").encode()
    body = b"".join(struct.pack("<fffB", *v_, 7) for v_ in verts) + b"".join(struct.pack("<Biii", 3, *t) for t in faces)
    ply = tmp_path / "octa.ply.gz"
    with gzip.open(ply, "wb") as fh:
        fh.write(header + body)
    v, f = read_ply(ply)
    np.testing.assert_allclose(v, verts)
    np.testing.assert_array_equal(f, faces)
    occ = mesh_occupancy(ply, 16)  # normalised to a 0.9 bounding half-width
    truth = occupancy_from_sdf(np.abs(grid_points(16)).sum(-1) - 0.9)
    np.testing.assert_array_equal(occ, truth)
    np.testing.assert_allclose(np.abs(normalise(verts * 3 + 1)).max(), 0.9)


def test_shape3d_transfer_runs_and_a_fit_raises_iou():
    """Tiny Fig. 12: an encoder trained on 3 tori, transferred to a sphere; rows, columns and that fitting raises
    the IoU of every method above its start."""
    from repro.strainer.runs import shape3d

    torch.set_num_threads(1)
    g = 12
    pts = grid_points(g)
    tori = np.stack([occupancy_from_sdf(torus_sdf(pts, 0.5 + 0.05 * i, 0.25)) for i in range(3)])
    target = occupancy_from_sdf(sphere_sdf(pts, 0.6))
    cfg = StrainerConfig.from_dict(load_paper_config("strainer", "smoke"))
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, width=32, n_layers=4, shared_layers=3),
        train=dataclasses.replace(cfg.train, iters=60, lr=1e-3), fit=dataclasses.replace(cfg.fit, lr=1e-3),
        shape3d=Shape3DConfig("shapenet_chairs", "thai_statue", 3, g, 60, (0, 30)))
    rw = ResultWriter(paper="strainer", part="shape3d_s0", scale="smoke", out_csv=None, config={})
    arrays = shape3d(cfg, 0, tori, target, "cpu", rw)
    df = rw.frame()
    assert set(df["row"]) == {"SIREN", "STRAINER-3", "STRAINER-3 (random encoder)"}
    assert {"IoU@0", "IoU@30", "IoU@60"} <= set(df["column"])
    assert arrays["iou"].shape == (3, 3) and list(arrays["report_iters"]) == [0, 30, 60]
    assert np.all(arrays["iou"][:, -1] > arrays["iou"][:, 0] + 0.2), arrays["iou"]
    assert np.all(arrays["iou"][:, -1] > 0.8)
    assert arrays["slices"].shape == (3, 3, g, g) and arrays["truth_slice"].shape == (g, g)


def test_shape3d_figure_draws(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from repro.strainer.figures import shape3d

    g = 8
    arrays = {"methods": np.array(["SIREN", "STRAINER-10", "STRAINER-10 (random encoder)"]),
              "report_iters": np.array([0, 150]), "iou": np.array([[0.1, 0.8], [0.2, 0.9], [0.1, 0.7]]),
              "slices": np.zeros((3, 2, g, g), np.uint8), "truth_slice": np.ones((g, g), np.uint8)}
    shape3d(arrays, str(tmp_path / "fig12"))
    assert (tmp_path / "fig12.png").stat().st_size > 1000 and (tmp_path / "fig12.pdf").exists()
