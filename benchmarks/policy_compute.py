"""Policy compute as a fraction of the generator's: FLOPs and CPU time of the schedule policy vs the sampler.

For each registered paradigm whose generator ships: the untrained PPO policy of `adagen train` (same network
as a trained one) on the env with its default smoothing, and the sampler's baseline episode at the same batch.
FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions, attention)
over a whole episode: the policy's deterministic action at every step (the actor; the critic only trains)
vs every network evaluation of the sampler. Time: the median of `--repeats` episodes of each.

    python benchmarks/policy_compute.py --out benchmarks/results/policy_compute

The anchor reports 0.07% to 0.4% for its policies on DiT-XL, VAR-d16..d30 and MaskGIT (ANCHOR.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import adagen_env
from adagen_env import zoo
from adagen_env.envs import ENVIRONMENTS
from adagen_env.samplers import make_generator
from agents.presets import make_model
from agents.train import smooth
from agents.vec_env import SB3VecEnv


def policy_forwards(model, venv: SB3VecEnv) -> list:
    """The observations of one episode, as the policy's tensors (so timing excludes the generator)."""
    obs, out, done = venv.reset(), [], np.zeros(venv.num_envs, bool)
    while not done.all():
        obs_tensor, _ = model.policy.obs_to_tensor(obs)
        out.append(obs_tensor)
        obs, _, done, _ = venv.step(np.zeros((venv.num_envs, *venv.action_space.shape), np.float32))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/policy_compute")
    args = parser.parse_args()

    rows = []
    for env_id in sorted(ENVIRONMENTS):
        vector_cls = gym.envs.registration.load_env_creator(gym.spec(env_id).vector_entry_point)
        if not zoo.weights_path(vector_cls.default_generator).exists():
            print(f"skip {env_id}: no shipped weights")
            continue
        envs = gym.make_vec(env_id, num_envs=args.batch, reward_model=None)
        sampler = envs.sampler
        venv = SB3VecEnv(smooth(envs, vector_cls.default_smoothing))
        model = make_model("ppo", venv, sampler.horizon, seed=0)
        observations = policy_forwards(model, venv)
        labels = torch.arange(args.batch) % sampler.num_classes

        with FlopCounterMode(display=False) as counter:
            sampler.sample(labels, make_generator(0))
        generator_flops = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            for obs in observations:
                model.policy._predict(obs, deterministic=True)
        policy_flops = counter.get_total_flops()

        generator_s, policy_s = [], []
        for r in range(args.repeats):
            start = time.perf_counter()
            sampler.sample(labels, make_generator(r))
            generator_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            with torch.no_grad():
                for obs in observations:
                    model.policy._predict(obs, deterministic=True)
            policy_s.append(time.perf_counter() - start)
        row = {
            "env": env_id,
            "steps": sampler.horizon,
            "policy_parameters": sum(p.numel() for p in model.policy.parameters()),
            "generator_parameters": sum(p.numel() for p in sampler.model.parameters()),
            "generator_gflops": generator_flops / 1e9,
            "policy_gflops": policy_flops / 1e9,
            "flops_pct": 100 * policy_flops / generator_flops,
            "generator_s": statistics.median(generator_s),
            "policy_s": statistics.median(policy_s),
        }
        row["time_pct"] = 100 * row["policy_s"] / row["generator_s"]
        rows.append(row)
        print(row, flush=True)

    meta = {"batch": args.batch, "repeats": args.repeats, "threads": torch.get_num_threads(),
            "version": adagen_env.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Policy compute vs the generator's, per episode",
        "",
        f"Batch {args.batch}, {meta['threads']} CPU threads, median of {args.repeats} episodes, {meta['date']}. "
        "Command: `python benchmarks/policy_compute.py`. Policy = actor of the PPO policy (features extractor, "
        "MLP, action head), once per step; generator = every network evaluation of the baseline episode (CFG included).",
        "",
        "| env | steps | policy params (actor + critic) | generator params | policy GFLOPs | generator GFLOPs | FLOPs share | policy s | generator s | time share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['env']} | {r['steps']} | {r['policy_parameters'] / 1e6:.2f}M | {r['generator_parameters'] / 1e6:.2f}M "
        f"| {r['policy_gflops']:.2f} | {r['generator_gflops']:.1f} | {r['flops_pct']:.2f}% "
        f"| {r['policy_s']:.3f} | {r['generator_s']:.3f} | {r['time_pct']:.2f}% |"
        for r in rows
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
