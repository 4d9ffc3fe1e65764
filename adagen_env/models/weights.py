"""Network weights on disk: the shipped folder, and a network built from a safetensors file and the config beside it.

The zoo (`adagen_env.zoo.load`) and the metrics' frozen networks load through here, so the metrics need not import
the zoo. A weights file `<name>.safetensors` has its `<name>.json` beside it, whose ``"config"`` is the model config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from adagen_env.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).parents[1] / "zoo" / "weights"
"""The shipped weights (`adagen_env/zoo/weights/`)."""


def weights_path(name: str, weights_dir: str | Path = WEIGHTS_DIR) -> Path:
    return Path(weights_dir) / f"{name}.safetensors"


def load_state(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors file into `model`, naming the file and every mismatch on failure."""
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"cannot read weights file {str(path)!r}: {exc}") from exc
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"weights file {str(path)!r} does not match {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatches {shapes[:5]}"
        )
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise CheckpointError(f"weights file {str(path)!r} has NaN or infinite values in {broken[:5]}: it is damaged")
    model.load_state_dict(state)


def load_network(
    path: str | Path,
    model_cls: type[nn.Module],
    config_cls: type,
    default: Any = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """`model_cls` built from the config in the `.json` beside the safetensors file `path` (`default`, a
    `config_cls`, where there is none) with the file's weights; frozen, in eval mode.

    Raises:
        CheckpointError: the file is unreadable or does not match, or it has no config beside it and there is no
            default.
    """
    path = Path(path)
    meta = path.with_suffix(".json")
    if meta.exists():
        config = config_cls(**json.loads(meta.read_text())["config"])
    elif default is not None:
        config = default
    else:
        raise CheckpointError(f"weights file {str(path)!r} has no config {str(meta)!r} beside it")
    model = model_cls(config)
    load_state(model, path)
    return model.to(device).eval().requires_grad_(False)


def load_shipped(
    name: str,
    model_cls: type[nn.Module],
    config_cls: type,
    default: Any = None,
    device: str | torch.device = "cpu",
    weights_dir: str | Path = WEIGHTS_DIR,
) -> nn.Module:
    """`load_network` of the weights `name` in `weights_dir` (the shipped ones by default).

    Raises:
        CheckpointError: as `load_network`, or no weights of that name.
    """
    path = weights_path(name, weights_dir)
    if not path.exists():
        raise CheckpointError(
            f"no weights for zoo model {name!r} at {str(path)!r}; train them with `adagen zoo train {name}`"
        )
    return load_network(path, model_cls, config_cls, default, device)


__all__ = ["WEIGHTS_DIR", "load_network", "load_shipped", "load_state", "weights_path"]
