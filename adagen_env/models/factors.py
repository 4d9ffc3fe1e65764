"""The factor network: predicts the generating factors of a shapes image, so the renderer can draw it again clean.

The shapes data is procedural, so every real image has known factors (class, size, centre, rotation, colours,
background; `ShapesDataset.draw_factors`). This network regresses them from pixels; `adagen_env.metrics.oracle`
refines its guess by fitting the renderer to the image and measures how far an image is from any clean rendering.
It is a measuring instrument, never part of a reward.

Factor vector (`FACTOR_NAMES`, 17 values): size; centre x, y; cos and sin of n x angle, where n is the class's
rotational symmetry (so equivalent rotations give one target; none for the circle and the ring); shape RGB;
background mean RGB; background gradient along x and along y (RGB each), which is unambiguous where the
(bg_a, bg_b, bg_dir) triple is not.

Letters: B batch; images (B, 3, R, R) in [0, 1] at any R, resized to 32 inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adagen_env.data.shapes import SHAPE_CLASSES, ShapesDataset, render_shapes
from adagen_env.models.classifier import ClassifierConfig, stage_outputs

SYMMETRY: dict[str, int] = {
    "circle": 0,
    "square": 4,
    "triangle": 3,
    "ring": 0,
    "cross": 4,
    "star": 5,
    "crescent": 1,
    "bar": 2,
}
"""Order of each class's rotational symmetry (0: every rotation is the same image)."""
FACTOR_NAMES: tuple[str, ...] = (
    "size",
    "centre_x",
    "centre_y",
    "angle_cos",
    "angle_sin",
    "fg_r",
    "fg_g",
    "fg_b",
    "bg_r",
    "bg_g",
    "bg_b",
    "grad_x_r",
    "grad_x_g",
    "grad_x_b",
    "grad_y_r",
    "grad_y_g",
    "grad_y_b",
)
ANGLE_SLICE = slice(3, 5)


def symmetry_orders(labels: torch.Tensor, class_names: tuple[str, ...] = SHAPE_CLASSES) -> torch.Tensor:
    """(B,) labels -> (B,) float rotational symmetry orders."""
    orders = torch.tensor([float(SYMMETRY[name]) for name in class_names], device=labels.device)
    return orders[labels]


def factors_to_vector(
    labels: torch.Tensor, factors: dict[str, torch.Tensor], class_names: tuple[str, ...] = SHAPE_CLASSES
) -> tuple[torch.Tensor, torch.Tensor]:
    """`draw_factors`' dict -> (vector (B, 17), mask (B, 17)); the mask is 0 where a target is undefined (angle of
    a circle or ring)."""
    n = symmetry_orders(labels, class_names)
    bg_a, bg_b, bg_dir = factors["bg_a"], factors["bg_b"], factors["bg_dir"]
    diff = bg_b - bg_a  # (B, 3): the background is mean + diff * (cos(dir) x + sin(dir) y)
    vector = torch.cat(
        [
            factors["size"][:, None],
            factors["centre"],
            torch.cos(n * factors["angle"])[:, None],
            torch.sin(n * factors["angle"])[:, None],
            factors["fg"],
            (bg_a + bg_b) / 2,
            diff * torch.cos(bg_dir)[:, None],
            diff * torch.sin(bg_dir)[:, None],
        ],
        dim=1,
    )
    mask = torch.ones_like(vector)
    mask[:, ANGLE_SLICE] = (n > 0).float()[:, None]
    return vector, mask


def vector_to_factors(
    labels: torch.Tensor, vector: torch.Tensor, class_names: tuple[str, ...] = SHAPE_CLASSES
) -> dict[str, torch.Tensor]:
    """(B, 17) factor vectors -> the dict `render_shapes` takes (without grain): the inverse of `factors_to_vector`
    up to equivalent rotations and the (bg_a, bg_b, bg_dir) ~ (bg_b, bg_a, bg_dir + pi) symmetry."""
    n = symmetry_orders(labels, class_names)
    angle = torch.atan2(vector[:, 4], vector[:, 3]) / n.clamp(min=1) * (n > 0)
    mean, grad = vector[:, 8:11], torch.stack([vector[:, 11:14], vector[:, 14:17]], dim=2)  # (B, 3), (B, 3, 2)
    # The gradient is diff (x) (cos, sin) up to noise: its best rank-1 factorisation gives both.
    u, s, vh = torch.linalg.svd(grad, full_matrices=False)
    diff = u[:, :, 0] * s[:, :1]  # (B, 3)
    direction = vh[:, 0, :]  # (B, 2)
    return {
        "size": vector[:, 0].clamp(min=0.05),
        "centre": vector[:, 1:3],
        "angle": angle,
        "fg": vector[:, 5:8],
        "bg_a": mean - diff / 2,
        "bg_b": mean + diff / 2,
        "bg_dir": torch.atan2(direction[:, 1], direction[:, 0]),
    }


@dataclass
class FactorNetConfig(ClassifierConfig):
    """Shape of a `FactorNet`: the classifier's classes, stage width and input side."""


def gn_conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with GroupNorm and SiLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.GroupNorm(8, c_out),
        nn.SiLU(),
    )


class FactorNet(nn.Module):
    """Three GroupNorm conv stages (32 -> 16 -> 8 -> 4), a flattened (not pooled) grid so that position survives,
    an MLP, and two heads: class logits and the normalised factor vector."""

    def __init__(self, config: FactorNetConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.stages = nn.ModuleList([gn_conv_stage(3, w), gn_conv_stage(w, 2 * w), gn_conv_stage(2 * w, 4 * w)])
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU())
        self.class_head = nn.Linear(256, config.num_classes)
        self.factor_head = nn.Linear(256, len(FACTOR_NAMES))
        # Targets are standardised with the data's own statistics (a fixed draw, so the buffers are deterministic).
        data = ShapesDataset(16, num_classes=config.num_classes)
        labels = torch.arange(4096) % config.num_classes
        vector, mask = factors_to_vector(
            labels, data.draw_factors(labels, torch.Generator().manual_seed(7)), data.class_names
        )
        count = mask.sum(0)
        mean = (vector * mask).sum(0) / count
        std = (((vector - mean) * mask).pow(2).sum(0) / count).sqrt()
        self.register_buffer("target_mean", mean)
        self.register_buffer("target_std", std)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, R, R) in [0, 1] -> (class logits (B, num_classes), factor vector (B, 17) in data units)."""
        x = stage_outputs(self.stages, images, self.config.input_size)[-1]
        h = self.trunk(F.adaptive_avg_pool2d(x, 4))
        return self.class_head(h), self.factor_head(h) * self.target_std + self.target_mean


TRAIN_RESOLUTIONS = (16, 32)
"""The sides the zoo's generators make; the factor network and the SSL encoder train on both."""


def draw_training_batch(
    n: int, g: torch.Generator, num_classes: int = 8
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], int]:
    """A fresh batch for the measuring networks: (images (n, 3, R, R), labels (n,), factors, R), R drawn from
    `TRAIN_RESOLUTIONS`; all randomness from `g`."""
    res = TRAIN_RESOLUTIONS[int(torch.randint(len(TRAIN_RESOLUTIONS), (1,), generator=g, device=g.device))]
    data = ShapesDataset(res, num_classes=num_classes)
    labels = torch.randint(num_classes, (n,), generator=g, device=g.device)
    factors = data.draw_factors(labels, g)
    return render_shapes(labels, factors, data.class_names), labels, factors, res


def factor_loss(model: FactorNet, images: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Cross-entropy on the class plus masked MSE on the standardised factors (the zoo loop's loss interface).

    The loop's own batch only sets the batch size: this loss draws its images with their factors from `g`, at a
    random one of `TRAIN_RESOLUTIONS`.
    """
    images, labels, factors, _ = draw_training_batch(images.shape[0], g, model.config.num_classes)
    images, labels = images.to(model.target_std.device), labels.to(model.target_std.device)
    target, mask = factors_to_vector(labels, {k: v.to(images.device) for k, v in factors.items()})
    logits, predicted = model(images)
    error = ((predicted - target) / model.target_std) ** 2 * mask
    return F.cross_entropy(logits, labels) + error.sum() / mask.sum()


__all__ = [
    "ANGLE_SLICE",
    "FACTOR_NAMES",
    "SYMMETRY",
    "FactorNet",
    "FactorNetConfig",
    "TRAIN_RESOLUTIONS",
    "gn_conv_stage",
    "draw_training_batch",
    "factor_loss",
    "factors_to_vector",
    "symmetry_orders",
    "vector_to_factors",
]
