"""FD-DINOv2 for real data, from weights on disk: torch-fidelity's DINOv2 extractors without the download.

torch-fidelity 0.4 registers ``dinov2-vit-s-14`` (and b / l / g) but builds them only through ``torch.hub`` from
GitHub and refuses a weights path. Importing this module re-registers those names with `LocalDinoV2`, which
builds the same network from a local copy of the DINOv2 repository (its ``hubconf.py``; by default the one
``torch.hub`` keeps in its cache) with ``pretrained=False``, then loads the state dict from
``feature_extractor_weights_path`` (``weights_only=True``: never unpickled). Preprocessing and features are
torch-fidelity's, so FD-DINOv2 numbers are comparable with theirs (Stein et al., 2023).

    compute_metrics(images, reference=real, feature_extractor="dinov2-vit-s-14",
                    dinov2_weights_path="dinov2_vits14_pretrain.pth", dinov2_code_dir="~/dinov2")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_dinov2 import MODEL_METADATA, FeatureExtractorDinoV2

from adagen_env.errors import InvalidArgument

DINOV2_EXTRACTORS = tuple(MODEL_METADATA)
"""torch-fidelity names of the DINOv2 feature extractors."""


def default_code_dir() -> Path:
    """Where ``torch.hub`` keeps the DINOv2 repository after a ``torch.hub.load("facebookresearch/dinov2", ...)``."""
    return Path(torch.hub.get_dir()) / "facebookresearch_dinov2_main"


class LocalDinoV2(FeatureExtractorDinoV2):
    """torch-fidelity's DINOv2 extractor, built from local code and local weights only.

    Args:
        name: one of `DINOV2_EXTRACTORS`.
        features_list: ``["dinov2"]``.
        feature_extractor_weights_path: the network's state dict (``.pth`` or ``.safetensors``); required.
        dinov2_code_dir: a local DINOv2 repository with its ``hubconf.py``; `default_code_dir()` when None.

    Raises:
        InvalidArgument: no weights path, a missing file or folder, or weights that do not fit the network.
    """

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,
        dinov2_code_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        FeatureExtractorBase.__init__(self, name, features_list)
        if name not in MODEL_METADATA:
            raise InvalidArgument(f"unknown DINOv2 extractor {name!r}; choose from {DINOV2_EXTRACTORS}")
        if feature_extractor_weights_path is None or not Path(feature_extractor_weights_path).is_file():
            raise InvalidArgument(
                f"{name} needs its weights on disk (adagen-env never downloads): pass the state dict file as "
                f"dinov2_weights_path= (got {feature_extractor_weights_path!r})"
            )
        code = Path(dinov2_code_dir).expanduser() if dinov2_code_dir else default_code_dir()
        if not (code / "hubconf.py").is_file():
            raise InvalidArgument(
                f"{name} is built from a local DINOv2 repository; no hubconf.py in {str(code)!r} "
                "(pass dinov2_code_dir= a clone of facebookresearch/dinov2)"
            )
        self.feature_extractor_internal_dtype = torch.float32
        self.model = torch.hub.load(str(code), MODEL_METADATA[name], source="local", pretrained=False, verbose=False)
        path = str(feature_extractor_weights_path)
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            self.model.load_state_dict(state)
        except RuntimeError as exc:
            raise InvalidArgument(f"weights {path!r} do not fit {name}: {exc}") from exc
        self.requires_grad_(False)
        self.eval()


def register() -> None:
    """Register `LocalDinoV2` under every torch-fidelity DINOv2 name (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    for name in DINOV2_EXTRACTORS:
        if FEATURE_EXTRACTORS_REGISTRY.get(name) is not LocalDinoV2:
            FEATURE_EXTRACTORS_REGISTRY.pop(name, None)
            register_feature_extractor(name, LocalDinoV2)


register()

__all__ = ["DINOV2_EXTRACTORS", "LocalDinoV2", "default_code_dir", "register"]
