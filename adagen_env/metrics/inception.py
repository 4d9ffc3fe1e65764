"""FID on real data in Inception-v3's space, from a weights file on disk that is never unpickled.

torch-fidelity 0.4 reads ``feature_extractor_weights_path`` of its ``inception-v3-compat`` extractor with
``torch.load(weights_only=False)``, which runs whatever a pickle holds. Importing this module re-registers that name
with `LocalInceptionV3`: the same network, preprocessing and features, whose weights are read as a state dict of
tensors only (``weights_only=True``, or a ``.safetensors`` file). torch-fidelity's file
``weights-inception-2015-12-05-6726825d.pth`` is such a state dict, so the numbers are torch-fidelity's.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from adagen_env.errors import InvalidArgument

NAME = "inception-v3-compat"
"""torch-fidelity's name of the TF-compatible Inception-v3 (FID, KID, IS, precision / recall)."""
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
"""torch-fidelity's converted Inception weights (its release v0.2.0)."""


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in `path` (``.safetensors``, or a torch file of tensors only); `InvalidArgument` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(
            f"Inception weights {str(path)!r} do not exist; pass torch-fidelity's {WEIGHTS_FILE} "
            "(adagen-env never downloads weights)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickles of anything but tensors and containers
        raise InvalidArgument(
            f"Inception weights {str(path)!r} are not a state dict of tensors (read without unpickling code): {exc}"
        ) from exc
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise InvalidArgument(f"Inception weights {str(path)!r} are not a state dict of tensors")
    return state


class LocalInceptionV3(FeatureExtractorInceptionV3):
    """torch-fidelity's Inception-v3 extractor with its weights read by `read_state`; required, never downloaded.

    Args:
        name: ``"inception-v3-compat"``.
        features_list: torch-fidelity's feature names (``"2048"``, ``"logits_unbiased"``, ...).
        feature_extractor_weights_path: the weights file.

    Raises:
        InvalidArgument: no file, a file that is not a state dict of tensors, or one that does not fit the network.
    """

    def __init__(
        self, name: str, features_list: list[str], feature_extractor_weights_path: Any = None, **kwargs: Any
    ) -> None:
        if feature_extractor_weights_path is None:
            raise InvalidArgument(f"{NAME} needs its weights on disk: pass the path of {WEIGHTS_FILE}")
        state = read_state(feature_extractor_weights_path)
        buffer = io.BytesIO()  # the parent's loader reads this in-memory copy of the checked tensors
        torch.save(state, buffer)
        buffer.seek(0)
        try:
            super().__init__(name, features_list, feature_extractor_weights_path=buffer, **kwargs)
        except RuntimeError as exc:
            raise InvalidArgument(f"weights {str(feature_extractor_weights_path)!r} do not fit {NAME}: {exc}") from exc


def register() -> None:
    """Register `LocalInceptionV3` as torch-fidelity's ``"inception-v3-compat"`` (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if FEATURE_EXTRACTORS_REGISTRY.get(NAME) is not LocalInceptionV3:
        FEATURE_EXTRACTORS_REGISTRY.pop(NAME, None)
        register_feature_extractor(NAME, LocalInceptionV3)


register()

__all__ = ["NAME", "WEIGHTS_FILE", "LocalInceptionV3", "read_state", "register"]
