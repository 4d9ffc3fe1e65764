"""Paradigm samplers: batched transition functions of the MDP, one module per paradigm."""

from adagen_env.samplers.base import KnobSpec, Sampler, activate_all, check_knobs, inverse_all, make_generator
from adagen_env.samplers.diffusion import DiffusionSampler
from adagen_env.samplers.flow import FlowSampler
from adagen_env.samplers.maskgit import MaskGITSampler, MaskGITState
from adagen_env.samplers.ode import ODESampler, ODEState
from adagen_env.samplers.var import VARSampler, VARState

__all__ = [
    "DiffusionSampler",
    "FlowSampler",
    "KnobSpec",
    "MaskGITSampler",
    "MaskGITState",
    "ODESampler",
    "ODEState",
    "Sampler",
    "VARSampler",
    "VARState",
    "activate_all",
    "check_knobs",
    "inverse_all",
    "make_generator",
]
