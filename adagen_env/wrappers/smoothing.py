"""Action smoothing: an EMA over the raw residuals, with the previous smoothed action observed.

docs/design.md 4: `s_k = beta * s_{k-1} + (1 - beta) * u_k`, a causal low-pass filter that keeps knob
trajectories smooth under per-step Gaussian exploration. As in AdaGen's public code, the first
step is not attenuated, `s_0 = u_0`. Since the env adds its prior after the filter, u = 0 still
means the baseline schedule. `prev_action` (s_{k-1}, zeros at k = 0) joins the observation so the
wrapped env stays Markov. With beta = 0 the wrapper passes actions through unchanged.

Letters: B lanes, A controlled knobs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs
from gymnasium.vector import VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from adagen_env.errors import InvalidArgument, InvalidKnobValue


def _check_beta(beta: float) -> float:
    if not (isinstance(beta, int | float) and 0 <= beta < 1):
        raise InvalidArgument(f"smoothing beta should be in the interval [0, 1). Received {beta!r}")
    return float(beta)


def _with_prev_action(space: spaces.Dict, action_space: spaces.Box) -> spaces.Dict:
    if not isinstance(space, spaces.Dict) or "prev_action" in space.spaces:
        raise InvalidArgument("action smoothing needs a Dict observation space without a 'prev_action' key")
    return spaces.Dict({**space.spaces, "prev_action": action_space})


def _finite(actions: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`actions` as float32 of exactly `shape` (never broadcast), finite; else `InvalidKnobValue`."""
    actions = np.asarray(actions, dtype=np.float32)
    if actions.shape != shape:
        raise InvalidKnobValue(f"actions must have shape {shape}, got {actions.shape}")
    if not np.all(np.isfinite(actions)):
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(actions))[0])
        raise InvalidKnobValue(f"action is not finite at index {where}: {actions[where]}; actions must be finite")
    return actions


class ActionSmoothing(gym.Wrapper, RecordConstructorArgs):
    """EMA action smoothing of a single-lane AdaGen env.

    Args:
        env: a single-lane env with a Dict observation and a Box action.
        beta: EMA coefficient in [0, 1); 0 is the identity.

    Example:
        >>> import gymnasium as gym, adagen_env
        >>> from adagen_env.wrappers import ActionSmoothing
        >>> env = ActionSmoothing(gym.make("AdaGen/SiT-v0", reward_model=None), beta=0.8)
        >>> obs, _ = env.reset(seed=0)
        >>> sorted(obs)
        ['features', 'prev_action', 'step']

    Change logs:
        * v0.1.0: initial version.
    """

    def __init__(self, env: gym.Env, beta: float) -> None:
        RecordConstructorArgs.__init__(self, beta=beta)
        gym.Wrapper.__init__(self, env)
        self.beta = _check_beta(beta)
        self.observation_space = _with_prev_action(env.observation_space, env.action_space)
        self.smoothed = np.zeros(env.action_space.shape, dtype=np.float32)
        self.first = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.smoothed[:] = 0
        self.first = True
        return {**obs, "prev_action": self.smoothed.copy()}, info

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        u = _finite(action, self.smoothed.shape)
        self.smoothed = u.copy() if self.first else self.beta * self.smoothed + (1 - self.beta) * u
        self.first = False
        obs, reward, terminated, truncated, info = self.env.step(self.smoothed.astype(np.float32))
        return {**obs, "prev_action": self.smoothed.astype(np.float32)}, reward, terminated, truncated, info


class VectorActionSmoothing(VectorWrapper):
    """EMA action smoothing of a batched AdaGen env; every lane keeps its own filter.

    A lane's filter is cleared on the call after it terminates, when the env autoresets it (next-step
    autoreset) and ignores its action.

    Args:
        env: a vector env with a Dict observation and a Box action.
        beta: EMA coefficient in [0, 1); 0 is the identity.
    """

    def __init__(self, env: VectorEnv, beta: float) -> None:
        super().__init__(env)
        self.beta = _check_beta(beta)
        self.single_observation_space = _with_prev_action(env.single_observation_space, env.single_action_space)
        self.observation_space = batch_space(self.single_observation_space, env.num_envs)
        self.smoothed = np.zeros((env.num_envs, *env.single_action_space.shape), dtype=np.float32)
        self.first = np.ones(env.num_envs, dtype=bool)
        self.resetting = np.zeros(env.num_envs, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.smoothed[:] = 0
        self.first[:] = True
        self.resetting[:] = False
        return {**obs, "prev_action": self.smoothed.copy()}, info

    def step(self, actions: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        u = _finite(actions, self.smoothed.shape)
        ema = self.beta * self.smoothed + (1 - self.beta) * u
        smoothed = np.where(self.first[:, None], u, ema)
        # Lanes the env autoresets on this call ignore their action: their filter starts afresh.
        self.smoothed = np.where(self.resetting[:, None], 0.0, smoothed).astype(np.float32)
        self.first = self.resetting.copy()
        obs, rewards, terminations, truncations, infos = self.env.step(self.smoothed)
        self.resetting = terminations | truncations
        return {**obs, "prev_action": self.smoothed.copy()}, rewards, terminations, truncations, infos

    def select_lanes(self, index: np.ndarray) -> None:
        """Lane i continues from lane `index[i]` of the (B,) lane indices: its filter here, its state in the env
        (`AdaGenVectorEnv.select_lanes`)."""
        self.env.select_lanes(index)
        index = np.asarray(index).reshape(-1)
        self.smoothed, self.first = self.smoothed[index].copy(), self.first[index].copy()
        self.resetting = self.resetting[index].copy()
