"""The rectified-flow (SiT) paradigm: a linear-path DiT sampled by Euler or a second-order multistep solver.

Knobs per step (as in AdaGen's public code): the next time point (sigmoid, projected to strictly increase with a
minimum gap) and the CFG weight (softplus). On the linear path the first-order DPM-Solver++ update is
exactly Euler's step on the velocity, and the second-order one is DPM-Solver++(2M). Baseline: a uniform
time grid from t = 0 to t = 1 and a constant CFG weight. Horizon H = NFE + 1.
"""

from __future__ import annotations

from adagen_env.samplers.ode import ODESampler, ODEState


class FlowSampler(ODESampler):
    """DiT on the linear path (noise at t = 0, data at t = 1), velocity-predicting; see `ODESampler` for arguments."""

    path_name = "flow"
    time_description = "next time point on the linear path, strictly increasing from 0 (noise) to 1 (data)"


__all__ = ["FlowSampler", "ODEState"]
