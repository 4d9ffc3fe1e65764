"""Deterministic generation with a policy (or the baseline) on fixed labels and seeds, for evaluation.

Both a trained policy and the baseline schedule run through the same env (same sampler, same NFE), batch by
batch: batch b of a run with seed s resets the env with `batch_seed(s, b)` and labels `labels[b*B:(b+1)*B]`, so
the same (labels, seed) give the same noise to every policy compared.

Letters: B lanes of the env, N images, H horizon, K knobs, R image side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from adagen_env.errors import InvalidArgument
from adagen_env.samplers import Sampler, make_generator


class Predictor(Protocol):
    """What `generate` needs of a policy: SB3's `predict` signature."""

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]: ...


class ZeroPolicy:
    """The baseline schedule as a policy: u = 0 for every lane and step."""

    def __init__(self, action_dim: int) -> None:
        self.action_dim = action_dim

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        return np.zeros((len(observation["step"]), self.action_dim), dtype=np.float32), None


@dataclass
class Generation:
    """What `generate` returns.

    Args:
        images: (N, 3, R, R) float32 in [0, 1].
        labels: (N,) int64 class ids.
        knobs: (N, H, K) knob values applied at each step.
        nfe: network evaluations per image.
    """

    images: torch.Tensor
    labels: torch.Tensor
    knobs: np.ndarray
    nfe: int


def batch_seed(seed: int, batch: int) -> int:
    """Reset seed of batch `batch` of a run with sampling seed `seed` (independent streams per pair)."""
    return int(np.random.SeedSequence([int(seed), int(batch)]).generate_state(1)[0])


@torch.no_grad()
def generate(policy: Predictor, env: VectorEnv, labels: torch.Tensor | np.ndarray, seed: int) -> Generation:
    """Run whole episodes of the deterministic `policy` on `env` for every label.

    Args:
        policy: an SB3 model (or `ZeroPolicy`); recurrent policies get their state and episode starts.
        env: a Gymnasium vector env of AdaGen built with `return_images=True` and any reward (None is cheapest).
        labels: (N,) class ids; the last batch is padded with zeros and the padding dropped.
        seed: sampling seed; batch b is reset with `batch_seed(seed, b)`.

    Raises:
        InvalidArgument: the env does not return final images.
    """
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    b = env.num_envs
    images, knobs, nfe = [], [], 0
    for start in range(0, labels.shape[0], b):
        chunk = labels[start : start + b]
        padded = torch.cat([chunk, chunk.new_zeros(b - chunk.shape[0])])
        obs, _ = env.reset(seed=batch_seed(seed, start // b), options={"labels": padded.numpy()})
        state, starts, steps, done = None, np.ones(b, dtype=bool), [], False
        nfe = 0
        while not done:
            actions, state = policy.predict(obs, state=state, episode_start=starts, deterministic=True)
            obs, _, terminated, truncated, info = env.step(actions)
            starts = np.zeros(b, dtype=bool)
            steps.append(info["knobs"])
            nfe += int(info["nfe"][0])
            done = bool(np.all(terminated | truncated))
        if "final_images" not in info:
            raise InvalidArgument("generate() needs an env built with return_images=True")
        images.append(torch.from_numpy(info["final_images"][: chunk.shape[0]]))
        knobs.append(np.stack(steps, axis=1)[: chunk.shape[0]])  # (b, H, K)
    return Generation(torch.cat(images), labels, np.concatenate(knobs), nfe)


@torch.no_grad()
def generate_static(
    sampler: Sampler, schedule: torch.Tensor, labels: torch.Tensor | np.ndarray, seed: int, batch_size: int
) -> Generation:
    """Run a static (H, K) schedule on the sampler with `generate`'s batches, padding and seeds.

    Batch b is drawn from the generator an env of `batch_size` lanes makes for `reset(seed=batch_seed(seed, b))`,
    so a static schedule sees the same labels and noise as a policy run by `generate` on such an env (the
    baseline schedule gives the same images bit for bit).
    """
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    where = sampler.device if sampler.device.type == "cuda" else "cpu"
    images = []
    for start in range(0, labels.shape[0], batch_size):
        chunk = labels[start : start + batch_size]
        padded = torch.cat([chunk, chunk.new_zeros(batch_size - chunk.shape[0])])
        generator = make_generator(batch_seed(seed, start // batch_size), where)
        images.append(sampler.sample(padded.to(sampler.device), generator, schedule)[: chunk.shape[0]].float().cpu())
    knobs = schedule.detach().cpu().numpy()[None].repeat(labels.shape[0], axis=0)  # (N, H, K) before projection
    return Generation(torch.cat(images), labels, knobs, sampler.episode_nfe)
