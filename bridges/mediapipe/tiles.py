"""Small faces: a pyramid of overlapping square tiles for the full-range model, and which tile
detections to keep."""

from __future__ import annotations

import math

import numpy as np

from bridges.mediapipe.runtime import FULL_RANGE_SIZE

# A tile side / the smallest face box the tiles are made for: such a face is 32 of the model's 192
# input pixels. On synthetic faces pasted on a photo (tests/test_mediapipe.py), ratio 8 (24 px)
# found 97 % at 1/20 of the short side and 66 % at 1/30; ratio 6 found 97 % and 91 %.
TILE_FACE_RATIO = 6.0
# Neighbouring tiles share this fraction of their side, so every face box up to TILE_OVERLAP × the
# side lies whole inside some tile; with consecutive levels at most TILE_OVERLAP × TILE_FACE_RATIO
# (1.5×) apart in side, the next coarser level (made for faces from 1/TILE_FACE_RATIO of its side)
# takes over before a face outgrows TILE_OVERLAP of a tile.
TILE_OVERLAP = 0.25
# Tile detections whose box comes closer than this fraction of the side to an edge the tile shares
# with a neighbour are dropped: they are faces cut by the tile, found whole in another tile.
TILE_EDGE_MARGIN = 0.02


def tile_grid(width: int, height: int, min_face: float) -> list[tuple[int, int, int]]:
    """Square tiles (x0, y0, side) in image pixels for faces down to ``min_face`` pixels (box side).

    Levels of tile sides from the image's short side S down to TILE_FACE_RATIO × ``min_face``
    (but never below the model's 192 input: tiles are not upsampled), evenly spaced in log scale
    with consecutive sides at most TILE_OVERLAP × TILE_FACE_RATIO apart; on each level the tiles cover the image with
    TILE_OVERLAP overlap, first and last flush with the image edges. A single tile equal to the
    whole image is left out (the whole-image pass sees it). Empty when ``min_face`` ≥ S /
    TILE_FACE_RATIO and the image is square.
    """
    short = min(width, height)
    smallest = max(TILE_FACE_RATIO * float(min_face), float(FULL_RANGE_SIZE))
    step = TILE_OVERLAP * TILE_FACE_RATIO
    levels = max(0, math.ceil(math.log(short / smallest) / math.log(step))) if smallest < short else 0
    ratio = (short / smallest) ** (1.0 / levels) if levels else 1.0
    out = []
    for k in range(levels + 1):
        side = int(round(short / ratio**k))
        xs = _tile_starts(width, side)
        ys = _tile_starts(height, side)
        if len(xs) == len(ys) == 1 and side == width == height:
            continue
        out += [(x, y, side) for y in ys for x in xs]
    return out


def _tile_starts(length: int, side: int) -> list[int]:
    """Starts of tiles of ``side`` along ``length`` with TILE_OVERLAP overlap, flush at both ends."""
    if side >= length:
        return [0]
    count = math.ceil((length - side) / (side * (1.0 - TILE_OVERLAP))) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - side, count)})


def inside_tile(boxes: np.ndarray, tile: tuple[int, int, int], width: int, height: int) -> np.ndarray:
    """(N,) bool: box (x0, y0, x1, y1) pixels stays TILE_EDGE_MARGIN × side clear of every tile edge
    that is not an image edge (a face cut by such an edge is found whole in a neighbouring tile)."""
    x0, y0, side = tile
    m = TILE_EDGE_MARGIN * side
    ok = np.ones(len(boxes), bool)
    if x0 > 0:
        ok &= boxes[:, 0] >= x0 + m
    if y0 > 0:
        ok &= boxes[:, 1] >= y0 + m
    if x0 + side < width:
        ok &= boxes[:, 2] <= x0 + side - m
    if y0 + side < height:
        ok &= boxes[:, 3] <= y0 + side - m
    return ok
