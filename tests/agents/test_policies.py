"""The AdaLN features extractor and the untrained policy = the baseline schedule, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import tiny_dit  # tests/conftest.py
from gymnasium import spaces
from stable_baselines3.common.preprocessing import preprocess_obs

from adagen_env.envs import DiTVectorEnv
from adagen_env.samplers import DiffusionSampler, make_generator
from adagen_env.wrappers import VectorActionSmoothing
from agents import AdaGenExtractor, AdaGenPolicy, SB3VecEnv, ZeroPolicy, batch_seed, generate, make_model
from agents.policies import AdaLN


def _space(channels: int = 16, grid: int = 8, horizon: int = 5, actions: int = 0) -> spaces.Dict:
    keys = {
        "features": spaces.Box(-np.inf, np.inf, (channels, grid, grid), np.float32),
        "step": spaces.Discrete(horizon),
    }
    if actions:
        keys["prev_action"] = spaces.Box(-10, 10, (actions,), np.float32)
    return spaces.Dict(keys)


@pytest.mark.parametrize("actions", [0, 2])
def test_extractor_shapes_and_zero_init(actions: int) -> None:
    space = _space(actions=actions)
    extractor = AdaGenExtractor(space, hidden=32)
    assert extractor.features_dim == 32
    obs = {key: torch.as_tensor(np.stack([space[key].sample() for _ in range(4)])) for key in space.spaces}
    out = extractor(preprocess_obs(obs, space))
    assert out.shape == (4, 32) and torch.isfinite(out).all()
    adalns = [m for m in extractor.modules() if isinstance(m, AdaLN)]
    assert len(adalns) == 3
    assert all(not m.modulation[-1].weight.any() and not m.modulation[-1].bias.any() for m in adalns)
    # Step conditioning reaches the output once the modulations are trained.
    for m in adalns:
        torch.nn.init.normal_(m.modulation[-1].weight, std=0.1)
    step_obs = dict(obs, step=torch.tensor([0, 1, 2, 3]))
    same_feats = {
        key: value[:1].expand(4, *value.shape[1:]) if key != "step" else value for key, value in step_obs.items()
    }
    out = extractor(preprocess_obs(same_feats, space))
    assert not torch.allclose(out[0], out[1])


def test_extractor_without_step_conditioning_ignores_the_step() -> None:
    space = _space()
    extractor = AdaGenExtractor(space, hidden=16, step_conditioning=False)
    for m in extractor.modules():
        if isinstance(m, AdaLN):
            torch.nn.init.normal_(m.modulation[-1].weight, std=0.1)
    feats = torch.randn(1, 16, 8, 8).expand(5, -1, -1, -1)
    out = extractor(preprocess_obs({"features": feats, "step": torch.arange(5)}, space))
    torch.testing.assert_close(out, out[:1].expand_as(out))


def test_extractor_accepts_buffer_shaped_step() -> None:
    """SB3's rollout buffer stores a Discrete obs as (B, 1): one-hot gives (B, 1, H)."""
    space = _space()
    extractor = AdaGenExtractor(space, hidden=16)
    feats = torch.randn(3, 16, 8, 8)
    flat = extractor(preprocess_obs({"features": feats, "step": torch.tensor([0, 4, 2])}, space))
    nested = extractor(preprocess_obs({"features": feats, "step": torch.tensor([[0], [4], [2]])}, space))
    torch.testing.assert_close(flat, nested)


def test_policy_defaults(tiny_case) -> None:
    env_cls, sampler = tiny_case
    venv = SB3VecEnv(VectorActionSmoothing(env_cls(num_envs=2, generator=sampler, reward_model=None), 0.5))
    model = make_model("ppo", venv, sampler.horizon, seed=0)
    policy = model.policy
    assert isinstance(policy, AdaGenPolicy)
    assert policy.pi_features_extractor is not policy.vf_features_extractor
    assert not policy.action_net.weight.any() and not policy.action_net.bias.any()
    assert not policy.log_std.requires_grad
    torch.testing.assert_close(policy.log_std.exp(), torch.full_like(policy.log_std, 0.6))
    optimised = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
    assert id(policy.log_std) not in optimised
    assert id(policy.action_net.weight) in optimised
    # About 0.3M parameters per trunk at the real sizes (C=128, 8x8); tiny here, but both trunks train.
    assert sum(p.numel() for p in policy.pi_features_extractor.parameters()) > 0


def test_untrained_policy_is_the_baseline_bit_for_bit(tiny_case) -> None:
    env_cls, sampler = tiny_case
    train_env = SB3VecEnv(VectorActionSmoothing(env_cls(num_envs=4, generator=sampler, reward_model=None), 0.8))
    model = make_model("ppo", train_env, sampler.horizon, seed=0)
    eval_env = VectorActionSmoothing(env_cls(num_envs=4, generator=sampler, reward_model=None, return_images=True), 0.8)
    obs, _ = eval_env.reset(seed=0)
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (4, len(sampler.knob_specs)) and np.all(actions == 0)
    labels = torch.tensor([0, 1, 2, 3])
    gen = generate(model, eval_env, labels, seed=5)
    expected = sampler.sample(labels, make_generator(batch_seed(5, 0)))
    assert torch.equal(gen.images, expected)
    zero = generate(ZeroPolicy(len(sampler.knob_specs)), eval_env, labels, seed=5)
    np.testing.assert_array_equal(gen.knobs, zero.knobs)  # the applied (projected) baseline knobs
    assert gen.nfe == zero.nfe == sampler.episode_nfe


def test_log_std_stays_fixed_through_training(tiny_case) -> None:
    env_cls, sampler = tiny_case
    venv = SB3VecEnv(env_cls(num_envs=2, generator=sampler, reward_model="adversarial"))
    model = make_model("ppo", venv, sampler.horizon, {"n_epochs": 2}, seed=0)
    model.learn(model.n_steps * 2)
    assert model.policy.log_std.detach().exp().allclose(torch.tensor(0.6))
    assert math.isclose(float(model.policy.log_std[0]), math.log(0.6), rel_tol=1e-6)
    assert model.policy.action_net.weight.abs().sum() > 0  # the head did learn


@pytest.mark.parametrize("algo", ["a2c", "recurrent_ppo", "sac", "td3"])
def test_every_algorithm_starts_at_the_baseline(algo: str) -> None:
    sampler = DiffusionSampler(tiny_dit(), num_steps=2)
    venv = SB3VecEnv(VectorActionSmoothing(DiTVectorEnv(num_envs=2, generator=sampler, reward_model=None), 0.4))
    small = {"buffer_size": 16} if algo in ("sac", "td3") else {}
    model = make_model(algo, venv, sampler.horizon, small, seed=0)
    eval_env = VectorActionSmoothing(
        DiTVectorEnv(num_envs=2, generator=sampler, reward_model=None, return_images=True), 0.4
    )
    labels = torch.tensor([3, 1, 2])
    gen = generate(model, eval_env, labels, seed=1)  # recurrent policies get their state and episode starts
    zero = generate(ZeroPolicy(2), eval_env, labels, seed=1)
    assert torch.equal(gen.images, zero.images)
