"""Every yardstick on each zoo generator's baseline schedule at NFE 8 and NFE 64, beside the real-data floor.

The floor is a real class-balanced set (disjoint from the reference) scored like a generator's samples. Each
generator runs its env's baseline schedule (zero actions) at the step counts that give NFE 8 and 64 (VAR has one
NFE, its scale count with guidance), on class-balanced labels, with the bench's seeding (`generate_static`).

    python benchmarks/yardsticks.py --num-samples 1000 --out benchmarks/results/yardsticks/yardsticks
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import torch
from tqdm.auto import tqdm

import adagen_env  # noqa: F401  (registers the ids)
from adagen_env.evaluation import generate_static
from adagen_env.metrics import FLOOR_SEED, balanced_labels, compute_metrics, shapes_reference
from agents.reporting import COLUMNS

POINTS = {  # env id -> step counts (None: the env's own)
    "AdaGen/DiT-v0": (4, 32),
    "AdaGen/SiT-v0": (4, 32),
    "AdaGen/MaskGIT-v0": (4, 32),
    "AdaGen/VAR-v0": (None,),
}
KEYS = [k for k in COLUMNS if k not in ("precision", "recall")] + ["recall_ssl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--out", default="benchmarks/results/yardsticks/yardsticks")
    args = parser.parse_args()
    start, rows = time.time(), []
    labels = balanced_labels(args.num_samples)
    jobs = [(env_id, steps) for env_id, grid in POINTS.items() for steps in grid]
    for env_id, steps in tqdm(jobs, desc="yardsticks"):
        steps_kwarg = {} if steps is None else {"num_steps": steps}
        env = gym.make_vec(env_id, num_envs=args.batch_size, reward_model=None, **steps_kwarg)
        sampler = env.unwrapped.sampler
        gen = generate_static(sampler, sampler.baseline_schedule(), labels, args.seed, args.batch_size)
        scores = compute_metrics(gen.images, labels, num_reference=args.num_samples)
        rows.append(
            {
                "env_id": env_id,
                "steps": sampler.horizon,
                "nfe": gen.nfe,
                "resolution": gen.images.shape[-1],
                "generator_digest": env.unwrapped.generator_digest,
                **scores,
            }
        )
    for res in sorted({r["resolution"] for r in rows}):
        real_u8, real_labels = shapes_reference(args.num_samples, res, seed=FLOOR_SEED)
        scores = compute_metrics(real_u8.float() / 255, real_labels, num_reference=args.num_samples)
        rows.insert(0, {"env_id": f"real {res}x{res}", "steps": 0, "nfe": 0, "resolution": res, **scores})
    meta = {
        "num_samples": args.num_samples,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "seconds": round(time.time() - start),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in (
        (".json", json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"),
        (".md", markdown(meta, rows, args.out)),
    ):
        tmp = out.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(out.with_suffix(suffix))


def markdown(meta, rows, out) -> str:
    names = {**COLUMNS, "recall_ssl": "recall (SSL)"}
    lines = [
        "# Every yardstick on the zoo's baseline schedules",
        "",
        f"`python benchmarks/yardsticks.py --num-samples {meta['num_samples']} --seed {meta['seed']} --out {out}`: "
        f"{meta['num_samples']} class-balanced samples a row (seed {meta['seed']}) "
        f"against as many reference images; the real rows are a disjoint real set scored the same way (the floor). "
        f"{meta['threads']} threads, {meta['seconds']} s, {meta['date']}.",
        "",
        "| generator | steps | NFE | " + " | ".join(names[k] for k in KEYS) + " |",
        "|---|---|---|" + "---|" * len(KEYS),
    ]
    for r in rows:
        lines.append(f"| {r['env_id']} | {r['steps']} | {r['nfe']} | " + " | ".join(f"{r[k]:.4g}" for k in KEYS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
