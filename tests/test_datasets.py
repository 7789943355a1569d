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
    with pytest.raises(ValueError, match="data spec 'celeba:/x': unknown kind 'celeba'"):
        datasets.load("celeba:/x", cfg)
    with pytest.raises(ValueError, match="needs a path"):
        datasets.load("dad3dheads", cfg)
    with pytest.raises(ValueError, match="integer N"):
        datasets.load("synthetic:many", cfg)


# ----------------------------------------------------------------------------- hand-annotated photos
def _write_annotated(folder, truths: dict, image_size=(120, 160)):
    """Photos with known 68-point truth (continuous pixels): .pts for .jpg/.ppm, .ljson for .png."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = image_size
    for name, truth in truths.items():
        image = np.full((h, w, 3), 128, np.uint8)
        if name.endswith(".ppm"):
            image[..., 1] = image[..., 2] = image[..., 0] = 60  # grayscale
        else:
            image[..., 0] = 200
        cv2.imwrite(str(folder / name), image)
        stem = folder / name.rsplit(".", 1)[0]
        if name.endswith(".png"):  # menpo LJSON: 0-based [row, col]
            rows_cols = (truth - 0.5)[:, ::-1]
            doc = {"version": 2, "groups": {"LJSON": {"landmarks": {"points": rows_cols.tolist()}, "labels": []}}}
            stem.with_suffix(".ljson").write_text(json.dumps(doc))
        else:  # iBUG .pts: 1-based "x y"
            body = "\n".join(f"{x + 0.5:.6f} {y + 0.5:.6f}" for x, y in truth)
            stem.with_suffix(".pts").write_text(f"version: 1\nn_points:  {len(truth)}\n{{\n{body}\n}}\n")


def _truth68(seed, centre=(80.0, 60.0), size=40.0):
    rng = np.random.default_rng(seed)
    return np.asarray(centre) + (rng.random((68, 2)) - 0.5) * size


def test_annotated_photos_read_both_formats_in_continuous_pixels(tmp_path):
    from facelift_jax.evaluation.datasets import annotated

    truths = {"a.jpg": _truth68(0), "b.png": _truth68(1), "c.ppm": _truth68(2)}
    _write_annotated(tmp_path, truths)
    (tmp_path / "no_annotation.jpg").write_bytes((tmp_path / "a.jpg").read_bytes())  # not a sample
    ds = annotated.AnnotatedPhotos(tmp_path, crop_scale=1.5)
    assert [s.name for s in ds] == ["a.jpg", "b.png", "c.ppm"]
    for s in ds:
        np.testing.assert_allclose(s.landmarks2d, truths[s.name], atol=1e-6)  # .pts − 0.5, [row, col] + 0.5
        np.testing.assert_allclose(s.box, [*truths[s.name].min(0), *truths[s.name].max(0)], atol=1e-6)
    assert [s.categories["colour"] for s in ds] == ["colour", "colour", "grayscale"]
    # without a detector: the whole image, padded to a square (predict's fallback), no baseline points
    s = ds[0]
    np.testing.assert_allclose(s.crop_box, [0, -20, 160, 140])
    assert s.categories["face"] == "not found" and np.isnan(s.extra["baseline_landmarks2d"]).all()


def test_annotated_photo_errors_name_the_file(tmp_path):
    from facelift_jax.evaluation.datasets import annotated

    (tmp_path / "tongue.pts").write_text("version: 1\nn_points: 19\n{\n" + "1 2\n" * 19 + "}\n")
    with pytest.raises(base.DatasetFormatError, match=r"tongue.pts: 19 points, not the 68"):
        annotated.read_annotation(tmp_path / "tongue.pts")
    (tmp_path / "bad.pts").write_text("1 2\n3 4\n")
    with pytest.raises(base.DatasetFormatError, match=r"bad.pts: not an iBUG .pts file"):
        annotated.read_annotation(tmp_path / "bad.pts")
    (tmp_path / "bad.ljson").write_text('{"groups": {}}')
    with pytest.raises(base.DatasetFormatError, match=r"bad.ljson: no groups.LJSON.landmarks.points"):
        annotated.read_annotation(tmp_path / "bad.ljson")
    (tmp_path / "empty").mkdir()
    with pytest.raises(base.DatasetFormatError, match="no image in .*empty has a .pts or .ljson"):
        annotated.AnnotatedPhotos(tmp_path / "empty", crop_scale=1.5)


def test_annotated_photo_takes_the_face_that_overlaps_the_annotation(tmp_path):
    from facelift_jax import landmarks as lm
    from facelift_jax.evaluation.datasets import annotated

    truth = _truth68(3, centre=(110.0, 60.0), size=30.0)
    _write_annotated(tmp_path, {"two.jpg": truth})
    near = np.zeros((98, 2))
    near[lm.WFLW98_TO_68] = truth + [2.0, 0.0]
    near[np.setdiff1d(np.arange(98), lm.WFLW98_TO_68)] = truth.mean(0)
    far = near - [80.0, 0.0]  # another face, left of the annotated one, found with a higher score
    calls = []

    def detect(image):
        calls.append(image.shape)
        return [{"landmarks98": far, "score": 0.99}, {"landmarks98": near, "score": 0.8}]

    ds = annotated.AnnotatedPhotos(tmp_path, crop_scale=1.5, detect=detect)
    s = ds[0]
    np.testing.assert_array_equal(s.extra["baseline_landmarks2d"], near)
    lo, hi = near.min(0), near.max(0)
    half = 1.5 * (hi - lo).max() / 2  # predict's crop: 1.5 × the landmark box's longer side, about its centre
    np.testing.assert_allclose(s.crop_box, [*((lo + hi) / 2 - half), *((lo + hi) / 2 + half)])
    ds[0]
    assert len(calls) == 1  # detected once per photo
