"""What eval, bench and the ablations share when they report: table columns, cells and verdicts.

A method is called better (or worse) than a reference only when every headline yardstick
(`adagen_env.metrics.HEADLINE`: FD-SSL and oracle coverage) says so beyond the two rows' combined
spread over seeds; a tie when none does; split when they disagree. Rows without the headline yardsticks (results
from before they existed) fall back to the classifier FID alone, and say so.
"""

from __future__ import annotations

import math
from typing import Any

from adagen_env.metrics import HEADLINE

COLUMNS = {
    "fid": "classifier FID",
    "fd_ssl": "FD-SSL",
    "fjd_ssl": "FJD-SSL",
    "oracle_fidelity": "oracle fidelity",
    "oracle_coverage": "oracle coverage",
    "class_agreement": "class agreement",
    "precision": "precision",
    "recall": "recall",
}
"""Markdown table columns: metric key -> header (every metric stays in the JSON and CSV)."""
SHORT = {"fd_ssl": "FD-SSL", "oracle_fidelity": "fidelity", "oracle_coverage": "coverage", "fid": "FID"}
SELECTION_METRIC = "fd_ssl"
"""The one yardstick that selects (best periodic checkpoint, tuned static search); reports show all of them, so
selection never grades itself."""


def verdict(mean: float, std: float, ref_mean: float, ref_std: float) -> str:
    """ "better" / "worse" (lower is better) when the gap exceeds the combined spread, else "tie"."""
    if abs(mean - ref_mean) <= math.hypot(std, ref_std):
        return "tie"
    return "better" if mean < ref_mean else "worse"


def headline(row: dict[str, Any]) -> tuple[str, ...]:
    """The yardsticks a verdict on `row` uses: the headline ones, or the classifier FID for older rows."""
    return HEADLINE if all(k in row["mean"] for k in HEADLINE) else ("fid",)


def agreed_verdict(row: dict[str, Any], ref: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """("better" | "worse" | "tie" | "split", per-yardstick verdicts) of `row` against `ref` (rows with mean / std)."""
    keys = [k for k in headline(row) if k in ref["mean"]] or ["fid"]
    each = {k: verdict(row["mean"][k], row["std"][k], ref["mean"][k], ref["std"][k]) for k in keys}
    calls = set(each.values())
    return (calls.pop() if len(calls) == 1 else "split"), each


def change_cell(row: dict[str, Any], ref: dict[str, Any]) -> str:
    """A table cell: the agreed verdict, then each yardstick's change and its own verdict, e.g.
    "split (FD-SSL -6.2% tie, coverage -14.1% better)"."""
    call, each = agreed_verdict(row, ref)
    parts = [
        f"{SHORT[k]} {100 * (row['mean'][k] / ref['mean'][k] - 1):+.1f}% {v}" for k, v in each.items() if ref["mean"][k]
    ]
    return f"{call} ({', '.join(parts)})"


def stat_cells(row: dict[str, Any]) -> list[str]:
    """Mean ± std cells of `row` in `COLUMNS` order ("-" where a metric is missing)."""
    return [f"{row['mean'][k]:.4g} ± {row['std'][k]:.2g}" if k in row["mean"] else "-" for k in COLUMNS]


__all__ = ["COLUMNS", "SELECTION_METRIC", "agreed_verdict", "change_cell", "headline", "stat_cells", "verdict"]
