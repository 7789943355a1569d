"""The Flax regressor (Fig. 4): shapes, geometry of the heads, parameter counts, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.default import get_config
from conftest import pinhole, tiny_vit
from facelift_jax import losses
from facelift_jax.model import (FaceLiftRegressor, Prediction, ResNet, Template, VisionTransformer, build_model,
                                count_parameters, parameter_counts)


def template():
    rng = np.random.default_rng(0)
    return (rng.normal(0, 0.08, (98, 3)) + [0.0, 0.0, 0.2]).astype(np.float32)


def tiny_config():
    # These tests use 224² inputs (the paper's size), whatever the CPU default's image_size is.
    return tiny_vit(get_config().model, image_size=224, width=32, depth=2, patch=32, stem_width=32)


@pytest.fixture(scope="module")
def model():
    return build_model(tiny_config(), template(), rngs=nnx.Rngs(0))


forward = nnx.jit(lambda m, x: m(x))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)


def test_prediction_shapes_and_geometry(model, images):
    pred = forward(model, images)
    assert isinstance(pred, Prediction)
    shapes = {k: getattr(pred, k).shape for k in ("landmarks3d", "landmarks2d", "scale_tril", "rotation", "translation")}
    assert shapes == {"landmarks3d": (2, 98, 3), "landmarks2d": (2, 98, 2), "scale_tril": (2, 98, 2, 2),
                      "rotation": (2, 3, 3), "translation": (2, 3)}
    R = np.asarray(pred.rotation, np.float64)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
    np.testing.assert_allclose(pred.landmarks2d, pinhole(np.asarray(pred.landmarks3d), R, np.asarray(pred.translation)),
                               atol=1e-5)
    L = np.asarray(pred.scale_tril)
    assert np.all(L[..., 0, 1] == 0) and np.all(L[..., 0, 0] > 0) and np.all(L[..., 1, 1] > 0)
    # Camera centre −Rᵀ t̂ lies near the sphere of radius 2.7 (t̂ = t̄(R̂) + small Δt̂).
    centre = -np.einsum("bji,bj->bi", R, np.asarray(pred.translation))
    np.testing.assert_allclose(np.linalg.norm(centre, axis=-1), 2.7, atol=0.05)
    # …and looks at the look-at point (0, 0, 0.2): it projects near the image centre.
    look_at = np.broadcast_to([0.0, 0.0, 0.2], (2, 1, 3))
    np.testing.assert_allclose(pinhole(look_at, R, np.asarray(pred.translation))[:, 0], 0.5, atol=0.01)


def test_initial_prediction_is_template_seen_frontally(model, images):
    pred = forward(model, images)
    np.testing.assert_allclose(pred.landmarks3d, np.broadcast_to(template(), (2, 98, 3)), atol=0.01)
    # Frontal camera on the sphere: centre (0, 0, 2.7), axes x right, y down, z toward −z world.
    R0 = np.broadcast_to(np.diag([1.0, -1.0, -1.0]), (2, 3, 3))
    expected = pinhole(np.broadcast_to(template(), (2, 98, 3)), R0, np.broadcast_to([0.0, 0.0, 2.7], (2, 3)))
    np.testing.assert_allclose(pred.landmarks2d, expected, atol=0.02)
    np.testing.assert_allclose(pred.scale_tril[..., 0, 0], 0.02, rtol=0.2)


def test_uint8_and_float_inputs_agree(model, images):
    a = forward(model, images).landmarks2d
    b = forward(model, images.astype(np.float32) / 255.0).landmarks2d
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_template_is_state_not_param(model):
    params = nnx.state(model, nnx.Param).to_pure_dict()
    assert "template" not in params
    assert isinstance(model.template, Template) and not isinstance(model.template, nnx.Param)
    np.testing.assert_array_equal(nnx.state(model, Template).to_pure_dict()["template"], template())
    n = sum(x.size for x in jax.tree_util.tree_leaves(params))
    assert n == parameter_counts(model)["total"] == count_parameters(model)


def test_gradients_reach_every_parameter(model, images):
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    target = np.random.default_rng(2).uniform(0.3, 0.7, (2, 98, 2)).astype(np.float32)

    def loss(p):
        pred = nnx.merge(graphdef, p, rest)(images)
        return losses.laplacian_nll(target, pred.landmarks2d, pred.scale_tril) + jnp.mean(pred.translation**2)

    grads = jax.jit(jax.grad(loss))(params)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    assert all(np.all(np.isfinite(g)) for _, g in flat)
    zero = [jax.tree_util.keystr(k) for k, g in flat if not np.any(np.asarray(g) != 0)]
    assert not zero, f"parameters without gradient: {zero}"


def vit_b16_count():
    """Closed-form parameter count of CLIP ViT-B/16's image tower without its 768→512 proj."""
    w, layers, patch, tokens = 768, 12, 16, 197
    block = 2 * 2 * w + 4 * (w * w + w) + (w * 4 * w + 4 * w) + (4 * w * w + w)
    return 3 * patch * patch * w + w + tokens * w + 2 * w + layers * block + 2 * w


def test_vit_b16_parameter_count_without_allocating():
    enc = nnx.eval_shape(lambda: VisionTransformer(768, 12, 12, 16, 224, rngs=nnx.Rngs(0)))
    n = count_parameters(enc)
    assert n == vit_b16_count() == 85_798_656 + 768  # ≈ 86M, FaRL's image tower
    print(f"ViT-B/16 encoder parameters: {n:,}")


@pytest.mark.parametrize("name,torchvision_without_fc", [("resnet50", 23_508_032), ("resnet152", 58_143_808)])
def test_resnet_parameter_counts_match_torchvision(name, torchvision_without_fc):
    c = tiny_config()
    c.encoder = name
    m = nnx.eval_shape(lambda: build_model(c, template(), rngs=nnx.Rngs(0)))
    # torchvision resnet50/152 minus the 2048→1000 fc, plus our 7×7 token positional embedding.
    assert count_parameters(m.encoder) == torchvision_without_fc + 49 * 2048
    print(name, parameter_counts(m))


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_small_resnet_tokens_and_norm_modes(norm, images):
    enc = ResNet((1, 1, 1, 1), base_width=8, image_size=64, norm=norm, groups=4, rngs=nnx.Rngs(0))
    small = images[:, :64, :64]
    tokens = forward(enc, small)
    assert tokens.shape == (2, 4, 8 * 32)
    assert np.all(np.isfinite(tokens))
    enc.eval()
    frozen = forward(enc, small)
    if norm == "batch":  # running statistics (initial: mean 0, var 1) differ from the batch statistics
        assert not np.allclose(frozen, tokens, atol=1e-3)
    else:  # GroupNorm has no train/eval difference
        np.testing.assert_allclose(frozen, tokens, atol=1e-5)


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ValueError, match="224"):
        model(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        model(np.zeros((1, 224, 224), np.uint8))
    with pytest.raises(ValueError, match="uint8 or float"):
        model(np.zeros((1, 224, 224, 3), np.int32))
    with pytest.raises(ValueError, match="template"):
        build_model(tiny_config(), np.zeros((68, 3)), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="template"):
        build_model(tiny_config(), np.full((98, 3), np.nan), rngs=nnx.Rngs(0))
    c = tiny_config()
    c.encoder = "vgg"
    with pytest.raises(ValueError, match="model.encoder"):
        build_model(c, template(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="divisible"):
        VisionTransformer(30, 1, 4, 16, 224, rngs=nnx.Rngs(0))


def test_vit_tiny_config_builds():
    from configs import vit_tiny  # the CPU-sized ViT start (the default before the EfficientNet one)

    config = vit_tiny.get_config()
    m = nnx.eval_shape(lambda: build_model(config.model, template(), rngs=nnx.Rngs(0)))
    assert isinstance(m, FaceLiftRegressor)
    # width 96, depth 4, patch 16 ViT: same closed form as ViT-B/16 with these sizes, except the
    # embedding: a conv stem 3→32→64→128→256 (3×3, no bias; GroupNorm scale+bias) + 1×1 to 96.
    w, tokens = 96, (config.image_size // 16) ** 2 + 1
    assert config.model.image_size == config.image_size == 128  # set once, in configs/vit_tiny.py
    assert (config.model.vit.stem, config.model.vit.stem_width) == ("conv", 256)
    chans = [3, 32, 64, 128, 256]
    stem = sum(9 * a * b + 2 * b for a, b in zip(chans, chans[1:])) + 256 * w + w
    block = 4 * w + 4 * (w * w + w) + (4 * w * w + 4 * w) + (4 * w * w + w)
    assert parameter_counts(m)["encoder"] == stem + w + tokens * w + 2 * w + 4 * block + 2 * w


def test_prediction_camera_reprojects(model, images):
    pred = forward(model, images)
    from facelift_jax import camera

    cam = pred.camera()
    np.testing.assert_allclose(camera.project(pred.landmarks3d, cam), pred.landmarks2d, atol=1e-6)
    np.testing.assert_allclose(cam.K[0], [[2985.29 / 700, 0, 0.5], [0, 2985.29 / 700, 0.5], [0, 0, 1]], rtol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_outputs(images):
    c = tiny_config()
    c.dtype = "bfloat16"
    m = build_model(c, template(), rngs=nnx.Rngs(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(nnx.state(m, nnx.Param)))
    pred = forward(m, images)
    assert pred.landmarks2d.dtype == jnp.float32 and np.all(np.isfinite(pred.landmarks2d))
    ref = forward(build_model(tiny_config(), template(), rngs=nnx.Rngs(0)), images)
    np.testing.assert_allclose(pred.landmarks2d, ref.landmarks2d, atol=5e-3)


@pytest.mark.slow
def test_a_few_adam_steps_fit_one_batch():
    """Training sanity: the regressor can move its 2D landmarks onto a fixed target."""
    import optax

    c = tiny_config()
    c.image_size, c.vit.patch = 64, 16
    m = build_model(c, template(), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    target = np.asarray(forward(m, images).landmarks2d) + rng.normal(0, 0.03, (2, 98, 2)).astype(np.float32)
    graphdef, params, rest = nnx.split(m, nnx.Param, ...)
    tx = optax.adam(3e-3)

    def loss_fn(p):
        pred = nnx.merge(graphdef, p, rest)(images)
        return jnp.mean(jnp.sum((pred.landmarks2d - target) ** 2, -1))

    @jax.jit
    def step(p, s):
        loss, g = jax.value_and_grad(loss_fn)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    state = tx.init(params)
    first = None
    for _ in range(60):
        params, state, loss = step(params, state)
        first = float(loss) if first is None else first
    assert np.isfinite(float(loss)) and float(loss) < 0.2 * first


def test_conv_stem_matches_a_torch_reference_forward():
    """ConvStem = [Conv2d 3×3/2 (pad 1, no bias) → GroupNorm → GELU] × log2(patch) → Conv2d 1×1."""
    torch = pytest.importorskip("torch")
    from facelift_jax.model.vit import ConvStem

    stem = ConvStem(8, 24, 16, dtype=jnp.float32, rngs=nnx.Rngs(0))
    assert [c.out_features for c in stem.convs] == [4, 8, 16]
    rng = np.random.default_rng(0)
    for norm in stem.norms:  # non-trivial affine parameters, as after training
        norm.scale.value = jnp.asarray(rng.normal(1.0, 0.3, norm.scale.shape), jnp.float32)
        norm.bias.value = jnp.asarray(rng.normal(0.0, 0.3, norm.bias.shape), jnp.float32)
    layers, cin = [], 3
    for conv, norm in zip(stem.convs, stem.norms):
        tc = torch.nn.Conv2d(cin, conv.out_features, 3, 2, 1, bias=False)
        tc.weight.data = torch.from_numpy(np.asarray(conv.kernel.value).transpose(3, 2, 0, 1).copy())
        gn = torch.nn.GroupNorm(norm.num_groups, conv.out_features, eps=1e-5)
        gn.weight.data = torch.from_numpy(np.asarray(norm.scale.value).copy())
        gn.bias.data = torch.from_numpy(np.asarray(norm.bias.value).copy())
        layers += [tc, gn, torch.nn.GELU()]
        cin = conv.out_features
    proj = torch.nn.Conv2d(cin, 24, 1)
    proj.weight.data = torch.from_numpy(np.asarray(stem.proj.kernel.value).transpose(3, 2, 0, 1).copy())
    proj.bias.data = torch.from_numpy(np.asarray(stem.proj.bias.value).copy())
    reference = torch.nn.Sequential(*layers, proj)

    x = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    ours = np.asarray(stem(jnp.asarray(x)))
    with torch.no_grad():
        theirs = reference(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert ours.shape == (2, 4, 4, 24)
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_conv_stem_vit_tokens_and_errors():
    vit = VisionTransformer(32, 1, 2, 16, 64, stem="conv", stem_width=32, rngs=nnx.Rngs(0))
    tokens = vit(np.zeros((1, 64, 64, 3), np.uint8))
    assert tokens.shape == (1, 1 + 16, 32) and not hasattr(vit, "conv1")
    with pytest.raises(ValueError, match="power-of-two patch"):
        VisionTransformer(32, 1, 2, 12, 48, stem="conv", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="unknown ViT stem"):
        VisionTransformer(32, 1, 2, 16, 64, stem="hybrid", rngs=nnx.Rngs(0))
