"""Compute-aware episodes (`stop_knob`): a never-stopping policy is the usual env bit for bit; a stop ends a lane with
the image of the shorter sampler on the same times and the NFE it actually spent; the lanes stay in lock step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_CASES, tiny_dit  # tests/conftest.py
from gymnasium.utils.env_checker import check_env

from adagen_env.envs import AdaGenEnv, SiTVectorEnv
from adagen_env.envs.base import STOP_THRESHOLD
from adagen_env.errors import InvalidArgument, InvalidKnobValue
from adagen_env.rewards import RewardModel
from adagen_env.samplers import FlowSampler, make_generator

LABELS = [0, 1, 2]


class Brightness(RewardModel):
    """A frozen stand-in reward: each image's mean pixel value."""

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(1, 2, 3))


def _run(env, actions_at, seed: int = 5):
    """Whole episode of `env` with `actions_at(k)` -> (B, A) actions; the infos and rewards of every step."""
    env.reset(seed=seed, options={"labels": LABELS})
    steps, done = [], False
    while not done:
        obs, rewards, terminated, _, info = env.step(actions_at(len(steps)))
        steps.append((obs, rewards, info))
        done = bool(terminated.all())
    return steps


@pytest.mark.parametrize("case", ["dit", "sit"])
def test_a_stop_that_never_fires_is_the_usual_env_bit_for_bit(case: str) -> None:
    env_cls, make_sampler = TINY_CASES[case]
    sampler = make_sampler()
    usual = env_cls(num_envs=3, generator=sampler, reward_model=Brightness(), return_images=True)
    aware = env_cls(num_envs=3, generator=sampler, reward_model=Brightness(), return_images=True, stop_knob=True)
    assert aware.single_action_space.shape == (usual.single_action_space.shape[0] + 1,)
    u = torch.randn(sampler.horizon, 3, 2, generator=torch.Generator().manual_seed(0)).numpy()
    below = np.array([[-3.0], [0.0], [STOP_THRESHOLD]], dtype=np.float32)  # at the threshold is no stop
    ours = _run(aware, lambda k: np.concatenate([u[k], below], axis=1))
    theirs = _run(usual, lambda k: u[k])
    assert len(ours) == len(theirs) == sampler.horizon
    for (obs, rewards, info), (obs0, rewards0, info0) in zip(ours, theirs):
        assert all(np.array_equal(obs[key], obs0[key]) for key in obs0)
        assert np.array_equal(rewards, rewards0) and np.array_equal(info["knobs"], info0["knobs"])
        assert np.array_equal(info["nfe"], info0["nfe"]) and not info["stopped"].any()
    assert np.array_equal(ours[-1][2]["final_images"], theirs[-1][2]["final_images"])
    assert np.array_equal(ours[-1][2]["episode_nfe"], np.full(3, sampler.episode_nfe))


def test_a_stop_ends_the_lane_with_the_shorter_sampler_s_image_and_the_nfe_it_spent() -> None:
    model = tiny_dit()
    sampler = FlowSampler(model, num_steps=4)  # H = 5: NFE per step 1, 2, 2, 2, 1
    env = SiTVectorEnv(
        num_envs=3, generator=sampler, reward_model=Brightness(), return_images=True, stop_knob=True, nfe_cost=0.01
    )
    stop_at = {0: 2, 2: 1}  # lane 0 stops at step 2, lane 2 at step 1, lane 1 never

    def actions(k: int) -> np.ndarray:
        stop = [[10.0 if stop_at.get(lane) == k else 0.0] for lane in range(3)]
        return np.concatenate([np.zeros((3, 2), np.float32), np.array(stop, np.float32)], axis=1)

    steps = _run(env, actions)
    info = steps[-1][2]
    assert len(steps) == sampler.horizon  # lane 1 runs to the horizon
    assert [s[2]["nfe"].tolist() for s in steps] == [[1, 1, 1], [2, 2, 1], [1, 2, 0], [0, 2, 0], [0, 1, 0]]
    assert info["episode_nfe"].tolist() == [4, 8, 2] and info["stopped"].tolist() == [True, False, True]
    assert np.isnan(steps[3][2]["knobs"][[0, 2]]).all() and np.isfinite(steps[3][2]["knobs"][1]).all()
    assert steps[2][2]["knobs"][0, 0] == 1.0  # the stopping step's time is the data end
    images = torch.from_numpy(info["final_images"])
    np.testing.assert_allclose(
        steps[-1][1],
        Brightness().score(images, torch.tensor(LABELS)).numpy() - 0.01 * np.array([4, 8, 2], np.float32),
        rtol=1e-6,
    )
    # A lane that stops at step k has the image of the k-NFE sampler on the same times (the baseline's so far).
    for lane, k in stop_at.items():
        short = FlowSampler(model, num_steps=k)
        table = torch.cat([sampler.baseline_schedule()[:k], sampler.baseline_schedule()[-1:]])  # (k + 1, K)
        expected = short.sample(torch.tensor(LABELS), make_generator(5), table)[lane]
        torch.testing.assert_close(images[lane], expected, rtol=0, atol=1e-5)
        assert info["episode_nfe"][lane] == short.episode_nfe
    usual = SiTVectorEnv(num_envs=3, generator=sampler, reward_model=None, return_images=True)
    full = _run(usual, lambda k: np.zeros((3, 2), np.float32))[-1][2]["final_images"]
    # The lane that never stopped is the usual one's, to the rounding of a network batch of other size.
    np.testing.assert_allclose(info["final_images"][1], full[1], rtol=0, atol=1e-5)
    assert not np.array_equal(info["final_images"][0], full[0])


def test_the_episode_ends_for_all_when_the_last_running_lane_stops() -> None:
    env = SiTVectorEnv(
        num_envs=3,
        generator=FlowSampler(tiny_dit(), num_steps=4),
        reward_model=None,
        return_images=True,
        stop_knob=True,
    )
    stops = {1: [10.0, 0.0, 0.0], 2: [0.0, 10.0, 10.0]}
    steps = _run(
        env,
        lambda k: np.concatenate(
            [np.zeros((3, 2), np.float32), np.array(stops.get(k, [0.0] * 3), np.float32)[:, None]], axis=1
        ),
    )
    assert len(steps) == 3 and steps[-1][2]["episode_nfe"].tolist() == [2, 4, 4]
    assert np.isfinite(steps[-1][2]["final_images"]).all()
    obs, rewards, terminated, _, _ = env.step(np.zeros((3, 3), np.float32))  # next-step autoreset
    assert not terminated.any() and (obs["step"] == 0).all()


def test_the_single_lane_env_with_a_stop_passes_the_checker() -> None:
    single = type("Single", (AdaGenEnv,), {"vector_cls": SiTVectorEnv})(
        generator=FlowSampler(tiny_dit(), num_steps=3), reward_model=None, stop_knob=True, nfe_cost=0.1
    )
    check_env(single, skip_render_check=True)


def test_refusals_name_the_problem() -> None:
    env_cls, make_sampler = TINY_CASES["maskgit"]
    with pytest.raises(InvalidArgument, match="ODE paradigms"):
        env_cls(num_envs=2, generator=make_sampler(), reward_model=None, stop_knob=True)
    sampler = FlowSampler(tiny_dit(), num_steps=3)
    with pytest.raises(InvalidArgument, match="nfe_cost needs stop_knob"):
        SiTVectorEnv(num_envs=2, generator=sampler, reward_model=None, nfe_cost=0.1)
    for cost in (-1.0, float("inf")):
        with pytest.raises(InvalidArgument, match="nfe_cost"):
            SiTVectorEnv(num_envs=2, generator=sampler, reward_model=None, stop_knob=True, nfe_cost=cost)
    env = SiTVectorEnv(num_envs=2, generator=sampler, reward_model=None, stop_knob=True)
    env.reset(seed=0)
    with pytest.raises(InvalidKnobValue, match="shape"):
        env.step(np.zeros((2, 2), np.float32))
    with pytest.raises(InvalidKnobValue, match="lane 1, knob 'stop'"):
        env.step(np.array([[0, 0, 0], [0, 0, np.nan]], np.float32))


def test_selected_lanes_carry_their_stop_and_their_spent_nfe() -> None:
    env = SiTVectorEnv(
        num_envs=3,
        generator=FlowSampler(tiny_dit(), num_steps=4),
        reward_model=None,
        return_images=True,
        stop_knob=True,
    )
    env.reset(seed=0, options={"labels": LABELS})
    env.step(np.zeros((3, 3), np.float32))
    _, _, _, _, info = env.step(np.array([[0, 0, 10], [0, 0, 0], [0, 0, 0]], np.float32))  # lane 0 stops at step 1
    assert info["stopped"].tolist() == [True, False, False]
    env.select_lanes(np.array([0, 0, 2]))
    for _ in range(3):
        _, _, terminated, _, info = env.step(np.zeros((3, 3), np.float32))
    assert terminated.all() and info["stopped"].tolist() == [True, True, False]
    assert info["episode_nfe"].tolist() == [2, 2, 8]
    assert np.array_equal(info["final_images"][0], info["final_images"][1])
