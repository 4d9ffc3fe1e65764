"""The Gymnasium suite: one module per paradigm, the shared transition in `base`, registration in one place."""

from adagen_env.envs.base import ACTION_LIMIT, AdaGenEnv, AdaGenVectorEnv
from adagen_env.envs.diffusion import DiTEnv, DiTVectorEnv
from adagen_env.envs.flow import SiTEnv, SiTVectorEnv
from adagen_env.envs.registration import ENVIRONMENTS, register_envs

__all__ = [
    "ACTION_LIMIT",
    "ENVIRONMENTS",
    "AdaGenEnv",
    "AdaGenVectorEnv",
    "DiTEnv",
    "DiTVectorEnv",
    "SiTEnv",
    "SiTVectorEnv",
    "register_envs",
]
