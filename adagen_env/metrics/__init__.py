"""Benchmark metrics: FID, KID, Inception Score and precision/recall via torch-fidelity, and class agreement.

Importing this package registers the shapes classifier with torch-fidelity as ``"shapes-classifier"``.
"""

from adagen_env.metrics.fidelity import (
    FEATURE_EXTRACTORS,
    FLOOR_SEED,
    INCEPTION_EXTRACTOR,
    METRICS,
    REFERENCE_SEED,
    SHAPES_EXTRACTOR,
    ImageTensorDataset,
    ShapesFeatureExtractor,
    balanced_labels,
    check_images,
    check_labels,
    class_agreement,
    classifier_features,
    clear_reference_cache,
    compute_metrics,
    kid_subset_size,
    load_classifier,
    real_floor,
    register,
    shapes_reference,
    to_uint8,
)

__all__ = [
    "FEATURE_EXTRACTORS",
    "FLOOR_SEED",
    "INCEPTION_EXTRACTOR",
    "METRICS",
    "REFERENCE_SEED",
    "SHAPES_EXTRACTOR",
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
