"""The reward-model interface: final images and their labels in, one reward per image out.

An env calls `score` on the images of finished episodes (the terminal reward), then `update` with
the same batch, which online reward models (the adversarial discriminator) use to learn; `update`
returns scalar statistics the env passes on in `info` for trainers to log.

Letters: B images; images (B, 3, R, R) in [0, 1], labels (B,) int64.
"""

from __future__ import annotations

import abc

import torch


class RewardModel(abc.ABC):
    """Scores final images; subclasses that learn online override `update` and the state methods."""

    online: bool = False
    """Whether `update` learns from the images it is given (the adversarial discriminators); frozen models: False."""
    training: bool = True
    """Whether `update` learns (online reward models); set False to freeze, e.g. for evaluation."""

    @abc.abstractmethod
    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) images in [0, 1] and (B,) labels -> (B,) float32 rewards."""

    def update(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Learn from a batch of final images; returns statistics to log (empty for frozen models)."""
        return {}

    def state_dict(self) -> dict:
        """Everything needed to resume: weights, optimiser, counters (empty for frozen models)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""

    def to(self, device: torch.device | str) -> "RewardModel":
        return self
