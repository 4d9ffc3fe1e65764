"""The Stable-Baselines3 side of adagen-env (docs/design.md 6): VecEnv adapter, policy network, presets,
callbacks, training and evaluation. `adagen_env` never imports this package; it needs SB3 and sb3-contrib.

The names below load on first use (PEP 562), so `import agents.cli` (the `adagen` command) and `agents.args` import
no torch, SB3 or Gymnasium until a command runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "agents.callbacks": (
        "Checkpointer",
        "PolicyEvaluation",
        "ProgressBar",
        "StdSchedule",
        "TrainingLogger",
        "knob_figure",
    ),
    "agents.checkpoint": ("CHECKPOINT", "STATE", "read_meta"),
    "agents.policies": ("AdaGenExtractor", "AdaGenPolicy", "AdaGenRecurrentPolicy", "zero_actor_output"),
    "agents.presets": ("ALGORITHMS", "make_model", "resolve_hyperparameters", "timesteps_per_update"),
    "agents.rollout": ("Generation", "ZeroPolicy", "batch_seed", "generate"),
    "agents.vec_env": ("SB3VecEnv",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULE_OF})


__all__ = sorted(_MODULE_OF)
