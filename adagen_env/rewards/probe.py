"""Does a reward still know good from bad? The alignment probe.

An online discriminator can stop ranking images by quality once it wins. The probe asks the current reward to
rank fixed images of known better quality (for example the baseline schedule at a large NFE, or real images)
above fixed worse ones (the baseline at a small NFE, or blurred copies). Two scores, 1 perfect and 0.5 no signal:

* the AUC, the probability that a random better image scores above a random worse one (content differs between
  the two, so a reward that varies more with content than with quality scores low even when it always prefers
  the better version of an image);
* the paired AUC, for pairs that share their content (the same label and noise, or an image and its blurred
  copy): the probability that the better one of a pair scores higher. This is the comparison PPO's advantage
  makes within a group rollout, where label and noise are shared.

Letters: N better images, M worse images.
"""

from __future__ import annotations

import torch

from adagen_env.errors import InvalidArgument
from adagen_env.rewards.base import RewardModel


def _win_rate(b: torch.Tensor, w: torch.Tensor) -> float:
    """Mean over broadcast pairs of 1 where b > w, 1/2 where b = w."""
    return float(((b > w).double() + 0.5 * (b == w).double()).mean())


def rank_auc(better: torch.Tensor, worse: torch.Tensor) -> float:
    """P(b > w) + P(b = w) / 2 over all pairs of (N,) and (M,) scores (the Mann-Whitney AUC)."""
    return _win_rate(better.flatten().double()[:, None], worse.flatten().double()[None, :])


def paired_auc(better: torch.Tensor, worse: torch.Tensor) -> float:
    """P(b_i > w_i) + P(b_i = w_i) / 2 over the pairs of (N,) scores (N pairs of the same content)."""
    if better.shape != worse.shape:
        raise InvalidArgument(f"paired scores need equal shapes, got {tuple(better.shape)} and {tuple(worse.shape)}")
    return _win_rate(better.flatten().double(), worse.flatten().double())


@torch.no_grad()
def alignment_auc(
    reward_model: RewardModel,
    better: torch.Tensor,
    better_labels: torch.Tensor,
    worse: torch.Tensor,
    worse_labels: torch.Tensor,
) -> tuple[float, float]:
    """(AUC, paired AUC) with which `reward_model` scores (N, 3, R, R) `better` images above (N, 3, R, R) `worse`
    ones, image i of each being of the same content."""
    good, bad = reward_model.score(better, better_labels), reward_model.score(worse, worse_labels)
    return rank_auc(good, bad), paired_auc(good, bad)


__all__ = ["alignment_auc", "paired_auc", "rank_auc"]
