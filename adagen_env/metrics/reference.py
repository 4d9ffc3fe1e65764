"""The real shapes sets the metrics compare with: class-balanced labels, the reference set and the floor's second set,
drawn by seed and kept in memory per process.

Letters: N images, R image side.
"""

from __future__ import annotations

import torch

from adagen_env.data.shapes import ShapesDataset
from adagen_env.metrics.base import to_uint8

REFERENCE_SEED = 20_240_601
"""Seed of the real shapes reference set."""
FLOOR_SEED = REFERENCE_SEED + 1
"""Seed of the second, disjoint real set that measures the real-vs-real floor."""

_REFERENCE_CACHE: dict[tuple[int, int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}
"""(resolution, N, seed, num_classes) -> (uint8 images (N, 3, R, R), labels (N,)), per process."""


def balanced_labels(n: int, num_classes: int = 8) -> torch.Tensor:
    """(n,) labels 0, 1, ..., num_classes - 1, 0, 1, ...: every class equally often (to within one)."""
    return torch.arange(n) % num_classes


def shapes_reference(
    n: int, resolution: int, seed: int = REFERENCE_SEED, num_classes: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Real shapes, class-balanced, as (uint8 images (n, 3, R, R), labels (n,)); cached in memory per process."""
    key = (int(resolution), int(n), int(seed), int(num_classes))
    if key not in _REFERENCE_CACHE:
        data = ShapesDataset(resolution=int(resolution), num_classes=num_classes)
        images, labels = data.sample(n, seed=seed, labels=balanced_labels(n, num_classes))
        _REFERENCE_CACHE[key] = (to_uint8(images), labels)
    return _REFERENCE_CACHE[key]


def clear_reference_cache() -> None:
    """Forget the in-memory real reference sets."""
    _REFERENCE_CACHE.clear()


__all__ = ["FLOOR_SEED", "REFERENCE_SEED", "balanced_labels", "clear_reference_cache", "shapes_reference"]
