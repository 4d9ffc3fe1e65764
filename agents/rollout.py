"""Deterministic generation with a policy (or the baseline) on fixed labels and seeds, for evaluation.

Both a trained policy and the baseline schedule run through the same env (same sampler, same NFE), batch by
batch: batch b of a run with seed s resets the env with `batch_seed(s, b)` and labels `labels[b*B:(b+1)*B]`, so
the same (labels, seed) give the same noise to every policy compared.

Letters: B lanes of the env, N images, H horizon, K knobs, R image side.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from adagen_env.errors import InvalidArgument
from adagen_env.evaluation.static import Generation, batch_seed


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


@torch.no_grad()
def generate(policy: Predictor, env: VectorEnv, labels: torch.Tensor | np.ndarray, seed: int) -> Generation:
    """Run whole episodes of the deterministic `policy` on `env` for every label.

    Args:
        policy: an SB3 model (or `ZeroPolicy`); recurrent policies get their state and episode starts.
        env: a Gymnasium vector env of AdaGen built with `return_images=True` and any reward (None is cheapest).
        labels: (N,) class ids; the last batch is padded with zeros and the padding dropped.
        seed: sampling seed; batch b is reset with `batch_seed(seed, b)`.

    Returns:
        The N images and their (N, H, K) knobs; on a compute-aware env (`stop_knob`) also each image's NFE actually
        spent (`Generation.sample_nfe`, the env's `episode_nfe`), `nfe` then a whole episode's, and the knobs of
        steps after an image stopped NaN.

    Raises:
        InvalidArgument: the env does not return final images.
    """
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    b, horizon = env.num_envs, env.unwrapped.horizon
    compute_aware = bool(getattr(env.unwrapped, "stop_knob", False))
    images, knobs, spent, nfe = [], [], [], 0
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
        table = np.stack(steps, axis=1)[: chunk.shape[0]]  # (b, steps, K): fewer than H when every lane stopped
        knobs.append(np.pad(table, ((0, 0), (0, horizon - table.shape[1]), (0, 0)), constant_values=np.nan))
        if compute_aware:
            spent.append(info["episode_nfe"][: chunk.shape[0]])
    if compute_aware:  # lanes stop at different steps: each image's own NFE, and a whole episode's as `nfe`
        sampler = env.unwrapped.sampler
        return Generation(torch.cat(images), labels, np.concatenate(knobs), sampler.episode_nfe, np.concatenate(spent))
    return Generation(torch.cat(images), labels, np.concatenate(knobs), nfe)
