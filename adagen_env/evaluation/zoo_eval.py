"""Benchmark of the zoo's generators under their baseline schedules: FID and class agreement over NFE and CFG.

`adagen zoo eval` runs `evaluate_zoo`. Each generator is sampled with its paradigm's baseline (hand-made)
schedule at every (NFE, CFG) point of its paradigm's grid, on the same class-balanced labels and the same
per-batch seeds (so every point sees the same initial noise), and scored by `adagen_env.metrics` against
the real shapes reference. The real-vs-real floor at the same sample count is measured beside them.

Each paradigm's sampler and grid are its row of `adagen_env.evaluation.grids.PARADIGMS`; batches are run by
`generate_static` with the ``"consecutive"`` seeding, which the committed `benchmarks/results/zoo` numbers rely on.

Outputs, in `out_dir`: `zoo.json` (every number, plus the settings that produced them), `zoo.md` (tables)
and `zoo_<name>_samples.png` (rows = classes, at the generator's best-FID point). With `quick=True` the
files are named `zoo-quick*` so a smoke run never overwrites the committed results.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adagen_env import zoo
from adagen_env.errors import InvalidArgument
from adagen_env.evaluation.grids import PARADIGMS, GridPoint, paradigm_eval
from adagen_env.evaluation.static import generate_static
from adagen_env.metrics import (
    FLOOR_SEED,
    REFERENCE_SEED,
    SHAPES_EXTRACTOR,
    balanced_labels,
    compute_metrics,
    real_floor,
    shapes_reference,
)
from adagen_env.models.vq import FLIP_SCENES, grain_flip_rates, round_trip
from adagen_env.outputs import writable_dir, write_text
from adagen_env.samplers.base import make_generator

QUICK_MAX_SAMPLES = 64
BATCH_SIZE = 256
"""Images per sampler call."""
SAMPLE_SEED = 0
"""Batch i of every grid point is drawn with generator seed SAMPLE_SEED + i."""
GRID_COLUMNS = 8
"""Images per class in the sample grid PNG."""
GRID_UPSCALE = 4
"""Nearest-neighbour upscaling of the grid PNG, so 16x16 samples are visible."""


@torch.no_grad()
def tokenizer_reconstruction(
    model: nn.Module, num_samples: int, device: torch.device | str = "cpu"
) -> dict[str, float]:
    """Scores of the real-data floor's images after a round trip through `model.tokenizer` (encode, then decode).

    The same real images and reference as `real_floor`, so the two compare directly: the reconstruction's FID
    bounds what the token generator on top of this tokenizer can reach. A tokenizer that decodes clean renderings
    gets the data's grain added, as its generator's samples do.
    """
    tokenizer = model.tokenizer
    real, labels = shapes_reference(num_samples, tokenizer.config.resolution, seed=FLOOR_SEED)
    grain = make_generator(FLOOR_SEED, device)
    recon = [
        round_trip(tokenizer, chunk.to(device).float() / 255, grain).float().cpu() for chunk in real.split(BATCH_SIZE)
    ]
    scores = compute_metrics(torch.cat(recon), labels, num_reference=num_samples, device=device)
    return {k: v for k, v in scores.items() if k not in ("num_samples", "num_reference")}


def class_grid(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, columns: int = GRID_COLUMNS
) -> torch.Tensor:
    """The first `columns` images of each class, class-major: (num_classes * columns, 3, R, R); rows = classes."""
    rows = []
    for k in range(num_classes):
        picked = images[labels == k][:columns]
        if picked.shape[0] < columns:  # pad with black when a class has fewer images (tiny quick runs)
            pad = torch.zeros(columns - picked.shape[0], *images.shape[1:])
            picked = torch.cat([picked, pad])
        rows.append(picked)
    return torch.cat(rows)


def save_class_grid(grid: torch.Tensor, path: Path, columns: int = GRID_COLUMNS, upscale: int = GRID_UPSCALE) -> None:
    """Write a class-major grid (see `class_grid`) as a PNG with one row per class."""
    from torchvision.utils import save_image

    big = torch.nn.functional.interpolate(grid, scale_factor=upscale, mode="nearest")
    save_image(big, str(path), nrow=columns, padding=2, pad_value=1.0)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def _settings(settings: dict[str, Any] | None) -> str:
    """`{"top_k": 0}` -> "top_k=0"; empty or None -> ""."""
    return ", ".join(f"{k}={v}" for k, v in (settings or {}).items())


def results_markdown(results: dict[str, Any]) -> str:
    """`zoo.json`'s content as markdown tables: the floor, then one table per generator."""
    meta = results["meta"]
    lines = [
        "# Zoo generators under their baseline schedules",
        "",
        f"{meta['num_samples']} class-balanced samples per point vs {meta['num_samples']} real shapes "
        f"(seed {meta['reference_seed']}); feature network `{meta['feature_extractor']}`; "
        f"sample seeds {meta['sample_seed']} + batch index (same noise at every point); device `{meta['device']}`.",
        "steps = sampler steps (network evaluations per image without guidance); NFE counts the unconditional "
        "passes of guidance too (a guided step costs 2). CFG w: out = cond + w (cond - uncond), `-` = unguided. "
        "KID in the classifier's feature units. Rows marked `*` were reused from an earlier run on the same "
        "weights (`adagen zoo eval --reuse`; seeded, so a rerun gives the same numbers).",
        "",
        "## Real-data floor (real vs disjoint real, same size)",
        "",
        "| resolution | FID | KID | IS | precision | recall | class agreement |",
        "|---|---|---|---|---|---|---|",
    ]
    for res, floor in sorted(results["floor"].items()):
        lines.append(
            f"| {res} | {_fmt(floor.get('fid'))} | {_fmt(floor.get('kid_mean'), 4)} "
            f"| {_fmt(floor.get('isc_mean'))} | {_fmt(floor.get('precision'))} | {_fmt(floor.get('recall'))} "
            f"| {_fmt(floor.get('class_agreement'))} |"
        )
    for name, gen in results["generators"].items():
        lines += [
            "",
            f"## {name} ({gen['paradigm']}, solver {gen['solver']})",
            "",
            f"Sample grid: `{gen['sample_grid']}` (rows = classes, at {gen['grid_point']['nfe']} steps, "
            f"CFG {_fmt(gen['grid_point']['cfg'], 1)} {_settings(gen['grid_point'].get('settings'))}).",
            "",
        ]
        if "reconstruction" in gen:
            recon = gen["reconstruction"]
            lines += [
                f"Tokenizer reconstruction (the floor's real images encoded and decoded; it bounds this generator): "
                f"FID {_fmt(recon['fid'])}, KID {_fmt(recon.get('kid_mean'), 4)}, "
                f"precision {_fmt(recon.get('precision'))}, recall {_fmt(recon.get('recall'))}, "
                f"class agreement {_fmt(recon.get('class_agreement'))}.",
                "",
            ]
        if "token_flip_rates" in gen:
            lines += [_flip_sentence(gen["token_flip_rates"], gen["clean_token_targets"]), ""]
        lines += [
            "| steps | CFG | other settings | NFE | FID | KID | IS | precision | recall | class agreement | sampling s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in gen["results"]:
            lines.append(
                f"| {row['nfe']}{'*' if row.get('reused') else ''} | {_fmt(row['cfg'], 1)} "
                f"| {_settings(row.get('settings')) or 'baseline'} | {row['episode_nfe']} | {_fmt(row.get('fid'))} "
                f"| {_fmt(row.get('kid_mean'), 4)} "
                f"| {_fmt(row.get('isc_mean'))} | {_fmt(row.get('precision'))} | {_fmt(row.get('recall'))} "
                f"| {_fmt(row.get('class_agreement'))} | {_fmt(row['sample_seconds'], 1)} |"
            )
    return "\n".join(lines) + "\n"


def _flip_sentence(rates: list[float], clean_targets: bool) -> str:
    per = " per scale, coarse to fine" if len(rates) > 1 else ""
    targets = (
        "the transformer learned the tokens of the clean renderings, which a re-draw of the grain does not change"
        if clean_targets
        else "the transformer learned these very ids"
    )
    return (
        f"Token ids under a re-draw of the data's grain ({FLIP_SCENES} scenes): the tokenizer changes "
        f"{', '.join(f'{r:.3f}' for r in rates)} of them{per}; {targets}."
    )


def evaluate_zoo(
    names: Sequence[str] | None = None,
    num_samples: int = 2000,
    out_dir: str | Path = "runs/zoo_eval",
    device: str | torch.device = "cpu",
    quick: bool = False,
    reuse: bool = False,
) -> dict[str, Any]:
    """Score every named zoo generator over its paradigm's (NFE, CFG) grid and write the results.

    Args:
        names: zoo generator names (`adagen_env.zoo.GENERATORS`). When None or empty: every generator with
            shipped weights whose paradigm has a row in `PARADIGMS` (the others are listed as skipped).
        num_samples: images per grid point, and the size of the real reference (class-balanced). FID is
            biased upwards at small counts: compare only numbers measured at the same count.
        out_dir: where `zoo.json`, `zoo.md` and the sample grids go (created if needed); results of other
            generators already in `zoo.json` (same sample count) are kept. The committed copy is
            `benchmarks/results/zoo` (`adagen zoo eval --out benchmarks/results/zoo`).
        device: where sampling and feature extraction run ("cpu" or "cuda").
        quick: smoke run: NFE {2, 4} x CFG {None, 1.0}, at most 64 samples, files named `zoo-quick*`.
        reuse: take the rows of grid points that the existing `zoo.json` already holds for the same weights
            (SHA-256), sample count and seed instead of sampling them again (sampling is seeded, so they are
            the numbers a rerun gives); only new grid points are sampled. Reused rows say `"reused": true`. The
            rows of a killed run (`zoo.progress.json`, written after every point) are reused the same way.

    Returns:
        The results dict written to the JSON file.

    Raises:
        InvalidArgument: unknown name, a paradigm without a benchmark row, or fewer than 2 samples.
        CheckpointError: a generator's or the classifier's weights are missing.
    """
    from tqdm.auto import tqdm

    skipped: dict[str, str] = {}
    if names:
        names = list(names)
    else:  # every generator the benchmark can sample and whose weights are shipped
        names = []
        for name in zoo.GENERATORS:
            if zoo.entry(name).paradigm not in PARADIGMS:
                skipped[name] = f"no sampler factory for paradigm {zoo.entry(name).paradigm!r}"
            elif not zoo.weights_path(name).exists():
                skipped[name] = "no shipped weights"
            else:
                names.append(name)
        for name, why in skipped.items():
            print(f"zoo eval: skipping {name} ({why})")
        if not names:
            raise InvalidArgument(f"no zoo generator can be evaluated: {skipped}")
    if quick:
        num_samples = min(num_samples, QUICK_MAX_SAMPLES)
    if not isinstance(num_samples, int) or num_samples < 2:
        raise InvalidArgument(f"num_samples must be an int >= 2, got {num_samples!r}")
    out_dir = Path(out_dir)
    stem = "zoo-quick" if quick else "zoo"
    json_path = out_dir / f"{stem}.json"
    previous: dict[str, Any] = {}
    if json_path.exists():
        try:
            previous = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            previous = {}
    previous_meta = previous.get("meta", {})
    same_run = previous_meta.get("num_samples") == num_samples and previous_meta.get("sample_seed") == SAMPLE_SEED
    progress_path = out_dir / f"{stem}.progress.json"
    progress = _read_progress(progress_path if reuse else None, num_samples)

    # 1. Everything that can fail fast: names, paradigms, weights (generators and the feature network).
    specs = {name: paradigm_eval(name) for name in names}
    models = {name: zoo.load(name, device=device) for name in names}
    zoo.load(SHAPES_EXTRACTOR)
    writable_dir(out_dir)

    # 2. Total work, in images x network evaluations, for the progress bar.
    plans = {
        name: [(point, *spec.build(models[name], point, device)) for point in spec.grid(quick)]
        for name, spec in specs.items()
    }
    measured = {
        name: {**(_measured_rows(previous, name) if reuse and same_run else {}), **_measured_rows(progress, name)}
        for name in names
    }
    total = sum(
        num_samples * sampler.episode_nfe
        for name, plan in plans.items()
        for point, sampler, _ in plan
        if _row_key(point) not in measured[name]
    )
    started = time.perf_counter()
    generators: dict[str, Any] = {}
    floors: dict[str, Any] = {}
    bar = tqdm(total=total, desc="zoo eval", unit="img-nfe", unit_scale=True, smoothing=0.05)
    for name in names:
        model, spec = models[name], specs[name]
        num_classes = model.config.num_classes
        labels = balanced_labels(num_samples, num_classes)
        rows, best = [], None
        for point, sampler, schedule in plans[name]:
            nfe, cfg, settings = point.nfe, point.cfg, dict(point.settings)
            if _row_key(point) in measured[name]:
                row = {**measured[name][_row_key(point)], "settings": settings, "reused": True}
                rows.append(row)
                if best is None or row["fid"] < best[0]["fid"]:
                    best = (row, None, sampler, schedule)  # its grid is drawn after the loop
                continue
            bar.set_postfix_str(f"{name} NFE {nfe} CFG {cfg} {settings or ''}")
            t0 = time.perf_counter()
            images = generate_static(
                sampler,
                schedule,
                labels,
                SAMPLE_SEED,
                BATCH_SIZE,
                seeding="consecutive",
                on_batch=lambda n, s=sampler: bar.update(n * s.episode_nfe),
            ).images
            sample_seconds = time.perf_counter() - t0
            resolution = images.shape[-1]
            if str(resolution) not in floors:
                floors[str(resolution)] = real_floor(num_samples, resolution, device=device)
            scores = compute_metrics(images, labels, num_reference=num_samples, device=device)
            row = {
                "nfe": nfe,
                "cfg": cfg,
                "settings": settings,
                "episode_nfe": sampler.episode_nfe,
                **{k: v for k, v in scores.items() if k not in ("num_samples", "num_reference")},
                "sample_seconds": sample_seconds,
                "images_per_second": num_samples / sample_seconds,
            }
            rows.append(row)
            progress["generators"][name] = {"weights": _weights_meta(name), "results": rows}
            write_text(progress_path, json.dumps(progress, indent=2) + "\n")  # a killed run resumes with reuse
            if best is None or row["fid"] < best[0]["fid"]:
                best = (row, class_grid(images, labels, num_classes), sampler, schedule)
            tqdm.write(
                f"{name:>10} NFE {nfe:>3} CFG {_fmt(cfg, 1):>4} {_settings(settings)}: FID {row['fid']:.3f}  "
                f"class agreement {row.get('class_agreement', float('nan')):.3f}  ({sample_seconds:.1f} s)"
            )
        assert best is not None
        best_row, grid, best_sampler, best_schedule = best
        if grid is None:  # a reused row: batch 0 again gives the same images
            first = labels[:BATCH_SIZE]
            again = generate_static(best_sampler, best_schedule, first, SAMPLE_SEED, BATCH_SIZE, seeding="consecutive")
            grid = class_grid(again.images, first, num_classes)
        grid_path = out_dir / f"{stem}_{name}_samples.png"
        save_class_grid(grid, grid_path)
        generators[name] = {
            "paradigm": zoo.entry(name).paradigm,
            "solver": spec.solver,
            "schedule": "baseline",
            "weights": _weights_meta(name),
            "sample_grid": grid_path.name,
            "grid_point": {"nfe": best_row["nfe"], "cfg": best_row["cfg"], "settings": best_row["settings"]},
            "results": rows,
        }
        if hasattr(model, "tokenizer"):
            generators[name]["reconstruction"] = tokenizer_reconstruction(model, num_samples, device)
            generators[name]["token_flip_rates"] = grain_flip_rates(model.tokenizer, FLIP_SCENES)
            generators[name]["clean_token_targets"] = model.tokenizer.config.grain_sigma > 0
    bar.close()

    # 3. Write, keeping other generators' results of a previous run at the same sample count.
    kept = {}
    if previous_meta.get("num_samples") == num_samples:
        kept = {k: v for k, v in previous.get("generators", {}).items() if k not in generators}
    results = {
        "meta": {
            "num_samples": num_samples,
            "batch_size": BATCH_SIZE,
            "sample_seed": SAMPLE_SEED,
            "reference_seed": REFERENCE_SEED,
            "floor_seed": FLOOR_SEED,
            "feature_extractor": SHAPES_EXTRACTOR,
            "classifier_weights": _weights_meta(SHAPES_EXTRACTOR),
            "device": str(device),
            "cpu_threads": torch.get_num_threads(),
            "load_average_1m_at_end": _load_average(),
            "torch": torch.__version__,
            "torch_fidelity": _version("torch_fidelity"),
            "python": platform.python_version(),
            "quick": quick,
            "seconds": time.perf_counter() - started,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        },
        "floor": {**previous.get("floor", {}), **floors} if kept else floors,
        "generators": dict(sorted({**kept, **generators}.items(), key=lambda item: list(zoo.ZOO).index(item[0]))),
        "skipped": {k: v for k, v in skipped.items() if k not in kept},
    }
    write_text(json_path, json.dumps(results, indent=2) + "\n")
    write_text(out_dir / f"{stem}.md", results_markdown(results))
    progress_path.unlink(missing_ok=True)
    return results


def _read_progress(path: Path | None, num_samples: int) -> dict[str, Any]:
    """The rows a killed run of the same sample count measured (`zoo.progress.json`, written after every point);
    an empty record when there is none (or `path` is None)."""
    try:
        progress = json.loads(path.read_text()) if path is not None and path.exists() else {}
    except json.JSONDecodeError:  # never half-written (atomic), but a user's edit could break it
        progress = {}
    if progress.get("num_samples") != num_samples or progress.get("sample_seed") != SAMPLE_SEED:
        return {"num_samples": num_samples, "sample_seed": SAMPLE_SEED, "generators": {}}
    return progress


def _row_key(point: GridPoint) -> tuple[int, float | None, str]:
    """A grid point's identity in `zoo.json`'s rows: (NFE, CFG, settings as sorted JSON)."""
    return (point.nfe, point.cfg, json.dumps(dict(point.settings), sort_keys=True))


def _measured_rows(previous: dict[str, Any], name: str) -> dict[tuple[int, float | None, str], dict[str, Any]]:
    """Rows of `name` in a previous `zoo.json`, by grid point, if they were measured on the weights shipped now."""
    gen = previous.get("generators", {}).get(name)
    if gen is None or gen.get("weights") != _weights_meta(name):
        return {}
    return {
        _row_key(GridPoint(row["nfe"], row["cfg"], tuple(sorted(row.get("settings", {}).items())))): {
            k: v for k, v in row.items() if k != "reused"
        }
        for row in gen["results"]
    }


def _weights_meta(name: str) -> dict[str, Any]:
    """Short identity of a zoo weights file: its name, size and the first 16 hex digits of its SHA-256."""
    import hashlib

    path = zoo.weights_path(name)
    if not path.exists():
        return {"file": path.name, "missing": True}
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {"file": path.name, "bytes": path.stat().st_size, "sha256_16": digest}


def _load_average() -> float | None:
    """1-minute load average (other jobs on the machine slow the timings down), None where unknown."""
    import os

    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module.replace("_", "-"))
    except PackageNotFoundError:
        return "unknown"


__all__ = [
    "class_grid",
    "evaluate_zoo",
    "results_markdown",
    "save_class_grid",
    "tokenizer_reconstruction",
]
