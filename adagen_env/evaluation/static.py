"""Static schedules run in seeded batches on fixed labels: the one runner behind every static row.

Two seedings, both of batches of `batch_size` lanes taking labels `labels[b*B:(b+1)*B]`:

* ``"env"``: batch b draws from the generator an env of `batch_size` lanes makes for
  `reset(seed=batch_seed(seed, b))`, the last batch padded to `batch_size` lanes. A static schedule then sees the
  same labels and noise as a policy run by `agents.rollout.generate` on such an env (the baseline schedule gives the
  same images bit for bit). `adagen eval` and `adagen bench` use it.
* ``"consecutive"``: batch b draws from seed ``seed + b``, the last batch as it is. The zoo benchmark
  (`adagen zoo eval`) uses it, and the committed `benchmarks/results/zoo` numbers were measured with it; under
  ``"env"`` they would change (other noise, same distribution).

Letters: N images, H horizon, K knobs, R image side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from adagen_env.errors import InvalidArgument
from adagen_env.samplers import Sampler, make_generator

SEEDINGS = ("env", "consecutive")
"""How `generate_static` seeds its batches (see the module docstring)."""


@dataclass
class Generation:
    """Finished images and the knobs that made them.

    Args:
        images: (N, 3, R, R) float32 in [0, 1].
        labels: (N,) int64 class ids.
        knobs: (N, H, K) knob values applied at each step (NaN after an image's sampling stopped).
        nfe: network evaluations per image (of a compute-aware run: the most an image may spend, a whole episode's).
        sample_nfe: (N,) int64 network evaluations each image actually spent, for runs whose images spend different
            amounts (compute-aware episodes); None: every image spent `nfe`.
    """

    images: torch.Tensor
    labels: torch.Tensor
    knobs: np.ndarray
    nfe: int
    sample_nfe: np.ndarray | None = None

    def spent(self) -> np.ndarray:
        """(N,) int64 network evaluations each image spent."""
        if self.sample_nfe is None:
            return np.full(self.labels.shape[0], self.nfe, dtype=np.int64)
        return np.asarray(self.sample_nfe, dtype=np.int64)


def batch_seed(seed: int, batch: int) -> int:
    """Reset seed of batch `batch` of a run with sampling seed `seed` (independent streams per pair)."""
    return int(np.random.SeedSequence([int(seed), int(batch)]).generate_state(1)[0])


@torch.no_grad()
def generate_static(
    sampler: Sampler,
    schedule: torch.Tensor | None,
    labels: torch.Tensor | np.ndarray,
    seed: int,
    batch_size: int,
    seeding: str = "env",
    on_batch: Callable[[int], None] | None = None,
) -> Generation:
    """Run a static (H, K) schedule (the sampler's baseline when None) for every label, in batches.

    Args:
        seeding: ``"env"`` or ``"consecutive"`` (see the module docstring).
        on_batch: called with the number of images of each finished batch (for progress bars).

    The knobs returned are the schedule's, before projection.
    """
    if seeding not in SEEDINGS:
        raise InvalidArgument(f"seeding must be one of {SEEDINGS}, got {seeding!r}")
    schedule = sampler.baseline_schedule() if schedule is None else schedule
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
    where = sampler.device if sampler.device.type == "cuda" else "cpu"
    images = []
    for b, start in enumerate(range(0, labels.shape[0], batch_size)):
        chunk = labels[start : start + batch_size]
        if seeding == "env":
            generator = make_generator(batch_seed(seed, b), where)
            lanes = torch.cat([chunk, chunk.new_zeros(batch_size - chunk.shape[0])])
        else:
            generator, lanes = make_generator(seed + b, where), chunk
        images.append(sampler.sample(lanes.to(sampler.device), generator, schedule)[: chunk.shape[0]].float().cpu())
        if on_batch is not None:
            on_batch(chunk.shape[0])
    knobs = schedule.detach().cpu().numpy()[None].repeat(labels.shape[0], axis=0)  # (N, H, K) before projection
    return Generation(torch.cat(images), labels, knobs, sampler.episode_nfe)


__all__ = ["SEEDINGS", "Generation", "batch_seed", "generate_static"]
