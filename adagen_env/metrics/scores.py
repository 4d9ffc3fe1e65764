"""Every score of a set of generated images against real data in one call (`compute_metrics`), and the real-vs-real
floor (`real_floor`).

FID, KID, Inception Score and precision/recall come from torch-fidelity in the space of a feature extractor: on the
embedded shapes data the shapes classifier (`adagen_env.metrics.classifier`); on real data the standard
``"inception-v3-compat"`` or a DINOv2 extractor, with weights read from files on disk; nothing is ever downloaded
(docs/design.md 7). Class agreement, the FD-SSL family (`adagen_env.metrics.ssl`) and the oracle metrics
(`adagen_env.metrics.oracle`) join them.

    >>> from adagen_env.metrics import compute_metrics
    >>> from adagen_env.data import ShapesDataset
    >>> images, labels = ShapesDataset(16).sample(256, seed=1)
    >>> scores = compute_metrics(images, labels)  # doctest: +SKIP
    >>> sorted(scores)  # doctest: +SKIP
    ['class_agreement', 'f_score', 'fid', 'isc_mean', 'isc_std', 'kid_mean', 'kid_std', 'num_reference', ...]

Letters: B generated images, N reference images, R image side.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from adagen_env.checks import check_images, check_labels
from adagen_env.errors import InvalidArgument
from adagen_env.metrics.base import ImageTensorDataset, kid_subset_size, to_uint8
from adagen_env.metrics.classifier import SHAPES_EXTRACTOR, class_agreement
from adagen_env.metrics.reference import FLOOR_SEED, REFERENCE_SEED, shapes_reference

INCEPTION_EXTRACTOR = "inception-v3-compat"
"""torch-fidelity's standard Inception-v3 (TF-compatible FID); needs a weights file on disk here."""
DINOV2_EXTRACTORS = ("dinov2-vit-s-14", "dinov2-vit-b-14", "dinov2-vit-l-14", "dinov2-vit-g-14")
"""torch-fidelity's DINOv2 extractors (FD-DINOv2 on real data), built from local code and weights
(`adagen_env.metrics.dinov2`)."""
FEATURE_EXTRACTORS = (SHAPES_EXTRACTOR, INCEPTION_EXTRACTOR, *DINOV2_EXTRACTORS)
TORCH_FIDELITY_METRICS = ("fid", "kid", "isc", "prc")
"""Metrics torch-fidelity computes in the feature space of `feature_extractor`."""
METRICS = (*TORCH_FIDELITY_METRICS, "ssl", "oracle")
"""Metric switches of `compute_metrics`: FID, KID, Inception Score, precision/recall in the classifier's space; the
FD-SSL family (`adagen_env.metrics.ssl`); the oracle fidelity and coverage (`adagen_env.metrics.oracle`)."""
HEADLINE = ("fd_ssl", "oracle_coverage")
"""The yardsticks a verdict needs to agree (lower is better for each): between them they see every damage of
`benchmarks/results/sensitivity`. The oracle fidelity is reported beside them but has no vote: as a per-image pixel
distance it favours smooth samples (the zoo's DiT and SiT score better on it at NFE 8 than at NFE 64,
`benchmarks/results/yardsticks`)."""


def _resolve_device(device: torch.device | str) -> bool:
    """True when `device` is CUDA (torch-fidelity's `cuda` switch); other accelerators are not supported by it."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(f"device {str(device)!r} requested but CUDA is not available; use device='cpu'")
    if device.type not in ("cpu", "cuda"):
        raise InvalidArgument(f"torch-fidelity runs on 'cpu' or 'cuda', got device {str(device)!r}")
    return device.type == "cuda"


def compute_metrics(
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    reference: str | torch.Tensor | tuple[torch.Tensor, torch.Tensor] = "shapes",
    *,
    feature_extractor: str = SHAPES_EXTRACTOR,
    classifier_weights_path: str | Path | None = None,
    inception_weights_path: str | Path | None = None,
    dinov2_weights_path: str | Path | None = None,
    dinov2_code_dir: str | Path | None = None,
    metrics: tuple[str, ...] = METRICS,
    num_reference: int | None = None,
    reference_seed: int = REFERENCE_SEED,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    kid_subsets: int = 100,
    resize_reference: bool = False,
    verbose: bool = False,
) -> dict[str, float]:
    """FID, KID, Inception Score and precision/recall of `images` against real data, plus class agreement.

    Every metric comes from one `torch_fidelity.calculate_metrics` call with `images` as input1 and the
    real reference as input2 (both uint8 Datasets); nothing is written to torch-fidelity's disk cache.

    Args:
        images: (B, 3, R, R) generated images, float in [0, 1]. B >= 2; FID is biased upwards at small B,
            so compare scores only at equal B (and equal reference size).
        labels: (B,) class ids the images were asked for; adds ``class_agreement`` (shapes classifier) when
            given and the data is the shapes data.
        reference: the real images: ``"shapes"`` (the embedded data at the images' resolution, class-balanced,
            drawn with `reference_seed`, cached in memory), a (N, 3, R', R') float tensor in [0, 1], an
            (images, labels) pair of such, or a folder of image files (torch-fidelity reads it).
        feature_extractor: ``"shapes-classifier"`` (default, for the shapes data), ``"inception-v3-compat"``
            (real data; needs `inception_weights_path`) or a DINOv2 one such as ``"dinov2-vit-s-14"`` (FD-DINOv2 on
            real data; needs `dinov2_weights_path`).
        classifier_weights_path: safetensors weights of the shapes classifier; the zoo's when None.
        inception_weights_path: torch-fidelity's Inception-v3 weights file (`weights-inception-2015-12-05-*.pth`),
            required with ``"inception-v3-compat"``, since nothing is downloaded.
        dinov2_weights_path: the DINOv2 network's state dict, required with a DINOv2 extractor.
        dinov2_code_dir: a local DINOv2 repository (its ``hubconf.py``); torch.hub's cached copy when None.
        metrics: any of ``"fid"``, ``"kid"``, ``"isc"``, ``"prc"`` (torch-fidelity, in `feature_extractor`'s space),
            ``"ssl"`` and ``"oracle"`` (shapes data only; ``"oracle"`` needs labels; skipped where they do not apply).
        num_reference: N for ``"shapes"``; B when None.
        reference_seed: seed of the ``"shapes"`` reference.
        device: ``"cpu"`` or ``"cuda"`` (feature extraction).
        batch_size: images per feature-extractor forward.
        kid_subsets: KID subsets; the subset size is min(1000, min(B, N) // 2) (`kid_subset_size`).
        resize_reference: a folder `reference`'s images are resized (shorter side) to the images' side R and
            centre-cropped to R x R as they are read (torch-fidelity's `samples_resize_and_crop`), so a folder of
            photos of any sizes can be the reference; False: they are read as they are, and must all be of one size.
        verbose: let torch-fidelity print its progress.

    Returns:
        A flat dict: ``fid``; ``kid_mean``, ``kid_std``; ``isc_mean``, ``isc_std``; ``precision``, ``recall``,
        ``f_score``; ``class_agreement`` (when labels are given); ``fd_ssl``, ``fjd_ssl`` (with labels), ``kid_ssl``,
        ``precision_ssl``, ``recall_ssl``; ``oracle_fidelity``, ``oracle_coverage``; ``num_samples``,
        ``num_reference``.

    Raises:
        InvalidArgument: images not (B, 3, H, W) float in [0, 1], labels not (B,), unknown metric or extractor,
            a missing Inception weights file, or an unusable reference.
        CheckpointError: the shapes classifier's weights are missing or broken.
    """
    import torch_fidelity

    images = check_images(images)
    b, _, height, width = images.shape
    if b < 2:
        raise InvalidArgument(f"need at least 2 images to compare distributions, got {b}")
    if labels is not None:
        labels = check_labels(labels, b)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown or not metrics:
        raise InvalidArgument(f"metrics must be a non-empty subset of {METRICS}, got {tuple(metrics)}")
    if feature_extractor not in FEATURE_EXTRACTORS:
        raise InvalidArgument(f"feature_extractor must be one of {FEATURE_EXTRACTORS}, got {feature_extractor!r}")
    cuda = _resolve_device(device)

    # 1. Feature extractor and where its weights come from (never the network).
    if feature_extractor == INCEPTION_EXTRACTOR:
        if inception_weights_path is None or not Path(inception_weights_path).is_file():
            raise InvalidArgument(
                f"feature_extractor={INCEPTION_EXTRACTOR!r} needs its weights on disk: pass inception_weights_path= "
                "the torch-fidelity file 'weights-inception-2015-12-05-6726825d.pth' "
                f"(got {inception_weights_path!r}); "
                "adagen-env never downloads weights"
            )
        from adagen_env.metrics import inception  # noqa: F401  (registers the extractor that never unpickles)

        weights_path = str(inception_weights_path)
    elif feature_extractor in DINOV2_EXTRACTORS:
        from adagen_env.metrics import dinov2  # noqa: F401  (registers the local DINOv2 extractors)

        weights_path = None if dinov2_weights_path is None else str(dinov2_weights_path)
    else:
        weights_path = None if classifier_weights_path is None else str(classifier_weights_path)

    # 2. The real reference (input2).
    data_is_shapes, ref_u8, ref_labels, crop = False, None, None, 0
    if isinstance(reference, str) and reference == "shapes":
        if height != width:
            raise InvalidArgument(f"the shapes reference is square; images are {height}x{width}")
        n_ref = b if num_reference is None else int(num_reference)
        if n_ref < 2:
            raise InvalidArgument(f"num_reference must be >= 2, got {n_ref}")
        ref_u8, ref_labels = shapes_reference(n_ref, height, seed=reference_seed)
        input2: Any = ImageTensorDataset(ref_u8)
        data_is_shapes = True
    elif isinstance(reference, (str, os.PathLike)):
        if not Path(reference).is_dir():
            raise InvalidArgument(
                f"reference must be 'shapes', a tensor, an (images, labels) pair or a folder of images; "
                f"{str(reference)!r} is not an existing folder"
            )
        input2 = str(reference)
        n_ref = -1  # torch-fidelity counts the files
        if resize_reference:
            if height != width:
                raise InvalidArgument(f"resize_reference crops squares; images are {height}x{width}")
            crop = height
    else:
        ref = reference[0] if isinstance(reference, (tuple, list)) else reference
        ref = check_images(ref, what="reference images")
        if ref.shape[0] < 2:
            raise InvalidArgument(f"reference needs at least 2 images, got {ref.shape[0]}")
        ref_u8 = to_uint8(ref)
        if isinstance(reference, (tuple, list)):
            ref_labels = check_labels(reference[1], ref.shape[0])
        input2 = ImageTensorDataset(ref_u8)
        n_ref = ref.shape[0]

    # 3. Settings that stay valid at small sample counts.
    n_min = b if n_ref < 0 else min(b, n_ref)
    images_u8 = to_uint8(images)
    kwargs: dict[str, Any] = {
        "input1": ImageTensorDataset(images_u8),
        "input2": input2,
        "cuda": cuda,
        "batch_size": batch_size,
        "feature_extractor": feature_extractor,
        "feature_extractor_weights_path": weights_path,
        "dinov2_code_dir": None if dinov2_code_dir is None else str(dinov2_code_dir),
        "fid": "fid" in metrics,
        "kid": "kid" in metrics,
        "isc": "isc" in metrics,
        "prc": "prc" in metrics,
        "kid_subsets": kid_subsets,
        "kid_subset_size": kid_subset_size(n_min),
        "isc_splits": min(10, b),
        "prc_neighborhood": min(3, n_min - 1),
        "samples_find_deep": True,
        "samples_resize_and_crop": crop,
        "cache": False,
        "save_cpu_ram": True,  # no DataLoader worker processes; same numbers
        "verbose": verbose,
    }
    raw = torch_fidelity.calculate_metrics(**kwargs) if set(metrics) & set(TORCH_FIDELITY_METRICS) else {}

    # 4. Flat, short keys.
    names = {
        torch_fidelity.KEY_METRIC_FID: "fid",
        torch_fidelity.KEY_METRIC_KID_MEAN: "kid_mean",
        torch_fidelity.KEY_METRIC_KID_STD: "kid_std",
        torch_fidelity.KEY_METRIC_ISC_MEAN: "isc_mean",
        torch_fidelity.KEY_METRIC_ISC_STD: "isc_std",
        torch_fidelity.KEY_METRIC_PRECISION: "precision",
        torch_fidelity.KEY_METRIC_RECALL: "recall",
        torch_fidelity.KEY_METRIC_F_SCORE: "f_score",
    }
    out: dict[str, float] = {names[k]: float(v) for k, v in raw.items() if k in names}
    if labels is not None and (data_is_shapes or feature_extractor == SHAPES_EXTRACTOR):
        classifier_path = classifier_weights_path if feature_extractor == SHAPES_EXTRACTOR else None
        out["class_agreement"] = class_agreement(images, labels, classifier_path, device=device, batch_size=batch_size)
    if "ssl" in metrics and ref_u8 is not None and (data_is_shapes or feature_extractor == SHAPES_EXTRACTOR):
        from adagen_env.metrics.ssl import ssl_scores

        out.update(
            ssl_scores(
                images_u8,
                labels,
                ref_u8,
                ref_labels,
                kid_subsets=kid_subsets,
                kid_subset_size=kid_subset_size(n_min),
                prc_neighborhood=min(3, n_min - 1),
                device=device,
            )
        )
    if "oracle" in metrics and data_is_shapes and labels is not None:
        from adagen_env.metrics.oracle import load_factor_net, oracle_scores

        scores = oracle_scores(images_u8.float() / 255.0, labels, load_factor_net(device))
        out["oracle_fidelity"], out["oracle_coverage"] = scores["oracle_fidelity"], scores["oracle_coverage"]
    out["num_samples"] = b
    if n_ref > 0:
        out["num_reference"] = n_ref
    return out


def real_floor(
    num_samples: int,
    resolution: int = 16,
    *,
    reference_seed: int = REFERENCE_SEED,
    other_seed: int = FLOOR_SEED,
    **kwargs: Any,
) -> dict[str, float]:
    """Scores of real images against the real reference: the best any generator can reach at this size.

    Two disjoint real shapes sets of `num_samples` images each (the reference, drawn with `reference_seed`,
    and a second one drawn with `other_seed`), both class-balanced, are compared exactly as `compute_metrics`
    compares generated images, so FID / KID here are the noise floor of a `num_samples`-image evaluation.

    Args:
        num_samples: images in each of the two sets (B = N).
        resolution: image side R.
        reference_seed: seed of the reference set (the one `compute_metrics` uses).
        other_seed: seed of the second set; must differ from `reference_seed`.
        **kwargs: forwarded to `compute_metrics` (feature_extractor, weights paths, metrics, device, ...).
    """
    if other_seed == reference_seed:
        raise InvalidArgument(f"other_seed must differ from reference_seed ({reference_seed}) for disjoint sets")
    real_u8, labels = shapes_reference(num_samples, resolution, seed=other_seed)
    return compute_metrics(
        real_u8.float() / 255.0,
        labels,
        reference="shapes",
        num_reference=num_samples,
        reference_seed=reference_seed,
        **kwargs,
    )


__all__ = [
    "DINOV2_EXTRACTORS",
    "FEATURE_EXTRACTORS",
    "HEADLINE",
    "INCEPTION_EXTRACTOR",
    "METRICS",
    "TORCH_FIDELITY_METRICS",
    "compute_metrics",
    "real_floor",
]
