"""How each yardstick answers graded damage to real images, and how much it moves between seeds.

Real class-balanced shapes (a set disjoint from the metrics' reference) get one damage at a time at three strengths;
every yardstick scores the damaged set against the reference exactly as `compute_metrics` scores a generator's
samples. Damages that change what is drawn (wrong class, dropped classes, collapsed position or size) edit the
factors before rendering and keep the requested labels; the others act on the pixels. Then the spread: each
yardstick on undamaged real sets of 5 seeds at the sample counts the bench (1000), the zoo (2000) and eval (5000)
use. A yardstick is called monotone for a damage when it rises at each strength step, and blind when the whole
rise is within twice its spread at that sample count.

    python benchmarks/sensitivity.py --out benchmarks/results/sensitivity/sensitivity
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from adagen_env.data.shapes import ShapesDataset, render_shapes
from adagen_env.metrics import FLOOR_SEED, HEADLINE, balanced_labels, compute_metrics
from agents.reporting import COLUMNS as REPORT_COLUMNS

COLUMNS = {
    k: REPORT_COLUMNS[k] for k in ("fid", "fd_ssl", "fjd_ssl", "oracle_fidelity", "oracle_coverage", "class_agreement")
}
LOWER_IS_BETTER = {k: k != "class_agreement" for k in COLUMNS}


def _pixels(fn):
    """A damage that acts on the rendered images: fn(images (B, 3, R, R), strength, g) -> images."""

    def damage(labels, factors, data, strength, g):
        return fn(render_shapes(labels, factors, data.class_names), strength, g).clamp(0, 1), labels

    return damage


def _blur(images, sigma, g):
    k = 2 * int(3 * sigma) + 1
    return gaussian_blur(images, [k, k], [sigma, sigma])


def _noise(images, sigma, g):
    return images + sigma * torch.randn(images.shape, generator=g)


def _colour(images, shift, g):
    return images + shift * torch.tensor([1.0, 0.0, -1.0])[None, :, None, None]


def _resolution(images, factor, g):
    r = images.shape[-1]
    low = F.interpolate(images, size=max(2, round(r / factor)), mode="area")
    return F.interpolate(low, size=r, mode="bilinear", align_corners=False)


def _share(n, p, g):
    return torch.rand(n, generator=g) < p


def _wrong_class(labels, factors, data, p, g):
    """A share p of the images drawn as another class (same everything else); the labels still ask for the old."""
    other = (labels + torch.randint(1, data.num_classes, labels.shape, generator=g)) % data.num_classes
    drawn = torch.where(_share(len(labels), p, g), other, labels)
    return render_shapes(drawn, factors, data.class_names), labels


def _drop_classes(labels, factors, data, k, g):
    """The first k classes are never drawn: their images come out as one of the kept classes."""
    kept = torch.arange(k, data.num_classes)
    drawn = torch.where(labels < k, kept[torch.randint(len(kept), labels.shape, generator=g)], labels)
    return render_shapes(drawn, factors, data.class_names), labels


def _collapse(name, value):
    def damage(labels, factors, data, p, g):
        pick = _share(len(labels), p, g)
        target = torch.as_tensor(value, dtype=factors[name].dtype).expand_as(factors[name])
        mask = pick.view(-1, *([1] * (factors[name].ndim - 1)))
        edited = {**factors, name: torch.where(mask, target, factors[name])}
        return render_shapes(labels, edited, data.class_names), labels

    return damage


DAMAGES = {
    "blur (Gaussian sigma, px)": (_pixels(_blur), (0.5, 1.0, 1.5)),
    "noise (sigma)": (_pixels(_noise), (0.02, 0.05, 0.1)),
    "colour cast (+red, -blue)": (_pixels(_colour), (0.03, 0.06, 0.12)),
    "lower resolution (factor)": (_pixels(_resolution), (1.5, 2.0, 4.0)),
    "wrong class (share)": (_wrong_class, (0.1, 0.25, 0.5)),
    "classes dropped (count)": (_drop_classes, (1, 2, 4)),
    "one position (share)": (_collapse("centre", [0.0, 0.0]), (0.25, 0.5, 1.0)),
    "one size (share)": (_collapse("size", 0.365), (0.25, 0.5, 1.0)),
}
SPREAD_COUNTS = (1000, 2000, 5000)
SPREAD_SEEDS = 5


def real_set(n, resolution, seed):
    """(labels, factors, data) of a class-balanced real set."""
    data = ShapesDataset(resolution)
    labels = balanced_labels(n)
    return labels, data.draw_factors(labels, torch.Generator().manual_seed(seed)), data


def score(images, labels, n):
    scores = compute_metrics(images, labels, metrics=("fid", "ssl", "oracle"), num_reference=n)
    return {k: scores[k] for k in COLUMNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=2000, help="images per damaged set")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--out", default="benchmarks/results/sensitivity/sensitivity")
    parser.add_argument("--report", action="store_true", help="only rewrite the markdown from the existing JSON")
    args = parser.parse_args()
    out = Path(args.out)
    if args.report:
        saved = json.loads(out.with_suffix(".json").read_text())
        out.with_suffix(".md").write_text(markdown(saved["meta"], saved["rows"], saved["spread"]))
        return
    start = time.time()
    rows, spread = [], []
    jobs = [
        (res, name, s) for res in args.resolutions for name, (_, strengths) in DAMAGES.items() for s in (0, *strengths)
    ]
    jobs = [j for j in jobs if j[2] != 0 or j[1] == next(iter(DAMAGES))]  # one undamaged row per resolution
    bar = tqdm(total=len(jobs) + len(args.resolutions) * len(SPREAD_COUNTS) * SPREAD_SEEDS, desc="sensitivity")
    for res, name, strength in jobs:
        labels, factors, data = real_set(args.num_samples, res, FLOOR_SEED)
        g = torch.Generator().manual_seed(1)
        if strength == 0:
            images = render_shapes(labels, factors, data.class_names)
        else:
            images, labels = DAMAGES[name][0](labels, factors, data, strength, g)
        rows.append(
            {
                "resolution": res,
                "damage": name if strength else "none",
                "strength": strength,
                **score(images, labels, args.num_samples),
            }
        )
        bar.update()
    for res in args.resolutions:
        for n in SPREAD_COUNTS:
            values = []
            for seed in range(SPREAD_SEEDS):
                labels, factors, data = real_set(n, res, FLOOR_SEED + 100 + seed)
                values.append(score(render_shapes(labels, factors, data.class_names), labels, n))
                bar.update()
            stacked = {k: torch.tensor([v[k] for v in values]) for k in COLUMNS}
            spread.append(
                {
                    "resolution": res,
                    "num_samples": n,
                    "mean": {k: float(v.mean()) for k, v in stacked.items()},
                    "std": {k: float(v.std()) for k, v in stacked.items()},
                }
            )
    bar.close()
    meta = {
        "num_samples": args.num_samples,
        "spread_seeds": SPREAD_SEEDS,
        "threads": torch.get_num_threads(),
        "seconds": round(time.time() - start),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"meta": meta, "rows": rows, "spread": spread}, indent=2) + "\n")
    tmp.replace(out.with_suffix(".json"))
    out.with_suffix(".md").write_text(markdown(meta, rows, spread))


def verdicts(rows, spread, res, n):
    """{(damage, metric): "monotone" | "blind" | "not monotone"} at one resolution, against the spread at n."""
    std = next(s["std"] for s in spread if s["resolution"] == res and s["num_samples"] == n)
    base = next(r for r in rows if r["resolution"] == res and r["damage"] == "none")
    out = {}
    for name in DAMAGES:
        series = [base] + [r for r in rows if r["resolution"] == res and r["damage"] == name]
        for k in COLUMNS:
            v = torch.tensor([r[k] for r in series]) * (1 if LOWER_IS_BETTER[k] else -1)
            rise = float(v[-1] - v[0])
            if rise <= 2 * std[k]:
                out[name, k] = "blind"
            elif bool((v[1:] > v[:-1]).all()):
                out[name, k] = "monotone"
            else:
                out[name, k] = "not monotone"
    return out


def markdown(meta, rows, spread) -> str:
    lines = [
        "# Yardstick sensitivity",
        "",
        f"`python benchmarks/sensitivity.py`: {meta['num_samples']} real class-balanced images per damaged set, scored "
        f"against as many reference images; spread = std over {meta['spread_seeds']} seeds of undamaged real sets. "
        f"{meta['threads']} threads, {meta['seconds']} s, {meta['date']}.",
        "",
        (
            "Higher is worse in every column but class agreement. Headline yardsticks (verdicts need them to agree): "
            + ", ".join(COLUMNS[k] for k in HEADLINE)
            + "."
        ),
    ]
    for res in sorted({r["resolution"] for r in rows}):
        lines += [
            "",
            f"## {res}x{res}",
            "",
            "| damage | strength | " + " | ".join(COLUMNS.values()) + " |",
            "|---|---|" + "---|" * len(COLUMNS),
        ]
        for r in (r for r in rows if r["resolution"] == res):
            lines.append(f"| {r['damage']} | {r['strength']:g} | " + " | ".join(f"{r[k]:.4g}" for k in COLUMNS) + " |")
        lines += [
            "",
            f"Spread over seeds at {res}x{res} (mean ± std):",
            "",
            "| images | " + " | ".join(COLUMNS.values()) + " |",
            "|---|" + "---|" * len(COLUMNS),
        ]
        for s in (s for s in spread if s["resolution"] == res):
            lines.append(
                f"| {s['num_samples']} | "
                + " | ".join(f"{s['mean'][k]:.4g} ± {s['std'][k]:.2g}" for k in COLUMNS)
                + " |"
            )
        v = verdicts(rows, spread, res, meta["num_samples"])
        lines += [
            "",
            f"Verdicts at {res}x{res} (rise against twice the spread at {meta['num_samples']} images):",
            "",
            "| damage | " + " | ".join(COLUMNS.values()) + " |",
            "|---|" + "---|" * len(COLUMNS),
        ]
        for name in DAMAGES:
            lines.append(f"| {name} | " + " | ".join(v[name, k] for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
