"""A small DiT: patchify, AdaLN-zero transformer blocks with time and class conditioning.

Peebles & Xie, "Scalable Diffusion Models with Transformers" (arXiv 2212.09748). Shared by the
diffusion and the rectified-flow paradigms; it returns its prediction and the last block's tokens
as a feature grid, which is what the schedule policy observes.

Letters: B batch, C image channels, R image side, p patch, N = (R/p)^2 tokens, D width, g = R/p.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adagen_env.errors import InvalidArgument
from adagen_env.models.paths import VP_PREDICTIONS, VP_SCHEDULES


@dataclass
class DiTConfig:
    """Shape of a `DiT`; round-trips to JSON beside the shipped weights."""

    resolution: int = 16
    """Image side R in pixels."""
    channels: int = 3
    """Image channels C."""
    patch: int = 2
    """Patch side p; the token grid is R/p on a side."""
    width: int = 128
    """Token width D."""
    depth: int = 4
    """Number of transformer blocks."""
    heads: int = 4
    """Attention heads."""
    num_classes: int = 8
    """Classes; id `num_classes` is the null class used for classifier-free guidance."""
    prediction: str = "epsilon"
    """Regression target on the VP (diffusion) path: "epsilon" or "v" (`paths.VP_PREDICTIONS`); a DiT on the
    linear (flow) path predicts velocity whatever this says."""
    noise_schedule: str = "linear"
    """Noise schedule of the VP path the model was trained on (`paths.VP_SCHEDULES`); ignored on the flow path."""

    def __post_init__(self) -> None:
        if self.prediction not in VP_PREDICTIONS:
            raise InvalidArgument(f"DiTConfig.prediction must be one of {VP_PREDICTIONS}, got {self.prediction!r}")
        if self.noise_schedule not in VP_SCHEDULES:
            raise InvalidArgument(
                f"DiTConfig.noise_schedule must be one of {VP_SCHEDULES}, got {self.noise_schedule!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) scalars -> (B, dim), as in DiT and ADM."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN modulation of (B, N, D) tokens by (B, D) shift and scale."""
    return x * (1 + scale[:, None]) + shift[:, None]


class SelfAttention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention` (fused on CPU and CUDA).

    Parameters, their names and their initialisation are `nn.MultiheadAttention(width, heads, batch_first=True)`'s
    (`in_proj_weight` (3D, D), `in_proj_bias` (3D,), `out_proj`), so its state dicts load either way and a seeded
    init draws the same numbers; its output equals that module's to float tolerance.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise InvalidArgument(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) -> (B, N, D)."""
        b, n, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (B, N, 3D)
        q, k, v = qkv.view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, N, hs)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, N, hs)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))


class DiTBlock(nn.Module):
    """Pre-norm attention + MLP block whose norms and gates come from the conditioning (AdaLN-zero)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: (B, N, D) tokens, c: (B, D) conditioning -> (B, N, D)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift1, scale1)
        x = x + gate1[:, None] * self.attn(h)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """Class-conditional transformer on pixel patches.

    `forward(x, t, y)` takes images x (B, C, R, R), times t (B,) in [0, 1] and labels y (B,) (the null
    class id for the unconditional pass) and returns the prediction (B, C, R, R) and the last block's
    tokens as a feature grid (B, D, g, g).
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        d, p, c = config.width, config.patch, config.channels
        self.grid = config.resolution // p
        self.patch_embed = nn.Conv2d(c, d, kernel_size=p, stride=p)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid**2, d))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.time_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.class_embed = nn.Embedding(config.num_classes + 1, d)
        self.blocks = nn.ModuleList(DiTBlock(d, config.heads) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.final_linear = nn.Linear(d, p * p * c)
        for layer in (self.final_ada[1], self.final_linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(D, g, g): the shape of one sample's feature grid."""
        return (self.config.width, self.grid, self.grid)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, p, g = x.shape[0], self.config.patch, self.grid
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, D)
        c = self.time_mlp(timestep_embedding(1000 * t, 256)) + self.class_embed(y)  # (B, D)
        for block in self.blocks:
            tokens = block(tokens, c)
        features = tokens.transpose(1, 2).reshape(b, -1, g, g)  # (B, D, g, g)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        out = self.final_linear(modulate(self.final_norm(tokens), shift, scale))  # (B, N, p*p*C)
        out = out.reshape(b, g, g, p, p, -1).permute(0, 5, 1, 3, 2, 4).reshape(b, -1, g * p, g * p)  # (B, C, R, R)
        return out, features
