"""Export round trips (Orbax params, checkpoint → export, jax.export StableHLO) and prediction."""

import json
import pathlib
import subprocess
import sys
import textwrap

import cv2
import jax
import numpy as np
import pytest
from flax import nnx

from configs.default import get_config
from conftest import tiny_vit
from facelift_jax import checkpointing, export, predict
from facelift_jax.model import build_model

SIZE = 32


def tiny_config():
    c = get_config()
    c.image_size = SIZE
    m = tiny_vit(c.model, image_size=SIZE, width=32, depth=1, patch=8, stem_width=16)
    # Large output layers so that different images give visibly different predictions.
    m.heads.init_scale = 1.0
    return c


def tiny_template():
    r = np.random.default_rng(0)
    return (r.normal(size=(98, 3)) * 0.1 + [0, 0, 0.1]).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return build_model(tiny_config().model, tiny_template(), rngs=nnx.Rngs(3))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, size=(5, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def export_dir(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    meta = export.make_metadata(tiny_config().model, SIZE, tiny_template(), source={"test": True})
    return export.save_model(model, out, image_size=SIZE, metadata=meta)


@pytest.fixture(scope="module")
def reference(model, images):
    """Outputs straight from the model (its own jitted call, none of the predictor's code)."""
    out = nnx.jit(lambda m, x: m(x))(model, images)
    L = np.asarray(out.scale_tril)
    return {"landmarks2d": np.asarray(out.landmarks2d), "landmarks3d": np.asarray(out.landmarks3d),
            "rotation": np.asarray(out.rotation), "translation": np.asarray(out.translation),
            "covariances": L @ np.swapaxes(L, -1, -2)}


def test_export_round_trip_identical_predictions(model, images, export_dir, reference):
    assert (export_dir / "params").is_dir() and (export_dir / "metadata.json").is_file()
    meta = json.loads((export_dir / "metadata.json").read_text())
    assert meta["landmarks"]["num_landmarks"] == 98 and len(meta["landmarks"]["to68"]) == 68
    assert np.array_equal(np.asarray(meta["template"], np.float32), tiny_template())
    assert meta["stablehlo_platforms"] == ["cpu", "cuda"]
    # Parameters only: exactly the model's nnx.Param leaves, nothing else (no optimizer, no template).
    raw, _ = checkpointing.load_export(export_dir)
    want = nnx.state(model, nnx.Param).to_pure_dict()
    assert jax.tree.structure(raw) == jax.tree.structure(want)
    loaded = predict.load(export_dir)
    got = loaded.predict_normalized(images)
    # Same jitted computation on the original model: bit-identical after the round trip.
    original = predict.Predictor(model, image_size=SIZE).predict_normalized(images)
    for k in original:
        np.testing.assert_array_equal(got[k], original[k], err_msg=k)
    ref = reference  # the model's own call: equal up to XLA fusion rounding
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-5, err_msg=k)
    # Predictions differ between images (the test would be vacuous for a constant model).
    assert np.abs(ref["landmarks2d"][0] - ref["landmarks2d"][1]).max() > 1e-3
    assert np.array_equal(loaded.template, tiny_template())


def test_checkpoint_to_export(model, images, tmp_path):
    # A training workdir as train.py leaves it: config.json, template, an Orbax checkpoint.
    work = tmp_path / "work"
    (work / "data" / "multiview").mkdir(parents=True)
    np.save(work / "data" / "multiview" / "template.npy", tiny_template())
    (work / "config.json").write_text(tiny_config().to_json())
    params = nnx.state(model, nnx.Param).to_pure_dict()
    opt_state = {"mu": jax.tree.map(np.zeros_like, params)}
    with checkpointing.Checkpointer(work / "checkpoints", keep=2, async_save=False) as ck:
        ck.save(7, params, opt_state, {"pos": 1}, {"note": "x"}, wait=True)
    out = export.export_model(work, tmp_path / "exp", stablehlo=False)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["source"]["step"] == 7 and meta["stablehlo"] is None
    got = predict.Predictor.load(out).predict_normalized(images)
    original = predict.Predictor(model, image_size=SIZE).predict_normalized(images)
    np.testing.assert_array_equal(got["landmarks2d"], original["landmarks2d"])
    # The command line: the workdir's config.json with a --config.x=v override (train's convention).
    assert export.main(["--checkpoint", str(work), "--out", str(tmp_path / "exp16"), "--no-stablehlo",
                        "--config.model.dtype=bfloat16"]) == 0
    assert json.loads((tmp_path / "exp16" / "metadata.json").read_text())["model"]["dtype"] == "bfloat16"
    with pytest.raises(FileNotFoundError, match="config.json"):
        (work / "config.json").unlink()
        export.export_model(work, tmp_path / "exp2")


def test_stablehlo_runs_without_model_code(images, export_dir, tmp_path, reference):
    np.save(tmp_path / "images.npy", images)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["facelift_jax"] = None  # any import of the package now fails
        import jax, numpy as np
        exported = jax.export.deserialize(bytearray(open({str(export_dir / export.STABLEHLO_FILE)!r}, "rb").read()))
        out = exported.call(np.load({str(tmp_path / "images.npy")!r}))
        np.savez({str(tmp_path / "out.npz")!r}, **{{k: np.asarray(v) for k, v in out.items()}})
        print(exported.platforms)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "cpu" in res.stdout
    out = np.load(tmp_path / "out.npz")
    ref = reference
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], atol=1e-5, err_msg=k)
    # Also through the package's loader, with another batch size (symbolic batch).
    f = export.load_stablehlo(export_dir)
    np.testing.assert_allclose(np.asarray(f(images[:2])["landmarks3d"]), ref["landmarks3d"][:2], atol=1e-5)


def test_predictor_jits_once_per_bucket(model, images, reference):
    p = predict.Predictor(model, image_size=SIZE, batch_size=4)
    start = predict.compiled_forward_count()
    out = p.predict_normalized(images)  # chunks of 4 and 1 → buckets 4 and 1
    np.testing.assert_allclose(out["landmarks2d"], reference["landmarks2d"], rtol=1e-4, atol=1e-5)
    traced = predict.compiled_forward_count() - start
    assert traced <= 2  # 0 when another test compiled these shapes already
    p.predict_normalized(images[:3])  # bucket 4 again (padded)
    p.predict_normalized(images)
    assert predict.compiled_forward_count() - start == traced
    assert [p.bucket(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 4, 4]


def test_predict_crops_maps_back_to_image_pixels(model, images, reference):
    p = predict.Predictor(model, image_size=SIZE, batch_size=4)
    canvas = np.zeros((90, 70, 3), np.uint8)
    canvas[20:20 + SIZE, 30:30 + SIZE] = images[0]
    r = p.predict_crops([canvas], np.array([[30, 20, 30 + SIZE, 20 + SIZE]]))
    ref = {k: v[:1] for k, v in reference.items()}
    np.testing.assert_allclose(r.landmarks2d[0], ref["landmarks2d"][0] * SIZE + [30, 20], atol=1e-4)
    np.testing.assert_allclose(r.covariances[0], ref["covariances"][0] * SIZE**2, rtol=1e-4, atol=1e-9)
    # A 2× larger crop of a 2× upscaled image: same landmarks up to the resampling, scaled by 2.
    big = cv2.resize(images[0], (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_NEAREST)
    r2 = p.predict_crops([big], np.array([[0, 0, 2 * SIZE, 2 * SIZE]]))
    np.testing.assert_allclose(r2.landmarks2d[0], ref["landmarks2d"][0] * 2 * SIZE, atol=1e-3 * SIZE)
    # Euler angles agree with the rotation (independent closed form of rotation.py's convention).
    R = r.rotation[0] @ np.diag([1.0, -1.0, -1.0])
    yaw = np.degrees(np.arctan2(-R[2, 0], R[2, 2]))
    assert r.euler_degrees[0, 0] == pytest.approx(yaw, abs=1e-3)
    with pytest.raises(ValueError, match=r"image 0 must be \(H, W, 3\)"):
        p.predict_crops([canvas[..., 0]], np.array([[0, 0, 10, 10]]))


def test_crop_square_pads_outside_the_image():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    crop, box = predict.crop_square(img, [-2, -3, 6, 5], 8)
    assert box.tolist() == [-2, -3, 6, 5]
    assert (crop[:3] == 0).all() and (crop[:, :2] == 0).all()
    np.testing.assert_array_equal(crop[3:, 2:], img[:5, :6])
    np.testing.assert_allclose(predict.whole_image_box(10, 20), [0, -5, 20, 15])


def _write_video(path, frames, fps=10):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames[0].shape[1::-1])
    for f in frames:
        w.write(f)
    w.release()


def test_cli_images_videos_and_failures(export_dir, images, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    big = cv2.resize(images[0], (96, 64))
    cv2.imwrite(str(src / "face.png"), big)
    cv2.imwrite(str(src / "gray.png"), big[..., 0])  # read as RGB (facelift_jax.media's one image policy)
    cv2.imwrite(str(src / "float.tiff"), big.astype(np.float32))  # 32-bit float samples: unsupported
    (src / "broken.jpg").write_bytes(b"\x00garbage")
    _write_video(src / "clip.avi", [cv2.resize(im, (64, 64)) for im in images] * 2)
    (src / "empty.avi").write_bytes(b"")
    out = tmp_path / "out"
    code = predict.main([str(src), "--model", str(export_dir), "--out", str(out), "--detector", "none",
                         "--batch-size", "4", "--no-progress"])
    assert code == 3  # float, broken, empty
    err = capsys.readouterr().err
    assert "float.tiff: unsupported: pixel type float32" in err and "broken.jpg: not a readable image" in err \
        and "empty.avi" in err
    assert "gray.png" not in err and json.loads((out / "gray.json").read_text())["width"] == 96
    entry = json.loads((out / "face.json").read_text())
    assert entry["width"] == 96 and entry["num_faces"] == 1 and entry["faces"][0]["face_source"] == "whole-image"
    assert np.asarray(entry["faces"][0]["landmarks2d"]).shape == (98, 2)
    assert cv2.imread(str(out / "face_overlay.png")).shape == (64, 96, 3)
    arrays = np.load(out / "clip.npz")
    assert arrays["landmarks2d"].shape == (10, 98, 2) and arrays["euler_degrees"].shape == (10, 3)
    cap = cv2.VideoCapture(str(out / "clip_overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    cap.release()
    assert json.loads((out / "clip.json").read_text())["frames"] == 10
    # videos are filtered by default (the Kalman filter) and the outputs carry raw and filtered
    assert json.loads((out / "clip.json").read_text())["filter"]["kind"] == "kalman"
    assert str(arrays["filter"]) == "kalman" and arrays["filtered_landmarks2d"].shape == (10, 98, 2)


def test_video_filter_outputs_match_the_offline_filter(export_dir, images, tmp_path):
    """predict_video filters batch by batch (streaming); its filtered arrays equal the offline
    filter of the whole clip's raw arrays, and "none" passes the raw predictions through."""
    from facelift_jax import temporal

    _write_video(tmp_path / "clip.avi", [cv2.resize(im, (64, 64)) for im in images] * 2, fps=10)
    predictor, cropper = predict.load(export_dir, batch_size=4), predict.FaceCropper("none")
    for kind in ("kalman", "none"):
        out = tmp_path / kind
        out.mkdir()
        summary = predict.predict_video(predictor, cropper, tmp_path / "clip.avi", out, progress=False, filter=kind)
        assert summary["filter"]["kind"] == kind
        z = np.load(out / "clip.npz")
        side = z["crop_boxes"][:, 2] - z["crop_boxes"][:, 0]
        obs = temporal.observation(z["landmarks2d"], z["covariances"], z["landmarks3d"], z["rotation"],
                                   z["translation"], variance3d=temporal.lift_variance_3d(
                                       z["covariances"], z["landmarks3d"], z["rotation"], z["translation"], side))
        want = temporal.filter_clip(temporal.FilterConfig(kind=kind, fps=10.0), obs)
        for key in ("landmarks2d", "landmarks3d", "rotation", "translation"):
            np.testing.assert_allclose(z[f"filtered_{key}"], want[key], rtol=1e-4, atol=1e-4, err_msg=key)
        if kind == "none":
            np.testing.assert_array_equal(z["filtered_landmarks2d"], z["landmarks2d"])
        else:  # the filter did something: the random model's jitter is smoothed
            d2 = lambda p: np.linalg.norm(np.diff(p, 2, axis=0), axis=-1).mean()  # noqa: E731
            assert d2(z["filtered_landmarks2d"]) < 0.8 * d2(z["landmarks2d"])


def test_cli_batch_with_bad_files(export_dir, images, tmp_path, capsys):
    """Every good file (of any photo format) gets its outputs; every bad one a one-line error on the
    console and in failures.txt; the exit code counts the failures."""
    import struct
    import zlib

    from PIL import Image

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    face = cv2.resize(images[0], (96, 64), interpolation=cv2.INTER_NEAREST)  # RGB
    # Good: the same photo as 8-bit, 16-bit, RGBA; a grayscale JPEG, a CMYK JPEG, an EXIF-rotated JPEG.
    cv2.imwrite(str(src / "face.png"), face[..., ::-1])
    cv2.imwrite(str(src / "face16.png"), face[..., ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(src / "face_rgba.png"), np.dstack([face[..., ::-1], np.full(face.shape[:2], 90, np.uint8)]))
    cv2.imwrite(str(src / "gray.jpg"), face[..., 0])
    Image.fromarray(face).convert("CMYK").save(src / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise: 64 wide, 96 high
    Image.fromarray(face).save(src / "rotated.jpg", exif=exif)
    _write_video(src / "clip.avi", [cv2.resize(im, (64, 64)) for im in images[:3]])
    # Bad, one of each kind.
    (src / "empty.png").write_bytes(b"")
    jpeg = (src / "gray.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    (src / "text.png").write_text("not an image\n")
    cv2.VideoWriter(str(src / "noframes.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()  # 0 frames
    (src / "zero.mp4").write_bytes(b"")
    cv2.imwrite(str(src / "tiny.png"), np.zeros((1, 1, 3), np.uint8))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    (src / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
                                   + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    bad = {"empty.png": "empty (0 bytes)", "truncated.jpg": "a truncated JPEG", "text.png": "not a readable image",
           "noframes.avi": "a video without a decodable frame", "zero.mp4": "empty (0 bytes)",
           "tiny.png": "too small: 1×1 pixels", "bomb.png": "too large: its header claims"}
    good = ["face.png", "face16.png", "face_rgba.png", "gray.jpg", "cmyk.jpg", "rotated.jpg", "clip.avi"]

    code = predict.main([str(src), "--model", str(export_dir), "--out", str(out), "--detector", "none",
                         "--no-progress"])
    assert code == len(bad)
    lines = (out / "failures.txt").read_text().splitlines()
    assert len(lines) == len(bad)
    err = capsys.readouterr().err
    for name, reason in bad.items():
        line = next(x for x in lines if x.startswith(str(src / name) + ": "))
        assert reason in line, line
        assert line in err  # the same line in the console
        assert not (out / f"{pathlib.Path(name).stem}.json").exists()
    for name in good:
        stem = pathlib.Path(name).stem
        assert (out / f"{stem}.json").is_file() and (out / f"{stem}.npz").is_file(), name
        assert name not in (out / "failures.txt").read_text()
    entry = json.loads((out / "rotated.json").read_text())
    assert (entry["width"], entry["height"]) == (64, 96)  # upright, as a viewer shows it
    # 16-bit v·257 and RGBA read as exactly the 8-bit photo: the same model input, the same prediction.
    reference = np.load(out / "face.npz")["landmarks2d"]
    for stem in ("face16", "face_rgba"):
        np.testing.assert_array_equal(np.load(out / f"{stem}.npz")["landmarks2d"], reference)
    # A later run where everything succeeds leaves no stale failures list behind.
    assert predict.main([str(src / "face.png"), "--model", str(export_dir), "--out", str(out), "--detector", "none",
                         "--no-progress"]) == 0
    assert not (out / "failures.txt").exists()

def test_face_cropper_falls_back_with_warning(monkeypatch):
    monkeypatch.setitem(sys.modules, "bridges.mediapipe", None)  # import fails
    with pytest.warns(UserWarning, match="no face detector"):
        cropper = predict.FaceCropper("auto", 1.5)
    box, source = cropper.box(np.zeros((40, 60, 3), np.uint8))
    assert source == "whole-image"
    np.testing.assert_allclose(box, [0, -10, 60, 50])
    with pytest.raises(RuntimeError, match="MediaPipe face detector is not available"):
        predict.FaceCropper("mediapipe")


def test_cli_with_mediapipe_face_boxes(export_dir, tmp_path):
    pytest.importorskip("ai_edge_litert")
    skimage_data = pytest.importorskip("skimage.data")
    face = skimage_data.astronaut()  # a real photo; the face (brows to chin) spans about x 180-270, y 90-190
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "astronaut.png"), cv2.cvtColor(face, cv2.COLOR_RGB2BGR))
    frames = [face, np.zeros_like(face), face]  # the middle frame has no face: last box is kept
    _write_video(src / "clip.avi", [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames])
    out = tmp_path / "out"
    code = predict.main([str(src), "--model", str(export_dir), "--out", str(out), "--detector", "mediapipe",
                         "--no-progress"])
    assert code == 0
    entry = json.loads((out / "astronaut.json").read_text())
    assert entry["num_faces"] == 1 and entry["faces"][0]["face_source"] == "mediapipe"
    x0, y0, x1, y1 = entry["faces"][0]["crop_box"]
    assert 190 < (x0 + x1) / 2 < 260 and 100 < (y0 + y1) / 2 < 170 and 100 < x1 - x0 < 250
    summary = json.loads((out / "clip.json").read_text())
    assert summary["face_source"] == {"mediapipe": 2, "previous": 1}
    boxes = np.load(out / "clip.npz")["crop_boxes"]
    np.testing.assert_array_equal(boxes[1], boxes[0])


def test_predict_returns_every_face_of_a_two_face_photo(export_dir, tmp_path):
    pytest.importorskip("ai_edge_litert")
    skimage_data = pytest.importorskip("skimage.data")
    face = skimage_data.astronaut()[40:280, 120:360]  # one real face, about 90 px from brows to chin
    small = cv2.resize(face, (160, 160), interpolation=cv2.INTER_AREA)
    photo = np.full((300, 520, 3), 90, np.uint8)
    photo[30:270, 10:250] = face  # the larger face on the left, a smaller copy on the right
    photo[70:230, 330:490] = small
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "two.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert predict.main([str(src / "two.png"), "--model", str(export_dir), "--out", str(out), "--detector",
                         "mediapipe", "--no-progress"]) == 0
    entry = json.loads((out / "two.json").read_text())
    assert entry["num_faces"] == 2 and len(entry["faces"]) == 2
    centres = sorted(((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in (f["crop_box"] for f in entry["faces"]))
    assert centres[0][0] < 250 < 330 < centres[1][0], centres  # one box on each face
    for f in entry["faces"]:  # each face's landmarks lie inside its own crop
        x0, y0, x1, y1 = f["crop_box"]
        pts = np.asarray(f["landmarks2d"])
        assert ((pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)).mean() > 0.9
    arrays = np.load(out / "two.npz")
    assert arrays["landmarks2d"].shape == (2, 98, 2)
    np.testing.assert_allclose(arrays["crop_boxes"], [f["crop_box"] for f in entry["faces"]], atol=0.01)
    overlay = cv2.imread(str(out / "two_overlay.png"))
    assert overlay.shape == photo.shape and np.abs(overlay.astype(int) - photo[..., ::-1]).sum() > 0
    # --max-faces 1: only the best-scored face, one row in each output
    assert predict.main([str(src / "two.png"), "--model", str(export_dir), "--out", str(tmp_path / "one"),
                         "--detector", "mediapipe", "--max-faces", "1", "--no-progress"]) == 0
    one = json.loads((tmp_path / "one" / "two.json").read_text())
    assert one["num_faces"] == 1 and one["faces"][0]["crop_box"] in [f["crop_box"] for f in entry["faces"]]
    assert np.load(tmp_path / "one" / "two.npz")["landmarks2d"].shape == (1, 98, 2)


def test_video_tracks_the_face_between_frames(export_dir, tmp_path):
    """With MediaPipe, the first frame is detected and the next ones tracked (the mesh on the
    previous crop): the crop boxes follow a known shift of 3 px/frame in x, 1 px/frame in y."""
    pytest.importorskip("ai_edge_litert")
    data = pytest.importorskip("skimage.data")
    photo = data.astronaut()
    frames = [cv2.cvtColor(cv2.warpAffine(photo, np.float32([[1, 0, 3 * t], [0, 1, t]]), (512, 512)),
                           cv2.COLOR_RGB2BGR) for t in range(6)]
    _write_video(tmp_path / "clip.avi", frames, fps=25)
    summary = predict.predict_video(predict.load(export_dir, batch_size=4), predict.FaceCropper("mediapipe"),
                                    tmp_path / "clip.avi", tmp_path, progress=False)
    assert summary["face_source"] == {"mediapipe": 1, "tracked": 5}
    boxes = np.load(tmp_path / "clip.npz")["crop_boxes"]
    np.testing.assert_allclose(boxes[:, :2] - boxes[0, :2], np.arange(6)[:, None] * [3, 1], atol=2.5)
