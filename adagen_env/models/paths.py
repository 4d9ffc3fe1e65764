"""Probability paths x_t = alpha(t) * x_data + sigma(t) * noise of the continuous paradigms.

Both the zoo's training loops and the samplers read the path from here, so a model and its sampler
can never disagree. Time runs towards the data in the direction `data_end` gives: the VP diffusion
path goes from t = 1 (noise) to t = 0 (data); the rectified-flow path from t = 0 (noise) to t = 1 (data).

Letters: B batch; images (B, C, R, R) in [-1, 1].
"""

from __future__ import annotations

import torch


class VPPath:
    """Linear-beta variance-preserving path (beta from 0.1 to 20, DPM-Solver's `linear` VP); the model predicts noise."""

    noise_end, data_end = 1.0, 0.0
    prediction = "epsilon"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.beta_min, self.beta_max = beta_min, beta_max

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        log_alpha = -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min
        return torch.exp(log_alpha)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((1 - self.alpha(t) ** 2).clamp_min(0))

    def training_pair(self, x_data: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, regression target) for a batch; t is (B,)."""
        a, s = self.alpha(t)[:, None, None, None], self.sigma(t)[:, None, None, None]
        return a * x_data + s * noise, noise

    def to_data(self, x_t: torch.Tensor, prediction: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Data estimate x0 from the model's noise prediction at time t (B,)."""
        a, s = self.alpha(t)[:, None, None, None], self.sigma(t)[:, None, None, None]
        return (x_t - s * prediction) / a


class LinearPath:
    """Rectified-flow linear interpolant alpha = t, sigma = 1 - t; the model predicts velocity x_data - noise."""

    noise_end, data_end = 0.0, 1.0
    prediction = "velocity"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - t

    def training_pair(self, x_data: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, regression target) for a batch; t is (B,)."""
        tt = t[:, None, None, None]
        return tt * x_data + (1 - tt) * noise, x_data - noise

    def to_data(self, x_t: torch.Tensor, prediction: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Data estimate from the velocity prediction: x_data = x_t + (1 - t) v."""
        return x_t + (1 - t)[:, None, None, None] * prediction


PATHS = {"diffusion": VPPath, "flow": LinearPath}
