"""Each paradigm's benchmark grid: which sampler the zoo benchmark builds and at which (NFE, CFG, settings) points.

Paradigms are rows of `PARADIGMS` (paradigm -> sampler factory and grid), like the zoo's own `ZOO` table; a new
paradigm joins the benchmark (`adagen_env.evaluation.zoo_eval`) by adding a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from adagen_env.errors import InvalidArgument
from adagen_env.samplers import DiffusionSampler, FlowSampler, Sampler
from adagen_env.samplers.maskgit import MaskGITSampler
from adagen_env.samplers.schedules import static_schedule
from adagen_env.samplers.var import VARSampler
from adagen_env.zoo import entry

SamplerFactory = Callable[..., Sampler]
"""(frozen model, NFE, CFG scale or None, device, **settings) -> a sampler whose baseline schedule gets evaluated."""

NFE_GRID = (4, 8, 16, 32, 64)
"""Conditional network evaluations per image (a guided step costs twice that; see `episode_nfe`). For the
token paradigms one step is one network evaluation: MaskGIT's steps, VAR's scales."""
CFG_BY_NFE: dict[int, tuple[float | None, ...]] = {
    4: (None, 1.0, 3.0),
    8: (None, 1.0, 3.0),
    16: (None, 3.0),
    32: (None, 1.0, 3.0),
    64: (None, 3.0),
}
"""Guidance weights w (out = cond + w (cond - uncond); None = unguided) run at each step count. w = 3 gave the best
class agreement in a first look, so it is kept at every step count; w = 1 (the envs' baseline) at low step counts and
at 32 steps, where a guided run costs NFE 64: the other end of the 8-vs-64 NFE comparison. Cost: each
point takes num_samples / 256 batches x `episode_nfe` batch-256 DiT forwards (0.5-1.5 s each on the 2-core build
machine, depending on its load); this grid is 460 forwards per batch, ~35-70 min per generator at 2000 samples."""
QUICK_NFE_GRID = (2, 4)
QUICK_CFG_GRID: tuple[float | None, ...] = (None, 1.0)


@dataclass(frozen=True)
class GridPoint:
    """One setting of the benchmark: NFE, CFG weight, and any other constructor arguments of the sampler."""

    nfe: int
    cfg: float | None
    settings: tuple[tuple[str, Any], ...] = ()
    """Extra sampler arguments as (name, value) pairs, e.g. (("top_k", 0),)."""


def cross(cfg_by_nfe: dict[int, tuple[float | None, ...]], *settings: dict[str, Any]) -> tuple[GridPoint, ...]:
    """Every (NFE, CFG) of `cfg_by_nfe`, once per settings dict (once with none when no dict is given)."""
    variants = [tuple(sorted(extra.items())) for extra in settings] or [()]
    return tuple(GridPoint(nfe, cfg, extra) for nfe, cfgs in cfg_by_nfe.items() for cfg in cfgs for extra in variants)


@dataclass(frozen=True)
class ParadigmEval:
    """How the benchmark samples one paradigm."""

    make_sampler: SamplerFactory
    """Builds the sampler for one grid point."""
    solver: str = ""
    """Name of the update rule, recorded in the results."""
    points: tuple[GridPoint, ...] = field(default_factory=lambda: cross(CFG_BY_NFE))
    """The full grid, in run order."""
    quick_points: tuple[GridPoint, ...] = field(
        default_factory=lambda: cross({nfe: QUICK_CFG_GRID for nfe in QUICK_NFE_GRID})
    )
    """The smoke-run grid."""
    fixed_nfe: bool = False
    """True where the model fixes the step count (VAR's scales): the factory then takes nfe=None."""
    schedule_settings: tuple[str, ...] = ()
    """Settings that go to the paradigm's static schedule family (`static_schedule`, on top of the baseline) rather
    than to the sampler, e.g. the token samplers' sampling temperature, which they take only as a knob."""

    def grid(self, quick: bool = False) -> tuple[GridPoint, ...]:
        return self.quick_points if quick else self.points

    def build(
        self, model: nn.Module, point: GridPoint, device: torch.device | str
    ) -> tuple[Sampler, torch.Tensor | None]:
        """The sampler of one grid point and its (H, K) schedule (None: the sampler's baseline)."""
        settings = dict(point.settings)
        knobs = {name: settings.pop(name) for name in self.schedule_settings if name in settings}
        sampler = self.make_sampler(model, point.nfe, point.cfg, device, **settings)
        return sampler, static_schedule(sampler, **knobs) if knobs else None


def _ode_factory(cls: type[Sampler], solver: str) -> SamplerFactory:
    def make(model: nn.Module, nfe: int, cfg: float | None, device: torch.device | str, **settings: Any) -> Sampler:
        return cls(model, num_steps=nfe, solver=solver, cfg_scale=cfg, device=device, **settings)

    return make


def _maskgit_factory(
    model: nn.Module, nfe: int, cfg: float | None, device: torch.device | str, **settings: Any
) -> Sampler:
    return MaskGITSampler(model, num_steps=nfe, cfg_scale=cfg, device=device, **settings)


def _var_factory(
    model: nn.Module, nfe: int | None, cfg: float | None, device: torch.device | str, **settings: Any
) -> Sampler:
    if nfe is not None and nfe != len(model.scales):
        raise InvalidArgument(
            f"VAR samples one step per scale: nfe must be {len(model.scales)} (scales {model.scales}), got {nfe}"
        )
    return VARSampler(model, cfg_scale=cfg, device=device, **settings)


MASKGIT_CFG_BY_NFE: dict[int, tuple[float | None, ...]] = {
    4: (None, 1.0, 3.0),
    8: (None, 1.0, 3.0),
    16: (None, 1.0, 3.0),
    32: (None,),
}
"""MaskGIT's steps and CFG weights (its baseline ramps CFG linearly up to w; w = 1 is the env's baseline): w = 1 and 3
up to 16 steps (NFE 32), so the env's baseline is seen at 4, 8 and 16 steps; 32 steps unguided. Beside, at 8 steps:
constant guidance, the near-greedy re-masking of temperature 1 and two sampling temperatures."""
VAR_SCALES = 6
"""Scales of the zoo VAR (1, 2, 3, 4, 6, 8): one network evaluation each."""

DIFFUSION_CFG_BY_NFE: dict[int, tuple[float | None, ...]] = {
    nfe: cfgs + ((4.0, 5.0) if nfe in (16, 32) else ()) for nfe, cfgs in CFG_BY_NFE.items()
}
"""`CFG_BY_NFE` plus w = 4 and 5 at 16 and 32 steps (NFE 32 and 64) for the diffusion generator: its class agreement
still rose past w = 3 in an ad-hoc first look (0.774, 0.794, 0.804, 0.807 at w = 2, 3, 4, 5 and 16 steps)."""

PARADIGMS: dict[str, ParadigmEval] = {
    "diffusion": ParadigmEval(
        _ode_factory(DiffusionSampler, "dpmpp2m"),
        solver="dpmpp2m",
        points=cross(DIFFUSION_CFG_BY_NFE),
    ),
    "flow": ParadigmEval(_ode_factory(FlowSampler, "dpmpp2m"), solver="dpmpp2m"),
    "maskgit": ParadigmEval(
        _maskgit_factory,
        solver="confidence re-masking",
        points=cross(MASKGIT_CFG_BY_NFE)
        + cross({8: (3.0,)}, {"cfg_schedule": "constant"})
        + cross({8: (1.0,)}, {"remask_temp": 1.0}, {"temperature": 0.7}, {"temperature": 1.5}),
        quick_points=cross({2: (None, 1.0)}),
        schedule_settings=("temperature",),
    ),
    "var": ParadigmEval(
        _var_factory,
        solver="next-scale",
        points=cross({VAR_SCALES: (None, 1.5, 3.0)}, {}, {"top_k": 0}, {"top_k": 8})
        + cross({VAR_SCALES: (1.5,)}, {"temperature": 0.8}, {"temperature": 1.2}),
        quick_points=cross({VAR_SCALES: (None, 1.5)}),
        fixed_nfe=True,
        schedule_settings=("temperature",),
    ),
}
"""paradigm (the zoo entry's `paradigm`) -> how to sample and which grid to run."""


def paradigm_eval(name: str) -> ParadigmEval:
    """The benchmark row of zoo generator `name`; raises `InvalidArgument` if its paradigm has none."""
    paradigm = entry(name).paradigm
    if paradigm not in PARADIGMS:
        raise InvalidArgument(
            f"zoo model {name!r} has paradigm {paradigm!r}, which the benchmark cannot sample; "
            f"paradigms with a sampler factory: {sorted(PARADIGMS)} (add a row to adagen_env.evaluation.grids.PARADIGMS)"
        )
    return PARADIGMS[paradigm]


__all__ = [
    "CFG_BY_NFE",
    "NFE_GRID",
    "PARADIGMS",
    "GridPoint",
    "ParadigmEval",
    "SamplerFactory",
    "cross",
    "paradigm_eval",
]
