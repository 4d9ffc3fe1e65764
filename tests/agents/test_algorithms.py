"""Every algorithm of the table constructs, starts at the baseline and learns a few steps on every paradigm."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import VecMonitor

from adagen_env.errors import InvalidArgument
from adagen_env.wrappers import VectorActionSmoothing
from agents import ALGORITHMS, SB3VecEnv, make_model, resolve_hyperparameters, timesteps_per_update

TINY = {
    "ppo": {"n_epochs": 1},
    "a2c": {},
    "recurrent_ppo": {"n_epochs": 1, "policy_kwargs": {"lstm_hidden_size": 8}},
    "sac": {
        "buffer_size": 64,
        "batch_size": 8,
        "learning_starts": 0,
        "policy_kwargs": {"net_arch": {"pi": [], "qf": [16]}},
    },
    "td3": {
        "buffer_size": 64,
        "batch_size": 8,
        "learning_starts": 0,
        "policy_kwargs": {"net_arch": {"pi": [], "qf": [16]}},
    },
}


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_algorithm_learns_on_every_paradigm(algo: str, tiny_case) -> None:
    env_cls, sampler = tiny_case
    env = env_cls(num_envs=2, generator=sampler, reward_model="adversarial")
    if env_cls.default_smoothing > 0:
        env = VectorActionSmoothing(env, env_cls.default_smoothing)
    venv = VecMonitor(SB3VecEnv(env))
    model = make_model(algo, venv, sampler.horizon, TINY[algo], seed=0)
    obs = venv.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2, venv.action_space.shape[0]) and np.all(actions == 0), (
        "untrained policy must be the baseline"
    )
    tpu = timesteps_per_update(model, sampler.horizon)
    assert tpu % (sampler.horizon * 2) == 0
    model.learn(2 * tpu)
    assert model.num_timesteps == 2 * tpu
    assert len(model.ep_info_buffer) >= 2
    actions, _ = model.predict(venv.reset(), deterministic=True)
    assert np.all(np.isfinite(actions))


def test_ppo_preset_is_the_anchor() -> None:
    kwargs = resolve_hyperparameters("ppo", horizon=9, num_envs=64, action_dim=2)
    assert kwargs["clip_range"] == 0.2 and kwargs["vf_coef"] == 0.5 and kwargs["gamma"] == 1.0
    assert kwargs["gae_lambda"] == 1.0 and kwargs["n_epochs"] == 5
    assert kwargs["n_steps"] % 9 == 0 and kwargs["batch_size"] == kwargs["n_steps"] * 64 // 4
    over = resolve_hyperparameters("ppo", 9, 64, 2, {"episodes_per_update": 3, "minibatches": 1, "learning_rate": 3e-4})
    assert over["n_steps"] == 27 and over["batch_size"] == 27 * 64 and over["learning_rate"] == 3e-4


def test_bad_hyperparameters_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="multiple of the horizon 9"):
        resolve_hyperparameters("ppo", 9, 4, 2, {"n_steps": 10})
    with pytest.raises(InvalidArgument, match="Did you mean 'n_epochs'"):
        resolve_hyperparameters("ppo", 9, 4, 2, {"n_epoch": 3})
    with pytest.raises(InvalidArgument, match="Did you mean 'ppo'"):
        resolve_hyperparameters("ppoo", 9, 4, 2)
