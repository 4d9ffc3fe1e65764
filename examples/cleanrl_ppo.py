"""PPO on an AdaGen env in one file, CleanRL style (read it like CleanRL's `ppo_continuous_action.py`).

The env is `gym.make_vec`'s native batch (one generator forward per step for every lane) with autoreset off: all
lanes run in lock step and end together after H steps, so a rollout is a few whole episodes, each started by one
`reset`. The reward is 0 until the last step, then the online discriminator's score of each finished image; the
discriminator learns from every lane of each batch, inside the env. The policy is the project's: two
`AdaGenExtractor` trunks (actor, critic), a zero-initialised action head and a fixed exploration std, so the
untrained deterministic policy is the baseline schedule.

    python examples/cleanrl_ppo.py --env-id AdaGen/SiT-v0 --num-envs 16 --total-updates 50

Letters: T steps in a rollout (episodes_per_update x H), B lanes, H horizon, A controlled knobs.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass, fields

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import adagen_env  # noqa: F401  (registers the AdaGen ids)
from adagen_env.wrappers import VectorActionSmoothing
from agents.policies import AdaGenExtractor


@dataclass
class Args:
    env_id: str = "AdaGen/SiT-v0"
    """the AdaGen env id"""
    num_envs: int = 16
    """lanes B: images per generator forward"""
    num_steps: int = 4
    """generator steps (SiT / DiT horizon H = num_steps + 1)"""
    reward_model: str = "adversarial-projected"
    """the env's reward (adagen_env.rewards.REWARD_MODELS)"""
    total_updates: int = 50
    """PPO updates"""
    episodes_per_update: int = 2
    """whole episodes of every lane per rollout"""
    learning_rate: float = 1e-4
    """Adam learning rate"""
    update_epochs: int = 5
    """epochs over each rollout"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    gamma: float = 1.0
    """discount (1: every step's return is the terminal reward)"""
    gae_lambda: float = 1.0
    """GAE lambda"""
    clip_coef: float = 0.2
    """PPO's clip range"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 10.0
    """gradient norm clip"""
    action_std: float = 0.6
    """fixed exploration std, raw residual units"""
    hidden: int = 128
    """trunk width D"""
    seed: int = 0
    """seeds Python, NumPy, torch and the env"""
    logdir: str = "runs/cleanrl_ppo"
    """tensorboard folder ("" for none)"""


class Agent(nn.Module):
    """Actor and critic, each on its own `AdaGenExtractor` trunk; Normal(mean, fixed std) over the residuals."""

    def __init__(self, envs: gym.vector.VectorEnv, hidden: int, action_std: float) -> None:
        super().__init__()
        space = envs.single_observation_space
        action_dim = envs.single_action_space.shape[0]
        self.horizon = int(space["step"].n)
        self.actor_trunk = AdaGenExtractor(space, hidden=hidden)
        self.critic_trunk = AdaGenExtractor(space, hidden=hidden)
        self.actor_mean = nn.Linear(hidden, action_dim)
        nn.init.zeros_(self.actor_mean.weight)  # u = 0: the baseline schedule
        nn.init.zeros_(self.actor_mean.bias)
        self.critic = nn.Linear(hidden, 1)
        self.register_buffer("actor_logstd", torch.full((action_dim,), math.log(action_std)))

    def get_value(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.critic(self.critic_trunk(obs)).squeeze(-1)  # (N,)

    def get_action_and_value(self, obs: dict[str, torch.Tensor], action: torch.Tensor | None = None):
        mean = self.actor_mean(self.actor_trunk(obs))  # (N, A)
        dist = torch.distributions.Normal(mean, self.actor_logstd.exp().expand_as(mean))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action).sum(-1), self.get_value(obs)


def to_torch(obs: dict[str, np.ndarray], horizon: int) -> dict[str, torch.Tensor]:
    """The env's observation -> the trunk's input: float features, the step one-hot (B, H), prev_action if any."""
    out = {key: torch.as_tensor(value).float() for key, value in obs.items() if key != "step"}
    out["step"] = nn.functional.one_hot(torch.as_tensor(obs["step"]).long(), horizon).float()
    return out


def main(args: Args) -> tuple[Agent, dict[str, list[float]]]:
    """Train; returns the agent and per-update `reward` (mean terminal reward) and `policy_loss`."""
    # Seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    writer = SummaryWriter(args.logdir) if args.logdir else None

    # Env setup: the native batch, autoreset off (one reset per episode), the paradigm's action smoothing
    envs = gym.make_vec(
        args.env_id,
        num_envs=args.num_envs,
        vectorization_mode="vector_entry_point",
        num_steps=args.num_steps,
        reward_model=args.reward_model,
        autoreset_mode="disabled",
    )
    envs = VectorActionSmoothing(envs, beta=type(envs.unwrapped).default_smoothing)
    horizon, b = envs.unwrapped.horizon, args.num_envs

    agent = Agent(envs, args.hidden, args.action_std)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)

    # Storage: T = episodes_per_update x H steps of B lanes
    t_len = args.episodes_per_update * horizon
    obs_buf: dict[str, torch.Tensor] = {}
    actions = torch.zeros((t_len, b) + envs.single_action_space.shape)
    logprobs, rewards, dones, values = (torch.zeros((t_len, b)) for _ in range(4))
    batch_size = t_len * b
    minibatch_size = batch_size // args.num_minibatches

    history: dict[str, list[float]] = {"reward": [], "policy_loss": []}
    start_time, global_step = time.time(), 0
    for update in range(1, args.total_updates + 1):
        # Rollout: whole episodes; the env's discriminator scores and learns at each episode's last step
        step = 0
        for episode in range(args.episodes_per_update):
            next_obs, _ = envs.reset(seed=args.seed if update == 1 and episode == 0 else None)
            for _ in range(horizon):
                obs = to_torch(next_obs, horizon)
                for key, value in obs.items():
                    obs_buf.setdefault(key, torch.zeros((t_len,) + value.shape))[step] = value
                with torch.no_grad():
                    action, logprob, value = agent.get_action_and_value(obs)
                next_obs, reward, terminated, truncated, _ = envs.step(action.numpy())
                actions[step], logprobs[step], values[step] = action, logprob, value
                rewards[step] = torch.as_tensor(reward)
                dones[step] = torch.as_tensor(terminated | truncated).float()
                step += 1
                global_step += b

        # Advantages (GAE); every rollout ends on a terminal step, so nothing is bootstrapped past it
        with torch.no_grad():
            advantages = torch.zeros_like(rewards)
            lastgaelam = torch.zeros(b)
            for t in reversed(range(t_len)):
                nextnonterminal = 1.0 - dones[t]
                nextvalues = values[t + 1] if t + 1 < t_len else torch.zeros(b)
                delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                advantages[t] = lastgaelam
            returns = advantages + values

        # Flatten the batch
        b_obs = {key: value.reshape((-1,) + value.shape[2:]) for key, value in obs_buf.items()}
        b_actions = actions.reshape((-1,) + envs.single_action_space.shape)
        b_logprobs, b_advantages, b_returns = logprobs.reshape(-1), advantages.reshape(-1), returns.reshape(-1)

        # Optimise the policy and value network
        clipfracs = []
        for _ in range(args.update_epochs):
            order = np.random.permutation(batch_size)
            for start in range(0, batch_size, minibatch_size):
                mb = order[start : start + minibatch_size]
                _, newlogprob, newvalue = agent.get_action_and_value(
                    {k: v[mb] for k, v in b_obs.items()}, b_actions[mb]
                )
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > args.clip_coef).float().mean().item())
                mb_advantages = b_advantages[mb]
                mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                v_loss = 0.5 * ((newvalue - b_returns[mb]) ** 2).mean()
                loss = pg_loss + args.vf_coef * v_loss  # no entropy bonus: the std is fixed
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

        terminal_reward = rewards[dones.bool()].mean().item()
        history["reward"].append(terminal_reward)
        history["policy_loss"].append(pg_loss.item())
        if writer is not None:
            writer.add_scalar("reward/terminal_mean", terminal_reward, global_step)
            writer.add_scalar("losses/policy_loss", pg_loss.item(), global_step)
            writer.add_scalar("losses/value_loss", v_loss.item(), global_step)
            writer.add_scalar("losses/approx_kl", approx_kl.item(), global_step)
            writer.add_scalar("losses/clipfrac", float(np.mean(clipfracs)), global_step)
            writer.add_scalar("charts/SPS", global_step / (time.time() - start_time), global_step)
        print(
            f"update {update}: terminal reward {terminal_reward:.3f}, SPS {global_step / (time.time() - start_time):.0f}"
        )

    envs.close()
    if writer is not None:
        writer.close()
    return agent, history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for spec in fields(Args):
        parser.add_argument("--" + spec.name.replace("_", "-"), type=type(spec.default), default=spec.default)
    main(Args(**vars(parser.parse_args())))
