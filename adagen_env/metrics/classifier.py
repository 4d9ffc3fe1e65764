"""The shapes classifier as the metrics' feature network: loading it, its features (memoised), its registration with
torch-fidelity as ``"shapes-classifier"``, and class agreement.

Its pooled features stand in for Inception's pool3 (FID, KID, precision/recall), its bias-free logits for
Inception's `logits_unbiased` (Inception Score). Importing this module registers it.

The feature network must never be part of a reward (docs/design.md 5): nothing in `adagen_env.rewards` imports this
module's classifier.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from adagen_env.checks import check_images, check_labels
from adagen_env.metrics.base import ShapesExtractorBase, to_uint8
from adagen_env.models.weights import load_network, load_shipped
from adagen_env.models.weights import weights_path as shipped_path

SHAPES_EXTRACTOR = "shapes-classifier"
"""torch-fidelity name of the shapes classifier feature extractor (also the name of its shipped weights)."""


def load_classifier(weights_path: str | Path | None = None, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The shapes classifier: its shipped weights, or those of a `.safetensors` file.

    Args:
        weights_path: None for `adagen_env/zoo/weights/shapes-classifier.safetensors`; else a safetensors
            file whose config is read from the `.json` beside it when there is one (default config otherwise).
        device: where the frozen network lives.

    Raises:
        CheckpointError: the weights are missing, unreadable, or do not match the config.
    """
    from adagen_env.models.classifier import ClassifierConfig, ShapesClassifier

    if weights_path is None:
        return load_shipped(SHAPES_EXTRACTOR, ShapesClassifier, ClassifierConfig, device=device)
    return load_network(weights_path, ShapesClassifier, ClassifierConfig, ClassifierConfig(), device)


class ShapesFeatureExtractor(ShapesExtractorBase):
    """torch-fidelity feature extractor around the shapes classifier.

    Provided features: ``"pool"`` (B, 128) globally pooled features (default for FID, KID and
    precision/recall), ``"logits_unbiased"`` (B, num_classes) logits without the head's bias (default for the
    Inception Score, as torch-fidelity does for Inception) and ``"logits"``.

    Args:
        name: the registered name, ``"shapes-classifier"``.
        features_list: requested features, a subset of `get_provided_features_list()`.
        feature_extractor_weights_path: a `.safetensors` file of the classifier; the zoo's shipped weights
            when None (torch-fidelity's own keyword, so `calculate_metrics(feature_extractor_weights_path=...)`
            reaches it).
        **kwargs: the rest of `calculate_metrics`' keywords (ignored).

    Input: (B, 3, R, R) uint8 images at any R, torch-fidelity's convention.
    """

    def __init__(
        self,
        name: str,
        features_list: list[str],
        feature_extractor_weights_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, features_list)
        self.net = load_classifier(feature_extractor_weights_path)
        self.weights_key = _weights_key(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("pool", "logits_unbiased", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits_unbiased", "fid": "pool", "kid": "pool", "prc": "pool"}[metric]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (B, 3, R, R) uint8 -> the requested features, in `features_list` order, float32."""
        self.check_input(x)
        features = classifier_features(self.net, x, self.weights_key)
        return tuple(features[name].to(x.device) for name in self.features_list)


_FEATURE_MEMO: OrderedDict[tuple[str, str], dict[str, torch.Tensor]] = OrderedDict()
"""(weights key, digest of a uint8 batch) -> its features: the real reference's batches are met again at
every evaluation, and class agreement re-reads the generated batches; both hit this memo."""
_FEATURE_MEMO_SIZE = 256


@torch.no_grad()
def classifier_features(
    net: torch.nn.Module, x: torch.Tensor, weights_key: str | None = None
) -> dict[str, torch.Tensor]:
    """All features of one uint8 batch (B, 3, R, R): ``pool`` (B, D), ``logits_unbiased`` and ``logits`` (B, K).

    Memoised in memory (CPU tensors, least recently used out first) when `weights_key` names the weights.
    """
    key = None
    if weights_key is not None:
        digest = hashlib.blake2b(x.cpu().contiguous().numpy().tobytes(), digest_size=16)
        digest.update(str(tuple(x.shape)).encode())
        key = (weights_key, digest.hexdigest())
        if key in _FEATURE_MEMO:
            _FEATURE_MEMO.move_to_end(key)
            return _FEATURE_MEMO[key]
    pooled, logits = net(x.float() / 255.0)  # (B, D), (B, K)
    features = {
        "pool": pooled.float().cpu(),
        "logits_unbiased": (pooled @ net.head.weight.T).float().cpu(),  # (B, K): no bias, as Inception's
        "logits": logits.float().cpu(),
    }
    if key is not None:
        _FEATURE_MEMO[key] = features
        while len(_FEATURE_MEMO) > _FEATURE_MEMO_SIZE:
            _FEATURE_MEMO.popitem(last=False)
    return features


def _weights_key(weights_path: str | Path | None) -> str:
    """Identity of a classifier weights file: path, size and modification time."""
    path = Path(shipped_path(SHAPES_EXTRACTOR) if weights_path is None else weights_path).resolve()
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def register() -> None:
    """Register `ShapesFeatureExtractor` with torch-fidelity as ``"shapes-classifier"`` (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if FEATURE_EXTRACTORS_REGISTRY.get(SHAPES_EXTRACTOR) is not ShapesFeatureExtractor:
        FEATURE_EXTRACTORS_REGISTRY.pop(SHAPES_EXTRACTOR, None)
        register_feature_extractor(SHAPES_EXTRACTOR, ShapesFeatureExtractor)


register()


@torch.no_grad()
def class_agreement(
    images: torch.Tensor,
    labels: torch.Tensor,
    classifier: torch.nn.Module | str | Path | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> float:
    """Fraction of images the shapes classifier assigns to their requested label.

    Args:
        images: (B, 3, R, R) float in [0, 1] (quantised to uint8 first, as the FID path sees them).
        labels: (B,) requested class ids.
        classifier: a loaded `ShapesClassifier`, a weights file, or None for the zoo's shipped weights.
        device: where the classifier runs.
        batch_size: images per forward (with `compute_metrics`' batch size, its batches are read from the memo).

    Raises:
        InvalidArgument: wrong image shape or range, or labels that do not match the images.
    """
    images = check_images(images)
    weights_key = None
    if not isinstance(classifier, torch.nn.Module):
        path, classifier = classifier, load_classifier(classifier, device=device)
        weights_key = _weights_key(path)
    labels = check_labels(labels, images.shape[0], classifier.config.num_classes)
    quantised = to_uint8(images)
    hits = 0
    for start in range(0, quantised.shape[0], batch_size):
        chunk = quantised[start : start + batch_size].to(device)  # (b, 3, R, R) uint8
        logits = classifier_features(classifier, chunk, weights_key)["logits"]
        hits += int((logits.argmax(dim=1) == labels[start : start + batch_size]).sum())
    return hits / images.shape[0]


__all__ = [
    "SHAPES_EXTRACTOR",
    "ShapesFeatureExtractor",
    "class_agreement",
    "classifier_features",
    "load_classifier",
    "register",
]
