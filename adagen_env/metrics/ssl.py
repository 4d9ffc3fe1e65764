"""FD-SSL: Frechet distance, KID and precision/recall in the feature space of the zoo's self-supervised encoder.

The feature vector of an image (D = 352) is two blocks of the encoder (`SSLEncoder.multi_depth`): the channel
statistics of its three depths (224) and its 128-d embedding, each block scaled so that its total variance over a
fixed real set is `BLOCK_VARIANCE`. The embedding alone separates images well but its Frechet distance carries
much sampling noise; the statistics see blur, noise and colour
with little noise but barely see where the shape is; the two together see both
(`benchmarks/results/sensitivity`).

The encoder (`adagen_env.models.ssl`, zoo name ``"shapes-ssl"``) is registered with torch-fidelity as a feature
extractor of that name, so ``torch_fidelity.calculate_metrics(feature_extractor="shapes-ssl", ...)`` works as with
Inception. `ssl_scores` computes the same metrics from features it extracts once, and adds the Frechet Joint
Distance (FJD; DeVries et al., 2019): the Frechet distance of (features, alpha * one-hot label) pairs, which also
sees samples of the wrong class, with alpha the mean feature norm of the real set, as FJD prescribes.

Letters: B generated images, N reference images, D = 352 features, C classes.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F

from adagen_env.errors import InvalidArgument
from adagen_env.metrics import base
from adagen_env.metrics.base import ShapesExtractorBase
from adagen_env.models.ssl import SSLConfig, SSLEncoder
from adagen_env.models.weights import load_shipped

SSL_EXTRACTOR = "shapes-ssl"
"""torch-fidelity name of the self-supervised shapes encoder (also its zoo name)."""

BLOCK_VARIANCE = 1000.0
"""Total variance of each feature block on the calibration set (so real-vs-real FD-SSL is about 20 at 2000)."""
CALIBRATION_SEED = 20_240_604
"""Seed of the fixed real set (`CALIBRATION_SIZE` class-balanced images at 32x32) that sets the block scales."""
CALIBRATION_SIZE = 512

_NETS: dict[str, torch.nn.Module] = {}


class SSLFeatures(torch.nn.Module):
    """The encoder and its block scales: images (B, 3, R, R) in [0, 1] -> (B, D) FD-SSL features."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        from adagen_env.data.shapes import ShapesDataset

        self.encoder = encoder
        n = CALIBRATION_SIZE
        images, _ = ShapesDataset(32).sample(n, seed=CALIBRATION_SEED, labels=torch.arange(n) % 8)
        with torch.no_grad():
            blocks = encoder.multi_depth(images.to(next(encoder.parameters()).device))
        scales = torch.stack([(BLOCK_VARIANCE / b.var(dim=0).sum()).sqrt() for b in blocks])
        self.register_buffer("scales", scales)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        statistics, embedding = self.encoder.multi_depth(images)
        return torch.cat([statistics * self.scales[0], embedding * self.scales[1]], dim=1)


_FEATURE_MEMO: OrderedDict[str, torch.Tensor] = OrderedDict()
_FEATURE_MEMO_SIZE = 64


def load_ssl_encoder(device: torch.device | str = "cpu") -> SSLFeatures:
    """The shipped frozen self-supervised encoder with its block scales (built once per process and device)."""
    key = str(torch.device(device))
    if key not in _NETS:
        _NETS[key] = SSLFeatures(load_shipped(SSL_EXTRACTOR, SSLEncoder, SSLConfig, device=device)).eval()
    return _NETS[key]


@torch.no_grad()
def ssl_features(images_u8: torch.Tensor, device: torch.device | str = "cpu", batch_size: int = 500) -> torch.Tensor:
    """(B, 3, R, R) uint8 images -> (B, D) float32 CPU features; memoised by the images' bytes (reference sets
    recur at every evaluation)."""
    digest = hashlib.blake2b(images_u8.cpu().contiguous().numpy().tobytes(), digest_size=16)
    digest.update(str(tuple(images_u8.shape)).encode())
    key = digest.hexdigest()
    if key in _FEATURE_MEMO:
        _FEATURE_MEMO.move_to_end(key)
        return _FEATURE_MEMO[key]
    net = load_ssl_encoder(device)
    chunks = [
        net(images_u8[i : i + batch_size].to(device).float() / 255.0).float().cpu()
        for i in range(0, images_u8.shape[0], batch_size)
    ]
    features = torch.cat(chunks)
    _FEATURE_MEMO[key] = features
    while len(_FEATURE_MEMO) > _FEATURE_MEMO_SIZE:
        _FEATURE_MEMO.popitem(last=False)
    return features


class SSLFeatureExtractor(ShapesExtractorBase):
    """torch-fidelity feature extractor around the self-supervised shapes encoder.

    Provided features: ``"pool"`` (B, D), the default for FID, KID and precision/recall; it has no logits, so no
    Inception Score. Input: (B, 3, R, R) uint8 images at any R, torch-fidelity's convention.
    """

    def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
        super().__init__(name, features_list)
        self.net = load_ssl_encoder()

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("pool",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        if metric == "isc":
            raise ValueError(f"{SSL_EXTRACTOR} has no class logits: no Inception Score in its space")
        return {"fid": "pool", "kid": "pool", "prc": "pool"}[metric]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (B, 3, R, R) uint8 -> (features (B, D),)."""
        self.check_input(x)
        with torch.no_grad():
            return (self.net(x.float() / 255.0).float(),)


def register() -> None:
    """Register `SSLFeatureExtractor` with torch-fidelity as ``"shapes-ssl"`` (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if FEATURE_EXTRACTORS_REGISTRY.get(SSL_EXTRACTOR) is not SSLFeatureExtractor:
        FEATURE_EXTRACTORS_REGISTRY.pop(SSL_EXTRACTOR, None)
        register_feature_extractor(SSL_EXTRACTOR, SSLFeatureExtractor)


register()


def frechet_distance(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """Frechet distance of two (n, d) feature sets, by torch-fidelity's own statistics and formula."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

    stats_1 = fid_features_to_statistics(features_1.double())
    stats_2 = fid_features_to_statistics(features_2.double())
    return float(fid_statistics_to_metric(stats_1, stats_2, verbose=False)[KEY_METRIC_FID])


def ssl_scores(
    images_u8: torch.Tensor,
    labels: torch.Tensor | None,
    reference_u8: torch.Tensor,
    reference_labels: torch.Tensor | None,
    num_classes: int = 8,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    prc_neighborhood: int = 3,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """``fd_ssl``, ``kid_ssl`` (mean), ``precision_ssl``, ``recall_ssl`` of (B, 3, R, R) uint8 images against the
    (N, 3, R, R) uint8 reference, and ``fjd_ssl`` when both label sets are given. The KID subset size is
    `kid_subset_size(min(B, N))` when None.

    Raises:
        InvalidArgument: images or reference not (n, 3, R, R) uint8 (`compute_metrics` takes floats and checks them).
    """
    for what, x in (("images", images_u8), ("reference", reference_u8)):
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3):
            got = f"{tuple(x.shape)} {x.dtype}" if torch.is_tensor(x) else type(x).__name__
            raise InvalidArgument(f"ssl_scores: {what} must be (n, 3, H, W) torch.uint8, got {got}")
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    fake, real = ssl_features(images_u8, device), ssl_features(reference_u8, device)
    if kid_subset_size is None:
        kid_subset_size = base.kid_subset_size(min(len(fake), len(real)))
    out = {"fd_ssl": frechet_distance(fake, real)}
    kid = kid_features_to_metric(
        fake, real, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, verbose=False, rng_seed=2020
    )
    out["kid_ssl"] = float(kid[KEY_METRIC_KID_MEAN])
    prc = prc_features_to_metric(
        fake, real, prc_neighborhood=prc_neighborhood, prc_batch_size=10000, save_cpu_ram=True, verbose=False
    )
    out["precision_ssl"], out["recall_ssl"] = float(prc[KEY_METRIC_PRECISION]), float(prc[KEY_METRIC_RECALL])
    if labels is not None and reference_labels is not None:
        alpha = float(real.norm(dim=1).mean())
        joint = lambda f, y: torch.cat([f, alpha * F.one_hot(y.cpu().long(), num_classes).float()], dim=1)  # noqa: E731
        out["fjd_ssl"] = frechet_distance(joint(fake, labels), joint(real, reference_labels))
    return out


__all__ = [
    "BLOCK_VARIANCE",
    "SSL_EXTRACTOR",
    "SSLFeatureExtractor",
    "SSLFeatures",
    "frechet_distance",
    "load_ssl_encoder",
    "register",
    "ssl_features",
    "ssl_scores",
]
