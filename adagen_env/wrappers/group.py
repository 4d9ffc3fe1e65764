"""Group-relative rewards: each lane's terminal reward minus the mean of the other lanes of its group.

With `group_size=G` an AdaGen vector env starts G lanes in a row from one label and one initial noise, so
within a group the rewards differ only through the actions (RLOO, Ahmadian et al. 2024; GRPO, Shao et al.
2024; TPDM trains its step policy this way). Subtracting the leave-one-out mean of the group removes what the
label and the noise alone explain, which is most of a terminal reward's variance, and keeps the estimate
unbiased: a lane's own reward never enters its baseline. The unshifted rewards stay in `info["raw_reward"]`.

Letters: B lanes, G lanes per group.
"""

from __future__ import annotations

import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper

from adagen_env.errors import InvalidArgument


def leave_one_out(rewards: np.ndarray, group_size: int) -> np.ndarray:
    """(B,) rewards -> (B,) reward minus the mean of the other G - 1 lanes of its group (lanes in a row)."""
    grouped = rewards.reshape(-1, group_size).astype(np.float64)
    others = (grouped.sum(axis=1, keepdims=True) - grouped) / (group_size - 1)
    return (grouped - others).reshape(-1).astype(np.float32)


class GroupRelativeReward(VectorWrapper):
    """Leave-one-out group baseline on the rewards of an AdaGen vector env built with `group_size` > 1.

    Args:
        env: a vector env whose `unwrapped.group_size` G is at least 2 (the group layout is read from it).

    Example:
        >>> import gymnasium as gym, adagen_env
        >>> from adagen_env.wrappers import GroupRelativeReward
        >>> env = GroupRelativeReward(gym.make_vec("AdaGen/SiT-v0", num_envs=8, group_size=4,
        ...                                        vectorization_mode="vector_entry_point"))
    """

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)
        self.group_size = int(getattr(env.unwrapped, "group_size", 1))
        if self.group_size < 2:
            raise InvalidArgument(
                f"GroupRelativeReward needs an env built with group_size >= 2 (lanes sharing label and noise), got "
                f"group_size {self.group_size}"
            )

    def step(self, actions: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        if terminations.any():  # lanes run in lock step: a group ends together
            infos = {**infos, "raw_reward": rewards, "_raw_reward": terminations.copy()}
            rewards = leave_one_out(rewards, self.group_size)
        return obs, rewards, terminations, truncations, infos


__all__ = ["GroupRelativeReward", "leave_one_out"]
