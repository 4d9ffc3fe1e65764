"""Algorithm table and default hyperparameters: PPO from the anchor (AdaNAT), and the other SB3 algorithms.

Default PPO preset, against AdaNAT's `scripts/run_zh.sh` / `PPO.py`:

| setting | here | anchor | note |
|---|---|---|---|
| exploration std | 0.6 fixed, -> 0.3 after `decay_after` updates | 0.6 -> 0.3 at update 500 | `StdSchedule` callback |
| clip_range | 0.2 | 0.2 | |
| vf_coef | 0.5 | 0.5 | |
| ent_coef | 0 | 0.01 on a fixed std (no gradient) | same effect |
| gamma, gae_lambda | 1, 1 | 1, Monte-Carlo returns | every step's return is the terminal reward |
| n_steps | `episodes_per_update` (2) whole episodes = 2 H | 4096 trajectories per update | a multiple of H |
| n_epochs | 5 | 5 | |
| batch_size | n_steps * n_envs / `minibatches` (4) | whole buffer, one step per epoch | more steps per update |
| learning_rate | 1e-4 | 1e-5 (12M-parameter net, 1000 updates) | our net is ~40x smaller and trains for fewer updates |
| advantages | normalised per minibatch | returns normalised over the buffer | |
| max_grad_norm | 10 | none | a guard against blow-ups only |

Every value is overridable (`overrides` of `make_model`, `--algo-kwargs` of `adagen train`); two extra keys
set on-policy rollout sizes in episodes: `episodes_per_update` and `minibatches`.
One *update* is one rollout plus its training for on-policy algorithms, and one episode of every lane
(H * B timesteps) for off-policy ones (`timesteps_per_update`); step counters, checkpoints, evaluation and the
std decay all count updates.

Letters: B lanes, H horizon, A action dims.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import VecEnv

from adagen_env.envs.base import ACTION_LIMIT
from adagen_env.errors import InvalidArgument
from agents.policies import DEFAULT_ACTION_STD, AdaGenExtractor, AdaGenPolicy, AdaGenRecurrentPolicy, zero_actor_output


def _recurrent_ppo() -> type[BaseAlgorithm]:
    from sb3_contrib import RecurrentPPO

    return RecurrentPPO


@dataclass(frozen=True)
class Algorithm:
    """One row of `ALGORITHMS`.

    Args:
        name: the `--algo` value.
        load_cls: returns the SB3 class (a function, so optional libraries load only when used).
        policy: the policy class or SB3 alias.
        on_policy: rollouts of whole episodes then training (PPO, A2C) vs a replay buffer (SAC, TD3).
        defaults: (horizon H, lanes B, action dims A) -> constructor keyword arguments.
    """

    name: str
    load_cls: Callable[[], type[BaseAlgorithm]]
    policy: Any
    on_policy: bool
    defaults: Callable[[int, int, int], dict[str, Any]]


def _ppo_defaults(horizon: int, num_envs: int, action_dim: int) -> dict[str, Any]:
    return {
        "learning_rate": 1e-4,
        "episodes_per_update": 2,
        "minibatches": 4,
        "n_epochs": 5,
        "gamma": 1.0,
        "gae_lambda": 1.0,
        "clip_range": 0.2,
        "vf_coef": 0.5,
        "ent_coef": 0.0,
        "max_grad_norm": 10.0,
        "normalize_advantage": True,
    }


def _a2c_defaults(horizon: int, num_envs: int, action_dim: int) -> dict[str, Any]:
    return {
        "learning_rate": 1e-4,
        "episodes_per_update": 1,
        "gamma": 1.0,
        "gae_lambda": 1.0,
        "vf_coef": 0.5,
        "ent_coef": 0.0,
        "max_grad_norm": 10.0,
    }


def _off_policy_defaults(horizon: int, num_envs: int, action_dim: int) -> dict[str, Any]:
    return {
        "learning_rate": 3e-4,
        "buffer_size": 10_000,  # transitions; the features make each one ~2 x 32 KB at C=128, 8x8
        "learning_starts": horizon * num_envs,
        "batch_size": 256,
        "gamma": 1.0,
        "policy_kwargs": {"features_extractor_class": AdaGenExtractor, "net_arch": {"pi": [], "qf": [256, 256]}},
    }


def _td3_defaults(horizon: int, num_envs: int, action_dim: int) -> dict[str, Any]:
    # TD3 acts in the Box rescaled to [-1, 1]: the anchor's std 0.6 (raw units) is 0.6 / ACTION_LIMIT there.
    sigma = DEFAULT_ACTION_STD / ACTION_LIMIT
    return dict(
        _off_policy_defaults(horizon, num_envs, action_dim),
        action_noise=NormalActionNoise(np.zeros(action_dim), np.full(action_dim, sigma)),
        target_policy_noise=sigma,
        target_noise_clip=2.5 * sigma,
    )


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm("ppo", lambda: PPO, AdaGenPolicy, True, _ppo_defaults),
    "a2c": Algorithm("a2c", lambda: A2C, AdaGenPolicy, True, _a2c_defaults),
    "recurrent_ppo": Algorithm("recurrent_ppo", _recurrent_ppo, AdaGenRecurrentPolicy, True, _ppo_defaults),
    "sac": Algorithm("sac", lambda: SAC, "MultiInputPolicy", False, _off_policy_defaults),
    "td3": Algorithm("td3", lambda: TD3, "MultiInputPolicy", False, _td3_defaults),
}
"""`--algo` name -> algorithm (like DiT's `DiT_models` table)."""


def get_algorithm(name: str) -> Algorithm:
    """The `ALGORITHMS` row for `name`, or `InvalidArgument` with a suggestion."""
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(str(name), list(ALGORITHMS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidArgument(f"unknown algorithm {name!r}; valid: {list(ALGORITHMS)}.{hint}")
    return ALGORITHMS[name]


def resolve_hyperparameters(
    algo: str, horizon: int, num_envs: int, action_dim: int, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The constructor keyword arguments of `algo`: its defaults updated by `overrides`.

    `policy_kwargs` are merged key by key; `episodes_per_update` / `minibatches` become `n_steps` /
    `batch_size` unless those are given.

    Raises:
        InvalidArgument: an unknown key, or an `n_steps` that is not a whole number of episodes.
    """
    spec = get_algorithm(algo)
    cls = spec.load_cls()
    kwargs = spec.defaults(horizon, num_envs, action_dim)
    overrides = dict(overrides or {})
    valid = set(inspect.signature(cls.__init__).parameters) - {"self", "policy", "env"}
    if spec.on_policy:
        valid |= {"episodes_per_update", "minibatches"}
    for key in overrides:
        if key not in valid:
            close = difflib.get_close_matches(key, sorted(valid), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidArgument(f"{key!r} is not a hyperparameter of {algo}; valid: {sorted(valid)}.{hint}")
    policy_kwargs = {**kwargs.pop("policy_kwargs", {}), **overrides.pop("policy_kwargs", {})}
    kwargs.update(overrides)
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    if spec.on_policy:
        episodes = kwargs.pop("episodes_per_update", 1)
        minibatches = kwargs.pop("minibatches", 1)
        kwargs.setdefault("n_steps", episodes * horizon)
        if kwargs["n_steps"] % horizon:
            raise InvalidArgument(
                "n_steps must be a whole number of episodes: "
                f"a multiple of the horizon {horizon}, got {kwargs['n_steps']}"
            )
        if "batch_size" in inspect.signature(cls.__init__).parameters:
            rollout = kwargs["n_steps"] * num_envs
            kwargs.setdefault("batch_size", min(rollout, max(2, rollout // minibatches)))  # SB3 PPO needs >= 2
    return kwargs


def make_model(
    algo: str,
    env: VecEnv,
    horizon: int,
    overrides: dict[str, Any] | None = None,
    seed: int | None = None,
    device: str = "cpu",
    verbose: int = 0,
) -> BaseAlgorithm:
    """Build `algo` on an SB3 VecEnv of an AdaGen env, with the preset and `overrides`.

    The untrained deterministic policy of every algorithm outputs u = 0 (the baseline schedule): the on-policy
    ones through `AdaGenPolicy`, SAC and TD3 by zeroing the actor's last layer.
    """
    spec = get_algorithm(algo)
    kwargs = resolve_hyperparameters(algo, horizon, env.num_envs, int(np.prod(env.action_space.shape)), overrides)
    model = spec.load_cls()(spec.policy, env, seed=seed, device=device, verbose=verbose, **kwargs)
    if not spec.on_policy:
        zero_actor_output(model)
    return model


def timesteps_per_update(model: BaseAlgorithm, horizon: int) -> int:
    """SB3 timesteps of one update: a rollout (on-policy) or one episode of every lane (off-policy)."""
    n_steps = getattr(model, "n_steps", None)
    if n_steps is not None and not hasattr(model, "replay_buffer"):
        return int(n_steps) * model.n_envs
    return horizon * model.n_envs
