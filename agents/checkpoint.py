"""Training checkpoints: `checkpoint.zip` (SB3: policy, optimiser, counters, run metadata) + a state side file.

A run directory holds

* `checkpoint.zip`: `model.save()` of the SB3 algorithm (weights of both trunks, the optimiser, `num_timesteps`,
  `_n_updates`, hyperparameters) with the run's metadata (`adagen_meta`: env id, knobs, horizon, features, ...);
* `checkpoint_state.pt`: what SB3 does not save: the reward model's state (discriminator and its optimiser),
  RNG states (Python, NumPy, torch, CUDA, the env's generator), the wall time spent, callback counters;
* `replay_buffer.pkl` for off-policy algorithms.

Both files carry `num_timesteps`; they are written to temporary names and renamed, the zip last, so a run killed
while saving keeps its previous pair. Loading checks the metadata against what the caller expects and raises
`CheckpointError` naming the file and every mismatch.
"""

from __future__ import annotations

import json
import os
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adagen_env.errors import CheckpointError

CHECKPOINT = "checkpoint.zip"
BEST_MODEL = "best_model.zip"
"""The policy at its best periodic evaluation FID so far (SB3 `EvalCallback`'s name); loads like a checkpoint."""
STATE = "checkpoint_state.pt"
REPLAY_BUFFER = "replay_buffer.pkl"
META_FORMAT = 1
"""Version of the `adagen_meta` layout."""
IDENTITY_KEYS = ("env_id", "knobs", "horizon", "observation_keys", "feature_shape")
"""Metadata that must match for a policy to act in an env at all."""


def read_meta(path: str | Path) -> dict[str, Any]:
    """The `adagen_meta` of a checkpoint zip, without loading the model.

    Raises:
        CheckpointError: the file is missing, not an SB3 zip, or has no AdaGen metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not an SB3 checkpoint zip: {exc}") from exc
    meta = data.get("adagen_meta")
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has no adagen metadata (format {META_FORMAT}); "
            "only checkpoints written by `adagen train` (agents.checkpoint) can be loaded"
        )
    return meta


def check_meta(path: str | Path, meta: dict[str, Any], expected: dict[str, Any]) -> None:
    """Raise `CheckpointError` listing every key of `expected` whose value differs in `meta`."""
    mismatches = [
        f"{key}: checkpoint has {_plain(meta.get(key))!r}, expected {_plain(value)!r}"
        for key, value in expected.items()
        if _plain(meta.get(key)) != _plain(value)
    ]
    if mismatches:
        raise CheckpointError(f"checkpoint {str(path)!r} does not match this run: " + "; ".join(mismatches))


def generator_expectation(meta: dict[str, Any], env: Any) -> dict[str, Any]:
    """What `check_meta` should find about the generator: the unwrapped `env`'s `generator_digest` when the checkpoint
    recorded one (checkpoints written before the digest was recorded name no weights, so nothing is checked)."""
    return {"generator_digest": env.generator_digest} if "generator_digest" in meta else {}


def _plain(value: Any) -> Any:
    """JSON round trip, so tuples and lists (and numpy scalars) compare equal."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def rng_state() -> dict[str, Any]:
    """Global RNG states of Python, NumPy and torch (CPU and CUDA)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def env_rng_state(env: Any) -> dict[str, Any]:
    """The random streams of an AdaGen vector env, through any wrappers."""
    return env.unwrapped.get_rng_state()


def set_env_rng_state(env: Any, state: dict[str, Any]) -> None:
    """Restore what `env_rng_state` returned."""
    env.unwrapped.set_rng_state(state)


def save_checkpoint(model: Any, run_dir: str | Path, meta: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write `checkpoint_state.pt` then `checkpoint.zip` (and the replay buffer) atomically into `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "format": META_FORMAT, "num_timesteps": int(model.num_timesteps)}
    state = {**state, "num_timesteps": int(model.num_timesteps)}
    model.adagen_meta = meta
    if getattr(model, "replay_buffer", None) is not None:
        tmp = run_dir / f"{REPLAY_BUFFER}.tmp"
        model.save_replay_buffer(tmp)
        os.replace(tmp, run_dir / REPLAY_BUFFER)
    tmp_state = run_dir / f"{STATE}.tmp"
    torch.save(state, tmp_state)
    tmp_zip = _save_zip(model, run_dir / CHECKPOINT)
    os.replace(tmp_state, run_dir / STATE)
    os.replace(tmp_zip, run_dir / CHECKPOINT)
    return run_dir / CHECKPOINT


def _save_zip(model: Any, path: Path) -> Path:
    """Save the SB3 zip next to `path` as `<name>.tmp`, for the caller to move into place."""
    tmp = path.with_name(f"{path.name}.tmp")
    with open(tmp, "wb") as handle:
        model.save(handle)
    return tmp


def save_model(model: Any, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write the policy alone (no side file: it is for evaluation, not resuming) with its metadata, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.adagen_meta = {**meta, "format": META_FORMAT, "num_timesteps": int(model.num_timesteps)}
    os.replace(_save_zip(model, path), path)
    return path


EXPORT_EXCLUDES = ("_last_obs", "_last_original_obs", "_last_episode_starts", "_last_lstm_states", "ep_info_buffer", "ep_success_buffer")
"""Rollout leftovers an exported policy does not need (the last observation batch alone is megabytes)."""


def export_policy(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a small copy of a checkpoint for shipping: same weights and metadata, fresh optimiser, no rollout leftovers.

    The copy loads like any checkpoint (`adagen eval --policy`); training from it starts a new optimiser.

    Raises:
        CheckpointError: `checkpoint` is missing, corrupt or not written by `adagen train`.
    """
    from agents.evaluate import load_policy

    model, meta = load_policy(checkpoint)
    optimizer = model.policy.optimizer
    groups = [dict(group) for group in optimizer.param_groups]  # same parameters and settings, no moments
    model.policy.optimizer = type(optimizer)(groups, **optimizer.defaults)
    model.adagen_meta = {**meta, "exported_from": str(checkpoint)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out, exclude=list(EXPORT_EXCLUDES))
    return out


def load_state(run_dir: str | Path, num_timesteps: int) -> dict[str, Any]:
    """The side file of a checkpoint, checked to belong to the zip saved at `num_timesteps`.

    Raises:
        CheckpointError: missing, unreadable, or from another save than the zip.
    """
    path = Path(run_dir) / STATE
    if not path.is_file():
        raise CheckpointError(f"checkpoint state {str(path)!r} does not exist (it is written beside {CHECKPOINT})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are not tensors
    except Exception as exc:
        raise CheckpointError(f"checkpoint state {str(path)!r} is corrupt: {exc}") from exc
    if not isinstance(state, dict) or state.get("num_timesteps") != num_timesteps:
        got = state.get("num_timesteps") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"checkpoint state {str(path)!r} is from timestep {got}, but {CHECKPOINT} from timestep {num_timesteps}; "
            "the pair was not saved together"
        )
    return state
