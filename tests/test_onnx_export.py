"""ONNX export (facelift_jax.export, --format onnx): the converted inference function, run in
onnxruntime, matches the JAX model on real-size inputs, with a symbolic batch."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

pytest.importorskip("jax2onnx")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from configs.default import get_config  # noqa: E402
from conftest import tiny_vit  # noqa: E402
from facelift_jax import checkpointing, export  # noqa: E402
from facelift_jax.model import OUTPUT_FRAMES, build_model  # noqa: E402

ATOL = 1e-4


def _template():
    r = np.random.default_rng(0)
    return (r.normal(size=(98, 3)) * 0.1 + [0, 0, 0.1]).astype(np.float32)


def _default_config():
    """The default config (its encoder and image size) with narrow heads: the ops are the
    default model's, the conversion stays quick."""
    c = get_config()
    c.model.pretrained = ""
    c.model.decoder.update(width=32, depth=1, heads=2)
    c.model.heads.init_scale = 1.0  # large output layers: different images, visibly different outputs
    return c


def _vit_config(size: int):
    c = get_config()
    c.image_size = size
    tiny_vit(c.model, image_size=size, width=32, depth=1, patch=8, stem_width=16)
    c.model.heads.init_scale = 1.0
    return c


def _images(n: int, size: int) -> np.ndarray:
    """A real photo (skimage's astronaut, her face region) plus random images, (n, size, size, 3) uint8."""
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    photo = cv2.resize(data.astronaut()[0:300, 100:400], (size, size), interpolation=cv2.INTER_AREA)
    rest = np.random.default_rng(1).integers(0, 256, (n - 1, size, size, 3), dtype=np.uint8)
    return np.concatenate([photo[None], rest])


def _reference(model, images) -> dict:
    """The JAX model's own outputs (its jitted call), the contract's dict."""
    return {k: np.asarray(v) for k, v in nnx.jit(lambda m, x: m(x).outputs())(model, images).items()}


def _euler_degrees64(R):
    """(yaw, pitch, roll) degrees of rotations (..., 3, 3) in float64, written out from the
    convention of rotation.euler_from_rotation (M = R·FRONTAL; pitch = asin M21, yaw = atan2(−M20,
    M22), roll = atan2(−M01, M11))."""
    from facelift_jax.rotation import FRONTAL

    M = np.asarray(R, np.float64) @ np.asarray(FRONTAL, np.float64)
    return np.rad2deg(np.stack([np.arctan2(-M[..., 2, 0], M[..., 2, 2]), np.arcsin(np.clip(M[..., 2, 1], -1, 1)),
                                np.arctan2(-M[..., 0, 1], M[..., 1, 1])], -1))


def _check_matches(run, model, images):
    ref = _reference(model, images)
    got = run(images)
    assert sorted(got) == sorted(OUTPUT_FRAMES)
    for k in OUTPUT_FRAMES:
        assert got[k].shape == ref[k].shape and got[k].dtype == np.float32, k
        if k != "euler_degrees":
            np.testing.assert_allclose(got[k], ref[k], atol=ATOL, rtol=0, err_msg=k)
    # Euler angles: random weights give extreme poses (pitch near ±80°), where they amplify the
    # float32 rounding of R (~1e-6) a few hundred times (measured: 4e-4° apart, while each side is
    # within 7e-6° of the exact angles of its own R). So: ATOL in radians, and each side's angles
    # are those of its own rotation (float64, written out here) to ATOL degrees.
    np.testing.assert_allclose(np.deg2rad(got["euler_degrees"]), np.deg2rad(ref["euler_degrees"]), atol=ATOL, rtol=0)
    for side in (got, ref):
        np.testing.assert_allclose(side["euler_degrees"], _euler_degrees64(side["rotation"]), atol=ATOL, rtol=0)
    # Not vacuous: the images give different predictions.
    assert np.abs(ref["landmarks2d"][0] - ref["landmarks2d"][1]).max() > 1e-3


def _input_shape(path):
    (inp,) = onnx.load(str(path)).graph.input
    dims = inp.type.tensor_type.shape.dim
    return inp.name, inp.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in dims]


@pytest.fixture(scope="module")
def default_model():
    config = _default_config()
    return build_model(config.model, _template(), rngs=nnx.Rngs(3)), config


@pytest.mark.slow
def test_default_model_onnx_matches_jax(tmp_path, default_model):  # ~16 s with the model build, 40 s on busy cores
    model, config = default_model
    size = int(config.image_size)
    meta = export.make_metadata(config.model, size, _template())
    out = export.save_model(model, tmp_path / "exp", image_size=size, metadata=meta, stablehlo=False, onnx=True)
    saved = json.loads((out / checkpointing.EXPORT_METADATA).read_text())
    assert saved["onnx"] == {"file": "inference.onnx", "opset": export.ONNX_OPSET, "input": "images",
                             "outputs": list(OUTPUT_FRAMES), "depthwise": "grouped"}
    assert _input_shape(out / export.ONNX_FILE) == ("images", onnx.TensorProto.UINT8, ["B", size, size, 3])
    if config.model.encoder == "efficientnet_lite0":
        # The depthwise convolutions went in as grouped Convs (one per MBConv block: 16 in Lite0),
        # while JAX on this CPU runs them as shifted sums: the comparison below checks both agree.
        groups = [n for n in onnx.load(str(out / export.ONNX_FILE)).graph.node if n.op_type == "Conv"
                  and any(a.name == "group" and a.i > 1 for a in n.attribute)]
        assert len(groups) == 16
    run = export.load_onnx(out)
    _check_matches(run, model, _images(4, size))
    # The batch is symbolic: one image and seven images through the same file.
    _check_matches(run, model, _images(7, size))
    np.testing.assert_allclose(run(_images(1, size))["landmarks3d"], _reference(model, _images(1, size))["landmarks3d"],
                               atol=ATOL)


@pytest.mark.slow
def test_default_model_onnx_with_shifted_sums(tmp_path, default_model):  # ~30 s: a 1000-node graph to convert
    model, config = default_model
    size = int(config.image_size)
    path = export.export_onnx(model, size, tmp_path / "shift.onnx", depthwise="shift")
    _check_matches(export.load_onnx(path), model, _images(3, size))


def test_vit_onnx_matches_jax_and_command_line(tmp_path):  # ~15 s
    size = 32
    config = _vit_config(size)
    model = build_model(config.model, _template(), rngs=nnx.Rngs(4))
    # A training workdir as train.py leaves it, exported by the command line with --format onnx.
    work = tmp_path / "work"
    (work / "data" / "multiview").mkdir(parents=True)
    np.save(work / "data" / "multiview" / "template.npy", _template())
    (work / "config.json").write_text(config.to_json())
    params = nnx.state(model, nnx.Param).to_pure_dict()
    with checkpointing.Checkpointer(work / "checkpoints", keep=1, async_save=False) as ck:
        ck.save(3, params, {"mu": jax.tree.map(np.zeros_like, params)}, {"pos": 1}, {}, wait=True)
    assert export.main(["--checkpoint", str(work), "--out", str(tmp_path / "exp"), "--no-stablehlo",
                        "--format", "onnx"]) == 0
    assert (tmp_path / "exp" / export.ONNX_FILE).is_file()
    _check_matches(export.load_onnx(tmp_path / "exp" / export.ONNX_FILE), model, _images(3, size))
    # Re-exporting without ONNX removes the stale file.
    export.export_model(work, tmp_path / "exp", stablehlo=False)
    assert not (tmp_path / "exp" / export.ONNX_FILE).exists()
    assert json.loads((tmp_path / "exp" / "metadata.json").read_text())["onnx"] is None
    with pytest.raises(FileNotFoundError, match="--format onnx"):
        export.load_onnx(tmp_path / "exp")
