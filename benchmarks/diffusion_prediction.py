"""Epsilon vs v prediction, and training-time distributions, for the zoo's diffusion DiT at equal training.

Trains the `diffusion` recipe's DiT with `DiTConfig.prediction` set to `--prediction` and training times drawn by
`--time-sampling` (`adagen_env.zoo.TIME_SAMPLINGS`; default the recipe's, logit-normal) for `--steps` steps (the
recipe's seed, data, batch and learning rate; the cosine schedule spans `--steps`), then scores its EMA at 16 steps
with CFG 3 (NFE 32) and at 4 steps with CFG 1 (NFE 8, the env's baseline) on `--num-samples` class-balanced
samples. Run once per variant (two processes fit the 2-core machine); each run writes
`<out>/<prediction>_<time sampling>.json` and rewrites `<out>/diffusion_prediction.md` from every JSON there.
Resumes after a kill.

    python benchmarks/diffusion_prediction.py --prediction epsilon --steps 4000
    python benchmarks/diffusion_prediction.py --prediction v --time-sampling log-snr-normal --steps 4000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from adagen_env.metrics import balanced_labels, compute_metrics
from adagen_env.models import DiT
from adagen_env.samplers import DiffusionSampler
from adagen_env.zoo import TIME_SAMPLINGS, continuous_loss, entry
from adagen_env.zoo.evaluate import generate
from adagen_env.zoo.training import train

POINTS = ((16, 3.0), (4, 1.0))
"""(steps, CFG) scored: NFE 32 at the zoo's best CFG, and NFE 8 at the envs' baseline CFG."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prediction", choices=("epsilon", "v"), required=True)
    parser.add_argument("--time-sampling", choices=TIME_SAMPLINGS, default="logit-normal", help="the recipe's: logit-normal")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--workdir", default="checkpoints/diffusion_prediction")
    parser.add_argument("--out", default="benchmarks/results/diffusion_prediction")
    args = parser.parse_args()

    recipe = entry("diffusion")
    config = dataclasses.replace(recipe.train_config, steps=args.steps)
    torch.manual_seed(config.seed)
    model = DiT(dataclasses.replace(recipe.config, prediction=args.prediction))
    started = time.perf_counter()
    variant = f"{args.prediction}_{args.time_sampling}"
    loss = continuous_loss("diffusion", time_sampling=args.time_sampling)
    ema = train(model, loss, config, Path(args.workdir) / variant, desc=variant)
    labels = balanced_labels(args.num_samples)
    rows = []
    for steps, cfg in POINTS:
        sampler = DiffusionSampler(ema, num_steps=steps, cfg_scale=cfg)
        scores = compute_metrics(generate(sampler, labels), labels, metrics=("fid",))
        rows.append({"steps": steps, "cfg": cfg, "nfe": sampler.episode_nfe, "fid": scores["fid"],
                     "class_agreement": scores["class_agreement"]})
        print(variant, rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"prediction": args.prediction, "time_sampling": args.time_sampling, "train_steps": args.steps,
              "num_samples": args.num_samples,
              "threads": torch.get_num_threads(), "seconds": time.perf_counter() - started,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    (out / f"{variant}.json").write_text(json.dumps(result, indent=2) + "\n")

    lines = [
        "# Diffusion DiT: prediction target and training times at equal training",
        "",
        "Made by `python benchmarks/diffusion_prediction.py --prediction P --time-sampling T --steps N` for each",
        "target P and time distribution T: the `diffusion` recipe's DiT, seed and data, N training steps, EMA scored",
        "on class-balanced samples (FID on the shapes classifier's features).",
        "",
        "| target | training times | train steps | samples | steps | CFG | NFE | FID | class agreement |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(out.glob("*.json")):
        run = json.loads(path.read_text())
        lines += [
            f"| {run['prediction']} | {run['time_sampling']} | {run['train_steps']} | {run['num_samples']} | {r['steps']} | {r['cfg']} "
            f"| {r['nfe']} | {r['fid']:.2f} | {r['class_agreement']:.3f} |"
            for r in run["rows"]
        ]
    (out / "diffusion_prediction.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
