"""Rewards from frozen networks, which the paper shows get hacked: batch FID and a classifier's log-probability.

Both use the zoo's `reward-classifier`, a network trained apart from the benchmark's feature network
(`shapes-classifier`), so a policy is never graded by the network that rewards it (docs/design.md 5).

Letters: B images, F feature width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from adagen_env.checks import check_images, check_labels
from adagen_env.data import ShapesDataset
from adagen_env.rewards.base import RewardModel

REWARD_NETWORK = "reward-classifier"


def _load_reward_network(device: torch.device) -> torch.nn.Module:
    from adagen_env import zoo

    return zoo.load(REWARD_NETWORK, device=device)


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> torch.Tensor:
    """Frechet distance between two Gaussians (F,), (F, F) in float64."""
    eigvals, eigvecs = torch.linalg.eigh(cov2)
    sqrt2 = eigvecs @ torch.diag(eigvals.clamp_min(0).sqrt()) @ eigvecs.T
    cross = torch.linalg.eigvalsh(sqrt2 @ cov1 @ sqrt2).clamp_min(0).sqrt().sum()
    return (mu1 - mu2).pow(2).sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * cross


class BatchFIDReward(RewardModel):
    """Every image of a batch gets minus the batch's FID against real statistics (the same value for all).

    Args:
        num_classes: classes of the labels (sets the real statistics' dataset).
        resolution: side of the final images.
        num_real: real images behind the reference statistics.
        device: where the network runs.
    """

    def __init__(
        self, num_classes: int, resolution: int, num_real: int = 2000, device: torch.device | str = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.network = _load_reward_network(self.device)
        reals, _ = ShapesDataset(resolution, num_classes=num_classes).sample(num_real, seed=12345)
        self.mu, self.cov = self._stats(self._features(reals))

    @torch.no_grad()
    def _features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.network(chunk.to(self.device))[0] for chunk in images.split(512)]).double()

    @staticmethod
    def _stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return features.mean(0), torch.cov(features.T)

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images), check_labels(labels, images.shape[0])
        mu, cov = self._stats(self._features(images))
        fid = frechet_distance(mu, cov, self.mu, self.cov).float()
        return (-fid).expand(images.shape[0]).clone()


class ClassifierReward(RewardModel):
    """Reward = log-probability of the requested class under a frozen classifier (a fixed reward model)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.network = _load_reward_network(self.device)

    @torch.no_grad()
    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images), check_labels(labels, images.shape[0])
        _, logits = self.network(images.to(self.device))
        return F.log_softmax(logits.float(), dim=-1).gather(1, labels.to(self.device)[:, None]).squeeze(1)
