"""Dataset readers on tiny fixtures written here in each format's documented layout."""

import json

import cv2
import numpy as np
import pytest

from facelift_jax.evaluation.datasets import base
from facelift_jax.evaluation.datasets.dad3dheads import DAD3DHeads
from facelift_jax.evaluation.datasets.multiface import Multiface, load_krt


def _rot_y(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


# ---------------------------------------------------------------------------------------------
# DAD-3DHeads
# ---------------------------------------------------------------------------------------------

H, W = 120, 100
F_PIX, CX, CY = 300.0, 50.0, 60.0


def _write_dad(tmp_path, n=2, bad=None):
    root = tmp_path / "DAD-3DHeadsDataset" / "val"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    r = np.random.default_rng(0)
    entries, truth = [], []
    for i in range(n):
        item = f"item{i}"
        verts = r.normal(size=(5023, 3)) * 0.05
        mv = np.eye(4)
        mv[:3, :3] = _rot_y(10 * i)
        mv[:3, 3] = [0.01 * i, 0.0, 1.0]
        # A pinhole written as an OpenGL-style 4×4 whose w row carries the depth.
        proj = np.array([[F_PIX, 0, CX, 0], [0, F_PIX, CY, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
        ann = {"vertices": verts.tolist(), "model_view_matrix": mv.tolist(), "projection_matrix": proj.tolist()}
        if bad == "shape" and i == 1:
            ann["vertices"] = verts[:100].tolist()
        (root / "annotations" / f"{item}.json").write_text(json.dumps(ann))
        cv2.imwrite(str(root / "images" / f"{item}.png"), np.full((H, W, 3), 40 * i, np.uint8))
        entries.append({"item_id": item, "annotation_path": f"val/annotations/{item}.json",
                        "img_path": f"val/images/{item}.png", "bbox": [10, 20, 30 + i, 40],
                        "attributes": {"pose": ["front", "sided"][i % 2], "expression": bool(i % 2),
                                       "occlusions": False}})
        truth.append((verts, mv))
    (root / "val.json").write_text(json.dumps(entries))
    return root, truth


def _dad_expected_pixels(v, mv):
    """Independent: rotate/translate, pinhole, then flip y against the image height."""
    out = []
    for p in v:
        c = mv[:3, :3] @ p + mv[:3, 3]
        x, y = F_PIX * c[0] / c[2] + CX, F_PIX * c[1] / c[2] + CY
        out.append([x, H - y])
    return np.array(out)


def test_dad3dheads_reads_and_projects(tmp_path):
    root, truth = _write_dad(tmp_path)
    ds = DAD3DHeads(root)
    assert len(ds) == 2 and ds.num_points == 68
    s = ds[1]
    assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8 and s.image[0, 0, 0] == 40
    assert s.vertices2d.shape == (5023, 2)
    np.testing.assert_allclose(s.vertices2d[:20], _dad_expected_pixels(truth[1][0][:20], truth[1][1]), rtol=1e-9)
    np.testing.assert_allclose(s.box, [10, 20, 41, 60])
    assert s.categories == {"pose": "sided", "expression": "True", "occlusions": "False"}
    assert s.landmarks2d is None
    # Head pose as the benchmark's get_gt_rot_mat: OpenGL → OpenCV flip of the model-view rotation.
    np.testing.assert_allclose(s.extra["rotation"], np.diag([1.0, -1.0, -1.0]) @ _rot_y(10), atol=1e-12)
    # The crop is square, centred on the bbox, 1.2 × its longer side.
    np.testing.assert_allclose(s.crop_box, [25.5 - 24, 40 - 24, 25.5 + 24, 40 + 24])
    # Also found from the metadata file itself.
    assert len(DAD3DHeads(root / "val.json", limit=1)) == 1


def test_dad3dheads_landmark_embedding(tmp_path):
    root, truth = _write_dad(tmp_path)
    faces = np.arange(3 * 100).reshape(100, 3) % 5023
    idx = np.arange(68)
    bary = np.zeros((68, 3))
    bary[:, 0], bary[:, 2] = 0.25, 0.75
    np.savez(tmp_path / "emb.npz", faces=faces, lmk_face_idx=idx, lmk_b_coords=bary)
    s = DAD3DHeads(root, landmark_embedding=tmp_path / "emb.npz")[0]
    verts, mv = truth[0]
    pts = 0.25 * verts[faces[idx, 0]] + 0.75 * verts[faces[idx, 2]]
    np.testing.assert_allclose(s.landmarks2d, _dad_expected_pixels(pts, mv), rtol=1e-9)


def test_dad3dheads_malformed(tmp_path):
    root, _ = _write_dad(tmp_path, bad="shape")
    ds = DAD3DHeads(root)
    with pytest.raises(base.DatasetFormatError, match=r"item1\.json.*'vertices' must be 5023×3"):
        ds[1]
    (root / "annotations" / "item0.json").write_text("{not json")
    with pytest.raises(base.DatasetFormatError, match="item0.json is not valid JSON"):
        ds[0]
    (root / "val.json").write_text(json.dumps([{"item_id": "x"}]))
    with pytest.raises(base.DatasetFormatError, match="'item_id' and 'bbox'"):
        DAD3DHeads(root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DAD3DHeads(tmp_path / "nowhere")
    (root / "val.json").write_text(json.dumps([{"item_id": "gone", "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(FileNotFoundError, match="gone"):
        DAD3DHeads(root)[0]


# ---------------------------------------------------------------------------------------------
# Multiface
# ---------------------------------------------------------------------------------------------

def _write_multiface(tmp_path, cams=("400002", "400004"), frames=("000102", "000105"), seqs=("E001_Neutral", "E002_Swallow")):
    root = tmp_path / "m--20180227--0000--6795937--GHS"
    r = np.random.default_rng(1)
    calib = {}
    lines = []
    for j, cam in enumerate(cams):
        K = np.array([[900.0, 0, 667], [0, 900.0, 1024], [0, 0, 1]])
        Rc = _rot_y(15 * j)
        tc = np.array([0.0, 0.0, 1000.0])  # millimetres, head about 1 m away
        dist = [0.01, -0.02, 0, 0, 0]
        calib[cam] = (K, Rc, tc)
        lines += [cam] + [" ".join(map(str, row)) for row in K] + [" ".join(map(str, dist))]
        lines += [" ".join(map(str, list(Rc[i]) + [tc[i]])) for i in range(3)] + [""]
    root.mkdir()
    (root / "KRT").write_text("\n".join(lines) + "\n")
    meshes = {}
    for seq in seqs:
        (root / "tracked_mesh" / seq).mkdir(parents=True)
        for k, frame in enumerate(frames):
            verts = (r.normal(size=(50, 3)) * 60).astype(np.float32)
            verts.tofile(root / "tracked_mesh" / seq / f"{frame}.bin")
            pose = np.concatenate([_rot_y(5 * k), np.array([[1.0], [2.0], [3.0]])], 1)
            np.savetxt(root / "tracked_mesh" / seq / f"{frame}_transform.txt", pose)
            meshes[(seq, frame)] = (verts, pose)
            for cam in cams:
                (root / "images" / seq / cam).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(root / "images" / seq / cam / f"{frame}.png"), np.zeros((64, 48, 3), np.uint8))
    return root, calib, meshes


def _multiface_expected(verts, pose, K, Rc, tc):
    """Independent: mesh → head pose → camera → pinhole pixels, one vertex at a time."""
    out = []
    for v in verts.astype(np.float64):
        world = pose[:, :3] @ v + pose[:, 3]
        cam = Rc @ world + tc
        uvw = K @ cam
        out.append(uvw[:2] / uvw[2])
    return np.array(out)


def test_multiface_reads_and_projects(tmp_path):
    root, calib, meshes = _write_multiface(tmp_path)
    krt = load_krt(root / "KRT")
    assert sorted(krt) == ["400002", "400004"] and krt["400002"]["dist"].shape == (5,)
    ds = Multiface(root)
    assert len(ds) == 2 * 2 * 2
    for i in range(len(ds)):
        s = ds[i]
        seq, frame, cam = s.name.split("/")
        verts, pose = meshes[(seq, frame)]
        expected = _multiface_expected(verts, pose, *calib[cam])
        np.testing.assert_allclose(s.vertices2d, expected, rtol=1e-5)
        np.testing.assert_allclose(s.box, [*expected.min(0), *expected.max(0)], rtol=1e-5)
        assert s.categories["sequence"] == seq
    sub = Multiface(root, sequences=["E002_Swallow"], cameras=["400004"], frame_step=2)
    assert [s for s in sub.items] == [("E002_Swallow", "000102", "400004")]
    idx = np.arange(68) % 50
    np.save(tmp_path / "lmk.npy", idx)
    s = Multiface(root, landmark_vertices=tmp_path / "lmk.npy", limit=1)[0]
    np.testing.assert_allclose(s.landmarks2d, s.vertices2d[idx])


def test_multiface_malformed(tmp_path):
    root, _, _ = _write_multiface(tmp_path, cams=("400002",), frames=("000102",), seqs=("E001",))
    krt = (root / "KRT").read_text().splitlines()
    (root / "KRT").write_text("\n".join(krt[:3]) + "\n")
    with pytest.raises(base.DatasetFormatError, match="KRT.*truncated"):
        Multiface(root)
    (root / "KRT").write_text("\n".join(krt[:1] + ["1 2 x"] + krt[2:]) + "\n")
    with pytest.raises(base.DatasetFormatError, match="line 2: not numbers"):
        Multiface(root)
    (root / "KRT").write_text("\n".join(krt) + "\n")
    np.zeros(7, np.float32).tofile(root / "tracked_mesh" / "E001" / "000102.bin")
    with pytest.raises(base.DatasetFormatError, match="not a positive multiple of 3"):
        Multiface(root)[0]
    with pytest.raises(FileNotFoundError, match="sequences"):
        Multiface(root, sequences=["nope"])
    (root / "images" / "E001" / "400002" / "000102.png").unlink()
    with pytest.raises(FileNotFoundError, match="no \\(sequence, frame, camera\\)"):
        Multiface(root)


def test_read_image_rgb_errors(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(base.DatasetFormatError, match="x.png is not a readable image"):
        base.read_image_rgb(tmp_path / "x.png")
    cv2.imwrite(str(tmp_path / "g.png"), np.full((4, 5), 7, np.uint8))
    img = base.read_image_rgb(tmp_path / "g.png")
    assert img.shape == (4, 5, 3) and (img == 7).all()


def test_load_specs(tmp_path):
    from configs.default import get_config
    from facelift_jax.evaluation import datasets

    cfg = get_config()
    (tmp_path / "dad").mkdir()
    (tmp_path / "mf").mkdir()
    root, _ = _write_dad(tmp_path / "dad")
    cfg.eval.crop_scale = 2.0
    cfg.eval.limit = 1
    ds = datasets.load(f"dad3dheads:{root}", cfg)
    assert isinstance(ds, DAD3DHeads) and len(ds) == 1 and ds.crop_scale == 2.0
    mroot, _, _ = _write_multiface(tmp_path / "mf")
    cfg.eval.limit = 0
    cfg.eval.multiface.sequences = ("E002_Swallow",)
    ds = datasets.load(f"multiface:{mroot}", cfg)
    assert isinstance(ds, Multiface) and {s[0] for s in ds.items} == {"E002_Swallow"} and len(ds) == 4
    with pytest.raises(ValueError, match="unknown data spec"):
        datasets.load("celeba:/x", cfg)
    with pytest.raises(ValueError, match="needs a path"):
        datasets.load("dad3dheads", cfg)
    with pytest.raises(ValueError, match="integer N"):
        datasets.load("synthetic:many", cfg)
