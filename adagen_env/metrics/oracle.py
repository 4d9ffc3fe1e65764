"""Ground-truth yardsticks that only procedural data allows: oracle fidelity and oracle coverage.

Every real shapes image is a clean rendering of known factors plus grain. For any image, the zoo's factor network
(`adagen_env.models.factors`) guesses the factors of the requested class, and the renderer is then fitted to the
image by gradient descent on those factors (analysis by synthesis). Two numbers follow, neither of which rests on a
learned feature space:

* **oracle fidelity**: the RMSE between an image and its best clean rendering of the requested class, averaged over
  the images. A real image sits at about the grain's standard deviation (`GRAIN_SIGMA`, 0.02); blur, noise, broken
  shapes and wrong classes all raise it.
* **oracle coverage**: per class and per factor, the 1-Wasserstein distance between the fitted factors of the images
  and the true factor distribution of the data, in units of that factor's standard deviation, averaged. It rises
  when a set misses sizes, positions, colours or backgrounds that real data has. One factor is measured rather
  than fitted: the grain level, the robust standard deviation of the residual's finest diagonal Haar coefficients
  (every real image has grain of `GRAIN_SIGMA`; noise raises the level, blur and over-smooth samples lower it). Its
  true value is a constant, so its distance is in units of `GRAIN_SIGMA`.

Letters: B images, C channels, R image side, F = 13 coverage factors.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from adagen_env.checks import check_images, check_labels
from adagen_env.data.shapes import GRAIN_SIGMA, SHAPE_CLASSES, ShapesDataset, render_shapes
from adagen_env.errors import InvalidArgument
from adagen_env.models.factors import FACTOR_NAMES, FactorNet, FactorNetConfig, factors_to_vector, vector_to_factors
from adagen_env.models.weights import load_shipped

COVERAGE_FACTORS: tuple[str, ...] = (*FACTOR_NAMES[:11], "bg_contrast", "grain")
"""Factors whose distributions oracle coverage compares (the angle's only for classes with a finite symmetry): the
factor vector's first 11 (size to background mean), the background's contrast and the grain level."""
_MAD_TO_STD = 0.6745
"""Median absolute value of a standard normal draw."""
FIT_STEPS = 60
"""Adam steps of the renderer fit."""
FIT_LR = 0.02
"""Peak learning rate of the fit (cosine decay to 5% of it)."""
TRUE_FACTOR_SEED = 20_240_603
"""Seed of the true factor draw that coverage compares with."""
TRUE_FACTORS_PER_CLASS = 2000
"""True factor draws per class."""
_QUANTILES = torch.linspace(0.0025, 0.9975, 200)
FACTOR_NET = "shapes-factors"
"""Name of the factor network's shipped weights (its zoo name)."""
_NETS: dict[str, torch.nn.Module] = {}


def load_factor_net(device: torch.device | str = "cpu") -> torch.nn.Module:
    """The shipped frozen factor network (loaded once per process and device)."""
    key = str(torch.device(device))
    if key not in _NETS:
        _NETS[key] = load_shipped(FACTOR_NET, FactorNet, FactorNetConfig, device=device)
    return _NETS[key]


def fit_factors(
    images: torch.Tensor,
    labels: torch.Tensor,
    factor_net: torch.nn.Module,
    steps: int = FIT_STEPS,
    lr: float = FIT_LR,
    class_names: tuple[str, ...] = SHAPE_CLASSES,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Fit clean renderings of the (B,) labels to (B, 3, R, R) images in [0, 1].

    Returns the fitted factors (the dict `render_shapes` takes, without grain, plus ``grain_level`` (B,), the
    `grain_level` of the residual) and the (B,) RMSE of each image to its fitted rendering. Each image's factors
    are fitted independently (Adam is per element), in one batch.
    """
    device = next(factor_net.parameters()).device
    images, labels = images.to(device).float(), labels.to(device)
    res = images.shape[-1]
    with torch.no_grad():
        _, vector = factor_net(images)
    init = vector_to_factors(labels, vector, class_names)
    mean = (init["bg_a"] + init["bg_b"]) / 2
    params = {
        "size": init["size"],
        "centre": init["centre"],
        "angle": init["angle"],
        "fg": init["fg"],
        "bg_mean": mean,
        "bg_diff": init["bg_b"] - init["bg_a"],
        "bg_dir": init["bg_dir"],
    }
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=lr)

    def render() -> torch.Tensor:
        factors = _render_factors(params)
        return render_shapes(labels, factors, class_names, resolution=res)

    with torch.enable_grad():
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            loss = (render() - images).pow(2).mean(dim=(1, 2, 3)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                params["size"].clamp_(min=0.05)
    with torch.no_grad():
        residual = images - render()
        factors = {k: v.detach() for k, v in _render_factors(params).items()}
    return {**factors, "grain_level": grain_level(residual)}, residual.pow(2).mean(dim=(1, 2, 3)).sqrt()


def grain_level(residual: torch.Tensor) -> torch.Tensor:
    """(B, C, R, R) -> (B,): median |HH| / 0.6745 over the finest diagonal Haar coefficients of every channel.

    HH = (a - b - c + d) / 2 on each 2x2 block has the standard deviation of iid per-pixel noise, and is near zero on
    smooth content; the median keeps the few edge blocks out (Donoho's noise estimate)."""
    r = residual.shape[-1] // 2 * 2
    x = residual[..., :r, :r]
    hh = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    return hh.flatten(1).abs().median(dim=1).values / _MAD_TO_STD


def _render_factors(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    half = params["bg_diff"] / 2
    return {
        "size": params["size"],
        "centre": params["centre"],
        "angle": params["angle"],
        "fg": params["fg"],
        "bg_a": params["bg_mean"] - half,
        "bg_b": params["bg_mean"] + half,
        "bg_dir": params["bg_dir"],
    }


def coverage_vectors(
    labels: torch.Tensor, factors: dict[str, torch.Tensor], class_names: tuple[str, ...] = SHAPE_CLASSES
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, F) coverage factors (`COVERAGE_FACTORS`) and their (B, F) validity mask.

    The grain level is ``factors["grain_level"]`` (a fit's) or, for drawn factors, that of their ``grain`` field.

    Raises:
        InvalidArgument: `factors` has neither ``grain_level`` nor ``grain``.
    """
    if "grain_level" in factors:
        grain = factors["grain_level"]
    elif "grain" in factors:
        grain = grain_level(factors["grain"])
    else:
        raise InvalidArgument("coverage needs the factors' 'grain_level' (from fit_factors) or their 'grain' field")
    vector, mask = factors_to_vector(labels, factors, class_names)
    contrast = vector[:, 11:17].norm(dim=1, keepdim=True)  # |bg_b - bg_a|
    extra = torch.cat([contrast, grain[:, None].to(vector)], dim=1)
    return torch.cat([vector[:, :11], extra], dim=1), torch.cat([mask[:, :11], torch.ones_like(extra)], dim=1)


_TRUE_CACHE: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def true_factors(num_classes: int = 8, resolution: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels (N,), coverage vectors (N, F), mask (N, F)) of a fixed draw of the data's true factors at
    `resolution` (the grain level's, measured on what clamping to [0, 1] leaves of the grain)."""
    key = (num_classes, resolution)
    if key not in _TRUE_CACHE:
        data = ShapesDataset(resolution, num_classes=num_classes)
        labels = torch.arange(TRUE_FACTORS_PER_CLASS * num_classes) % num_classes
        factors = data.draw_factors(labels, torch.Generator().manual_seed(TRUE_FACTOR_SEED))
        clean = render_shapes(labels, {k: v for k, v in factors.items() if k != "grain"}, data.class_names, resolution)
        real = render_shapes(labels, factors, data.class_names)
        factors = {**factors, "grain_level": grain_level(real - clean)}
        _TRUE_CACHE[key] = (labels, *coverage_vectors(labels, factors, data.class_names))
    return _TRUE_CACHE[key]


def wasserstein_1d(a: torch.Tensor, b: torch.Tensor) -> float:
    """1-Wasserstein distance between two 1-d samples, from their quantile functions."""
    q = _QUANTILES.to(a.dtype)
    return float((torch.quantile(a, q) - torch.quantile(b, q)).abs().mean())


def factor_coverage(
    labels: torch.Tensor,
    factors: dict[str, torch.Tensor],
    class_names: tuple[str, ...] = SHAPE_CLASSES,
    resolution: int = 16,
) -> dict[str, Any]:
    """Per class and factor, W1(fitted, true) / std(true) (the grain level's / `GRAIN_SIGMA`), the truth at the
    images' `resolution`; returns ``coverage`` (the mean over classes and factors), ``per_factor`` and ``per_class``
    means. A class with fewer than 2 images counts as missed: each of its factors gets the largest distance any
    class has for that factor, at least 1."""
    labels = labels.cpu()
    vectors, _ = coverage_vectors(labels, {k: v.cpu() for k, v in factors.items()}, class_names)
    true_labels, true_vectors, true_mask = true_factors(len(class_names), resolution)
    grain = COVERAGE_FACTORS.index("grain")
    table = torch.full((len(class_names), len(COVERAGE_FACTORS)), float("nan"))
    for c in range(len(class_names)):
        mine, ref = labels == c, true_labels == c
        for f in range(len(COVERAGE_FACTORS)):
            if not bool(true_mask[ref, f].all()):
                continue  # the angle of a circle or a ring
            truth = true_vectors[ref, f]
            if int(mine.sum()) >= 2:
                scale = GRAIN_SIGMA if f == grain else float(truth.std())
                table[c, f] = wasserstein_1d(vectors[mine, f], truth) / scale
    missing = torch.isnan(table) & true_mask_table(true_labels, true_mask, len(class_names))
    worst = torch.nan_to_num(table, nan=0.0).amax(dim=0).clamp(min=1.0)
    table = torch.where(missing, worst.expand_as(table), table)
    return {
        "coverage": float(table.nanmean()),
        "per_factor": dict(zip(COVERAGE_FACTORS, table.nanmean(dim=0).tolist())),
        "per_class": dict(zip(class_names, table.nanmean(dim=1).tolist())),
    }


def true_mask_table(true_labels: torch.Tensor, true_mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, F) True where a factor is defined for a class."""
    return torch.stack([true_mask[true_labels == c].all(dim=0) for c in range(num_classes)])


def oracle_scores(
    images: torch.Tensor, labels: torch.Tensor, factor_net: torch.nn.Module, batch_size: int = 1000
) -> dict[str, Any]:
    """``oracle_fidelity`` (mean RMSE to the best clean rendering of the requested class), ``oracle_coverage``, and
    their detail (``oracle_rmse`` per image, coverage ``per_factor`` / ``per_class``) of (B, 3, R, R) images.

    Raises:
        InvalidArgument: images not finite floats in [0, 1] of shape (B, 3, R, R), or labels not (B,) class ids.
    """
    images = check_images(images)
    labels = check_labels(labels, images.shape[0], factor_net.config.num_classes)
    fitted, rmse = [], []
    for start in range(0, images.shape[0], batch_size):
        f, r = fit_factors(images[start : start + batch_size], labels[start : start + batch_size], factor_net)
        fitted.append(f)
        rmse.append(r.cpu())
    factors = {k: torch.cat([f[k].cpu() for f in fitted]) for k in fitted[0]}
    rmse_all = torch.cat(rmse)
    coverage = factor_coverage(labels, factors, resolution=images.shape[-1])
    return {
        "oracle_fidelity": float(rmse_all.mean()),
        "oracle_coverage": coverage["coverage"],
        "oracle_rmse": rmse_all,
        "per_factor": coverage["per_factor"],
        "per_class": coverage["per_class"],
    }


__all__ = [
    "COVERAGE_FACTORS",
    "FACTOR_NET",
    "coverage_vectors",
    "factor_coverage",
    "fit_factors",
    "grain_level",
    "load_factor_net",
    "oracle_scores",
    "true_factors",
    "wasserstein_1d",
]
