"""The online discriminator learns, saves and loads; reward-model errors name the problem."""

from __future__ import annotations

import pytest
import torch

from adagen_env.data import ShapesDataset
from adagen_env.errors import InvalidArgument
from adagen_env.rewards import AdversarialReward, make_reward_model


@pytest.mark.parametrize("architecture", ["transformer", "conv"])
def test_discriminator_separates_real_from_noise(architecture: str) -> None:
    reward = AdversarialReward(num_classes=8, resolution=16, architecture=architecture, lr=1e-3, seed=0)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(16) % 8
    for _ in range(30):
        noise = torch.rand(16, 3, 16, 16, generator=g)
        stats = reward.update(noise, labels)
    reals, _ = ShapesDataset(16).sample(16, seed=99, labels=labels)
    noise = torch.rand(16, 3, 16, 16, generator=g)
    assert reward.score(reals, labels).mean() > 0.7
    assert reward.score(noise, labels).mean() < 0.3
    assert stats["disc/acc_fake"] > 0.9


def test_log_sigmoid_reward_keeps_ranking_confident_fakes() -> None:
    sigmoid = make_reward_model("adversarial", 8, 16)
    non_saturating = make_reward_model("adversarial-ns", 8, 16)
    non_saturating.discriminator.load_state_dict(sigmoid.discriminator.state_dict())
    images, labels = torch.rand(6, 3, 16, 16), torch.arange(6)
    with torch.no_grad():
        sigmoid.discriminator.out.bias.fill_(-40.0)  # a discriminator that has won: every logit near -40
        non_saturating.discriminator.out.bias.fill_(-40.0)
    logits = sigmoid.discriminator(images, labels)
    assert torch.all(sigmoid.score(images, labels) < 1e-15)  # the anchor's reward: flat
    rewards = non_saturating.score(images, labels)
    assert torch.allclose(rewards, logits, atol=1e-4)  # log D(x) ~ the logit: the ranking survives
    assert torch.equal(rewards.argsort(), logits.argsort())


def test_state_round_trip_and_frozen_mode() -> None:
    a = AdversarialReward(8, 16, seed=0)
    images, labels = torch.rand(4, 3, 16, 16), torch.arange(4)
    a.update(images, labels)
    b = AdversarialReward(8, 16, seed=1)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.score(images, labels), b.score(images, labels))
    b.training = False
    before = b.score(images, labels)
    assert b.update(images, labels) == {}
    assert torch.equal(before, b.score(images, labels))
    with pytest.raises(InvalidArgument, match="architecture 'transformer'.*'conv'"):
        AdversarialReward(8, 16, architecture="conv").load_state_dict(a.state_dict())


def test_update_learns_when_the_caller_runs_without_gradients() -> None:
    reward = AdversarialReward(8, 16, seed=0)
    before = {k: v.clone() for k, v in reward.discriminator.state_dict().items()}
    with torch.no_grad():  # e.g. a TorchRL collector stepping the env
        stats = reward.update(torch.rand(4, 3, 16, 16), torch.arange(4))
    assert stats and any(not torch.equal(v, before[k]) for k, v in reward.discriminator.state_dict().items())


def test_bad_inputs() -> None:
    reward = AdversarialReward(8, 16)
    with pytest.raises(InvalidArgument, match=r"shape \(B, 3, H, W\)"):
        reward.score(torch.rand(4, 16, 16), torch.arange(4))
    with pytest.raises(InvalidArgument, match=r"labels must have shape \(4,\)"):
        reward.score(torch.rand(4, 3, 16, 16), torch.arange(3))
    with pytest.raises(InvalidArgument, match="reward must be one of"):
        AdversarialReward(8, 16, reward="tanh")
    with pytest.raises(InvalidArgument, match="updates_per_batch"):
        AdversarialReward(8, 16, updates_per_batch=0)
    with pytest.raises(InvalidArgument, match="Did you mean 'adversarial'"):
        make_reward_model("adversarail", 8, 16)
