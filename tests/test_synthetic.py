"""The synthetic face source: asset, geometry, rendering, landmarks, visibility (independent checks)."""

import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from facelift_jax import camera as cam
from facelift_jax import landmarks as lmk
from facelift_jax.synthetic import SEMANTIC_INDEX as S
from facelift_jax.synthetic import SyntheticGenerator, mesh
from facelift_jax.synthetic.generator import deform

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gen():
    return SyntheticGenerator()


def _neutral_open_eyes(gen, latents):
    """Params of ``latents`` with eyes open and mouth closed (a controlled expression)."""
    p = gen.params(np.asarray(latents))
    ex = np.asarray(p.expression).copy()
    ex[:, mesh.EXPRESSION_NAMES.index("blink_right")] = 0.0
    ex[:, mesh.EXPRESSION_NAMES.index("blink_left")] = 0.0
    ex[:, mesh.EXPRESSION_NAMES.index("jaw_open")] = 0.0
    return p.replace(expression=jnp.asarray(ex))


# ---------------------------------------------------------------------------------------------- asset


def test_asset_loads_with_mediapipe_topology():
    m = mesh.load_mediapipe_mesh()
    assert m["vertices"].shape == (468, 3)
    assert m["triangles"].shape == (898, 3)
    assert m["uv"].shape == (468, 2)
    np.testing.assert_allclose(m["vertices"][234], [-7.664182, 0.673132, -2.435867], atol=1e-4)
    assert m["triangles"].min() == 0 and m["triangles"].max() == 467
    assert (ROOT / "facelift_jax" / "assets" / "NOTICE").read_text().count("Apache License") >= 1


def test_extraction_decoder_on_handmade_protobuf():
    sys.path.insert(0, str(ROOT / "scripts"))
    import extract_mediapipe_mesh as ex

    assert ex.read_varint(b"\xac\x02", 0) == (300, 2)  # the protobuf documentation's example
    # Mesh3d with one triangle: vertex floats unpacked (wire 5), indices packed (wire 2)
    verts = np.arange(15, dtype="<f4")
    body = b"".join(b"\x1d" + f.tobytes() for f in verts) + b"\x22\x03\x00\x01\x02"
    meta = b"\x0a" + bytes([len(body)]) + body + b"\x12\x07\x08\x05\x15" + np.float32(0.5).tobytes()
    out = ex.decode_metadata(meta)
    np.testing.assert_array_equal(out["vertices"], verts.reshape(3, 5)[:, :3])
    np.testing.assert_array_equal(out["uv"], verts.reshape(3, 5)[:, 3:])
    np.testing.assert_array_equal(out["triangles"], [[0, 1, 2]])
    assert out["procrustes_ids"].tolist() == [5] and out["procrustes_weights"].tolist() == [0.5]


# ---------------------------------------------------------------------------------------------- head


def test_head_is_closed_and_outward():
    h = mesh.canonical_head()
    t = h.triangles
    # every edge is used exactly twice with opposite directions: a closed, consistently wound surface
    # (the neck and each ear are separate closed parts; the face + scalp form one closed part)
    edges = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    fwd = {tuple(e) for e in edges.tolist()}
    assert len(fwd) == len(edges)
    assert all((b, a) in fwd for a, b in fwd)
    # outward: the divergence theorem gives a positive enclosed volume for outward normals
    v = h.vertices.astype(np.float64)
    vol = np.einsum("fi,fi->f", v[t[:, 0]], np.cross(v[t[:, 1]], v[t[:, 2]])).sum() / 6
    assert vol > 0


def test_deformations_are_mirror_symmetric():
    """Mirroring the mesh (x → −x, vertices relabelled by their mirror) turns a right smile or
    blink into a left one, and mirrors the landmarks with the WFLW permutation."""
    h = mesh.canonical_head()
    M = np.array([-1.0, 1.0, 1.0])
    names = mesh.EXPRESSION_NAMES
    rng = np.random.default_rng(0)
    identity = rng.normal(size=len(mesh.IDENTITY_NAMES)).astype(np.float32)
    identity[mesh.IDENTITY_NAMES.index("hair_volume")] = 0.5
    ex = np.zeros(len(names), np.float32)
    ex[names.index("smile_right")], ex[names.index("blink_right")], ex[names.index("jaw_open")] = 0.9, 0.7, 0.4
    ex_m = ex.copy()
    ex_m[names.index("smile_right")], ex_m[names.index("smile_left")] = 0.0, 0.9
    ex_m[names.index("blink_right")], ex_m[names.index("blink_left")] = 0.0, 0.7
    v = np.asarray(deform(jnp.asarray(identity), jnp.asarray(ex)))
    v_m = np.asarray(deform(jnp.asarray(identity), jnp.asarray(ex_m)))
    np.testing.assert_allclose(v_m, (v * M)[h.mirror], atol=2e-5)
    # landmarks of the mirrored mesh = mirrored landmarks, relabelled by MIRROR_98
    mirrored_mesh = (v * M)[h.mirror]
    L = mesh.surface_points(v, h.landmark_tri, h.landmark_bary, h.triangles)
    L_mirror_mesh = mesh.surface_points(mirrored_mesh, h.landmark_tri, h.landmark_bary, h.triangles)
    np.testing.assert_allclose(L_mirror_mesh, (L * M)[lmk.MIRROR_98], atol=2e-5)
    # and the asymmetric expression really is asymmetric (the test above could not pass trivially)
    assert np.abs(L - (L * M)[lmk.MIRROR_98]).max() > 1e-3


def test_landmark_layout_and_scale_in_frontal_view(gen):
    lat = np.arange(16)
    L3 = gen.landmarks3d(lat)
    assert L3.shape == (16, 98, 3) and L3.dtype == np.float32
    c = cam.camera_from_angles(np.zeros(16), np.zeros(16))
    uv = np.asarray(cam.project(L3, c))
    width = uv[..., 0].max(-1) - uv[..., 0].min(-1)
    assert np.all((width > 0.55) & (width < 0.75)), width
    centre = 0.5 * (uv.min(-2) + uv.max(-2))
    # centred on average; single faces move with chin length, jaw opening, head height
    assert np.all(np.abs(centre.mean(0) - 0.5) < 0.02) and np.all(np.abs(centre - 0.5) < 0.08), centre
    u, v = uv[..., 0], uv[..., 1]
    # image-left = subject's right: contour 0, brow 33, eye 60-67, pupil 96, mouth corner 76
    for left, right in [(0, 32), (33, 46), (60, 72), (64, 68), (96, 97), (76, 82), (55, 59)]:
        assert np.all(u[:, left] < 0.5) and np.all(u[:, right] > 0.5), (left, right)
    assert np.all(u[:, lmk.REGIONS_98["eyes"][:8]].mean(-1) < u[:, 51])
    # top to bottom: brows, eyes, nose tip, mouth, chin
    order = [v[:, 33:51].mean(-1), v[:, 60:76].mean(-1), v[:, 54], v[:, 76:96].mean(-1), v[:, 16]]
    assert all(np.all(a < b) for a, b in zip(order, order[1:]))
    # contour runs from one ear over the chin to the other
    assert np.all(np.argmax(v[:, :33], axis=-1) == 16) or np.all(np.abs(np.argmax(v[:, :33], -1) - 16) <= 1)


def test_landmarks_move_with_expression(gen):
    p = _neutral_open_eyes(gen, [3])
    L0 = gen.landmarks_from_params(p)
    ex = np.asarray(p.expression).copy()
    ex[0, mesh.EXPRESSION_NAMES.index("jaw_open")] = 1.0
    L1 = gen.landmarks_from_params(p.replace(expression=jnp.asarray(ex)))
    gap0 = L0[0, 94, 1] - L0[0, 90, 1]  # inner lower lip minus inner upper lip (y up: negative)
    gap1 = L1[0, 94, 1] - L1[0, 90, 1]
    assert gap1 < gap0 - 0.02          # the mouth opened by more than ~7 mm
    assert np.abs(L1[0, 33:51] - L0[0, 33:51]).max() < 1e-4  # brows did not move
    # a blink of 1 closes the right eye (image left: 60-67), whatever the face's resting eye opening
    for opening in (0.15, 0.45):
        ident = np.asarray(p.identity).copy()
        ident[0, mesh.IDENTITY_NAMES.index("eye_opening")] = opening
        ex = np.asarray(p.expression).copy()
        ex[0, mesh.EXPRESSION_NAMES.index("blink_right")] = 1.0
        L2 = gen.landmarks_from_params(p.replace(identity=jnp.asarray(ident), expression=jnp.asarray(ex)))
        L3 = gen.landmarks_from_params(p.replace(identity=jnp.asarray(ident)))
        open_gap = np.linalg.norm(L3[0, 62] - L3[0, 66])
        assert abs(L2[0, 62, 1] - L2[0, 66, 1]) < 0.1 * open_gap  # the lids meet (they differ in depth)
        assert np.linalg.norm(L2[0, 70] - L2[0, 74]) > 0.9 * np.linalg.norm(L3[0, 70] - L3[0, 74])  # left stays open


# ---------------------------------------------------------------------------------------------- render


def test_determinism_by_seed(gen):
    cams = cam.camera_from_angles(np.array([0.0, 40.0]), np.array([10.0, -20.0]))
    a = gen.render(np.array([5, 2**40 + 7]), cams, image_size=96)
    b = gen.render(np.array([5, 2**40 + 7]), cams, image_size=96)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.landmarks3d, b.landmarks3d)
    # a latent's face does not depend on its batch neighbours
    c = gen.render(np.array([5]), cams[0:1], image_size=96)
    np.testing.assert_array_equal(a.image[:1], c.image)
    # different seeds (including ones beyond 32 bits) give different faces
    L = gen.landmarks3d(np.array([5, 6, 2**40 + 5, -5]))
    d = np.abs(L[:, None] - L[None]).max((-1, -2))
    assert (d + np.eye(4)).min() > 1e-3
    # the latent population depends on base_seed
    other = SyntheticGenerator(dict(base_seed=1)).landmarks3d(np.array([5]))
    assert np.abs(other - L[:1]).max() > 1e-3


def test_render_output_contract(gen):
    cams = cam.camera_from_angles(np.array([0.0, 70.0, -100.0]), np.array([0.0, 20.0, -30.0]), np.array([0, 30, 0]))
    out = gen.render(np.array([1, 2, 3]), cams, image_size=96)
    assert out.image.shape == (3, 96, 96, 3) and out.image.dtype == np.uint8
    assert out.depth.shape == (3, 96, 96) and out.depth.dtype == np.float32
    assert out.semantic.shape == (3, 96, 96) and out.semantic.dtype == np.uint8
    assert out.landmarks3d.shape == (3, 98, 3) and out.landmarks2d.shape == (3, 98, 2)
    assert out.visible.shape == (3, 98) and out.visible.dtype == bool
    np.testing.assert_array_equal(np.isinf(out.depth), out.semantic == S["background"])
    assert out.semantic.max() < 7
    # the projection, by hand: K (R X + t), divide by z
    X = out.landmarks3d.astype(np.float64)
    K, R, t = (np.asarray(a, np.float64) for a in (out.cameras.K, out.cameras.R, out.cameras.t))
    pc = np.einsum("bij,bnj->bni", R, X) + t[:, None]
    uvw = np.einsum("bij,bnj->bni", K, pc)
    np.testing.assert_allclose(out.landmarks2d, uvw[..., :2] / uvw[..., 2:], atol=1e-5)
    np.testing.assert_allclose(out.landmarks3d, gen.landmarks3d(np.array([1, 2, 3])), atol=1e-6)
    # the background colour is constant along rows (a vertical gradient) in background pixels
    with pytest.raises(ValueError, match="cameras must have batch shape"):
        gen.render(np.array([1, 2]), cams, image_size=32)
    with pytest.raises(ValueError, match="latents"):
        gen.render(np.array([0.5, 1.5]), cams[:2], image_size=32)


def test_semantic_map_under_landmarks_in_frontal_views(gen):
    lat = np.arange(20, 28)
    p = _neutral_open_eyes(gen, lat)
    size = 224
    cams = cam.camera_from_angles(np.zeros(len(lat)), np.zeros(len(lat)))
    out = gen.render_params(p, cams, size)
    px = np.floor(out.landmarks2d * size).astype(int)

    def near(b, i, r=1):
        x, y = px[b, i]
        return out.semantic[b, y - r:y + r + 1, x - r:x + r + 1]

    for b in range(len(lat)):
        for i in (96, 97):  # pupils: inside the eye
            assert near(b, i, 0).item() == S["eyes"]
        for i in range(60, 76):  # eyelid margin: on the eye boundary (the corners are the thinnest)
            assert (near(b, i, 2 if i in (60, 64, 68, 72) else 1) == S["eyes"]).any(), (b, i)
        for i in range(33, 51):  # the outer tips end in a point
            assert (near(b, i, 2 if i in (33, 46) else 1) == S["brows"]).any(), (b, i)
        for i in range(76, 96):
            assert (near(b, i) == S["lips"]).any(), (b, i)
        for i in (52, 53, 54, 57):
            assert near(b, i, 0).item() == S["nose"], (b, i)
        for i in range(4, 29):  # jaw and chin contour: on skin, next to the face's edge
            assert (near(b, i) == S["skin"]).any(), (b, i)
    # seen from farther away (the whole head in the image), the centre column enters the head from
    # above through hair, unless the face is bald (hairline parameter far above the head)
    far = gen.render_params(p, cam.camera_from_angles(np.zeros(len(lat)), np.zeros(len(lat)), radius=4.5), size)
    for b in range(len(lat)):
        column = far.semantic[b, :, size // 2]
        assert column[0] == S["background"]
        top = column[np.argmax(column != S["background"])]
        assert top == (S["skin"] if p.hairline[b, 0] > 15 else S["hair"]), (b, top)


def _ray_cast(vertices, triangles, origin, targets):
    """Möller–Trumbore: smallest positive t (in units of |target − origin|) per target (N,)."""
    a, b, c = (vertices[triangles[:, k]].astype(np.float64) for k in range(3))
    d = targets - origin                                            # (N,3)
    e1, e2 = b - a, c - a                                            # (F,3)
    pvec = np.cross(d[:, None], e2[None])                            # (N,F,3)
    det = np.einsum("fi,nfi->nf", e1, pvec)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        tvec = origin - a                                            # (F,3)
        u = np.einsum("fi,nfi->nf", tvec, pvec) * inv
        qvec = np.cross(tvec, e1)                                    # (F,3)
        v = np.einsum("ni,fi->nf", d, qvec) * inv
        t = np.einsum("fi,fi->f", e2, qvec)[None] * inv
    hit = (np.abs(det) > 1e-14) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    return np.where(hit, t, np.inf)


def test_visibility_and_depth_agree_with_brute_force_ray_casting(gen):
    rng = np.random.default_rng(0)
    lat = np.arange(6)
    az = np.array([0.0, 35.0, -60.0, 90.0, -105.0, 20.0])
    el = np.array([0.0, 25.0, -20.0, 10.0, 0.0, -50.0])
    cams = cam.camera_from_angles(az, el)
    size = 160
    out = gen.render(lat, cams, size)
    verts = gen.vertices3d(lat)
    tri = gen.triangles
    disagree, total = 0, 0
    for b in range(len(lat)):
        centre = np.asarray(cams.center[b], np.float64)
        L = out.landmarks3d[b].astype(np.float64)
        t = _ray_cast(verts[b], tri, centre, L)
        # occluded if something is hit clearly before the landmark (tolerance 1 cm ≈ 0.028 units)
        dist = np.linalg.norm(L - centre, axis=-1)
        occluded = (t.min(-1) * dist < dist - 0.01).astype(bool)
        disagree += (occluded == out.visible[b]).sum()
        total += 98
        # depth map: pixel rays, nearest hit by brute force, converted to camera z
        fg = np.argwhere(np.isfinite(out.depth[b]))
        pick = fg[rng.choice(len(fg), 60, replace=False)]
        K, R, tt = (np.asarray(a[b], np.float64) for a in (cams.K, cams.R, cams.t))
        rays_cam = np.stack([((pick[:, 1] + 0.5) / size - K[0, 2]) / K[0, 0],
                             ((pick[:, 0] + 0.5) / size - K[1, 2]) / K[1, 1], np.ones(len(pick))], -1)
        targets = centre + rays_cam @ R  # world points at camera depth 1 along each pixel ray
        hit = _ray_cast(verts[b], tri, centre, targets).min(-1)  # camera z of the hit (ray z = 1)
        rendered = out.depth[b][pick[:, 0], pick[:, 1]]
        ok = np.abs(rendered - hit) < 2e-3
        assert ok.mean() >= 0.95, (b, np.sort(np.abs(rendered - hit))[-5:])
    assert disagree / total <= 0.03, disagree / total
    # the views include both: hidden landmarks in profile, everything visible in frontal view
    assert out.visible[0, :96].all()
    assert (~out.visible[3]).sum() > 20
