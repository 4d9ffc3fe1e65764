"""Inference-time refinement with a training run's by-products: best-of-K by its discriminator, value lookahead by
its critic.

    adagen eval --policy runs/.../checkpoint.zip --schedule baseline --best-of 4 --lookahead 4

Both spend K times the policy's NFE on every image they keep, and `Generation.nfe` counts all of it, so a refined
row compares only with rows of the same total NFE: the baseline's best-of-K by the same discriminator (which
`adagen eval --schedule baseline` adds), or a schedule with K times the steps.

* **best-of-K** (`best_of_k`): the K candidates of every label run side by side in one env of K x B lanes
  (candidate c of label i in lane i K + c, so they differ by their noise), and the one the discriminator scores
  highest is kept.
* **value lookahead** (`lookahead`): every label has a set of K lanes that share one state. At each step lane c of
  a set takes candidate action c (c = 0 the policy's mean, the others drawn from its Gaussian), all K x B lanes
  step at once, and the candidate whose next state the critic values highest is copied to every lane of its set
  (`AdaGenVectorEnv.select_lanes`: state and noise stream). The critic (gamma 1) predicts the final reward but never
  saw a finished state, so the last step is chosen by the discriminator's score of the finished images. In the
  token paradigms (MaskGIT, VAR) the candidates also differ by their sampling draws; in DiT / SiT by the action only.

The scorer is the run's own reward, frozen (`load_scorer`): the trained discriminator that the policy file carries
(`agents.checkpoint.read_discriminator`: an `adagen export` keeps it as a safetensors entry, a training checkpoint in
its run state), or a frozen reward rebuilt by its name.

Letters: B labels per env batch, K candidates, N images, H horizon, A action size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.rewards import AdversarialReward, RewardModel, make_reward_model
from adagen_env.samplers import make_generator
from agents.checkpoint import read_discriminator, read_meta
from agents.rollout import Generation, Predictor, batch_seed, generate


def load_scorer(policy_path: str | Path, num_classes: int, resolution: int, device: str = "cpu") -> RewardModel:
    """The reward of the run that trained `policy_path`, frozen (`training` False): its trained discriminator when
    the reward learned online, else the frozen reward rebuilt by name.

    Raises:
        CheckpointError: the file records no reward, or its online reward's discriminator is not in it (a
            `best_model.zip`, or an export written before exports kept it), or the weights do not fit.
    """
    meta = read_meta(policy_path)
    name = meta.get("reward_model")
    if not isinstance(name, str):
        raise CheckpointError(f"{str(policy_path)!r} does not record the reward it was trained with")
    reward = make_reward_model(name, num_classes, resolution, device)
    if isinstance(reward, AdversarialReward):
        found = read_discriminator(policy_path)
        if found is None:
            raise CheckpointError(
                f"{str(policy_path)!r} holds no trained discriminator (a best_model.zip, or an "
                "export written before exports kept it): refine with the run's checkpoint.zip, "
                "or `adagen export` it again"
            )
        architecture, weights = found
        try:
            if architecture != reward.architecture:
                raise ValueError(f"architecture {architecture!r}, the reward {name!r} uses {reward.architecture!r}")
            reward.discriminator.load_state_dict(weights)
        except (ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{str(policy_path)!r}: its discriminator does not fit the reward {name!r}: {exc}"
            ) from exc
    reward.training = False
    return reward


def keep_best(scores: torch.Tensor | np.ndarray, k: int) -> torch.Tensor:
    """(N K,) scores of N candidate sets of K in a row -> (N,) int64 index into the N K candidates of each set's
    highest-scoring one (its first on ties).

    Raises:
        InvalidArgument: k < 1, or a score count that is no multiple of k.
    """
    scores = torch.as_tensor(scores).reshape(-1)
    if k < 1 or scores.numel() % k:
        raise InvalidArgument(f"keep_best needs k >= 1 dividing the {scores.numel()} scores, got k={k}")
    grouped = scores.reshape(-1, k)
    return grouped.argmax(dim=1).cpu() + torch.arange(grouped.shape[0]) * k


def _check_lanes(env: VectorEnv, k: int) -> int:
    """B = lanes / k; `InvalidArgument` unless k >= 1 divides the env's lanes."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1 or env.num_envs % k:
        raise InvalidArgument(f"k must be an int >= 1 that divides the env's {env.num_envs} lanes, got {k!r}")
    return env.num_envs // k


@torch.no_grad()
def score_images(scorer: RewardModel, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) float32 CPU scores of (N, 3, R, R) images with (N,) labels, `batch_size` at a time."""
    parts = [
        scorer.score(images[i : i + batch_size], labels[i : i + batch_size]).float().cpu()
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(parts)


@torch.no_grad()
def best_of_k(
    policy: Predictor, env: VectorEnv, labels: torch.Tensor | np.ndarray, seed: int, k: int, scorer: RewardModel
) -> Generation:
    """`generate`'s run of K candidates per label on `env` (K x B lanes, `generate`'s seeds per batch of K B
    candidates), keeping each label's candidate that `scorer` scores highest.

    Args:
        policy: an SB3 model or `ZeroPolicy`, run deterministically.
        env: an evaluation env (`agents.evaluate.eval_env`) whose lanes k divides.
        labels: (N,) class ids.
        seed: sampling seed.
        k: candidates per label.
        scorer: scores finished images (`load_scorer`).

    Returns:
        The N kept images with their knobs; `nfe` is K times a candidate's, and on a compute-aware env each image's
        `sample_nfe` the sum of what its K candidates spent.

    Raises:
        InvalidArgument: k does not divide the env's lanes.
    """
    _check_lanes(env, k)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    candidates = generate(policy, env, labels.repeat_interleave(k), seed)
    keep = keep_best(score_images(scorer, candidates.images, candidates.labels, env.num_envs), k)
    spent = None if candidates.sample_nfe is None else candidates.sample_nfe.reshape(-1, k).sum(axis=1)
    return Generation(candidates.images[keep], labels, candidates.knobs[keep.numpy()], candidates.nfe * k, spent)


def _take(obs: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[index] for key, value in obs.items()}


def _candidate_actions(
    policy: Any, obs: dict[str, np.ndarray], k: int, draws: torch.Generator, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """(K B, A) actions: in each set of K lanes the policy's mean first, then K - 1 draws from its Gaussian."""
    distribution = policy.get_distribution(policy.obs_to_tensor(obs)[0]).distribution
    if not isinstance(distribution, torch.distributions.Normal):
        raise InvalidArgument(f"value lookahead needs a Gaussian policy, got a {type(distribution).__name__}")
    mean, std = distribution.mean.cpu(), distribution.stddev.cpu()  # (K B, A)
    noise = torch.randn(mean.shape, generator=draws)
    noise.view(-1, k, mean.shape[-1])[:, 0] = 0
    return np.clip((mean + std * noise).numpy(), low, high).astype(np.float32)


@torch.no_grad()
def lookahead(
    model: Any, env: VectorEnv, labels: torch.Tensor | np.ndarray, seed: int, k: int, scorer: RewardModel | None = None
) -> Generation:
    """Value lookahead (see the module docstring): at each step K candidate actions per label on K x B lanes, the
    critic's (last step: `scorer`'s) favourite continued in every lane of its set.

    Args:
        model: an SB3 PPO or A2C model (a Gaussian actor and a state-value critic).
        env: an evaluation env (`agents.evaluate.eval_env`) whose lanes k divides, with `select_lanes`.
        labels: (N,) class ids; batch b takes labels [b B, (b + 1) B) and resets with `batch_seed(seed, b)`.
        seed: sampling seed (also of the candidate actions' draws).
        k: candidates per step; k = 1 reproduces `generate` on an env of B lanes.
        scorer: picks the last step's candidate from the finished images; None: the mean action's (candidate 0).

    Returns:
        The N kept images and the knobs their lanes applied; `nfe` is K times one episode's, and on a compute-aware
        env each image's `sample_nfe` the sum of what the K lanes of its set spent.

    Raises:
        InvalidArgument: k does not divide the lanes, the env cannot select lanes, or the model has no Gaussian
            actor with a state-value critic (SAC, TD3, recurrent policies).
    """
    from stable_baselines3.common.policies import ActorCriticPolicy

    b = _check_lanes(env, k)
    policy = getattr(model, "policy", None)
    if not isinstance(policy, ActorCriticPolicy) or hasattr(policy, "lstm_actor"):
        raise InvalidArgument(
            "value lookahead needs a PPO or A2C model (a Gaussian actor and a state-value critic, "
            f"not recurrent), got {type(model).__name__}"
        )
    if not hasattr(env, "select_lanes"):
        raise InvalidArgument(
            f"value lookahead needs an env with select_lanes (an AdaGen env, optionally smoothed), "
            f"got {type(env).__name__}"
        )
    policy.set_training_mode(False)
    low, high = env.single_action_space.low, env.single_action_space.high
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    compute_aware = bool(getattr(env.unwrapped, "stop_knob", False))
    images, knobs, spent, nfe = [], [], [], 0
    for start in range(0, labels.shape[0], b):
        chunk = labels[start : start + b]
        padded = torch.cat([chunk, chunk.new_zeros(b - chunk.shape[0])])
        batch = batch_seed(seed, start // b)
        obs, _ = env.reset(seed=batch, options={"labels": padded.repeat_interleave(k).numpy()})
        shared = np.repeat(np.arange(b) * k, k)  # every lane of a set starts from the set's first lane
        env.select_lanes(shared)
        obs = _take(obs, shared)
        draws = make_generator(batch)
        steps, nfe, done = [], 0, False
        sets = np.zeros(b, dtype=np.int64)  # (B,) NFE the K lanes of each set spent together
        while not done:
            actions = _candidate_actions(policy, obs, k, draws, low, high)
            obs, _, terminated, truncated, info = env.step(actions)
            nfe += int(info["nfe"][0])
            sets += info["nfe"].reshape(b, k).sum(axis=1)
            done = bool(np.all(terminated | truncated))
            if not done:
                values = policy.predict_values(policy.obs_to_tensor(obs)[0]).flatten()
            elif scorer is not None:
                values = scorer.score(torch.from_numpy(info["final_images"]), padded.repeat_interleave(k)).float()
            else:
                values = torch.zeros(env.num_envs)
            best = keep_best(values, k).numpy()  # (B,) lanes of the chosen candidates
            steps.append(info["knobs"][best])
            if not done:
                chosen = np.repeat(best, k)
                env.select_lanes(chosen)
                obs = _take(obs, chosen)
        if "final_images" not in info:
            raise InvalidArgument("lookahead() needs an env built with return_images=True")
        images.append(torch.from_numpy(info["final_images"][best][: chunk.shape[0]]))
        table = np.stack(steps, axis=1)[: chunk.shape[0]]  # (B, steps, knobs): fewer than H when every lane stopped
        knobs.append(
            np.pad(table, ((0, 0), (0, env.unwrapped.horizon - table.shape[1]), (0, 0)), constant_values=np.nan)
        )
        spent.append(sets[: chunk.shape[0]])
    if compute_aware:
        episode = env.unwrapped.sampler.episode_nfe
        return Generation(torch.cat(images), labels, np.concatenate(knobs), episode * k, np.concatenate(spent))
    return Generation(torch.cat(images), labels, np.concatenate(knobs), nfe * k)


__all__ = ["best_of_k", "keep_best", "load_scorer", "lookahead", "score_images"]
