"""A self-supervised encoder of the shapes data: the feature space of the FD-SSL yardstick.

Trained contrastively (SimCLR's NT-Xent loss, Chen et al. 2020) with views the procedural data makes exact:

* the two views of a scene are the same factors rendered with two independent grain draws, so the only thing the
  encoder learns to ignore is the grain, which is noise by construction. SimCLR's usual views (crops, colour
  jitter, blur) would teach invariance to position, size, colour and blur, exactly what a quality metric must see;
* every scene comes with a near miss: the same scene with one factor group drawn again (the class, the geometry,
  the shape's colour or the background) as a hard negative, so that no factor group can be ignored.

Its 128-d features come from a flattened 4 x 4 grid, not a global pool, so that position survives; the metrics
also read the mean and spread of every channel at each of its three depths (`SSLEncoder.multi_depth`), where blur,
noise and colour show with far less sampling noise. It is a measuring instrument, never part of a reward.

Letters: B batch; images (B, 3, R, R) in [0, 1] at any R, resized to 32 inside.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adagen_env.data.shapes import GRAIN_SIGMA, ShapesDataset, render_shapes
from adagen_env.models.classifier import stage_outputs
from adagen_env.models.factors import TRAIN_RESOLUTIONS, gn_conv_stage

FACTOR_GROUPS: dict[str, tuple[str, ...]] = {
    "class": (),
    "geometry": ("size", "centre", "angle"),
    "colour": ("fg",),
    "background": ("bg_a", "bg_b", "bg_dir"),
}
"""Factor groups a near miss draws again (``class`` changes the label)."""


@dataclass
class SSLConfig:
    """Shape of an `SSLEncoder` and its contrastive loss."""

    width: int = 16
    """Channels of the first stage; doubled at each of the three stages."""
    feature_dim: int = 128
    """Dimension of the features the metrics use."""
    projection_dim: int = 64
    """Dimension of the projection head's output, where the loss is taken."""
    temperature: float = 0.2
    """NT-Xent temperature."""
    input_size: int = 32
    """Images are resized to this side before the first layer."""

    def to_dict(self) -> dict:
        return asdict(self)


class SSLEncoder(nn.Module):
    """Three GroupNorm conv stages (32 -> 16 -> 8 -> 4), a linear map of the flattened grid to the features, and a
    projection head used only by the loss."""

    def __init__(self, config: SSLConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.stages = nn.ModuleList([gn_conv_stage(3, w), gn_conv_stage(w, 2 * w), gn_conv_stage(2 * w, 4 * w)])
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, config.feature_dim))
        self.projection = nn.Sequential(
            nn.SiLU(),
            nn.Linear(config.feature_dim, config.feature_dim),
            nn.SiLU(),
            nn.Linear(config.feature_dim, config.projection_dim),
        )

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, R, R) in [0, 1] -> features (B, feature_dim)."""
        return self.multi_depth(images)[1]

    def multi_depth(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, R, R) in [0, 1] -> (channel statistics (B, 2 x 7w): the mean and std over positions of
        every channel of the three stages, features (B, feature_dim))."""
        outputs = stage_outputs(self.stages, images, self.config.input_size)
        statistics = [s for x in outputs for s in (x.mean(dim=(2, 3)), x.std(dim=(2, 3)))]
        return torch.cat(statistics, dim=1), self.embed(F.adaptive_avg_pool2d(outputs[-1], 4))


def contrastive_views(n: int, g: torch.Generator, num_classes: int = 8) -> torch.Tensor:
    """(4n, 3, R, R) views: n scenes and their n near misses, each rendered twice with independent grain.

    Row order: [scene views A (n), near-miss views A (n), scene views B (n), near-miss views B (n)], so row i
    and row i + 2n are a positive pair. R is drawn from `TRAIN_RESOLUTIONS`; all randomness from `g`.
    """
    res = TRAIN_RESOLUTIONS[int(torch.randint(len(TRAIN_RESOLUTIONS), (1,), generator=g, device=g.device))]
    data = ShapesDataset(res, num_classes=num_classes)
    labels = torch.randint(num_classes, (n,), generator=g, device=g.device)
    scene = data.draw_factors(labels, g)
    fresh_labels = (labels + torch.randint(1, num_classes, (n,), generator=g, device=g.device)) % num_classes
    fresh = data.draw_factors(fresh_labels, g)
    group = torch.randint(len(FACTOR_GROUPS), (n,), generator=g, device=g.device)
    miss = dict(scene)
    for k, names in enumerate(FACTOR_GROUPS.values()):
        for name in names:
            pick = (group == k).view(-1, *([1] * (scene[name].ndim - 1)))
            miss[name] = torch.where(pick, fresh[name], miss[name])
    miss_labels = torch.where(group == 0, fresh_labels, labels)
    both = torch.cat([labels, miss_labels])
    clean = {k: torch.cat([scene[k], miss[k]]) for k in scene if k != "grain"}
    views = []
    for _ in range(2):
        grain = torch.randn(2 * n, 1, res, res, generator=g, device=g.device) * GRAIN_SIGMA
        views.append(render_shapes(both, {**clean, "grain": grain}, data.class_names))
    return torch.cat(views)


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss of (2m, d) projections whose rows i and i + m are positive pairs."""
    z = F.normalize(z, dim=1)
    m = z.shape[0] // 2
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(m, 2 * m), torch.arange(m)]).to(z.device)
    return F.cross_entropy(logits, target)


def ssl_loss(model: SSLEncoder, images: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """NT-Xent over `contrastive_views` (the zoo loop's loss interface; the loop's batch sets n, its images and
    labels are not used: the views are drawn from `g`)."""
    views = contrastive_views(images.shape[0], g).to(images.device)
    return nt_xent(model.projection(model(views)), model.config.temperature)


__all__ = ["FACTOR_GROUPS", "SSLConfig", "SSLEncoder", "contrastive_views", "nt_xent", "ssl_loss"]
