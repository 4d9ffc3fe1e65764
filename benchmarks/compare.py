"""Compare committed results: policy rows of `eval.json` files against a baseline row, or two training curves.

    python benchmarks/compare.py evals BASELINE_EVAL.json EVAL.json [EVAL.json ...]
    python benchmarks/compare.py evals BENCH.json EVAL.json --reference "CMA-ES static"
    python benchmarks/compare.py curves RUN_A/train_progress.csv RUN_B/train_progress.csv --until 139

`evals` refuses files of another sample count, seeds or generator digest than the reference row's (the baseline of
an `eval.json`, or any method of a `bench.json`), then prints each policy row's verdict (`agents.reporting.change_cell`: the headline yardsticks must agree beyond the spread).
`curves` prints, for the updates both runs reached, the periodic evaluations side by side and the medians of
PPO's explained variance and of the terminal reward's spread.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

from adagen_env.errors import InvalidArgument
from agents.reporting import change_cell


def _reference(path: Path, name: str) -> tuple[dict, dict]:
    """(the row called `name`, the file's num_samples and seeds) of an `eval.json` (rows by `name`) or a
    `bench.json` (rows by `method`)."""
    data = json.loads(path.read_text())
    settings = data.get("config", data)
    row = next((r for r in data["rows"] if r.get("name", r.get("method")) == name), None)
    if row is None:
        raise InvalidArgument(
            f"{path} has no row {name!r}; rows: {[r.get('name', r.get('method')) for r in data['rows']]}"
        )
    return row, {key: settings[key] for key in ("num_samples", "seeds")}


def compare_evals(baseline_path: Path, paths: list[Path], reference: str = "baseline") -> list[str]:
    base, settings = _reference(baseline_path, reference)
    lines = []
    for path in paths:
        other = json.loads(path.read_text())
        for key in ("num_samples", "seeds"):
            if other[key] != settings[key]:
                raise InvalidArgument(f"{path}: {key} {other[key]} differs from the reference's {settings[key]}")
        for row in other["rows"]:
            if row["name"] == "baseline":
                continue
            if row["generator_digest"] != base["generator_digest"]:
                raise InvalidArgument(
                    f"{path}: {row['name']} ran on generator {row['generator_digest']}, the "
                    f"reference on {base['generator_digest']}"
                )
            lines.append(f"{row['name']}: {change_cell(row, base)}")
    return lines


def _rows(path: Path, until: int | None) -> list[dict[str, str]]:
    rows = [r for r in csv.DictReader(path.open()) if r.get("charts/updates")]
    return [r for r in rows if until is None or int(r["charts/updates"]) <= until]


def compare_curves(paths: list[Path], until: int | None) -> list[str]:
    """The periodic evaluations of several runs side by side, at the updates all of them evaluated."""
    runs = {p: _rows(p, until) for p in paths}
    evals = {p: {int(r["charts/updates"]): r for r in rows if r.get("eval/fd_ssl")} for p, rows in runs.items()}
    keys = ("eval/fd_ssl", "eval/oracle_coverage", "eval/fid", "reward/alignment_paired")
    lines = ["update | " + " | ".join(f"{p.parent.name}: FD-SSL, coverage, FID, probe paired" for p in runs)]
    for update in sorted(set.intersection(*(set(e) for e in evals.values()))):
        cells = [
            ", ".join(f"{float(evals[p][update][k]):.4g}" if evals[p][update].get(k) else "-" for k in keys)
            for p in runs
        ]
        lines.append(f"{update} | " + " | ".join(cells))
    for key in ("train/explained_variance", "reward/terminal_std"):
        medians = [statistics.median(float(r[key]) for r in rows if r.get(key)) for rows in runs.values()]
        lines.append(f"median {key}: " + ", ".join(f"{p.parent.name} {m:.3f}" for p, m in zip(runs, medians)))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    evals = sub.add_parser("evals")
    evals.add_argument("baseline", type=Path)
    evals.add_argument("others", type=Path, nargs="+")
    evals.add_argument(
        "--reference",
        default="baseline",
        help="the reference row: its name in an eval.json, its method in a bench.json (e.g. 'CMA-ES static')",
    )
    curves = sub.add_parser("curves")
    curves.add_argument("runs", type=Path, nargs="+", help="progress CSVs of `adagen train` runs")
    curves.add_argument("--until", type=int, default=None, help="last update compared")
    args = parser.parse_args()
    lines = (
        compare_evals(args.baseline, args.others, args.reference)
        if args.what == "evals"
        else compare_curves(args.runs, args.until)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
