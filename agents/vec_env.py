"""An SB3 `VecEnv` over a natively batched Gymnasium `VectorEnv` (docs/design.md 6).

Stable-Baselines3 does not take Gymnasium vector envs, and wrapping B single-lane envs in a `DummyVecEnv`
would run B generator forwards per step instead of one. `SB3VecEnv` hands the native batch to SB3:

* observations stay the env's batched arrays (a dict of (B, ...) arrays), never copied per lane;
* `dones = terminations | truncations`; `infos` is SB3's list of per-lane dicts holding the env's info
  values for that lane (views into the batched arrays), `"TimeLimit.truncated"`, and for finished lanes
  `"terminal_observation"` (per-lane views into the terminal batch);
* SB3 expects the observation returned with `done[i] = True` to be the *reset* observation. Our envs use
  Gymnasium's next-step autoreset, so on the terminal step the adapter calls the env's `step` once more
  (the autoreset call; its actions are zeros and ignored) to obtain it. All lanes end together in an
  AdaGen env, so this extra call resets the whole batch; a next-step env whose lanes end at different
  times cannot be adapted without stepping live lanes, and is refused with an error.
* `seed` and `set_options` apply to the next batch-wide `reset`; `get_attr` / `set_attr` / `env_method`
  act on the one batched env (found through any Gymnasium vector wrappers) and return one entry per lane.

Letters: B lanes (num_envs), A action dims.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from adagen_env.errors import InvalidArgument


class SB3VecEnv(VecEnv):
    """SB3 view of a batched Gymnasium vector env with next-step (or same-step) autoreset.

    Args:
        env: a Gymnasium `VectorEnv` (e.g. `gym.make_vec("AdaGen/SiT-v0", num_envs=64)`, possibly wrapped
            in `VectorActionSmoothing`). Its step must return fresh arrays (AdaGen envs do), since
            terminal observations are handed out as views.

    Example:
        >>> import gymnasium as gym, adagen_env
        >>> from stable_baselines3.common.vec_env import VecMonitor
        >>> venv = VecMonitor(SB3VecEnv(gym.make_vec("AdaGen/SiT-v0", num_envs=4, reward_model=None)))
        >>> venv.reset()["features"].shape
        (4, 128, 8, 8)
    """

    def __init__(self, env: VectorEnv) -> None:
        if not isinstance(env, VectorEnv):
            raise InvalidArgument(
                "SB3VecEnv wraps a gymnasium.vector.VectorEnv (e.g. gym.make_vec(id, num_envs=N)), "
                f"got {type(env).__name__}"
            )
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if isinstance(mode, str):
            mode = AutoresetMode(mode)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise InvalidArgument(
                f"SB3VecEnv needs an env with autoreset_mode NEXT_STEP or SAME_STEP, got {mode!r}; "
                "SB3 expects the env to reset finished lanes itself"
            )
        self.env = env
        self.autoreset_mode = mode
        self.spec = getattr(env, "spec", None)
        self._actions: np.ndarray | None = None
        self._batch_options: dict[str, Any] | None = None
        self._zero_actions = np.zeros(env.action_space.shape, dtype=env.action_space.dtype)
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    # -- SB3 VecEnv API --------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        """Reset every lane at once, with the seed / options set since the last reset (used once)."""
        seed = self._seeds[0]
        obs, infos = self.env.reset(seed=seed, options=self._batch_options)
        self.reset_infos = self._split_infos(infos)
        self._reset_seeds()
        self._reset_options()
        self._batch_options = None
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, rewards, terminations, truncations, infos = self.env.step(self._actions)
        self._actions = None
        dones = np.logical_or(terminations, truncations)
        lane_infos = self._split_infos(infos)
        for i, info in enumerate(lane_infos):
            info["TimeLimit.truncated"] = bool(truncations[i] and not terminations[i])
        if dones.any():
            if self.autoreset_mode == AutoresetMode.SAME_STEP:
                terminal = infos["final_obs"]  # per-lane terminal observations, already reset in `obs`
                for i in np.flatnonzero(dones):
                    lane_infos[i]["terminal_observation"] = terminal[i]
                    lane_infos[i].pop("final_obs", None)
                    lane_infos[i].pop("final_info", None)
            else:
                if not dones.all():
                    raise RuntimeError(
                        f"lanes {np.flatnonzero(dones).tolist()} of {self.num_envs} finished but others did not; "
                        "SB3VecEnv resets a next-step-autoreset env batch-wide and needs all lanes to end together"
                    )
                terminal_obs = obs
                for i, info in enumerate(lane_infos):
                    info["terminal_observation"] = _lane(terminal_obs, i)
                # The autoreset call: the env resets every lane and ignores these actions.
                obs, _, reset_terms, reset_truncs, reset_infos = self.env.step(self._zero_actions)
                assert not (reset_terms.any() or reset_truncs.any()), "the autoreset step must not end episodes"
                self.reset_infos = self._split_infos(reset_infos)
        return obs, np.asarray(rewards, dtype=np.float32), dones, lane_infos

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next batch-wide reset; one seed drives every lane, so it is returned for each lane."""
        if seed is None:
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))
        self._seeds = [int(seed)] * self.num_envs
        return self._seeds

    def clear_seed(self) -> None:
        """Forget a seed set by `seed` so that the next reset continues the env's random stream (resume)."""
        self._reset_seeds()

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """Options of the next reset: a dict for the whole batch (e.g. `{"labels": (B,) ints}`), or one dict
        per lane with a `"label"` each, which become the batch's `"labels"`."""
        if options is None or isinstance(options, dict):
            self._batch_options = dict(options) if options else None
            return
        options = list(options)
        if len(options) != self.num_envs:
            raise InvalidArgument(f"set_options got {len(options)} per-lane dicts for {self.num_envs} lanes")
        if any(set(o) - {"label"} for o in options) or not all("label" in o for o in options):
            raise InvalidArgument(
                "per-lane options of a batched env can only carry a 'label' each (got keys "
                f"{sorted({k for o in options for k in o})}); pass one dict for batch-wide options"
            )
        self._batch_options = {"labels": np.asarray([o["label"] for o in options])}

    def close(self) -> None:
        self.env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.env.render() if self.render_mode == "rgb_array" else None
        return [None] * self.num_envs if frames is None else list(frames)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of the batched env (outermost wrapper that has it), repeated for each requested lane."""
        return [self._holder(attr_name)[1]] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the batched env; lanes share it, so `indices` must select every lane."""
        if len(set(self._indices(indices))) != self.num_envs:
            raise InvalidArgument(
                f"set_attr({attr_name!r}) on lanes {list(self._indices(indices))}: the {self.num_envs} lanes of a "
                "batched env share their attributes, so set them for all lanes (indices=None)"
            )
        try:
            holder, _ = self._holder(attr_name)
        except AttributeError:
            holder = self.env
        setattr(holder, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of the batched env once; its result is repeated for each requested lane."""
        result = self._holder(method_name)[1](*method_args, **method_kwargs)
        return [result] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Whether the batched env is wrapped in `wrapper_class` (a Gymnasium vector wrapper)."""
        env, wrapped = self.env, False
        while isinstance(env, VectorWrapper):
            wrapped = wrapped or isinstance(env, wrapper_class)
            env = env.env
        return [wrapped] * len(self._indices(indices))

    @property
    def unwrapped(self) -> VectorEnv:
        """The innermost Gymnasium vector env."""
        return self.env.unwrapped

    # -- helpers -----------------------------------------------------------------------------------
    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def _holder(self, name: str) -> tuple[Any, Any]:
        env = self.env
        while True:
            if name in dir(env):
                return env, getattr(env, name)
            if not isinstance(env, VectorWrapper):
                raise AttributeError(  # noqa: TRY004 - a missing attribute, as getattr would say
                    f"{type(self.env).__name__} and the envs it wraps have no attribute {name!r}"
                )
            env = env.env

    def _split_infos(self, infos: dict[str, Any]) -> list[dict[str, Any]]:
        """Gymnasium's dict of (B, ...) arrays with `_key` masks -> SB3's list of B per-lane dicts (views)."""
        lanes: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for key, value in infos.items():
            if key.startswith("_"):
                continue
            mask = infos.get(f"_{key}")
            for i in range(self.num_envs):
                if mask is None or mask[i]:
                    lanes[i][key] = _lane(value, i)
        return lanes


def _lane(value: Any, i: int) -> Any:
    """Lane i of a batched value (a dict of arrays, an array, or a tuple of those)."""
    if isinstance(value, dict):
        return {key: _lane(v, i) for key, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_lane(v, i) for v in value)
    return value[i]
