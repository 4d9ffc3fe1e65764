"""Action smoothing: the EMA identities, per-lane filters across autoreset, and argument errors."""

from __future__ import annotations

import numpy as np
import pytest

from adagen_env.envs import SiTEnv, SiTVectorEnv
from adagen_env.errors import InvalidArgument, InvalidKnobValue
from adagen_env.wrappers import ActionSmoothing, VectorActionSmoothing


def _images(env, actions) -> np.ndarray:
    env.reset(seed=0, options={"labels": [1, 2]})
    for a in actions:
        _, _, _, _, info = env.step(a)
    return info["final_images"]


def test_beta_zero_is_identity_and_zero_action_is_baseline(tiny_ode_sampler) -> None:
    rng = np.random.default_rng(0)
    actions = rng.normal(size=(tiny_ode_sampler.horizon, 2, 2)).astype(np.float32)
    make = lambda: SiTVectorEnv(num_envs=2, generator=tiny_ode_sampler, reward_model=None, return_images=True)  # noqa: E731
    raw = _images(make(), actions)
    assert np.array_equal(_images(VectorActionSmoothing(make(), beta=0.0), actions), raw)
    zeros = np.zeros_like(actions)
    assert np.array_equal(_images(VectorActionSmoothing(make(), beta=0.8), zeros), _images(make(), zeros))
    assert not np.array_equal(_images(VectorActionSmoothing(make(), beta=0.8), actions), raw)


def test_ema_formula_and_prev_action(tiny_ode_sampler) -> None:
    env = ActionSmoothing(SiTEnv(generator=tiny_ode_sampler, reward_model=None), beta=0.5)
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs["prev_action"], np.zeros(2, np.float32))
    obs, *_ = env.step(np.array([2.0, -2.0], np.float32))
    assert np.allclose(obs["prev_action"], [2.0, -2.0])  # s_0 = u_0
    obs, *_ = env.step(np.array([0.0, 0.0], np.float32))
    assert np.allclose(obs["prev_action"], [1.0, -1.0])  # 0.5 * 2 + 0.5 * 0
    assert obs in env.observation_space


def test_vector_filter_restarts_after_autoreset(tiny_ode_sampler) -> None:
    envs = VectorActionSmoothing(SiTVectorEnv(num_envs=3, generator=tiny_ode_sampler, reward_model=None), beta=0.8)
    envs.reset(seed=0)
    ones = np.ones((3, 2), np.float32)
    for _ in range(tiny_ode_sampler.horizon):
        obs, _, terminated, _, _ = envs.step(ones)
    assert terminated.all()
    obs, *_ = envs.step(5 * ones)  # autoreset call: action ignored, filter cleared
    assert (obs["step"] == 0).all() and np.array_equal(obs["prev_action"], np.zeros((3, 2), np.float32))
    obs, *_ = envs.step(ones)
    assert np.allclose(obs["prev_action"], 1.0)  # first step of the new episode is not attenuated


@pytest.mark.parametrize("beta", [-0.1, 1.0, 2, "0.5"])
def test_invalid_beta(beta, tiny_ode_sampler) -> None:
    with pytest.raises(InvalidArgument, match=r"interval \[0, 1\)"):
        ActionSmoothing(SiTEnv(generator=tiny_ode_sampler, reward_model=None), beta=beta)


def test_nan_action_raises(tiny_ode_sampler) -> None:
    env = ActionSmoothing(SiTEnv(generator=tiny_ode_sampler, reward_model=None), beta=0.8)
    env.reset(seed=0)
    with pytest.raises(InvalidKnobValue, match="not finite"):
        env.step(np.array([np.inf, 0.0], np.float32))


@pytest.mark.parametrize("shape", [(2,), (1, 2), (3, 1), (3, 2, 1)])
def test_vector_smoothing_refuses_actions_the_env_would_refuse(shape) -> None:
    import gymnasium as gym

    envs = VectorActionSmoothing(gym.make_vec("AdaGen/SiT-v0", num_envs=3, num_steps=2, reward_model=None), beta=0.5)
    envs.reset(seed=0)
    with pytest.raises(InvalidKnobValue, match=r"shape \(3, 2\)"):
        envs.step(np.zeros(shape, np.float32))
