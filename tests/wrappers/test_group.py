"""Group-relative rewards: the leave-one-out baseline of group rollouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_dit  # tests/conftest.py

from adagen_env.envs import SiTVectorEnv
from adagen_env.errors import InvalidArgument
from adagen_env.rewards import RewardModel
from adagen_env.samplers import FlowSampler
from adagen_env.wrappers import GroupRelativeReward, VectorActionSmoothing
from adagen_env.wrappers.group import leave_one_out


class MeanBrightness(RewardModel):
    """A frozen reward: the image's mean value (so images that differ get different rewards)."""

    training = False

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images.mean(dim=(1, 2, 3))


def test_leave_one_out_subtracts_the_mean_of_the_other_lanes() -> None:
    rewards = np.array([1.0, 2.0, 6.0, 0.0, 0.0, 3.0], np.float32)
    np.testing.assert_allclose(leave_one_out(rewards, 3), [1 - 4, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0])
    centred = leave_one_out(np.random.default_rng(0).normal(size=64).astype(np.float32), 8).reshape(8, 8)
    np.testing.assert_allclose(centred.sum(axis=1), 0, atol=1e-5)  # a group's centred rewards cancel


def test_wrapper_centres_terminal_rewards_and_keeps_the_raw_ones() -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=2)
    env = GroupRelativeReward(SiTVectorEnv(num_envs=4, generator=sampler, reward_model=MeanBrightness(), group_size=2))
    env = VectorActionSmoothing(env, 0.5)  # the trainer's stack
    env.reset(seed=1)
    actions = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    for _ in range(sampler.horizon):
        _, rewards, terminated, _, info = env.step(actions)
    assert terminated.all()
    raw = info["raw_reward"]
    np.testing.assert_allclose(rewards, [raw[0] - raw[1], raw[1] - raw[0], raw[2] - raw[3], raw[3] - raw[2]], rtol=1e-5)
    assert np.abs(rewards).max() > 0


def test_wrapper_refuses_an_env_without_groups() -> None:
    env = SiTVectorEnv(num_envs=4, generator=FlowSampler(tiny_dit(), num_steps=2), reward_model=None)
    with pytest.raises(InvalidArgument, match="group_size >= 2"):
        GroupRelativeReward(env)
