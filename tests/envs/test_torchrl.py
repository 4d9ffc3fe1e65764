"""TorchRL, a consumer no one here wrote: `GymEnv(id)` and `GymWrapper(gym.make_vec(id, N))` pass its spec check."""

from __future__ import annotations

import gymnasium as gym
import pytest

import adagen_env  # noqa: F401  (registers the ids)
from adagen_env.envs import ENVIRONMENTS

torchrl = pytest.importorskip("torchrl", reason="torchrl is not installed (it is in the `dev` and `torchrl` extras)")
from torchrl.envs import GymEnv, GymWrapper  # noqa: E402
from torchrl.envs.utils import check_env_specs  # noqa: E402

STEPS = {"AdaGen/VAR-v0": {}}  # VAR takes one step per scale


@pytest.mark.parametrize("env_id", sorted(ENVIRONMENTS))
def test_torchrl_gym_env_and_vector_wrapper_pass_the_spec_check(env_id: str) -> None:
    kwargs = {"reward_model": None, **STEPS.get(env_id, {"num_steps": 2})}
    env = GymEnv(env_id, **kwargs)
    check_env_specs(env)
    rollout = env.rollout(6)
    assert rollout["next", "done"].any()
    # TorchRL's wrapper takes vector envs that do not reset on their own ("disabled"; it refuses next-step).
    venv = GymWrapper(gym.make_vec(env_id, num_envs=4, autoreset_mode="disabled", **kwargs))
    check_env_specs(venv)
    rollout = venv.rollout(2)  # every horizon here is >= 2
    assert rollout["features"].shape[:2] == (4, 2)
