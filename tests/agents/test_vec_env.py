"""The SB3 VecEnv adapter's contract: shapes, dones, terminal observations, infos, seeding, attributes, VecMonitor."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecMonitor

from adagen_env.errors import InvalidArgument
from adagen_env.wrappers import VectorActionSmoothing
from agents import SB3VecEnv

B = 3


def _adapter(tiny_case, reward_model=None, smoothing: bool = True) -> tuple[SB3VecEnv, VectorEnv]:
    env_cls, sampler = tiny_case
    env = env_cls(num_envs=B, generator=sampler, reward_model=reward_model)
    if smoothing:
        env = VectorActionSmoothing(env, 0.5)
    return SB3VecEnv(env), env


def test_episode_contract(tiny_case) -> None:
    venv, env = _adapter(tiny_case, reward_model="adversarial")
    horizon = env.unwrapped.horizon
    assert venv.num_envs == B and venv.observation_space is env.single_observation_space
    obs = venv.reset()
    for key, space in env.single_observation_space.spaces.items():
        assert obs[key].shape == (B, *space.shape), key
    np.testing.assert_array_equal(obs["step"], 0)
    actions = np.full((B, *venv.action_space.shape), 0.1, np.float32)
    for k in range(horizon):
        venv.step_async(actions)
        obs, rewards, dones, infos = venv.step_wait()
        assert rewards.shape == (B,) and rewards.dtype == np.float32
        assert dones.shape == (B,) and dones.dtype == bool
        assert isinstance(infos, list) and len(infos) == B
        assert all(info["TimeLimit.truncated"] is False for info in infos)
        assert all(info["knobs"].shape == (len(env.unwrapped.sampler.knob_specs),) for info in infos)
        if k < horizon - 1:
            assert not dones.any() and not np.any(rewards)
            assert all("terminal_observation" not in info for info in infos)
            np.testing.assert_array_equal(obs["step"], k + 1)
    # Last step: every lane done, obs is already the reset obs, the terminal obs is in the infos.
    assert dones.all() and np.all((rewards > 0) & (rewards < 1))
    np.testing.assert_array_equal(obs["step"], 0)
    np.testing.assert_array_equal(obs["prev_action"], 0)
    for i, info in enumerate(infos):
        terminal = info["terminal_observation"]
        assert terminal["step"] == horizon - 1
        assert terminal["features"].shape == env.single_observation_space["features"].shape
        np.testing.assert_allclose(terminal["prev_action"], actions[i], rtol=1e-6)
        assert {"disc/loss", "disc/acc_real", "disc/acc_fake", "nfe"} <= set(info)
    # Per-lane terminal observations are views of one batch, not copies.
    bases = {id(info["terminal_observation"]["features"].base) for info in infos}
    assert len(bases) == 1 and infos[0]["terminal_observation"]["features"].base is not None
    # The next episode runs normally.
    venv.step_async(actions)
    obs, _, dones, _ = venv.step_wait()
    assert not dones.any()
    np.testing.assert_array_equal(obs["step"], 1)


def test_vec_monitor_episode_stats(tiny_case) -> None:
    venv, env = _adapter(tiny_case, reward_model="adversarial")
    monitor = VecMonitor(venv)
    horizon = env.unwrapped.horizon
    monitor.reset()
    zeros = np.zeros((B, *venv.action_space.shape), np.float32)
    for episode in range(2):
        for _ in range(horizon):
            _, rewards, dones, infos = monitor.step(zeros)
        assert dones.all()
        for i, info in enumerate(infos):
            assert info["episode"]["l"] == horizon
            assert info["episode"]["r"] == pytest.approx(float(rewards[i]))
    assert monitor.episode_count == 2 * B


def test_seed_and_options_reproduce(tiny_case) -> None:
    def run(venv: SB3VecEnv) -> list[np.ndarray]:
        venv.seed(7)
        venv.set_options({"labels": [1, 0, 1]})
        out = [venv.reset()["features"]]
        for _ in range(2):
            venv.step_async(np.full((B, *venv.action_space.shape), 0.3, np.float32))
            out.append(venv.step_wait()[0]["features"])
        return out

    env_cls, sampler = tiny_case
    first, second = (SB3VecEnv(env_cls(num_envs=B, generator=sampler, reward_model=None)) for _ in range(2))
    for a, b in zip(run(first), run(second)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.unwrapped.labels, [1, 0, 1])
    first.set_options([{"label": 0}, {"label": 1}, {"label": 0}])
    first.reset()
    np.testing.assert_array_equal(first.unwrapped.labels, [0, 1, 0])
    with pytest.raises(InvalidArgument, match="label"):
        first.set_options([{"seed": 1}] * B)


def test_attributes_methods_and_wrappers(tiny_case) -> None:
    venv, env = _adapter(tiny_case)
    assert venv.get_attr("horizon") == [env.unwrapped.horizon] * B
    assert venv.get_attr("beta", indices=[0, 2]) == [0.5, 0.5]  # found on the smoothing wrapper
    assert venv.env_is_wrapped(VectorActionSmoothing) == [True] * B
    assert venv.env_is_wrapped(Monitor) == [False] * B
    venv.set_attr("beta", 0.25)
    assert env.beta == 0.25
    with pytest.raises(InvalidArgument, match="all lanes"):
        venv.set_attr("beta", 0.1, indices=[0])
    venv.reset()
    assert (
        venv.env_method("knob_values", np.zeros((B, *venv.action_space.shape), np.float32), indices=0)[0].shape[0] == B
    )
    with pytest.raises(AttributeError, match="no attribute"):
        venv.get_attr("not_an_attribute")
    with pytest.raises(InvalidArgument, match="VectorEnv"):
        SB3VecEnv(gym.make("CartPole-v1"))


class _Staggered(VectorEnv):
    """Two lanes whose episodes end at different steps (not an AdaGen env)."""

    metadata: ClassVar[dict] = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self) -> None:
        self.num_envs = 2
        self.single_observation_space = spaces.Box(0, 10, (1,), np.float32)
        self.single_action_space = spaces.Box(-1, 1, (1,), np.float32)
        self.observation_space = spaces.Box(0, 10, (2, 1), np.float32)
        self.action_space = spaces.Box(-1, 1, (2, 1), np.float32)
        self.render_mode = None
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros((2, 1), np.float32), {}

    def step(self, actions):
        self.t += 1
        terms = np.array([self.t >= 1, self.t >= 2])
        return np.full((2, 1), self.t, np.float32), np.zeros(2, np.float32), terms, np.zeros(2, bool), {}


def test_lanes_ending_apart_are_refused() -> None:
    venv = SB3VecEnv(_Staggered())
    venv.reset()
    venv.step_async(np.zeros((2, 1), np.float32))
    with pytest.raises(RuntimeError, match="end together"):
        venv.step_wait()
