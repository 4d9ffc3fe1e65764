"""Does a reward still know good from bad? The alignment probe.

An online discriminator can stop ranking images by quality once it wins. The probe asks the current reward to
rank fixed images of known better quality (for example the baseline schedule at a large NFE, or real images)
above fixed worse ones (the baseline at a small NFE, or blurred copies): its AUC is the probability that a
random better image scores above a random worse one. 1 is perfect, 0.5 is no signal.

Letters: N better images, M worse images.
"""

from __future__ import annotations

import torch

from adagen_env.rewards.base import RewardModel


def rank_auc(better: torch.Tensor, worse: torch.Tensor) -> float:
    """P(b > w) + P(b = w) / 2 over all pairs of (N,) and (M,) scores (the Mann-Whitney AUC)."""
    b, w = better.flatten().double()[:, None], worse.flatten().double()[None, :]
    return float(((b > w).double() + 0.5 * (b == w).double()).mean())


@torch.no_grad()
def alignment_auc(
    reward_model: RewardModel,
    better: torch.Tensor,
    better_labels: torch.Tensor,
    worse: torch.Tensor,
    worse_labels: torch.Tensor,
) -> float:
    """AUC with which `reward_model` scores (N, 3, R, R) `better` images above (M, 3, R, R) `worse` ones."""
    return rank_auc(reward_model.score(better, better_labels), reward_model.score(worse, worse_labels))


__all__ = ["alignment_auc", "rank_auc"]
