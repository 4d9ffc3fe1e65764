"""The projected discriminator: small trainable heads on frozen pretrained networks' multi-depth features.

A discriminator trained from scratch on pixels wins within a few hundred updates by latching onto pixel
statistics, and its reward then stops ranking images by quality. A projected discriminator (Sauer et al., 2021;
AdaNAT's, on DINO ViT-S) reads a frozen network's features at several depths and trains only small
spectral-normalised heads with class projection on each, under differentiable augmentation of reals and fakes
alike (DiffAugment, Zhao et al., 2020; translation and cutout here, `DEFAULT_AUGMENTATIONS`). The frozen networks
(`BACKBONES`, never the metrics' networks): the zoo's `reward-classifier`, whose features are what tells classes
apart, and the encoder of the zoo's VAR tokenizer, trained to reconstruct images and so keeping every factor of
them; several backbones give one head per depth of each (an ensemble of projected discriminators).

Letters: B images, R image side, C channels of a depth, D head width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from adagen_env.errors import InvalidArgument
from adagen_env.models.classifier import stage_outputs

BACKBONES = ("reward-classifier", "var-tokenizer")
"""Names of the frozen feature networks a projected discriminator may read."""
DEFAULT_BACKBONES = ("reward-classifier",)
"""The backbones of `ProjectedDiscriminator` and the "adversarial-projected" reward."""


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


class ClassifierStages(nn.Module):
    """A frozen `ShapesClassifier`'s stage outputs: (B, 3, R, R) images in [0, 1] -> [(B, C_i, h_i, w_i)], read at
    its input size (images resized) with its input normalisation."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.channels = [[m for m in stage if isinstance(m, nn.Conv2d)][-1].out_channels for stage in net.stages]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return stage_outputs(
            self.net.stages, images.contiguous(memory_format=torch.channels_last), self.net.config.input_size
        )


class EncoderStages(nn.Module):
    """A frozen VQ tokenizer `Encoder`'s activations after its stem and after each downsampling stage (before the
    code projection): (B, 3, R, R) images in [0, 1] -> [(B, C_i, h_i, w_i)], read at the tokenizer's resolution."""

    def __init__(self, encoder: nn.Module, resolution: int) -> None:
        super().__init__()
        self.encoder, self.resolution = encoder, resolution
        convs = [m for m in encoder.net if isinstance(m, nn.Conv2d)]
        self.taps = [0] + [i for i, m in enumerate(encoder.net) if type(m).__name__ == "ResBlock"]
        self.channels = [convs[0].out_channels] + [encoder.net[i].body[-1].out_channels for i in self.taps[1:]]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        size = self.resolution
        x = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        x = (x * 2 - 1).contiguous(memory_format=torch.channels_last)
        out = []
        for i, layer in enumerate(self.encoder.net[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def load_backbone(name: str) -> nn.Module:
    """The frozen stages of the zoo network `name` (of `BACKBONES`), as a module returning a list of feature maps
    and holding their `channels`."""
    from adagen_env import zoo

    if name == "reward-classifier":
        return ClassifierStages(zoo.load("reward-classifier"))
    if name == "var-tokenizer":
        tokenizer = zoo.load("var").tokenizer
        return EncoderStages(tokenizer.encoder, tokenizer.config.resolution)
    raise InvalidArgument(f"unknown projected-discriminator backbone {name!r}; valid: {list(BACKBONES)}")


class ProjectedDiscriminator(nn.Module):
    """Frozen backbones' stages -> one trainable head per depth of each; the logit is the mean over all heads.

    Input (B, 3, R, R) in [0, 1]; output (B,) logits. `backbones`: names of `BACKBONES`, or ready stage modules
    (`ClassifierStages`, `EncoderStages`).
    """

    def __init__(
        self,
        num_classes: int,
        resolution: int,
        width: int = 32,
        backbones: tuple[str | nn.Module, ...] | list[str | nn.Module] = DEFAULT_BACKBONES,
    ) -> None:
        super().__init__()
        if isinstance(backbones, str) or not backbones:
            raise InvalidArgument(f"backbones must be a non-empty sequence of {list(BACKBONES)}, got {backbones!r}")
        stages = [load_backbone(b) if isinstance(b, str) else b for b in backbones]
        self.backbones = nn.ModuleList(stages).eval().requires_grad_(False)
        self.heads = nn.ModuleList([_Head(c, num_classes, width) for s in stages for c in s.channels])
        # Channels-last is the layout oneDNN's CPU convolutions are fastest in; the function is the same.
        self.to(memory_format=torch.channels_last)

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        # Files written with the single classifier backbone as the only one name its weights `backbone.*`.
        if isinstance(self.backbones[0], ClassifierStages):
            state_dict = {
                k.replace("backbone.", "backbones.0.net.", 1) if k.startswith("backbone.") else k: v
                for k, v in state_dict.items()
            }
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def train(self, mode: bool = True) -> ProjectedDiscriminator:
        super().train(mode)
        self.backbones.eval()  # frozen: their normalisation statistics never move
        return self

    @torch.no_grad()
    def depth_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every backbone's (B, C, h, w) feature maps, average-pooled to at most the images' own R x R grid (a
        finer grid holds no more of the image and would only make its head dearer). No gradients: only the heads
        train, and the reward never needs the gradient of an image (the policy learns from the scalar)."""
        side = images.shape[-1]
        maps = [f for backbone in self.backbones for f in backbone(images)]
        return [F.adaptive_avg_pool2d(f, side) if f.shape[-1] > side else f for f in maps]

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = [head(f, labels) for head, f in zip(self.heads, self.depth_features(images))]
        return torch.stack(logits).mean(dim=0)


__all__ = [
    "AUGMENTATIONS",
    "BACKBONES",
    "DEFAULT_AUGMENTATIONS",
    "DEFAULT_BACKBONES",
    "ClassifierStages",
    "EncoderStages",
    "ProjectedDiscriminator",
    "diff_augment",
    "load_backbone",
]
