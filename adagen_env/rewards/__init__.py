"""Reward models behind one interface: the online adversarial discriminator (default), two frozen ones, and the
adversarial reward mixed with the frozen classifier (the fidelity reward)."""

from __future__ import annotations

import difflib

import torch

from adagen_env.errors import InvalidArgument
from adagen_env.names import DEFAULT_REWARD_MODEL, REWARD_MODELS  # the tables (import-free, for the command line)
from adagen_env.rewards.adversarial import AdversarialReward, ConvDiscriminator, TransformerDiscriminator
from adagen_env.rewards.base import RewardModel
from adagen_env.rewards.frozen import BatchFIDReward, ClassifierReward
from adagen_env.rewards.mixed import CLASSIFIER_WEIGHT, FidelityReward
from adagen_env.rewards.projected import ProjectedDiscriminator

REAL_DATA_REWARDS = ("adversarial", "adversarial-ns", "adversarial-conv")
"""The reward models that take other real images than the shapes data: the pixel discriminators (the others' frozen
networks were trained on the shapes data)."""


PROJECTED_BACKBONES = {
    "adversarial-projected": ("reward-classifier",),
    "adversarial-projected-tokenizer": ("var-tokenizer",),
    "adversarial-projected-ensemble": ("reward-classifier", "var-tokenizer"),
}
"""The projected-discriminator rewards and the frozen backbones each reads."""


def make_reward_model(
    name: str,
    num_classes: int,
    resolution: int,
    device: torch.device | str = "cpu",
    real_data: object | None = None,
) -> RewardModel:
    """Build a reward model by name, one of `REWARD_MODELS` ("adversarial-ns": log-sigmoid, non-saturating;
    "adversarial-projected": the projected discriminator with DiffAugment's translation and cutout;
    "adversarial-projected-tokenizer" / "-ensemble": the same on the frozen VAR tokenizer's encoder instead of /
    beside the classifier, `PROJECTED_BACKBONES`;
    "adversarial-projected+classifier": that reward plus `CLASSIFIER_WEIGHT` times the frozen classifier's
    log-probability, `FidelityReward`, for a blend's fidelity policy). `real_data` (an object with
    `sample(n, labels=, generator=)`, e.g. `adagen_env.data.ImageFolderDataset`) replaces the shapes data as the
    discriminator's reals; only the `REAL_DATA_REWARDS` take it (`InvalidArgument` for the others)."""
    if real_data is not None and name not in REAL_DATA_REWARDS:
        raise InvalidArgument(
            f"reward model {name!r} does not take other real images than the shapes data (its frozen networks "
            f"were trained on them); with real data use one of {list(REAL_DATA_REWARDS)}"
        )
    if name == "adversarial":
        return AdversarialReward(num_classes, resolution, real_data=real_data, device=device)
    if name == "adversarial-ns":
        return AdversarialReward(num_classes, resolution, real_data=real_data, reward="log-sigmoid", device=device)
    if name == "adversarial-conv":
        return AdversarialReward(num_classes, resolution, real_data=real_data, architecture="conv", device=device)
    if name in PROJECTED_BACKBONES:
        backbones = PROJECTED_BACKBONES[name]
        return AdversarialReward(num_classes, resolution, architecture="projected", backbones=backbones, device=device)
    if name == "adversarial-projected+classifier":
        return FidelityReward(num_classes, resolution, architecture="projected", device=device)
    if name == "batch-fid":
        return BatchFIDReward(num_classes, resolution, device=device)
    if name == "classifier":
        return ClassifierReward(device=device)
    close = difflib.get_close_matches(str(name), REWARD_MODELS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InvalidArgument(
        f"unknown reward model {name!r}; valid: {list(REWARD_MODELS)} or a RewardModel instance.{hint}"
    )


__all__ = [
    "DEFAULT_REWARD_MODEL",
    "REAL_DATA_REWARDS",
    "REWARD_MODELS",
    "AdversarialReward",
    "BatchFIDReward",
    "CLASSIFIER_WEIGHT",
    "ClassifierReward",
    "ConvDiscriminator",
    "FidelityReward",
    "ProjectedDiscriminator",
    "RewardModel",
    "TransformerDiscriminator",
    "make_reward_model",
]
