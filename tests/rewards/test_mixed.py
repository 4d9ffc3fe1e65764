"""The fidelity reward: the projected discriminator's reward plus the weighted frozen classifier's log-probability,
a discriminator that learns and saves as the plain adversarial reward's."""

from __future__ import annotations

import pytest
import torch

from adagen_env.data import ShapesDataset
from adagen_env.errors import InvalidArgument
from adagen_env.rewards import CLASSIFIER_WEIGHT, AdversarialReward, ClassifierReward, FidelityReward, make_reward_model


def test_the_fidelity_reward_adds_the_weighted_classifier_log_probability() -> None:
    mixed = make_reward_model("adversarial-projected+classifier", 8, 16)
    plain = make_reward_model("adversarial-projected", 8, 16)
    assert isinstance(mixed, FidelityReward) and mixed.architecture == "projected" and mixed.online
    images, labels = ShapesDataset(16).sample(8, seed=3, labels=torch.arange(8))
    other = (labels + 1) % 8
    log_p = ClassifierReward().score(images, labels)
    assert float((log_p - ClassifierReward().score(images, other)).mean()) > 1  # the classifier tells labels apart
    torch.testing.assert_close(mixed.score(images, labels), plain.score(images, labels) + CLASSIFIER_WEIGHT * log_p)
    assert float((mixed.score(images, labels) - mixed.score(images, other)).mean()) > float(
        (plain.score(images, labels) - plain.score(images, other)).mean()
    )


def test_its_discriminator_learns_and_loads_as_the_adversarial_reward_s() -> None:
    mixed = make_reward_model("adversarial-projected+classifier", 8, 16)
    images, labels = torch.rand(8, 3, 16, 16), torch.arange(8)
    before = mixed.score(images, labels)
    assert set(mixed.update(images, labels)) == {"disc/loss", "disc/acc_real", "disc/acc_fake"}
    assert not torch.equal(mixed.score(images, labels), before)
    plain = AdversarialReward(8, 16, architecture="projected")
    plain.load_state_dict(mixed.state_dict())  # exports and refinement scorers read it like the plain reward's
    torch.testing.assert_close(
        plain.score(images, labels) + CLASSIFIER_WEIGHT * mixed.classifier.score(images, labels),
        mixed.score(images, labels),
    )


def test_a_non_positive_weight_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="classifier_weight"):
        FidelityReward(8, 16, classifier_weight=0.0, architecture="projected")
