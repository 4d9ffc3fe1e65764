"""The diffusion (DiT) paradigm: a VP-path DiT sampled by DDIM or DPM-Solver++(2M) with per-sample times and CFG.

Knobs per step (as in AdaGen's public code): the next time point (sigmoid, projected to strictly decrease with a
minimum gap) and the CFG weight (softplus). Baseline: a uniform time grid from t = 1 to t = 0 and a
constant CFG weight. Horizon H = NFE + 1 (the first call picks the start time).
"""

from __future__ import annotations

from adagen_env.samplers.ode import ODESampler, ODEState


class DiffusionSampler(ODESampler):
    """DiT on the VP path (noise at t = 1, data at t = 0), predicting the noise or v as its config says; see
    `ODESampler` for arguments."""

    path_name = "diffusion"
    time_description = "next time point on the VP path, strictly decreasing from 1 (noise) to 0 (data)"


__all__ = ["DiffusionSampler", "ODEState"]
