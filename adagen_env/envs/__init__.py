"""The Gymnasium suite: one module per paradigm, the shared transition in `base`, registration in one place."""

from adagen_env.envs.base import ACTION_LIMIT, AdaGenEnv, AdaGenVectorEnv
from adagen_env.envs.diffusion import DiTEnv, DiTVectorEnv
from adagen_env.envs.flow import SiTEnv, SiTVectorEnv
from adagen_env.envs.maskgit import MaskGITEnv, MaskGITVectorEnv
from adagen_env.envs.registration import ENVIRONMENTS, register_envs
from adagen_env.envs.var import VAREnv, VARVectorEnv

__all__ = [
    "ACTION_LIMIT",
    "ENVIRONMENTS",
    "AdaGenEnv",
    "AdaGenVectorEnv",
    "DiTEnv",
    "DiTVectorEnv",
    "MaskGITEnv",
    "MaskGITVectorEnv",
    "SiTEnv",
    "SiTVectorEnv",
    "VAREnv",
    "VARVectorEnv",
    "register_envs",
]
