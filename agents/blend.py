"""Fidelity-diversity blending: one policy whose residual is `lambda * u_fidelity + (1 - lambda) * u_diversity`.

    adagen train --env AdaGen/SiT-v0 --num-steps 4 --reward-model adversarial-projected+classifier  # fidelity
    adagen train --env AdaGen/SiT-v0 --num-steps 4                                                   # diversity
    adagen bench --env AdaGen/SiT-v0 --steps 4 --blend FIDELITY.zip DIVERSITY.zip --lambdas 0 0.25 0.5 0.75 1

The paper trains a second policy toward fidelity (its adversarial reward mixed with ImageReward; here with the
frozen classifier's log-probability, `adagen_env.rewards.FidelityReward`) and mixes the two policies' residuals with
one lambda at inference. Both read the same observation at every step and the env adds its prior and smoothing to
the mixed residual once, so the two must have been trained on the same env: `load_blend` refuses a pair whose
metadata differ in any of `BLEND_KEYS` (or `BLEND_ENV_KWARGS` of their env arguments). Lambda 1 runs the fidelity
policy's actions exactly, lambda 0 the diversity policy's.

Letters: B lanes, A controlled knobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adagen_env.errors import CheckpointError, InvalidArgument
from agents.checkpoint import load_model, read_meta

BLEND_KEYS = (
    "env_id",
    "knobs",
    "horizon",
    "observation_keys",
    "feature_shape",
    "smoothing",
    "sampler_config",
    "generator_digest",
)
"""Metadata the two policies of a blend must share: the env, its knobs and horizon, what the policies observe, the
smoothing applied to the mixed residual, the sampler's settings and the generator's weights."""
BLEND_ENV_KWARGS = ("observation", "feature_pool", "feature_dtype", "base_schedule")
"""Env arguments (`env_kwargs` of the metadata) they must share: the observation's form and what u = 0 runs."""


def blend_identity(meta: dict[str, Any]) -> dict[str, Any]:
    """What of a policy's metadata a blend partner must equal: `BLEND_KEYS`, and `env_kwargs.<name>` for
    `BLEND_ENV_KWARGS`."""
    env_kwargs = meta.get("env_kwargs", {})
    return {
        **{key: meta.get(key) for key in BLEND_KEYS},
        **{f"env_kwargs.{key}": env_kwargs.get(key) for key in BLEND_ENV_KWARGS},
    }


class BlendedPolicy:
    """A `agents.rollout.Predictor` whose (B, A) action is `lam * u_fidelity + (1 - lam) * u_diversity`, the two
    models' `predict` on the same observation (recurrent models keep their own states).

    Raises:
        InvalidArgument: `lam` is not a finite number in [0, 1].
    """

    def __init__(self, fidelity: Any, diversity: Any, lam: float) -> None:
        if isinstance(lam, bool) or not isinstance(lam, int | float) or not (math.isfinite(lam) and 0 <= lam <= 1):
            raise InvalidArgument(f"the blend's lambda must be a number in [0, 1], got {lam!r}")
        self.fidelity, self.diversity, self.lam = fidelity, diversity, float(lam)

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        fidelity_state, diversity_state = (None, None) if state is None else state
        u_fidelity, fidelity_state = self.fidelity.predict(observation, fidelity_state, episode_start, deterministic)
        u_diversity, diversity_state = self.diversity.predict(
            observation, diversity_state, episode_start, deterministic
        )
        action = self.lam * u_fidelity.astype(np.float32) + (1 - self.lam) * u_diversity.astype(np.float32)
        return action.astype(np.float32), (fidelity_state, diversity_state)


@dataclass
class Blend:
    """Two loaded policies of one env; `at(lam)` is their blended policy."""

    fidelity: Any
    diversity: Any
    meta: dict[str, Any]
    """The fidelity policy's metadata (the env both run on)."""
    paths: tuple[str, str]
    """(fidelity file, diversity file)."""

    def at(self, lam: float) -> BlendedPolicy:
        return BlendedPolicy(self.fidelity, self.diversity, lam)


def check_blend(fidelity_path: str | Path, diversity_path: str | Path) -> dict[str, Any]:
    """The fidelity policy's metadata, after checking the diversity policy's against it (files are not loaded).

    Raises:
        CheckpointError: either file is not a policy of `adagen train`, or their metadata differ in a key of
            `blend_identity` (every differing key is named).
    """
    fidelity_meta, diversity_meta = read_meta(fidelity_path), read_meta(diversity_path)
    ours, theirs = blend_identity(fidelity_meta), blend_identity(diversity_meta)
    differ = [f"{key}: {ours[key]!r} vs {theirs[key]!r}" for key in ours if ours[key] != theirs[key]]  # JSON values
    if differ:
        raise CheckpointError(
            f"cannot blend {str(fidelity_path)!r} (fidelity) with {str(diversity_path)!r} "
            f"(diversity): they were trained on different envs ({'; '.join(differ)})"
        )
    return fidelity_meta


def load_blend(fidelity_path: str | Path, diversity_path: str | Path, device: str = "cpu") -> Blend:
    """Load two policies of one env for blending (`check_blend` first, then `load_model` each).

    Raises:
        CheckpointError: as `check_blend` and `load_model`.
    """
    meta = check_blend(fidelity_path, diversity_path)
    fidelity, _ = load_model(fidelity_path, device=device)
    diversity, _ = load_model(diversity_path, device=device)
    return Blend(fidelity, diversity, meta, (str(fidelity_path), str(diversity_path)))


__all__ = ["BLEND_ENV_KWARGS", "BLEND_KEYS", "Blend", "BlendedPolicy", "blend_identity", "check_blend", "load_blend"]
