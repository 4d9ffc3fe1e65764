"""Reward-hacking and diversity monitors of training: per-class recall and the share of near-duplicates in the
periodic evaluation's batch, against the baseline schedule's on the same labels and noise.

A policy that games its reward often gives up diversity first: it narrows a class to the few samples the reward
likes best, or makes copies. Both show here before FID moves. In the feature space of FD-SSL
(`adagen_env.metrics.ssl.ssl_features`, by default):

* **per-class recall** (Kynkaenniemi et al. 2019, within each class): the share of a class's real images that lie
  inside the k-nearest-neighbour balls of the generated images of that class; its mean over classes is the run's
  recall, so a class that collapses alone still pulls it down;
* **near-duplicates**: the share of generated images whose nearest other generated image of the same class is closer
  than `duplicate_radius` times the median such distance among real images of that class.

`CollapseMonitor.check` raises an alarm when the recall falls more than `recall_drop` (10 %) below the baseline's,
or the duplicate share rises more than `duplicate_rise` above the baseline's; `agents.callbacks.PolicyEvaluation`
then warns and lists the alarm in the metadata of every checkpoint saved afterwards (`collapse_alarms`).

Letters: N images, C classes, D feature width.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from adagen_env.errors import InvalidArgument

Features = Callable[[torch.Tensor], torch.Tensor]
"""(N, 3, R, R) images in [0, 1] -> (N, D) float features."""


def ssl_space(device: str = "cpu") -> Features:
    """FD-SSL's feature space (`ssl_features`) for images in [0, 1]."""
    from adagen_env.metrics.base import to_uint8
    from adagen_env.metrics.ssl import ssl_features

    return lambda images: ssl_features(to_uint8(images), device)


def class_recall(
    fake: torch.Tensor,
    fake_labels: torch.Tensor,
    real: torch.Tensor,
    real_labels: torch.Tensor,
    num_classes: int,
    neighbourhood: int = 3,
) -> torch.Tensor:
    """(C,) recall of each class: the share of its (n_c, D) real features within distance r_j of some generated
    feature j of the class, r_j the distance from j to its `neighbourhood`-th nearest generated neighbour of the
    class (fewer when the class has fewer images); NaN for a class without two generated and one real image."""
    recall = torch.full((num_classes,), float("nan"))
    for c in range(num_classes):
        gen, ref = fake[fake_labels == c].double(), real[real_labels == c].double()
        if gen.shape[0] < 2 or ref.shape[0] < 1:
            continue
        k = min(neighbourhood, gen.shape[0] - 1)
        radii = torch.cdist(gen, gen).kthvalue(k + 1, dim=1).values  # (n_g,): the 0th neighbour is the image itself
        recall[c] = (torch.cdist(ref, gen) <= radii[None]).any(dim=1).double().mean()
    return recall


def _nearest_other(x: torch.Tensor) -> torch.Tensor:
    """(n,) distance from each row of (n, D) `x` to its nearest other row."""
    distances = torch.cdist(x, x)
    distances.fill_diagonal_(float("inf"))
    return distances.min(dim=1).values


def duplicate_share(
    fake: torch.Tensor,
    fake_labels: torch.Tensor,
    real: torch.Tensor,
    real_labels: torch.Tensor,
    num_classes: int,
    radius: float = 0.1,
) -> float:
    """Share of the (N, D) generated features whose nearest other generated feature of the same class is within
    `radius` times the median nearest-other distance of that class's real features."""
    duplicates, counted = 0, 0
    for c in range(num_classes):
        gen, ref = fake[fake_labels == c].double(), real[real_labels == c].double()
        if gen.shape[0] < 2 or ref.shape[0] < 2:
            continue
        duplicates += int((_nearest_other(gen) <= radius * _nearest_other(ref).median()).sum())
        counted += gen.shape[0]
    return duplicates / counted if counted else float("nan")


class CollapseMonitor:
    """Per-class recall and near-duplicates of an evaluation batch against the baseline's (module docstring).

    Args:
        num_classes: C.
        features: the feature space; FD-SSL's when None.
        reference: (real images (M, 3, R, R) in [0, 1], labels (M,)); the shapes reference of the evaluation batch's
            size and resolution when None (`adagen_env.metrics.shapes_reference`, drawn on first use).
        recall_drop: alarm when recall < (1 - recall_drop) x the baseline's.
        duplicate_rise: alarm when the duplicate share > the baseline's + duplicate_rise.
        duplicate_radius: near-duplicate radius, in units of the real images' median nearest-other distance.
        device: where the feature network runs.
    """

    def __init__(
        self,
        num_classes: int,
        features: Features | None = None,
        reference: tuple[torch.Tensor, torch.Tensor] | None = None,
        recall_drop: float = 0.1,
        duplicate_rise: float = 0.05,
        duplicate_radius: float = 0.1,
        device: str = "cpu",
    ) -> None:
        if not 0 < recall_drop < 1 or not 0 <= duplicate_rise < 1 or duplicate_radius <= 0:
            raise InvalidArgument(
                f"need 0 < recall_drop < 1, 0 <= duplicate_rise < 1 and duplicate_radius > 0, got "
                f"{recall_drop}, {duplicate_rise}, {duplicate_radius}"
            )
        self.num_classes, self.features = num_classes, features or ssl_space(device)
        self.reference = reference
        self.recall_drop, self.duplicate_rise, self.duplicate_radius = recall_drop, duplicate_rise, duplicate_radius
        self.baseline: dict[str, Any] | None = None
        self._real: tuple[torch.Tensor, torch.Tensor] | None = None

    def measure(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """{"recall": mean over classes, "class_recall": (C,) list, "duplicates": share} of (N, 3, R, R) images."""
        if self._real is None:
            if self.reference is None:
                from adagen_env.metrics import shapes_reference

                real_u8, real_labels = shapes_reference(images.shape[0], images.shape[-1], num_classes=self.num_classes)
                self.reference = (real_u8.float() / 255.0, real_labels)
            self._real = (
                self.features(self.reference[0]).float().cpu(),
                torch.as_tensor(self.reference[1]).reshape(-1).cpu(),
            )
        real, real_labels = self._real
        fake, labels = self.features(images).float().cpu(), torch.as_tensor(labels).reshape(-1).cpu()
        per_class = class_recall(fake, labels, real, real_labels, self.num_classes)
        return {
            "recall": float(per_class.nanmean()),
            "class_recall": per_class.tolist(),
            "duplicates": duplicate_share(fake, labels, real, real_labels, self.num_classes, self.duplicate_radius),
        }

    def set_baseline(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Measure the baseline schedule's batch, which `check` compares with."""
        self.baseline = self.measure(images, labels)
        return self.baseline

    def check(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[dict[str, Any], list[str]]:
        """(the batch's `measure`, the reasons for an alarm: empty when there is none).

        Raises:
            InvalidArgument: no baseline yet (`set_baseline`).
        """
        if self.baseline is None:
            raise InvalidArgument("CollapseMonitor.check needs the baseline's batch first (set_baseline)")
        stats, base, reasons = self.measure(images, labels), self.baseline, []
        if stats["recall"] < (1 - self.recall_drop) * base["recall"]:
            fallen = [
                c
                for c, (r, b) in enumerate(zip(stats["class_recall"], base["class_recall"]))
                if r < (1 - self.recall_drop) * b
            ]
            reasons.append(
                f"recall {stats['recall']:.3f} is more than {self.recall_drop:.0%} below the baseline's "
                f"{base['recall']:.3f} (classes {fallen} fell)"
            )
        if stats["duplicates"] > base["duplicates"] + self.duplicate_rise:
            reasons.append(
                f"near-duplicates {stats['duplicates']:.3f} of the batch, the baseline's {base['duplicates']:.3f}"
            )
        return stats, reasons


__all__ = ["CollapseMonitor", "Features", "class_recall", "duplicate_share", "ssl_space"]
