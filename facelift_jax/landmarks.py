"""The 98-point WFLW landmark definition and its 68-point (iBUG/300W) subset.

Index layout (WFLW, 0-based):
  0-32  contour (jaw line), from the subject's right ear (image left in a frontal view) over the chin
        to the subject's left ear;
  33-37 + 38-41  the brow on the image left (upper boundary, then lower boundary back);
  42-46 + 47-50  the brow on the image right;
  51-54 nose bridge (top to tip), 55-59 nose base (image left to right);
  60-67 eye on the image left, 68-75 eye on the image right (60/72 outer corners, 64/68 inner);
  76-87 outer lip, 88-95 inner lip (76/82 mouth corners);
  96, 97 pupils (image left, image right).
"Image left" means the subject's right side, seen in a frontal view.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 98

REGIONS_98: dict[str, np.ndarray] = {
    "contours": np.arange(0, 33),
    "brows": np.arange(33, 51),
    "nose": np.arange(51, 60),
    "eyes": np.arange(60, 76),
    "mouth": np.arange(76, 96),
    "pupils": np.array([96, 97]),
}
# One RGB (0-255) colour per region for every drawing of the 98 points (predict's overlays, the
# preprocessing previews, the MediaPipe bridge's), so a swapped side or region reads the same in all.
REGION_COLOURS: dict[str, tuple[int, int, int]] = {
    "contours": (255, 200, 0), "brows": (255, 90, 60), "nose": (80, 220, 80),
    "eyes": (60, 170, 255), "mouth": (255, 80, 200), "pupils": (255, 255, 255),
}
# The regions of the paper's tables ("full" excludes the pupils, as in the 68-point comparisons).
TABLE_REGIONS = ("full", "contours", "brows", "nose", "eyes", "mouth")

PUPILS = np.array([96, 97])
# The 96 landmarks with a fixed 3D position: all but the pupils (a GAN's pupils follow the camera,
# §4). Every score, loss mask, pseudo-label mask and baseline selects them with one of these two.
NON_PUPILS = np.setdiff1d(np.arange(NUM_LANDMARKS), PUPILS)  # (96,) indices: the "full" region
NON_PUPIL_MASK = ~np.isin(np.arange(NUM_LANDMARKS), PUPILS)  # (98,) bool
for _a in (PUPILS, NON_PUPILS, NON_PUPIL_MASK):
    _a.flags.writeable = False  # shared constants: use them, never modify them in place
del _a


def _mirror_pairs_98() -> list[tuple[int, int]]:
    pairs = [(i, 32 - i) for i in range(16)]  # contour; 16 is the chin
    pairs += list(zip(range(33, 38), range(46, 41, -1)))  # upper brows 33..37 <-> 46..42
    pairs += list(zip(range(38, 42), range(50, 46, -1)))  # lower brows 38..41 <-> 50..47
    pairs += [(55, 59), (56, 58)]  # nose base; bridge 51-54 and 57 lie on the midline
    pairs += [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    pairs += [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]  # outer lip; 79, 85 midline
    pairs += [(88, 92), (89, 91), (93, 95)]  # inner lip; 90, 94 midline
    pairs += [(96, 97)]
    return pairs


MIRROR_PAIRS_98 = tuple(_mirror_pairs_98())


def _permutation(pairs, n) -> np.ndarray:
    perm = np.arange(n)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


# landmarks[..., MIRROR_98, :] relabels the points of a horizontally flipped face.
MIRROR_98 = _permutation(MIRROR_PAIRS_98, NUM_LANDMARKS)

WFLW98_TO_68 = np.array(
    list(range(0, 33, 2))  # 17 contour points
    + list(range(33, 38)) + list(range(42, 47))  # upper brows
    + list(range(51, 60))  # nose
    + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75]  # eyes without 62/66/70/74
    + list(range(76, 96))  # mouth
)

REGIONS_68: dict[str, np.ndarray] = {
    "contours": np.arange(0, 17),
    "brows": np.arange(17, 27),
    "nose": np.arange(27, 36),
    "eyes": np.arange(36, 48),
    "mouth": np.arange(48, 68),
}

MIRROR_68 = _permutation(
    [(i, 16 - i) for i in range(8)]
    + list(zip(range(17, 22), range(26, 21, -1)))
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)],
    68,
)


def region_indices(region: str, num_points: int = 98) -> np.ndarray:
    """Indices of ``region`` ("full", "contours", "brows", "nose", "eyes", "mouth", "pupils")."""
    if num_points == 98:
        if region == "full":
            return NON_PUPILS
        table = REGIONS_98
    elif num_points == 68:
        if region == "full":
            return np.arange(0, 68)
        table = REGIONS_68
    else:
        raise ValueError(f"num_points must be 98 or 68, got {num_points}")
    if region not in table:
        raise ValueError(f"unknown region {region!r} for {num_points} points; known: full, {', '.join(table)}")
    return table[region]


def to68(landmarks):
    """``(..., 98, D)`` WFLW landmarks → ``(..., 68, D)`` iBUG/300W landmarks."""
    if landmarks.shape[-2] != 98:
        raise ValueError(f"landmarks must have 98 points on axis -2, got shape {landmarks.shape}")
    return landmarks[..., WFLW98_TO_68, :]
