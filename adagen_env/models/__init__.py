"""Backbones of the zoo's generators and the probability paths they are trained on."""

from adagen_env.models.dit import DiT, DiTConfig
from adagen_env.models.maskgit import MaskGIT, MaskGITConfig
from adagen_env.models.paths import PATHS, LinearPath, VPPath
from adagen_env.models.var import VAR, VARConfig
from adagen_env.models.vq import MultiScaleVQTokenizer, VQConfig, VQTokenizer

__all__ = [
    "PATHS",
    "VAR",
    "DiT",
    "DiTConfig",
    "LinearPath",
    "MaskGIT",
    "MaskGITConfig",
    "MultiScaleVQTokenizer",
    "VARConfig",
    "VPPath",
    "VQConfig",
    "VQTokenizer",
]
