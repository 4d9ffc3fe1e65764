"""PPO on an AdaGen env with TorchRL (0.14): `GymWrapper` over the native batch, `Collector`, `GAE`, `ClipPPOLoss`.

The env is `gym.make_vec`'s native batch with autoreset off (TorchRL's `GymWrapper` resets a batched env itself) and
the paradigm's action smoothing; one discriminator inside it scores and learns from every lane. The policy is the
project's: `AdaGenExtractor` trunks for actor and critic, a zero-initialised action head and a fixed std, so the
untrained deterministic policy is the baseline schedule.

    python examples/torchrl_ppo.py --env-id AdaGen/SiT-v0 --num-envs 16 --total-updates 50

Letters: B lanes, T steps per collected batch (episodes_per_update x H), H horizon, A controlled knobs.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields

import gymnasium as gym
import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, ReplayBuffer
from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
from torchrl.envs import GymWrapper
from torchrl.modules import IndependentNormal, ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import GAE

import adagen_env  # noqa: F401  (registers the AdaGen ids)
from adagen_env.wrappers import VectorActionSmoothing
from agents.policies import AdaGenExtractor


@dataclass
class Args:
    env_id: str = "AdaGen/SiT-v0"
    """the AdaGen env id"""
    num_envs: int = 16
    """lanes B"""
    num_steps: int = 4
    """generator steps (SiT / DiT horizon H = num_steps + 1)"""
    reward_model: str = "adversarial-projected"
    """the env's reward"""
    total_updates: int = 50
    """PPO updates (collected batches)"""
    episodes_per_update: int = 2
    """whole episodes of every lane per batch"""
    learning_rate: float = 1e-4
    update_epochs: int = 5
    num_minibatches: int = 4
    clip_coef: float = 0.2
    vf_coef: float = 0.5
    max_grad_norm: float = 10.0
    action_std: float = 0.6
    """fixed exploration std, raw residual units"""
    hidden: int = 128
    seed: int = 0


class Trunk(nn.Module):
    """An `AdaGenExtractor` and a linear head, called with the observation's tensors in `keys` order.

    `step` comes from TorchRL as an index (B,) (or (B, T)) and is one-hot encoded to (..., H) here.
    """

    def __init__(self, space: gym.spaces.Dict, keys: list[str], hidden: int, out: int, zero_head: bool) -> None:
        super().__init__()
        self.keys, self.horizon = keys, int(space["step"].n)
        self.trunk = AdaGenExtractor(space, hidden=hidden)
        self.head = nn.Linear(hidden, out)
        if zero_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        obs = dict(zip(self.keys, tensors))
        lead = obs["features"].shape[:-3]  # (B,) or (B, T)
        flat = {key: value.reshape(-1, *value.shape[len(lead) :]) for key, value in obs.items()}
        flat["features"] = flat["features"].float()
        flat["step"] = nn.functional.one_hot(flat["step"].reshape(-1).long(), self.horizon).float()
        return self.head(self.trunk(flat)).reshape(*lead, -1)


class Actor(nn.Module):
    """Observation tensors -> (loc, scale) of a Normal with a fixed std."""

    def __init__(self, trunk: Trunk, action_std: float) -> None:
        super().__init__()
        self.trunk = trunk
        self.register_buffer("log_std", torch.tensor(math.log(action_std)))

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc = self.trunk(*tensors)
        return loc, self.log_std.exp().expand_as(loc)


def make_env(args: Args) -> tuple[gym.vector.VectorEnv, GymWrapper]:
    """The native batch, autoreset off, under the paradigm's action smoothing; and it as a TorchRL env of batch [B]."""
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        num_steps=args.num_steps,
        reward_model=args.reward_model,
        autoreset_mode="disabled",
    )
    envs = VectorActionSmoothing(envs, beta=type(envs.unwrapped).default_smoothing)
    envs.autoreset_mode = envs.unwrapped.autoreset_mode  # GymWrapper reads it; Gymnasium's wrappers do not forward it
    return envs, GymWrapper(envs)


def make_modules(envs: gym.vector.VectorEnv, env: GymWrapper, args: Args) -> tuple[ProbabilisticActor, ValueOperator]:
    """The actor (zero head: its deterministic action is u = 0) and the critic, reading every observation key."""
    space = envs.single_observation_space  # the Gymnasium space: its Discrete step gives H
    keys = sorted(space.spaces)
    actor = ProbabilisticActor(
        TensorDictModule(
            Actor(Trunk(space, keys, args.hidden, env.action_spec.shape[-1], zero_head=True), args.action_std),
            in_keys=keys,
            out_keys=["loc", "scale"],
        ),
        in_keys=["loc", "scale"],
        spec=env.action_spec,
        distribution_class=IndependentNormal,
        return_log_prob=True,
    )
    critic = ValueOperator(Trunk(space, keys, args.hidden, 1, zero_head=False), in_keys=keys)
    return actor, critic


def main(args: Args) -> tuple[ProbabilisticActor, dict[str, list[float]]]:
    """Train; returns the actor and per-update `reward` (mean terminal reward) and `loss_objective`."""
    torch.manual_seed(args.seed)
    envs, env = make_env(args)
    env.set_seed(args.seed)
    actor, critic = make_modules(envs, env, args)
    horizon = envs.unwrapped.horizon

    frames = args.episodes_per_update * horizon * args.num_envs  # one frame: one lane's step
    collector = Collector(env, actor, frames_per_batch=frames, total_frames=frames * args.total_updates)
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(frames),
        sampler=SamplerWithoutReplacement(),
        batch_size=frames // args.num_minibatches,
    )
    advantage = GAE(gamma=1.0, lmbda=1.0, value_network=critic, average_gae=True)
    loss_module = ClipPPOLoss(
        actor,
        critic,
        clip_epsilon=args.clip_coef,
        entropy_bonus=False,
        critic_coeff=args.vf_coef,
        loss_critic_type="l2",
        normalize_advantage=True,
    )
    optimizer = torch.optim.Adam(loss_module.parameters(), lr=args.learning_rate)

    history: dict[str, list[float]] = {"reward": [], "loss_objective": []}
    for update, batch in enumerate(collector, start=1):  # batch: (B, T)
        for _ in range(args.update_epochs):
            with torch.no_grad():
                advantage(batch)
            buffer.extend(batch.reshape(-1))
            for _ in range(args.num_minibatches):
                losses = loss_module(buffer.sample())
                loss = losses["loss_objective"] + losses["loss_critic"]
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(loss_module.parameters(), args.max_grad_norm)
                optimizer.step()
        collector.update_policy_weights_()
        done = batch["next", "done"].squeeze(-1)
        reward = batch["next", "reward"].squeeze(-1)[done].mean().item()
        history["reward"].append(reward)
        history["loss_objective"].append(losses["loss_objective"].item())
        print(f"update {update}: terminal reward {reward:.3f}")
    collector.shutdown()
    env.close()
    return actor, history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for spec in fields(Args):
        parser.add_argument("--" + spec.name.replace("_", "-"), type=type(spec.default), default=spec.default)
    main(Args(**vars(parser.parse_args())))
