"""Benchmark metrics: FID, KID, Inception Score and precision/recall via torch-fidelity, class agreement, FD-SSL and
the oracle metrics.

`scores` computes them all in one call (`compute_metrics`, `real_floor`), `classifier` holds the shapes classifier
that torch-fidelity measures with (importing this package registers it as ``"shapes-classifier"``), `reference` the
real sets they compare with, `ssl` and `oracle` their own yardsticks.
"""

from adagen_env.checks import check_images, check_labels
from adagen_env.metrics.base import ImageTensorDataset, kid_subset_size, to_uint8
from adagen_env.metrics.classifier import (
    SHAPES_EXTRACTOR,
    ShapesFeatureExtractor,
    class_agreement,
    classifier_features,
    load_classifier,
    register,
)
from adagen_env.metrics.reference import (
    FLOOR_SEED,
    REFERENCE_SEED,
    balanced_labels,
    clear_reference_cache,
    shapes_reference,
)
from adagen_env.metrics.scores import (
    DINOV2_EXTRACTORS,
    FEATURE_EXTRACTORS,
    HEADLINE,
    INCEPTION_EXTRACTOR,
    METRICS,
    TORCH_FIDELITY_METRICS,
    compute_metrics,
    real_floor,
)

__all__ = [
    "FEATURE_EXTRACTORS",
    "DINOV2_EXTRACTORS",
    "FLOOR_SEED",
    "HEADLINE",
    "INCEPTION_EXTRACTOR",
    "METRICS",
    "REFERENCE_SEED",
    "SHAPES_EXTRACTOR",
    "TORCH_FIDELITY_METRICS",
    "ImageTensorDataset",
    "ShapesFeatureExtractor",
    "balanced_labels",
    "check_images",
    "check_labels",
    "class_agreement",
    "classifier_features",
    "clear_reference_cache",
    "compute_metrics",
    "kid_subset_size",
    "load_classifier",
    "real_floor",
    "register",
    "shapes_reference",
    "to_uint8",
]
