"""The names the `adagen` command line offers as choices, without importing torch, Stable-Baselines3 or Gymnasium.

The library's tables come from `adagen_env/names.py`, read on its own (`library`): importing it the usual way would
first run `adagen_env/__init__.py`, which registers the envs and so imports Gymnasium and torch. The RL side's
tables (`agents.presets.ALGORITHMS`, `agents.ablation.ABLATIONS`) hold classes and recipes, so their names are
repeated here; `tests/house/test_names.py` keeps every list here equal to the table it names.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType


def library() -> ModuleType:
    """`adagen_env.names` without importing the `adagen_env` package: the module already imported when it is, else
    that file executed on its own (it imports nothing)."""
    if "adagen_env.names" in sys.modules:
        return sys.modules["adagen_env.names"]
    package = importlib.util.find_spec("adagen_env")  # a top-level spec is found without running the package
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError("adagen_env is not installed", name="adagen_env")
    path = os.path.join(list(package.submodule_search_locations)[0], "names.py")
    spec = importlib.util.spec_from_file_location("adagen_env.names", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_library = library()
ENV_IDS: tuple[str, ...] = tuple(sorted(_library.ENVIRONMENTS))
"""The registered `AdaGen/` env ids (`adagen_env.envs.ENVIRONMENTS`), sorted."""
REWARD_MODELS: tuple[str, ...] = _library.REWARD_MODELS
DEFAULT_REWARD_MODEL: str = _library.DEFAULT_REWARD_MODEL
OBSERVATIONS: tuple[str, ...] = _library.OBSERVATIONS
FEATURE_DTYPE_NAMES: tuple[str, ...] = _library.FEATURE_DTYPE_NAMES
ZOO_NAMES: tuple[str, ...] = _library.ZOO_NAMES
GENERATORS: tuple[str, ...] = _library.GENERATORS

ALGORITHM_NAMES = ("ppo", "a2c", "recurrent_ppo", "sac", "td3")
"""The keys of `agents.presets.ALGORITHMS`, in its order (`--algo`)."""
ABLATION_NAMES = ("reward", "smoothing", "policy-input", "step-conditioning", "discriminator", "learnable-vs-adaptive")
"""The keys of `agents.ablation.ABLATIONS`, in its order (`adagen bench ablation NAME`)."""

__all__ = [
    "ABLATION_NAMES",
    "ALGORITHM_NAMES",
    "DEFAULT_REWARD_MODEL",
    "ENV_IDS",
    "FEATURE_DTYPE_NAMES",
    "GENERATORS",
    "OBSERVATIONS",
    "REWARD_MODELS",
    "ZOO_NAMES",
    "library",
]
