"""Wall-time overhead of the Gymnasium layer: a full episode through the vector env vs the raw sampler loop.

For each registered paradigm whose generator ships, at batch 256: (a) the sampler's own baseline loop,
(b) the same episode through `gym.make_vec(id)` wrapped in `VectorActionSmoothing` (the paradigm's
default beta) and driven by a zero policy, without reward model. Runs alternate (a), (b) so drift in
machine load hits both alike; the median of `--repeats` pairs is reported.

On a shared 2-core machine the two end-to-end timings drift by several percent from run to run, more
than the 5% the env may add. So (b) also times the sampler calls it makes (`reset`, `step`, `decode`,
the same calls the raw loop makes) and reports the rest, the env's own work (knob prior and projection,
features and pooling, smoothing, tensor <-> numpy), as a share of the raw loop: `env_own_pct`.

    python benchmarks/env_overhead.py --repeats 5 --out benchmarks/results/env_overhead/env_overhead
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from common import CallTimer, parse_args, shipped_vector_envs, write_results

from adagen_env.samplers import make_generator
from adagen_env.wrappers import VectorActionSmoothing


def raw_episode(sampler, labels: torch.Tensor, seed: int) -> float:
    start = time.perf_counter()
    sampler.sample(labels, make_generator(seed))
    return time.perf_counter() - start


def env_episode(envs, labels: np.ndarray, seed: int, timer: CallTimer) -> tuple[float, float]:
    """(episode seconds, seconds of it spent outside the sampler's reset/step/decode)."""
    zeros = np.zeros(envs.action_space.shape, np.float32)
    timer.seconds = 0.0
    start = time.perf_counter()
    envs.reset(seed=seed, options={"labels": labels})
    terminated = np.zeros(1, bool)
    while not terminated.all():
        _, _, terminated, _, _ = envs.step(zeros)
    total = time.perf_counter() - start
    return total, total - timer.seconds


def main() -> None:
    args = parse_args(__doc__, "benchmarks/results/env_overhead/env_overhead")
    rows = []
    for env_id, vector_cls, envs in shipped_vector_envs(args.batch):
        sampler = envs.sampler
        envs = VectorActionSmoothing(envs, beta=vector_cls.default_smoothing)
        labels = torch.arange(args.batch) % sampler.num_classes
        timer = CallTimer(sampler, ("reset", "step", "decode"))  # the raw loop goes through the same wrapped calls
        raw_episode(sampler, labels, 0)  # warm-up
        env_episode(envs, labels.numpy(), 0, timer)
        raw, wrapped, own = [], [], []
        for r in range(args.repeats):
            raw.append(raw_episode(sampler, labels, r))
            total, outside = env_episode(envs, labels.numpy(), r, timer)
            wrapped.append(total)
            own.append(outside)
        row = {
            "env": env_id,
            "steps": sampler.horizon,
            "nfe": sampler.episode_nfe,
            "raw_s": statistics.median(raw),
            "env_s": statistics.median(wrapped),
            "env_own_s": statistics.median(own),
        }
        row["overhead_pct"] = 100 * (row["env_s"] / row["raw_s"] - 1)
        row["env_own_pct"] = 100 * row["env_own_s"] / row["raw_s"]
        rows.append(row)
        print(row, flush=True)

    write_results(
        args,
        rows,
        [
            "# Env overhead: vector env + smoothing + zero policy vs the raw sampler loop",
            "",
            "Batch {batch}, median of {repeats} alternating pairs, {threads} CPU threads, {date}. "
            "Command: `python benchmarks/env_overhead.py --batch {batch} --repeats {repeats} --out {out}`.",
            "",
            "`env own` is the episode's time outside the sampler's reset/step/decode calls, as a share of the raw loop.",
            "",
            "| env | steps | NFE | raw sampler (s) | env episode (s) | end-to-end difference | env own (s) | env own |",
            "|---|---|---|---|---|---|---|---|",
        ]
        + [
            f"| {r['env']} | {r['steps']} | {r['nfe']} | {r['raw_s']:.3f} | {r['env_s']:.3f} | {r['overhead_pct']:+.1f}% "
            f"| {r['env_own_s']:.3f} | {r['env_own_pct']:.2f}% |"
            for r in rows
        ],
    )


if __name__ == "__main__":
    main()
