"""The projected discriminator: small trainable heads on a frozen pretrained network's multi-depth features.

A discriminator trained from scratch on pixels wins within a few hundred updates by latching onto pixel
statistics, and its reward then stops ranking images by quality. A projected discriminator (Sauer et al., 2021;
AdaNAT's, on DINO ViT-S) reads a frozen network's features at several depths and trains only small
spectral-normalised heads with class projection on each, under differentiable augmentation of reals and fakes
alike (DiffAugment, Zhao et al., 2020; translation and cutout here, `DEFAULT_AUGMENTATIONS`). Here the frozen network is the zoo's `reward-classifier` (never the
metrics' networks).

Letters: B images, R image side, C channels of a depth, D head width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

BACKBONE = "reward-classifier"
"""Zoo name of the frozen feature network."""


AUGMENTATIONS = ("colour", "translation", "cutout")
"""DiffAugment's operations, in the order they apply."""
DEFAULT_AUGMENTATIONS = ("translation", "cutout")
"""The projected discriminator's: DiffAugment's colour jitter (brightness +- 0.5, saturation x [0, 2]) hides the
colour errors a sample of the shapes data can make, and with it the reward ranked images by quality far worse
(`benchmarks/results/reward_alignment`)."""


def diff_augment(images: torch.Tensor, g: torch.Generator, ops: tuple[str, ...] = AUGMENTATIONS) -> torch.Tensor:
    """DiffAugment's `ops` (of `AUGMENTATIONS`) on (B, 3, R, R) images in [0, 1]; differentiable in the images.

    Colour: brightness +- 0.5, saturation x [0, 2], contrast x [0.5, 1.5]; translation by up to 1/8 of the side
    (zero padding); one cutout square of half the side. Each image draws its own parameters from `g`.
    """
    b, _, r, _ = images.shape
    dev = images.device
    u = lambda *shape: torch.rand(*shape, generator=g, device=g.device).to(dev)  # noqa: E731
    x = images
    grid = torch.arange(r, device=dev)
    if "colour" in ops:
        x = x + (u(b, 1, 1, 1) - 0.5)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (u(b, 1, 1, 1) * 2) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (u(b, 1, 1, 1) + 0.5) + mean
    if "translation" in ops:
        # Shift every image by its own integer offset, zeros where it moved in from outside.
        shift = max(1, r // 8)
        offset = (u(b, 2) * (2 * shift + 1)).long() - shift  # (B, 2) in [-shift, shift]
        rows = (grid[None, :] - offset[:, :1]).clamp(-1, r)  # (B, R)
        cols = (grid[None, :] - offset[:, 1:]).clamp(-1, r)
        padded = F.pad(x, (1, 1, 1, 1))
        x = padded[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None] + 1, cols[:, None, :] + 1]
        x = x.permute(0, 3, 1, 2)  # advanced indexing put the channels last
    if "cutout" in ops:
        # One square of half the side, zeroed.
        half = r // 2
        corner = (u(b, 2) * (r - half + 1)).long()
        inside_r = (grid[None, :] >= corner[:, :1]) & (grid[None, :] < corner[:, :1] + half)
        inside_c = (grid[None, :] >= corner[:, 1:]) & (grid[None, :] < corner[:, 1:] + half)
        keep = ~(inside_r[:, :, None] & inside_c[:, None, :])
        x = x * keep[:, None].to(x.dtype)
    return x


class _Head(nn.Module):
    """Spectral-normalised 1x1 then 3x3 convolutions, per-location logits with class projection."""

    def __init__(self, channels: int, num_classes: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            spectral_norm(nn.Conv2d(channels, width, 1)),
            nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(width, width, 3, padding=1)),
            nn.LeakyReLU(0.2),
        )
        self.out = spectral_norm(nn.Conv2d(width, 1, 1))
        self.class_embed = nn.Embedding(num_classes, width)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.body(features)  # (B, D, h, w)
        proj = (h * self.class_embed(labels)[:, :, None, None]).sum(1, keepdim=True) / h.shape[1] ** 0.5
        return (self.out(h) + proj).mean(dim=(1, 2, 3))  # (B,)


class ProjectedDiscriminator(nn.Module):
    """Frozen `reward-classifier` stages -> one trainable head per depth; the logit is the mean over depths.

    Input (B, 3, R, R) in [0, 1]; output (B,) logits. `backbone` (a `ShapesClassifier`) is the zoo's when None.
    """

    def __init__(self, num_classes: int, resolution: int, width: int = 32, backbone: nn.Module | None = None) -> None:
        super().__init__()
        if backbone is None:
            from adagen_env import zoo

            backbone = zoo.load(BACKBONE)
        self.backbone = backbone.eval().requires_grad_(False)
        channels = [[m for m in stage if isinstance(m, nn.Conv2d)][-1].out_channels for stage in backbone.stages]
        self.heads = nn.ModuleList([_Head(c, num_classes, width) for c in channels])
        # Channels-last is the layout oneDNN's CPU convolutions are fastest in; the function is the same.
        self.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> ProjectedDiscriminator:
        super().train(mode)
        self.backbone.eval()  # frozen: its normalisation statistics never move
        return self

    @torch.no_grad()
    def depth_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's (B, C, h, w) feature map after each stage, average-pooled to at most the images' own
        R x R grid (the backbone reads images upsampled to its input size; a finer grid holds no more of the image
        and would only make its head dearer). No gradients: only the heads train, and the reward never needs the
        gradient of an image (the policy learns from the scalar), so the frozen backbone runs forward only."""
        net = self.backbone
        side, size = images.shape[-1], net.config.input_size
        x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = ((x - 0.5) / 0.25).contiguous(memory_format=torch.channels_last)
        out = []
        for i, stage in enumerate(net.stages):
            x = stage(x)
            out.append(F.adaptive_avg_pool2d(x, side) if x.shape[-1] > side else x)
            if i < len(net.stages) - 1:
                x = F.max_pool2d(x, 2)
        return out

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = [head(f, labels) for head, f in zip(self.heads, self.depth_features(images))]
        return torch.stack(logits).mean(dim=0)


__all__ = ["AUGMENTATIONS", "BACKBONE", "DEFAULT_AUGMENTATIONS", "ProjectedDiscriminator", "diff_augment"]
