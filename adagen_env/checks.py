"""Input checks shared by every layer: images and labels are refused with a typed error that names the problem.

Letters: B images, H x W their size.
"""

from __future__ import annotations

from typing import Any

import torch

from adagen_env.errors import InvalidArgument


def check_images(images: Any, what: str = "images") -> torch.Tensor:
    """`images` if it is a float (B, 3, H, W) tensor, B >= 1, with finite values in [0, 1]; else `InvalidArgument`
    (naming the first broken images when some are not finite)."""
    if not torch.is_tensor(images):
        raise InvalidArgument(f"{what} must be a torch.Tensor (B, 3, H, W) in [0, 1], got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise InvalidArgument(f"{what} must have shape (B, 3, H, W) with B >= 1, got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InvalidArgument(
            f"{what} must be floating point in [0, 1], got dtype {images.dtype}; for uint8 images pass images / 255"
        )
    finite = torch.isfinite(images).flatten(1).all(dim=1)
    if not bool(finite.all()):
        raise InvalidArgument(
            f"{what} {(~finite).nonzero().flatten().tolist()[:8]} (indices in the batch) have NaN "
            "or infinite values; images must be finite, in [0, 1]"
        )
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise InvalidArgument(
            f"{what} must be in [0, 1], got values in [{low:.4g}, {high:.4g}]; "
            "map [-1, 1] outputs with (x + 1) / 2 and clamp"
        )
    return images


def check_labels(labels: Any, batch: int | None = None, num_classes: int | None = None) -> torch.Tensor:
    """`labels` as a (B,) int64 tensor, B >= 1 (B = `batch` when given, one per image), in [0, num_classes) when
    given; else `InvalidArgument`."""
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise InvalidArgument(f"labels must be integer class ids, got dtype {labels.dtype}")
    if labels.ndim != 1 or labels.numel() == 0 or (batch is not None and labels.shape[0] != batch):
        expected = f"({batch},), one per image" if batch is not None else "(B,) with B >= 1"
        raise InvalidArgument(f"labels must have shape {expected}, got {tuple(labels.shape)}")
    labels = labels.long()
    if num_classes is not None and (labels.min() < 0 or labels.max() >= num_classes):
        raise InvalidArgument(
            f"labels must be in [0, {num_classes}), got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return labels


__all__ = ["check_images", "check_labels"]
