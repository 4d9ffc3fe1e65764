"""What `adagen train`'s periodic evaluation, `adagen eval` and `adagen bench` score generated images against: the
shapes data (the default, every yardstick of docs/yardsticks.md) or, for a real generator, a folder of real images
in Inception-v3's space (FID, KID, Inception Score, precision / recall; `adagen_env.metrics.compute_metrics` with
`feature_extractor="inception-v3-compat"`).

With a folder, the FD-SSL, oracle and class-agreement yardsticks do not exist (they are the shapes data's), verdicts
fall back to FID (`agents.reporting.headline`), and what selects (the best periodic checkpoint, the tuned static
search) is the Inception FID instead of FD-SSL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adagen_env.data import SHAPE_CLASSES
from adagen_env.errors import InvalidArgument


@dataclass(frozen=True)
class Scoring:
    """The real images and feature network of every score.

    Args:
        reference: a folder of real images (read recursively, png / jpg / jpeg, each resized on its shorter side to
            the generated images' side and centre-cropped); None: the shapes data.
        inception_weights: torch-fidelity's Inception-v3 weights file, required with `reference`.
    """

    reference: str | None = None
    inception_weights: str | None = None

    def __post_init__(self) -> None:
        if (self.reference is None) != (self.inception_weights is None):
            raise InvalidArgument(
                "--reference and --inception-weights go together: FID against a folder of real images is "
                "measured in Inception-v3's space, from torch-fidelity's weights file "
                f"(got reference={self.reference!r}, inception_weights={self.inception_weights!r})"
            )
        if self.reference is not None and not Path(self.reference).is_dir():
            raise InvalidArgument(f"--reference {self.reference!r} is not a folder of real images")
        if self.inception_weights is not None and not Path(self.inception_weights).is_file():
            raise InvalidArgument(
                f"--inception-weights {self.inception_weights!r} does not exist; pass torch-fidelity's "
                "weights-inception-2015-12-05-6726825d.pth (nothing is downloaded)"
            )

    @property
    def real(self) -> bool:
        """Scores against a folder of real images."""
        return self.reference is not None

    @property
    def selection(self) -> str:
        """The score key that selects: FD-SSL on the shapes data (`agents.reporting.SELECTION_METRIC`), else FID."""
        from agents.reporting import SELECTION_METRIC

        return "fid" if self.real else SELECTION_METRIC

    @property
    def selection_metrics(self) -> tuple[str, ...]:
        """The `compute_metrics` switch that gives `selection`."""
        return ("fid",) if self.real else ("ssl",)

    def kwargs(self) -> dict[str, Any]:
        """`compute_metrics` keyword arguments: none for the shapes data."""
        if not self.real:
            return {}
        return {
            "reference": self.reference,
            "feature_extractor": "inception-v3-compat",
            "inception_weights_path": self.inception_weights,
            "resize_reference": True,
        }

    def score(self, images: Any, labels: Any, metrics: tuple[str, ...], device: str) -> dict[str, float]:
        """`compute_metrics(images, labels, metrics=metrics, device=device)` against this reference; (B, 3, R, R)
        images in [0, 1], (B,) labels."""
        from adagen_env.metrics import compute_metrics

        return compute_metrics(images, labels, metrics=metrics, device=device, **self.kwargs())

    def check_sampler(self, sampler: Any) -> None:
        """`InvalidArgument` when the shapes data would score a generator of more classes than it has."""
        if not self.real and sampler.num_classes > len(SHAPE_CLASSES):
            raise InvalidArgument(
                f"the generator has {sampler.num_classes} classes; the shapes data, which scores by default, has "
                f"{len(SHAPE_CLASSES)}: give --reference DIR (real images) and --inception-weights FILE to score "
                "against real images in Inception-v3's space"
            )

    def describe(self) -> str:
        """One sentence for reports: what the scores are measured against."""
        if not self.real:
            return "Scored against the shapes data (docs/yardsticks.md)."
        return (
            f"Scored against the real images of `{self.reference}` in Inception-v3's space (torch-fidelity's "
            "weights): FID, KID, IS, precision and recall; FD-SSL, oracle and class agreement are the shapes data's "
            "and absent, and verdicts are by FID."
        )


def columns(reference: str | None) -> dict[str, str]:
    """`agents.reporting.COLUMNS` with the FID column named for its feature space: a report's `reference` (None: the
    shapes data)."""
    from agents.reporting import COLUMNS

    return dict(COLUMNS) if reference is None else {**COLUMNS, "fid": "Inception FID"}


SHAPES = Scoring()
"""The default: the shapes data."""

__all__ = ["SHAPES", "Scoring", "columns"]
