"""What the metrics modules share: torch-fidelity's input types and the shapes data's extractor base.

Letters: N images, R image side.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

KID_SUBSET_SIZE = 1000
"""torch-fidelity's default KID subset size; lowered for small sets (see `kid_subset_size`)."""


class ShapesExtractorBase(FeatureExtractorBase):
    """What the shapes data's torch-fidelity extractors share: uint8 (B, 3, R, R) input at any R, no compilation."""

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return (torch.rand([1, 3, 16, 16]) * 255).to(torch.uint8)

    def check_input(self, x: Any) -> None:
        """Raise `ValueError` (torch-fidelity's convention) unless `x` is a (B, 3, H, W) uint8 tensor."""
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3):
            got = f"{tuple(x.shape)} {x.dtype}" if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{self.name}: expected (B, 3, H, W) torch.uint8 images, got {got}")


class ImageTensorDataset(Dataset):
    """(N, 3, H, W) uint8 images as a map-style Dataset, the input torch-fidelity takes."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images.cpu()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float in [0, 1] -> uint8 on the CPU, rounded as `torchvision.utils.save_image` does."""
    return images.detach().float().cpu().mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


def kid_subset_size(n: int) -> int:
    """KID subset size for sets of at least `n` images: 1000, or n // 2 (>= 2) when that is smaller.

    Half the set, not all of it, so that the subsets differ and the reported standard deviation measures
    something (subsets of the whole set are all the same set); the estimator is unbiased at any size.
    """
    return min(KID_SUBSET_SIZE, max(2, n // 2))


__all__ = ["KID_SUBSET_SIZE", "ImageTensorDataset", "ShapesExtractorBase", "kid_subset_size", "to_uint8"]
