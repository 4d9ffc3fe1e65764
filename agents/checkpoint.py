"""Training checkpoints in one file: `checkpoint.zip`, SB3's zip with the run's metadata and state inside, loaded
without unpickling anything.

`checkpoint.zip` holds

* what `model.save()` writes: the policy's weights and optimiser (`*.pth`), counters and hyperparameters (`data`),
  with the run's metadata (`adagen_meta`: env id, knobs, horizon, features, ...) in `data`;
* `adagen_state.pt`, what SB3 does not save: the reward model's state (discriminator and its optimiser), RNG states
  (Python, NumPy, torch, CUDA, the env's streams at the start of its current episodes), the wall time spent,
  callback counters. Tensors, numbers and strings only (`torch.load(weights_only=True)`).

It is written under a temporary name and renamed, so a kill while saving leaves the previous checkpoint whole.
Off-policy algorithms also keep `replay_buffer-<timesteps>.npz` (plain arrays), written before the zip; the one
whose timesteps match the zip is used, older ones are removed after the rename.

Loading never unpickles: SB3 stores some fields (spaces, the policy class, schedules) as pickles in `data`; `load_model`
rebuilds each of them from the metadata and the algorithm's preset and hands them to SB3 as `custom_objects`, which
SB3 then does not deserialise, and SB3 reads the weights with `weights_only=True`. A pickled field this loader does
not know is refused. Loading checks the metadata against what the caller expects and raises `CheckpointError` naming
the file and every mismatch.
"""

from __future__ import annotations

import io
import json
import os
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from adagen_env.errors import CheckpointError
from agents.presets import get_algorithm, resolve_hyperparameters

CHECKPOINT = "checkpoint.zip"
BEST_MODEL = "best_model.zip"
"""The policy at its best periodic evaluation FID so far (SB3 `EvalCallback`'s name); loads like a checkpoint."""
STATE = "adagen_state.pt"
"""The zip entry with the run's state (SB3 reads only `data` and `*.pth` entries)."""
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
    """Global RNG states of Python, NumPy and torch (CPU and CUDA), as tensors, numbers and strings."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            **numpy_state,
            "state": {
                "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                "pos": int(numpy_state["state"]["pos"]),
            },
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            **numpy_state,
            "state": {"key": numpy_state["state"]["key"].numpy().astype(np.uint32), "pos": numpy_state["state"]["pos"]},
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def env_rng_state(env: Any) -> dict[str, Any]:
    """The random streams of an AdaGen vector env (through any wrappers) at the start of its current episodes."""
    return env.unwrapped.get_rng_state()


def set_env_rng_state(env: Any, state: dict[str, Any]) -> None:
    """Restore what `env_rng_state` returned: the next unseeded reset starts those episodes again."""
    env.unwrapped.set_rng_state(state)


def replay_buffer_path(run_dir: str | Path, num_timesteps: int) -> Path:
    return Path(run_dir) / f"replay_buffer-{num_timesteps}.npz"


def save_replay_buffer(buffer: Any, path: Path) -> None:
    """An SB3 (Dict)ReplayBuffer's arrays and write position as a plain `.npz` (no pickles), atomically."""
    arrays: dict[str, np.ndarray] = {"pos": np.array(buffer.pos), "full": np.array(buffer.full)}
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        value = getattr(buffer, name, None)
        if isinstance(value, dict):
            arrays.update({f"{name}/{key}": array for key, array in value.items()})
        elif value is not None:
            arrays[name] = value
    tmp = path.with_name(f"{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def load_replay_buffer(buffer: Any, path: Path) -> None:
    """Fill `buffer` from `save_replay_buffer`'s file (`allow_pickle=False`)."""
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            if key in ("pos", "full"):
                setattr(buffer, key, data[key].item())
            elif "/" in key:
                name, sub = key.split("/", 1)
                getattr(buffer, name)[sub][...] = data[key]
            else:
                getattr(buffer, key)[...] = data[key]


def save_checkpoint(model: Any, run_dir: str | Path, meta: dict[str, Any], state: dict[str, Any]) -> Path:
    """Write `checkpoint.zip` (SB3's zip + the state entry) into `run_dir` with one atomic rename."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    timesteps = int(model.num_timesteps)
    meta = {**meta, "format": META_FORMAT, "num_timesteps": timesteps}
    state = {**state, "num_timesteps": timesteps}
    model.adagen_meta = meta
    buffer = getattr(model, "replay_buffer", None)
    if buffer is not None:
        save_replay_buffer(buffer, replay_buffer_path(run_dir, timesteps))
    tmp = _save_zip(model, run_dir / CHECKPOINT)
    payload = io.BytesIO()
    torch.save(state, payload)
    with zipfile.ZipFile(tmp, "a") as archive:
        archive.writestr(STATE, payload.getvalue())
    os.replace(tmp, run_dir / CHECKPOINT)
    for old in run_dir.glob("replay_buffer-*.npz"):
        if old != replay_buffer_path(run_dir, timesteps):
            old.unlink()
    return run_dir / CHECKPOINT


def _save_zip(model: Any, path: Path) -> Path:
    """Save the SB3 zip next to `path` as `<name>.tmp`, for the caller to move into place."""
    tmp = path.with_name(f"{path.name}.tmp")
    with open(tmp, "wb") as handle:
        model.save(handle)
    return tmp


def save_model(model: Any, path: str | Path, meta: dict[str, Any]) -> Path:
    """Write the policy alone (no state entry: it is for evaluation, not resuming) with its metadata, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.adagen_meta = {**meta, "format": META_FORMAT, "num_timesteps": int(model.num_timesteps)}
    os.replace(_save_zip(model, path), path)
    return path


EXPORT_EXCLUDES = (
    "_last_obs",
    "_last_original_obs",
    "_last_episode_starts",
    "_last_lstm_states",
    "ep_info_buffer",
    "ep_success_buffer",
)
"""Rollout leftovers an exported policy does not need (the last observation batch alone is megabytes)."""


DISCRIMINATOR = "discriminator.safetensors"
"""The zip entry of an exported policy with its run's trained discriminator (weights only, safetensors; the metadata
names its architecture), which inference-time refinement scores with (`agents.refine`)."""


def export_policy(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a small copy of a checkpoint for shipping: same weights (the critic's too) and metadata, fresh optimiser,
    no rollout leftovers and no run state, but the run's trained discriminator as the `DISCRIMINATOR` entry when its
    reward learned online (a training checkpoint holds it in its run state). The copy loads like any checkpoint
    (`adagen eval --policy`); training from it starts a new optimiser.

    Raises:
        CheckpointError: `checkpoint` is missing, corrupt or not written by `adagen train`.
    """
    from safetensors.torch import save

    model, meta = load_model(checkpoint)
    discriminator = read_discriminator(checkpoint)
    optimizer = model.policy.optimizer
    groups = [dict(group) for group in optimizer.param_groups]  # same parameters and settings, no moments
    model.policy.optimizer = type(optimizer)(groups, **optimizer.defaults)
    model.adagen_meta = {**meta, "exported_from": str(checkpoint)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp")
    with open(tmp, "wb") as handle:
        model.save(handle, exclude=list(EXPORT_EXCLUDES))
    if discriminator is not None:
        architecture, weights = discriminator
        tensors = {k: v.detach().clone(memory_format=torch.contiguous_format) for k, v in weights.items()}
        payload = save(tensors, metadata={"architecture": architecture})
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(DISCRIMINATOR, payload)
    os.replace(tmp, out)
    return out


def read_discriminator(path: str | Path) -> tuple[str, dict[str, torch.Tensor]] | None:
    """(architecture, weights) of the discriminator a policy file carries: its `DISCRIMINATOR` entry (an export), or
    the run state of a training checkpoint; None when it has neither (`best_model.zip`, or a run whose reward is
    frozen and holds no weights).

    Raises:
        CheckpointError: the file, or its entry, is missing or corrupt.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    meta = read_meta(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        payload = archive.read(DISCRIMINATOR) if DISCRIMINATOR in names else None
    if payload is not None:
        try:
            weights = load(payload)
            header = json.loads(payload[8 : 8 + int.from_bytes(payload[:8], "little")])  # safetensors' JSON header
        except (SafetensorError, json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(f"{str(path)!r}: its {DISCRIMINATOR} entry is corrupt: {exc}") from exc
        return str(header.get("__metadata__", {}).get("architecture")), weights
    if STATE not in names:
        return None
    reward = load_state(path, meta["num_timesteps"]).get("reward_model") or {}
    if "discriminator" not in reward:
        return None
    return str(reward["architecture"]), dict(reward["discriminator"])


ROLLOUT_LEFTOVERS = (*EXPORT_EXCLUDES, "rollout_buffer_class", "replay_buffer_class", "lr_schedule")
"""Pickled fields of an SB3 zip that loading rebuilds itself: None (SB3 starts them afresh; a resumed env replays
its current episodes) or, for `lr_schedule`, a placeholder that SB3 recomputes from `learning_rate`."""


def action_dim(meta: dict[str, Any]) -> int:
    """A checkpoint's action size: one residual per controlled knob, and the `stop` entry of a compute-aware run."""
    return len(meta["knobs"]) + bool(meta.get("env_kwargs", {}).get("stop_knob", False))


def spaces_from_meta(meta: dict[str, Any]) -> tuple[spaces.Dict, spaces.Box]:
    """(observation space, action space) of the env a checkpoint was trained on, from its metadata."""
    from adagen_env.envs.base import ACTION_LIMIT, FEATURE_DTYPES

    dtype = FEATURE_DTYPES[meta.get("env_kwargs", {}).get("feature_dtype") or "float32"]
    action = spaces.Box(-ACTION_LIMIT, ACTION_LIMIT, (action_dim(meta),), dtype=np.float32)
    observation = {
        "features": spaces.Box(-np.inf, np.inf, tuple(meta["feature_shape"]), dtype=dtype),
        "step": spaces.Discrete(meta["horizon"]),
    }
    if "prev_action" in meta["observation_keys"]:
        observation["prev_action"] = action
    return spaces.Dict(observation), action


def _rebuilt_fields(path: Path, data: dict[str, Any], meta: dict[str, Any], env: Any) -> dict[str, Any]:
    """A value for every pickled field of `data`, built here (SB3 then unpickles none of them)."""
    spec = get_algorithm(meta["algo"])
    observation_space, action_space = (
        (env.observation_space, env.action_space) if env is not None else spaces_from_meta(meta)
    )
    preset = resolve_hyperparameters(
        meta["algo"], meta["horizon"], meta.get("num_envs", 1), action_dim(meta), meta.get("algo_kwargs")
    )
    blank = spec.load_cls()(spec.policy, env=None, _init_setup_model=False, **preset)  # the fields as SB3 sets them
    known = {
        **vars(blank),
        "observation_space": observation_space,
        "action_space": action_space,
        **{key: None for key in ROLLOUT_LEFTOVERS},
        "lr_schedule": 0.0,
    }
    fields = {}
    for key, value in data.items():
        if isinstance(value, dict) and ":serialized:" in value:
            if key not in known:
                raise CheckpointError(
                    f"checkpoint {str(path)!r} has a pickled field {key!r} that this loader does not "
                    "rebuild; it never unpickles a checkpoint's fields"
                )
            fields[key] = known[key]
    return fields


def load_model(
    path: str | Path, env: Any = None, device: str = "cpu", expected: dict[str, Any] | None = None
) -> tuple[Any, dict[str, Any]]:
    """(SB3 model, metadata) of a checkpoint written by `adagen train`, loaded without unpickling anything.

    Args:
        path: `checkpoint.zip`, `best_model.zip` or an exported policy.
        env: the SB3 VecEnv to continue training on; None to act only (the spaces come from the metadata).
        device: where the policy goes.
        expected: metadata values the checkpoint must have (`check_meta`).

    Raises:
        CheckpointError: missing, corrupt, not written by `adagen train`, not matching `expected`, or carrying a
            pickled field that cannot be rebuilt.
    """
    path = Path(path)
    meta = read_meta(path)
    check_meta(path, meta, expected or {})
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    custom = _rebuilt_fields(path, data, meta, env)
    try:
        model = get_algorithm(meta["algo"]).load_cls().load(path, env=env, device=device, custom_objects=custom)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} could not be loaded as {meta['algo']}: {exc}") from exc
    for name, tensor in model.policy.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"checkpoint {str(path)!r}: policy tensor {name!r} has NaN or infinite values "
                "(the file is damaged, or training diverged before it was saved)"
            )
    return model, meta


def load_state(path: str | Path, num_timesteps: int) -> dict[str, Any]:
    """The run state inside `checkpoint.zip`, checked to belong to the model saved at `num_timesteps`.

    Raises:
        CheckpointError: no state entry (a policy file, not a training checkpoint), unreadable, or another save's.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            payload = archive.read(STATE)
    except KeyError as exc:
        raise CheckpointError(
            f"{str(path)!r} holds no run state ({STATE}): it is a policy file, not a training "
            "checkpoint, and cannot be resumed"
        ) from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt: {exc}") from exc
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"run state of {str(path)!r} is corrupt or holds more than tensors and numbers: {exc}"
        ) from exc
    if not isinstance(state, dict) or state.get("num_timesteps") != num_timesteps:
        got = state.get("num_timesteps") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"run state of {str(path)!r} is from timestep {got}, but its model from timestep {num_timesteps}"
        )
    return state
