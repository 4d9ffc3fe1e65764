"""Sampler throughput of the zoo's generators: images per second at batch 256, NFE 8, with and without CFG.

    python benchmarks/throughput.py --out benchmarks/results/throughput/throughput.json

Every zoo generator whose weights exist is measured under its paradigm's baseline schedule, with the
sampler factory of `adagen_env.zoo.evaluate.PARADIGMS` (so a new paradigm joins here by joining that
table). Writes the JSON and a markdown table beside it (same name, `.md`). Each point: one warm-up run,
then `--repeats` timed runs; the median is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from adagen_env import zoo
from adagen_env.errors import CheckpointError
from adagen_env.samplers import make_generator
from adagen_env.zoo.evaluate import PARADIGMS


@dataclass
class Args:
    out: str = "benchmarks/results/throughput/throughput.json"
    """Where the JSON goes; the markdown table is written beside it with the `.md` suffix."""
    names: tuple[str, ...] = ()
    """Zoo generators to measure; every one with weights when empty."""
    batch_size: int = 256
    """Images per sampler call."""
    nfe: int = 8
    """Conditional network evaluations per image."""
    cfg: float = 1.0
    """Guidance weight of the guided run (the unguided run has no unconditional passes)."""
    repeats: int = 3
    """Timed runs per point (after one warm-up)."""
    device: str = "cpu"
    """Where sampling runs."""
    threads: int = 0
    """torch CPU threads; 0 keeps torch's default."""


def parse_args() -> Args:
    defaults = Args()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=defaults.out)
    parser.add_argument("--names", nargs="*", default=list(defaults.names), help=f"any of {list(zoo.GENERATORS)}")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--nfe", type=int, default=defaults.nfe)
    parser.add_argument("--cfg", type=float, default=defaults.cfg)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    ns = parser.parse_args()
    return Args(**{**vars(ns), "names": tuple(ns.names)})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(sampler, batch_size: int, repeats: int, num_classes: int) -> list[float]:
    """Seconds of `repeats` whole-episode runs of a batch (after one warm-up run)."""
    labels = torch.arange(batch_size) % num_classes
    times = []
    for i in range(repeats + 1):
        generator = make_generator(i, sampler.device)
        _sync(sampler.device)
        t0 = time.perf_counter()
        sampler.sample(labels.to(sampler.device), generator)
        _sync(sampler.device)
        if i > 0:
            times.append(time.perf_counter() - t0)
    return times


def to_markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# Sampler throughput",
        "",
        f"Batch {meta['batch_size']}, NFE {meta['nfe']}, baseline schedule, device `{meta['device']}` "
        f"({meta['cpu_threads']} CPU threads), median of {meta['repeats']} runs after a warm-up; {meta['date']}.",
        f"1-minute load average {meta['load_average_1m']['start']} at the start, {meta['load_average_1m']['end']} "
        "at the end (other jobs sharing the CPU make images/s lower than on an idle machine).",
        "",
        "| generator | paradigm | solver | steps | CFG | evals / image | images / s | s / batch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["results"]:
        cfg = "-" if row["cfg"] is None else f"{row['cfg']:.1f}"
        lines.append(
            f"| {row['name']} | {row['paradigm']} | {row['solver']} | {row['nfe']} | {cfg} | {row['episode_nfe']} "
            f"| {row['images_per_second']:.1f} | {row['seconds_median']:.3f} |"
        )
    if results["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in results["skipped"].items())]
    return "\n".join(lines) + "\n"


def _load_average() -> float | None:
    """1-minute load average: other jobs on the machine slow the measurement down."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def main() -> None:
    args = parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    names = list(args.names) or list(zoo.GENERATORS)
    for name in names:
        zoo.entry(name)  # unknown names fail here, with a suggestion

    load_start = _load_average()
    results, skipped = [], {}
    for name in names:
        paradigm = zoo.entry(name).paradigm
        if paradigm not in PARADIGMS:
            skipped[name] = f"no sampler factory for paradigm {paradigm!r}"
            continue
        try:
            model = zoo.load(name, device=device)
        except CheckpointError as exc:
            skipped[name] = f"no weights: {exc}"
            continue
        spec = PARADIGMS[paradigm]
        nfe = None if spec.fixed_nfe else args.nfe  # VAR: one step per scale, whatever --nfe says
        for cfg in (None, args.cfg):
            sampler = spec.make_sampler(model, nfe, cfg, device)
            times = measure(sampler, args.batch_size, args.repeats, model.config.num_classes)
            median = statistics.median(times)
            row = {
                "name": name,
                "paradigm": paradigm,
                "solver": spec.solver,
                "nfe": args.nfe if nfe is not None else sampler.horizon,
                "cfg": cfg,
                "episode_nfe": sampler.episode_nfe,
                "batch_size": args.batch_size,
                "seconds": times,
                "seconds_median": median,
                "images_per_second": args.batch_size / median,
            }
            results.append(row)
            print(f"{name:>10} CFG {cfg}: {row['images_per_second']:.1f} images/s ({median:.3f} s per batch)")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "meta": {
            "batch_size": args.batch_size,
            "nfe": args.nfe,
            "repeats": args.repeats,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "cpu_threads": torch.get_num_threads(),
            "load_average_1m": {"start": load_start, "end": _load_average()},
            "torch": torch.__version__,
            "python": platform.python_version(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        },
        "results": results,
        "skipped": skipped,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(to_markdown(payload))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
