"""Backbones of the zoo's generators and the probability paths they are trained on."""

from adagen_env.models.dit import DiT, DiTConfig
from adagen_env.models.paths import PATHS, LinearPath, VPPath

__all__ = ["PATHS", "DiT", "DiTConfig", "LinearPath", "VPPath"]
