"""Wrappers of AdaGen envs: action smoothing, single-lane and vector (each env class's `default_smoothing` is the
anchor's beta), and the group-relative reward of group rollouts."""

from __future__ import annotations

from adagen_env.wrappers.group import GroupRelativeReward
from adagen_env.wrappers.smoothing import ActionSmoothing, VectorActionSmoothing

__all__ = ["ActionSmoothing", "GroupRelativeReward", "VectorActionSmoothing"]
