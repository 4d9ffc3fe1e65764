"""Wrappers of AdaGen envs: action smoothing (single-lane and vector), `make_smoothed` with the anchor's betas."""

from __future__ import annotations

from adagen_env.wrappers.smoothing import ActionSmoothing, VectorActionSmoothing

__all__ = ["ActionSmoothing", "VectorActionSmoothing"]
