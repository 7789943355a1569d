import numpy as np
import pytest

from facelift_jax import landmarks as lm


def test_regions_partition_the_98_points():
    allidx = np.concatenate([lm.REGIONS_98[r] for r in ("contours", "brows", "nose", "eyes", "mouth", "pupils")])
    assert sorted(allidx.tolist()) == list(range(98))
    assert lm.REGIONS_98["contours"][[0, -1]].tolist() == [0, 32]
    assert lm.REGIONS_98["brows"][[0, -1]].tolist() == [33, 50]
    assert lm.REGIONS_98["nose"][[0, -1]].tolist() == [51, 59]
    assert lm.REGIONS_98["eyes"][[0, -1]].tolist() == [60, 75]
    assert lm.REGIONS_98["mouth"][[0, -1]].tolist() == [76, 95]
    assert lm.region_indices("full").tolist() == list(range(96))
    # The one non-pupil selection, as indices and as a mask; shared constants are read-only.
    np.testing.assert_array_equal(np.flatnonzero(lm.NON_PUPIL_MASK), lm.NON_PUPILS)
    assert lm.region_indices("full") is lm.NON_PUPILS and not lm.NON_PUPIL_MASK[lm.PUPILS].any()
    with pytest.raises(ValueError, match="read-only"):
        lm.NON_PUPIL_MASK[0] = False


def test_mirror_is_an_involution_with_the_named_pairs():
    m = lm.MIRROR_98
    assert sorted(m.tolist()) == list(range(98))
    np.testing.assert_array_equal(m[m], np.arange(98))
    for a, b in [(0, 32), (60, 72), (64, 68), (76, 82), (96, 97), (33, 46), (38, 50), (55, 59), (88, 92)]:
        assert m[a] == b and m[b] == a
    # Points on the facial midline map to themselves.
    for c in [16, 51, 52, 53, 54, 57, 79, 85, 90, 94]:
        assert m[c] == c
    # Mirroring never moves a point into another region.
    for r, idx in lm.REGIONS_98.items():
        assert set(m[idx].tolist()) == set(idx.tolist()), r


def test_mirror_of_a_symmetric_face_is_the_face_flipped():
    # A face symmetric by construction: the mirror partner of each point has negated x.
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(98, 2))
    for a, b in lm.MIRROR_PAIRS_98:
        pts[b] = pts[a] * [-1, 1]
    for c in np.flatnonzero(lm.MIRROR_98 == np.arange(98)):
        pts[c, 0] = 0.0
    flipped = pts * [-1, 1]
    np.testing.assert_allclose(flipped[lm.MIRROR_98], pts)


def test_98_to_68():
    idx = lm.WFLW98_TO_68
    assert idx.shape == (68,) and len(set(idx.tolist())) == 68
    assert idx[:17].tolist() == list(range(0, 33, 2))
    assert idx[17:27].tolist() == [33, 34, 35, 36, 37, 42, 43, 44, 45, 46]
    assert idx[27:36].tolist() == list(range(51, 60))
    assert idx[36:48].tolist() == [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75]
    assert not {62, 66, 70, 74} & set(idx.tolist())
    assert idx[48:].tolist() == list(range(76, 96))
    # The 68-point mirror agrees with the 98-point one through the mapping.
    np.testing.assert_array_equal(idx[lm.MIRROR_68], lm.MIRROR_98[idx])
    x = np.arange(98 * 3).reshape(98, 3)
    np.testing.assert_array_equal(lm.to68(x)[36], x[60])
    assert sum(len(v) for v in lm.REGIONS_68.values()) == 68


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="98 points"):
        lm.to68(np.zeros((68, 2)))
    with pytest.raises(ValueError, match="unknown region"):
        lm.region_indices("ears")


def test_region_colours_name_every_region_with_distinct_rgb():
    assert set(lm.REGION_COLOURS) == set(lm.REGIONS_98)
    colours = list(lm.REGION_COLOURS.values())
    assert all(len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c) for c in colours)
    assert len(set(colours)) == len(colours)  # a swapped region must show as another colour
