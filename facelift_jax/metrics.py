"""Landmark metrics of FaceLift §4: NME (eq. 5) and NMLC (eq. 6), per region and per category.

All 2D arrays share one pixel frame per image (any frame works: the box normalizer makes the
numbers unit-free): ``pred (M, N, 2)`` predicted landmarks, ``target (M, N, 2)`` ground-truth
landmarks, ``vertices (M, |V|, 2)`` projected ground-truth mesh vertices, ``box_size (M,)`` the
face-box normalizer sqrt(w_box · h_box) in the same units (z_m = 1 / box_size_m).

Eq. (5): M(L̂, V; K) = 1/(M·N) Σ_m Σ_n z_m ‖l̂_{m,n} − v_{m,K_n}‖₂, reported ×100 like the paper's
tables. NME uses the dataset's own landmark definition (``target`` = v[:, K̃]); NMLC (eq. 6) is the
minimum of eq. (5) over all vertex-index assignments K ∈ {1..|V|}^N. Eq. (5) is a sum of one term
per landmark, each depending on K_n alone, so the minimum separates: K_n is the vertex whose mean
normalized distance to predicted landmark n over the WHOLE test set is smallest. That search is
|V|·N·M distances (5023 · 68 · thousands for DAD-3DHeads), so it runs in chunks of vertices and
images with a running minimum, in bounded memory.

Per-category results keep the K found on the whole test set (the model's landmark definition is a
property of the model, not of a subset): a category's NMLC is the mean error of its images under
that K.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from facelift_jax import landmarks as lm

PERCENT = 100.0
# Elements of the (images × landmarks × vertices) distance block evaluated at once in NMLC;
# 2**22 float32 = 16 MiB per intermediate.
DEFAULT_BLOCK_ELEMENTS = 1 << 22


# ----------------------------------------------------------------------------------------------
# Input checks and box normalizers
# ----------------------------------------------------------------------------------------------

def _as_points(name: str, x, ndim: int = 3) -> np.ndarray:
    x = np.asarray(x, np.float64 if np.asarray(x).dtype == np.float64 else np.float32)
    if x.ndim != ndim or x.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (M, N, 2), got {x.shape}")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x).all(-1)))
        raise ValueError(f"{name} has {bad} non-finite points (NaN/inf); mask them or drop the images")
    return x


def _as_box_size(box_size, m: int) -> np.ndarray:
    b = np.asarray(box_size, np.float64)
    if b.shape == (m, 2):  # (w, h) pairs
        b = np.sqrt(b[:, 0] * b[:, 1])
    if b.shape != (m,):
        raise ValueError(f"box_size must have shape ({m},) (sqrt(w*h)) or ({m}, 2) (w, h), got {b.shape}")
    if not np.all(np.isfinite(b) & (b > 0)):
        raise ValueError(f"box_size must be finite and positive; got min {np.nanmin(b)} ({int(np.sum(~(b > 0)))} bad)")
    return b


def _as_mask(mask, shape) -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    mask = np.asarray(mask, bool)
    if mask.shape != shape:
        raise ValueError(f"mask must have shape {shape}, got {mask.shape}")
    if not mask.any():
        raise ValueError("mask selects no landmark: nothing to evaluate")
    return mask


def box_size_from_points(points) -> np.ndarray:
    """(M, N, 2) points → (M,) sqrt(w·h) of each image's tight axis-aligned box of the points."""
    points = np.asarray(points, np.float64)
    extent = points.max(-2) - points.min(-2)
    return np.sqrt(extent[..., 0] * extent[..., 1])


# ----------------------------------------------------------------------------------------------
# NME (eq. 5 with the dataset's definition)
# ----------------------------------------------------------------------------------------------

def normalized_errors(pred, target, box_size) -> np.ndarray:
    """(M, N) per-landmark errors z_m ‖l̂_{m,n} − l_{m,n}‖ ×100 (percent of the box size)."""
    pred, target = _as_points("pred", pred), _as_points("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
    b = _as_box_size(box_size, pred.shape[0])
    dist = np.linalg.norm(pred.astype(np.float64) - target.astype(np.float64), axis=-1)
    return PERCENT * dist / b[:, None]


def masked_mean(errors, mask=None) -> float:
    """Mean of (M, N) errors over the selected entries."""
    errors = np.asarray(errors, np.float64)
    mask = _as_mask(mask, errors.shape)
    return float(np.sum(errors * mask) / np.sum(mask))


def nme(pred, target, box_size, mask=None) -> float:
    """Eq. (5) with the dataset's landmark definition, ×100.

    pred, target: (M, N, 2) same pixel frame; box_size: (M,) sqrt(w_box·h_box) (or (M, 2) w, h);
    mask: optional (M, N) bool of the landmarks that count (mean over the selected ones).
    """
    return masked_mean(normalized_errors(pred, target, box_size), mask)


# ----------------------------------------------------------------------------------------------
# NMLC (eq. 6)
# ----------------------------------------------------------------------------------------------

def _block_cost(pred, weight, verts):
    """Σ_m weight[m, n] ‖pred[m, n] − verts[m, c]‖ for one block: (Mb,N,2), (Mb,N), (Mb,C,2) → (N, C)."""
    diff = pred[:, :, None, :] - verts[:, None, :, :]
    dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1))
    return jnp.einsum("mn,mnc->nc", weight, dist)


@jax.jit
def _search(pred_blocks, weight_blocks, vert_blocks):
    """Running per-landmark minimum over vertex chunks.

    pred_blocks (B, Mb, N, 2), weight_blocks (B, Mb, N), vert_blocks (Cn, B, Mb, C, 2)
    → (best cost (N,), best vertex index (N,)).
    """
    n = pred_blocks.shape[2]
    c = vert_blocks.shape[3]

    def over_vertices(carry, chunk):
        best, arg, offset = carry

        def over_images(acc, xs):
            p, w, v = xs
            return acc + _block_cost(p, w, v), None

        cost, _ = jax.lax.scan(over_images, jnp.zeros((n, c), pred_blocks.dtype),
                               (pred_blocks, weight_blocks, chunk))
        local = jnp.argmin(cost, axis=1)  # first minimum: ties go to the lower vertex index
        local_cost = jnp.take_along_axis(cost, local[:, None], axis=1)[:, 0]
        better = local_cost < best  # strict: an earlier chunk keeps ties
        return (jnp.where(better, local_cost, best), jnp.where(better, local + offset, arg), offset + c), None

    init = (jnp.full((n,), jnp.inf, pred_blocks.dtype), jnp.zeros((n,), jnp.int32), jnp.int32(0))
    (best, arg, _), _ = jax.lax.scan(over_vertices, init, vert_blocks)
    return best, arg


def nmlc_costs(pred, vertices, box_size, mask=None, *, block_elements: int = DEFAULT_BLOCK_ELEMENTS):
    """Per-landmark minimum of the summed normalized error over vertices.

    Returns (cost (N,), K (N,) int): cost_n = min_v Σ_m mask_{m,n} · 100·‖l̂_{m,n} − v_{m,v}‖ / box_m
    and K_n its argmin (the lowest index among ties; 0 for a landmark the mask never selects, which
    then adds nothing). Memory: one block of at most
    ``block_elements`` image×landmark×vertex distances at a time, plus the inputs.
    """
    pred = _as_points("pred", pred)
    vertices = _as_points("vertices", vertices)
    m, n, _ = pred.shape
    if vertices.shape[0] != m:
        raise ValueError(f"vertices has {vertices.shape[0]} images, pred has {m}")
    num_vertices = vertices.shape[1]
    if num_vertices == 0:
        raise ValueError("vertices has no vertex")
    b = _as_box_size(box_size, m)
    weight = (_as_mask(mask, (m, n)) * (PERCENT / b)[:, None]).astype(np.float32)

    # Block sizes: C vertices × Mb images × N landmarks ≤ block_elements.
    mb = int(max(1, min(m, block_elements // max(1, n * 64))))
    c = int(max(1, min(num_vertices, block_elements // max(1, n * mb))))
    pad_m = (-m) % mb
    pad_v = (-num_vertices) % c
    # Padded images get weight 0; padded vertices repeat the last one, so they tie with it and
    # the strict/first-minimum rules keep the original (lower) index.
    pred_p = np.pad(pred.astype(np.float32), ((0, pad_m), (0, 0), (0, 0)))
    weight_p = np.pad(weight, ((0, pad_m), (0, 0)))
    verts_p = np.pad(vertices.astype(np.float32), ((0, 0), (0, pad_v), (0, 0)), mode="edge")
    verts_p = np.pad(verts_p, ((0, pad_m), (0, 0), (0, 0)))
    nb, nc = (m + pad_m) // mb, (num_vertices + pad_v) // c
    vert_blocks = verts_p.reshape(nb, mb, nc, c, 2).transpose(2, 0, 1, 3, 4)
    best, arg = _search(pred_p.reshape(nb, mb, n, 2), weight_p.reshape(nb, mb, n), vert_blocks)
    return np.asarray(best, np.float64), np.asarray(arg, np.int64)


def nmlc(pred, vertices, box_size, mask=None, *, block_elements: int = DEFAULT_BLOCK_ELEMENTS):
    """Eq. (6): min over vertex-index assignments K of eq. (5), ×100.

    pred: (M, N, 2) predicted landmarks; vertices: (M, |V|, 2) projected ground-truth mesh
    vertices (same pixel frame); box_size: (M,) sqrt(w·h); mask: optional (M, N) bool.
    Returns (value, K): K (N,) the vertex index chosen for each landmark — the model-specific
    landmark definition — so that ``nme(pred, vertices[:, K], box_size, mask) == value``.
    """
    cost, K = nmlc_costs(pred, vertices, box_size, mask, block_elements=block_elements)
    total = np.sum(_as_mask(mask, np.shape(pred)[:2]))
    return float(np.sum(cost) / total), K


def select_vertices(vertices, K) -> np.ndarray:
    """(M, |V|, 2) vertices and (N,) indices → (M, N, 2) landmarks under definition K."""
    return np.asarray(vertices)[:, np.asarray(K)]


# ----------------------------------------------------------------------------------------------
# Tables: per region and per category
# ----------------------------------------------------------------------------------------------

def region_indices_for(num_points: int) -> dict[str, np.ndarray]:
    """The paper's table regions (full, contours, brows, nose, eyes, mouth) for 98 or 68 points."""
    return {r: lm.region_indices(r, num_points) for r in lm.TABLE_REGIONS}


def region_means(errors, mask=None, num_points: int | None = None) -> dict[str, float]:
    """Mean of (M, N) errors per table region (N = 98 or 68 selects the landmark definition)."""
    errors = np.asarray(errors, np.float64)
    num_points = errors.shape[1] if num_points is None else num_points
    mask = _as_mask(mask, errors.shape)
    out = {}
    for region, idx in region_indices_for(num_points).items():
        sel = mask[:, idx]
        out[region] = float(np.sum(errors[:, idx] * sel) / np.sum(sel)) if sel.any() else float("nan")
    return out


def category_means(errors, categories: Mapping[str, np.ndarray], mask=None,
                   region: str = "full") -> dict[str, dict[str, float]]:
    """Mean error of each category value: {attribute: {value: mean over its images}}.

    errors: (M, N); categories: {attribute: (M,) labels (str/bool/int)}; region: which landmarks
    enter the mean. Values are compared by their string form ("True"/"False" for booleans).
    """
    errors = np.asarray(errors, np.float64)
    mask = _as_mask(mask, errors.shape)
    idx = lm.region_indices(region, errors.shape[1])
    per_image_sum = np.sum(errors[:, idx] * mask[:, idx], 1)
    per_image_cnt = np.sum(mask[:, idx], 1)
    out: dict[str, dict[str, float]] = {}
    for name, labels in categories.items():
        labels = np.asarray(labels).astype(str)
        if labels.shape != (errors.shape[0],):
            raise ValueError(f"category {name!r} must have shape ({errors.shape[0]},), got {labels.shape}")
        out[name] = {}
        for value in sorted(set(labels.tolist())):
            sel = labels == value
            cnt = per_image_cnt[sel].sum()
            out[name][value] = float(per_image_sum[sel].sum() / cnt) if cnt else float("nan")
    return out


def per_image_means(errors, mask=None) -> np.ndarray:
    """(M, N) errors → (M,) mean over each image's selected landmarks (NaN when none)."""
    errors = np.asarray(errors, np.float64)
    mask = _as_mask(mask, errors.shape)
    cnt = mask.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.sum(errors * mask, 1) / np.maximum(cnt, 1), np.nan)


def landmark_report(pred, box_size, *, target=None, vertices=None, mask=None,
                    categories: Mapping[str, np.ndarray] | None = None,
                    block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> dict:
    """All numbers of the paper's Tables 1-2 for one test set.

    pred: (M, N, 2) with N = 98 or 68; target: optional (M, N, 2) dataset landmarks (→ NME);
    vertices: optional (M, |V|, 2) projected mesh vertices (→ NMLC). Returns
    {"num_images", "num_points", "nme": {...}, "nmlc": {..., "K": list}} where each metric holds
    "regions" {region: value}, "categories" {attribute: {value: mean}} and "per_image" (M,) means.
    """
    pred = _as_points("pred", pred)
    m, n, _ = pred.shape
    if n not in (98, 68):
        raise ValueError(f"pred must have 98 or 68 landmarks for the region tables, got {n}")
    if target is None and vertices is None:
        raise ValueError("landmark_report needs target landmarks (NME) and/or projected vertices (NMLC)")
    report: dict = {"num_images": int(m), "num_points": int(n)}
    sections = []
    if target is not None:
        sections.append(("nme", normalized_errors(pred, target, box_size), None))
    if vertices is not None:
        _, K = nmlc(pred, vertices, box_size, mask, block_elements=block_elements)
        sections.append(("nmlc", normalized_errors(pred, select_vertices(vertices, K), box_size), K))
    for name, errors, K in sections:
        entry = {"regions": region_means(errors, mask, n), "per_image": per_image_means(errors, mask)}
        if categories:
            entry["categories"] = category_means(errors, categories, mask)
        if K is not None:
            entry["K"] = K.tolist()
        entry["errors"] = errors
        report[name] = entry
    return report
