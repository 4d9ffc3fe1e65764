"""The recipes for other RL libraries (examples/): each trains a few updates on a tiny AdaGen/SiT-v0."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import adagen_env  # noqa: F401  (registers the ids)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cleanrl_ppo_trains_and_starts_at_the_baseline(tmp_path) -> None:
    cleanrl = load("cleanrl_ppo")
    envs = gym.make_vec("AdaGen/SiT-v0", num_envs=4, num_steps=2, reward_model=None)
    untrained = cleanrl.Agent(envs, hidden=32, action_std=0.6)
    obs, _ = envs.reset(seed=0)
    mean = untrained.actor_mean(untrained.actor_trunk(cleanrl.to_torch(obs, envs.unwrapped.horizon)))
    assert torch.equal(mean, torch.zeros_like(mean))  # the deterministic action is u = 0: the baseline

    args = cleanrl.Args(
        num_envs=4,
        num_steps=2,
        total_updates=2,
        episodes_per_update=1,
        update_epochs=1,
        num_minibatches=1,
        hidden=32,
        logdir=str(tmp_path / "tb"),
    )
    agent, history = cleanrl.main(args)
    assert len(history["reward"]) == 2 and all(0 < r < 1 for r in history["reward"])  # sigmoid of D's logit
    assert all(math.isfinite(loss) for loss in history["policy_loss"])
    assert agent.actor_mean.weight.abs().sum() > 0  # the action head learned
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


def test_torchrl_ppo_trains_and_starts_at_the_baseline() -> None:
    pytest.importorskip("torchrl", reason="torchrl is not installed (the `dev` and `torchrl` extras)")
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    torchrl_ppo = load("torchrl_ppo")
    args = torchrl_ppo.Args(
        num_envs=4, num_steps=2, total_updates=2, episodes_per_update=1, update_epochs=1, num_minibatches=1, hidden=32
    )
    actor, history = torchrl_ppo.main(args)
    assert len(history["reward"]) == 2 and all(0 < r < 1 for r in history["reward"])
    assert all(math.isfinite(loss) for loss in history["loss_objective"])
    head = actor.module[0].module.trunk.head
    assert head.weight.abs().sum() > 0  # the action head learned

    # The untrained actor's deterministic action is u = 0, the baseline.
    envs, env = torchrl_ppo.make_env(torchrl_ppo.Args(num_envs=4, num_steps=2, reward_model="classifier"))
    fresh, _ = torchrl_ppo.make_modules(envs, env, args)
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        action = fresh(env.reset())["action"]
    assert action.shape == (4, 2) and torch.equal(action, torch.zeros_like(action))
