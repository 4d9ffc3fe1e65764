"""Probability paths x_t = alpha(t) * x_data + sigma(t) * noise of the continuous paradigms.

Both the zoo's training loops and the samplers read the path from here, so a model and its sampler
can never disagree. Time runs towards the data in the direction `data_end` gives: the VP diffusion
path goes from t = 1 (noise) to t = 0 (data); the rectified-flow path from t = 0 (noise) to t = 1 (data).

Letters: B batch; images (B, C, R, R) in [-1, 1].
"""

from __future__ import annotations

import math
from typing import Any

import torch

from adagen_env.errors import InvalidArgument

VP_PREDICTIONS = ("epsilon", "v")
"""What a model on the VP path regresses: the noise, or v = alpha * noise - sigma * x_data (Salimans & Ho 2022,
arXiv 2202.00512), which stays informative at high noise, where the noise target says little about the image."""
VP_SCHEDULES = ("linear", "cosine")
"""Noise schedules of the VP path: DPM-Solver's linear beta (0.1 to 20), or the cosine alpha = cos(pi/2 * s * t)
(Nichol & Dhariwal 2021, arXiv 2102.09672) with s set so that both end at the same alpha(1) (log-SNR about -10).
On the cosine, log-SNR falls evenly about t = 1/2, as on the linear (flow) path; on the linear beta, t = 1/2 is
already at log-SNR -2.5, so uniform times spend most steps and most training where the image is mostly noise."""


class VarPreservingRegression:
    """What every variance-preserving path shares, given its `alpha(t)`, `sigma(t)` and `prediction`: the training
    pair and the data estimate for an epsilon or a v model."""

    prediction: str

    def training_pair(
        self, x_data: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, regression target) for a batch; t is (B,)."""
        a, s = self.alpha(t)[:, None, None, None], self.sigma(t)[:, None, None, None]
        target = noise if self.prediction == "epsilon" else a * noise - s * x_data
        return a * x_data + s * noise, target

    def to_data(self, x_t: torch.Tensor, prediction: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Data estimate x0 from the model's prediction at time t (B,) (alpha^2 + sigma^2 = 1 for v)."""
        a, s = self.alpha(t)[:, None, None, None], self.sigma(t)[:, None, None, None]
        if self.prediction == "epsilon":
            return (x_t - s * prediction) / a
        return a * x_t - s * prediction


class VPPath(VarPreservingRegression):
    """Variance-preserving path, alpha^2 + sigma^2 = 1, from t = 1 (noise) to t = 0 (data).

    Args:
        beta_min, beta_max: the linear schedule's beta at t = 0 and t = 1 (they also fix alpha(1) for the cosine).
        prediction: the model's target, one of `VP_PREDICTIONS`.
        schedule: one of `VP_SCHEDULES`.
    """

    noise_end, data_end = 1.0, 0.0

    def __init__(
        self, beta_min: float = 0.1, beta_max: float = 20.0, prediction: str = "epsilon", schedule: str = "linear"
    ) -> None:
        if prediction not in VP_PREDICTIONS:
            raise InvalidArgument(f"prediction on the VP path must be one of {VP_PREDICTIONS}, got {prediction!r}")
        if schedule not in VP_SCHEDULES:
            raise InvalidArgument(f"schedule of the VP path must be one of {VP_SCHEDULES}, got {schedule!r}")
        self.beta_min, self.beta_max, self.prediction, self.schedule = beta_min, beta_max, prediction, schedule
        self.cosine_scale = math.acos(self._linear_alpha(1.0)) / (math.pi / 2)

    def _linear_alpha(self, t: torch.Tensor | float) -> torch.Tensor | float:
        log_alpha = -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        return torch.exp(log_alpha) if isinstance(log_alpha, torch.Tensor) else math.exp(log_alpha)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        if self.schedule == "cosine":
            return torch.cos(t * (math.pi / 2 * self.cosine_scale))
        return self._linear_alpha(t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        if self.schedule == "cosine":  # sin, not sqrt(1 - alpha^2), which loses precision near the data
            return torch.sin(t * (math.pi / 2 * self.cosine_scale))
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp_min(0))


class LinearPath:
    """Rectified-flow linear interpolant alpha = t, sigma = 1 - t; the model predicts velocity x_data - noise."""

    noise_end, data_end = 0.0, 1.0
    prediction = "velocity"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - t

    def training_pair(
        self, x_data: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, regression target) for a batch; t is (B,)."""
        tt = t[:, None, None, None]
        return tt * x_data + (1 - tt) * noise, x_data - noise

    def to_data(self, x_t: torch.Tensor, prediction: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Data estimate from the velocity prediction: x_data = x_t + (1 - t) v."""
        return x_t + (1 - t)[:, None, None, None] * prediction


PATHS = {"diffusion": VPPath, "flow": LinearPath}


def log_snr(path: VPPath | LinearPath, t: torch.Tensor) -> torch.Tensor:
    """lambda_t = log(alpha_t^2 / sigma_t^2) at times t (any shape)."""
    return 2 * (torch.log(path.alpha(t)) - torch.log(path.sigma(t)))


def time_at_log_snr(path: VPPath | LinearPath, target: torch.Tensor, iterations: int = 60) -> torch.Tensor:
    """Invert `log_snr` (monotone along the path) by bisection: log-SNR values (n,) -> times (n,)."""
    low, high = torch.zeros_like(target), torch.ones_like(target)  # progress towards the data: log-SNR grows with it
    span = path.data_end - path.noise_end
    for _ in range(iterations):
        mid = (low + high) / 2
        above = log_snr(path, path.noise_end + span * mid) > target
        high, low = torch.where(above, mid, high), torch.where(above, low, mid)
    return path.noise_end + span * (low + high) / 2


def path_for(name: str, config: Any) -> VPPath | LinearPath:
    """The path `name` of `PATHS` as a DiT of this config (`DiTConfig`) was trained on it: on the VP path, with
    its `prediction` target and `noise_schedule`; the linear path's model always predicts velocity."""
    if name == "diffusion":
        return VPPath(prediction=config.prediction, schedule=config.noise_schedule)
    return PATHS[name]()
