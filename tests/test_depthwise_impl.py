"""EfficientNet's depthwise-conv form is a build-time choice of the module, not a module-global
switch: a copy with another form (what the ONNX export traces) gives the default forward's numbers,
its graph really holds that form, and neither the original model nor ``depthwise_conv`` changes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facelift_jax.model import efficientnet
from facelift_jax.model.efficientnet import DepthwiseAffine, EfficientNetLite, with_depthwise_impl

SIZE = 64


@pytest.fixture(scope="module")
def model():
    return EfficientNetLite(SIZE, width=16, rngs=nnx.Rngs(0))


def _images():
    return jax.random.uniform(jax.random.key(1), (2, SIZE, SIZE, 3), jnp.float32)


def _grouped_convs(module, images) -> int:
    """How many convolutions with feature_group_count > 1 the forward's jaxpr holds."""
    graphdef, state = nnx.split(module)
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, images)
    eqns = [e for e in jaxpr.jaxpr.eqns]
    count = 0
    while eqns:  # nested jaxprs (pjit, custom_jvp) hold the convs too
        e = eqns.pop()
        if e.primitive.name == "conv_general_dilated" and e.params["feature_group_count"] > 1:
            count += 1
        for p in e.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    eqns += list(getattr(inner, "eqns", []))
    return count


@pytest.mark.parametrize("impl", ["grouped", "shift"])
def test_copy_with_another_impl_matches_default_forward(model, impl):
    x = _images()
    default = np.asarray(model(x))
    copy = with_depthwise_impl(model, impl)
    got = np.asarray(copy(x))
    assert default.std() > 1e-2  # not a vacuous comparison of near-zero tokens
    np.testing.assert_allclose(got, default, atol=1e-5, rtol=0)
    # The copy traces the form it was given: one grouped conv per MBConv block (16 in Lite0), or none.
    assert _grouped_convs(copy, x) == (16 if impl == "grouped" else 0)


def test_the_original_and_the_module_function_are_left_alone(model):
    conv = efficientnet.depthwise_conv
    with_depthwise_impl(model, "grouped")
    assert efficientnet.depthwise_conv is conv
    impls = {m.impl for _, m in model.iter_modules() if isinstance(m, DepthwiseAffine)}
    assert impls == {"auto"}
    if jax.default_backend() == "cpu":  # "auto" on XLA:CPU is the shifted sum: no grouped conv
        assert _grouped_convs(model, _images()) == 0


def test_build_time_choice_and_bad_names():
    built = EfficientNetLite(SIZE, width=16, rngs=nnx.Rngs(0), depthwise_impl="grouped")
    assert _grouped_convs(built, _images()) == 16
    with pytest.raises(ValueError, match="choose 'auto', 'shift' or 'grouped'"):
        EfficientNetLite(SIZE, width=16, rngs=nnx.Rngs(0), depthwise_impl="fft")
    with pytest.raises(ValueError, match="'fft'"):
        with_depthwise_impl(built, "fft")
