"""Semantic classes of the synthetic source (a subset of IDE-3D's 19 face-parsing classes)."""

SEMANTIC_CLASSES = ("background", "skin", "brows", "eyes", "nose", "lips", "hair")
SEMANTIC_INDEX = {name: i for i, name in enumerate(SEMANTIC_CLASSES)}
