"""A small CNN classifier of the shapes data: the feature network of the benchmark metrics.

Its 128-d pooled features (4 x width) play the role Inception's pool3 plays for FID on ImageNet, its logits the
role of Inception's logits for the Inception Score. It is trained with noise, blur, resolution and
colour augmentation, so that FID computed on its features rises with the damage a person sees.
It must never be part of a reward (docs/design.md 5).

Letters: B batch; images (B, 3, R, R) in [0, 1] at any R, resized to 32 inside.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ClassifierConfig:
    """Shape of a `ShapesClassifier`."""

    num_classes: int = 8
    """Output classes."""
    width: int = 32
    """Channels of the first stage; doubled at each of the three stages."""
    input_size: int = 32
    """Images are resized to this side before the first layer."""

    def to_dict(self) -> dict:
        return asdict(self)


def stage_outputs(stages: nn.ModuleList, images: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Each stage's output on `images` (B, 3, R, R) in [0, 1], resized to `size` and normalised, with 2x max-pooling
    between stages (three stages on 32 px: sides 32, 16, 8); the measuring networks' shared trunk."""
    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = (x - 0.5) / 0.25
    outputs = []
    for i, stage in enumerate(stages):
        x = stage(x)
        outputs.append(x)
        if i < len(stages) - 1:
            x = F.max_pool2d(x, 2)
    return outputs


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class ShapesClassifier(nn.Module):
    """Three conv stages (32 -> 16 -> 8 -> 4), global average pooling, a linear head."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.stages = nn.ModuleList([_stage(3, w), _stage(w, 2 * w), _stage(2 * w, 4 * w)])
        self.head = nn.Linear(4 * w, config.num_classes)

    @property
    def feature_dim(self) -> int:
        return 4 * self.config.width

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, R, R) in [0, 1] -> (features (B, 4w), logits (B, num_classes))."""
        features = stage_outputs(self.stages, images, self.config.input_size)[-1].mean(dim=(2, 3))  # (B, 4w)
        return features, self.head(features)


def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random damage a generator's samples can show: lower resolution, blur, noise, colour shifts.

    images (B, 3, R, R) in [0, 1] -> same shape; each image gets each augmentation with probability 1/2.
    """
    b, _, r, _ = images.shape
    dev = images.device
    u = lambda *s: torch.rand(*s, generator=g, device=g.device).to(dev)  # noqa: E731
    # 1. Half resolution, as the 16x16 generators produce.
    low = F.interpolate(F.avg_pool2d(images, 2), size=(r, r), mode="bilinear", align_corners=False)
    images = torch.where(u(b, 1, 1, 1) < 0.5, low, images)
    # 2. Box blur of random strength.
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    mix = u(b, 1, 1, 1) * (u(b, 1, 1, 1) < 0.5)
    images = images * (1 - mix) + blurred * mix
    # 3. Gaussian noise of random strength.
    sigma = 0.1 * u(b, 1, 1, 1) * (u(b, 1, 1, 1) < 0.5)
    images = images + sigma * torch.randn(images.shape, generator=g, device=g.device).to(dev)
    # 4. Per-channel gain and offset.
    jitter = u(b, 1, 1, 1) < 0.5
    gain = torch.where(jitter, 0.8 + 0.4 * u(b, 3, 1, 1), torch.ones(b, 3, 1, 1, device=dev))
    offset = torch.where(jitter, 0.1 * (u(b, 3, 1, 1) - 0.5), torch.zeros(b, 3, 1, 1, device=dev))
    return (images * gain + offset).clamp(0, 1)


def classifier_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Cross-entropy on augmented images (the zoo training loop's loss interface)."""
    _, logits = model(augment(images, g))
    return F.cross_entropy(logits, labels)
