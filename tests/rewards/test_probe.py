"""The alignment probe: AUC near 1 for a reward that is a known function of quality, near 0.5 for a random one."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from adagen_env.data import ShapesDataset
from adagen_env.errors import InvalidArgument
from adagen_env.rewards.base import RewardModel
from adagen_env.rewards.probe import alignment_auc, paired_auc, rank_auc


class SharpnessReward(RewardModel):
    """A known function of quality: minus the distance to the clean image the test renders (less blur is better)."""

    def __init__(self, clean: torch.Tensor) -> None:
        self.clean = clean

    def score(self, images, labels):
        return -(images - self.clean).abs().mean(dim=(1, 2, 3))


class RandomReward(RewardModel):
    def __init__(self) -> None:
        self.g = torch.Generator().manual_seed(0)

    def score(self, images, labels):
        return torch.rand(images.shape[0], generator=self.g)


def test_rank_auc_counts_pairs_and_ties() -> None:
    assert rank_auc(torch.tensor([2.0, 3.0]), torch.tensor([1.0])) == 1.0
    assert rank_auc(torch.tensor([1.0]), torch.tensor([2.0, 3.0])) == 0.0
    assert rank_auc(torch.tensor([1.0, 1.0]), torch.tensor([1.0])) == 0.5


def test_paired_auc_compares_within_pairs_only() -> None:
    content = torch.arange(10.0)  # content moves the score far more than quality does
    better, worse = content + 0.1, content
    assert paired_auc(better, worse) == 1.0 and rank_auc(better, worse) < 0.6
    assert paired_auc(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])) == 0.25
    with pytest.raises(InvalidArgument, match="equal shapes"):
        paired_auc(torch.zeros(2), torch.zeros(3))


def test_probe_tells_a_quality_reward_from_a_random_one() -> None:
    images, labels = ShapesDataset(16).sample(200, seed=0)
    blurred = gaussian_blur(images, [5, 5], [1.0, 1.0])
    auc, paired = alignment_auc(SharpnessReward(images), images, labels, blurred, labels)
    assert auc > 0.99 and paired > 0.99
    auc, paired = alignment_auc(RandomReward(), images, labels, blurred, labels)
    assert abs(auc - 0.5) < 0.1 and abs(paired - 0.5) < 0.1
