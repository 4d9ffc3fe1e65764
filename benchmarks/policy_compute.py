"""Policy compute as a fraction of the generator's: FLOPs and CPU time of the schedule policy vs the sampler.

For each registered paradigm whose generator ships: the untrained PPO policy of `adagen train` (same network
as a trained one) on the env with its default smoothing, and the sampler's baseline episode at the same batch.
FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions, attention)
over a whole episode: the policy's deterministic action at every step (the actor; the critic only trains)
vs every network evaluation of the sampler. Time: the median of `--repeats` episodes of each.

    python benchmarks/policy_compute.py --out benchmarks/results/policy_compute/policy_compute

AdaGen reports 0.07% to 0.4% for its policies on DiT-XL, VAR-d16..d30 and MaskGIT.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from common import parse_args, shipped_vector_envs, write_results
from torch.utils.flop_counter import FlopCounterMode

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
    args = parse_args(__doc__, "benchmarks/results/policy_compute/policy_compute")
    rows = []
    for env_id, vector_cls, envs in shipped_vector_envs(args.batch):
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

    write_results(args, rows, [
        "# Policy compute vs the generator's, per episode",
        "",
        "Batch {batch}, {threads} CPU threads, median of {repeats} episodes, {date}. "
        "Command: `python benchmarks/policy_compute.py --batch {batch} --repeats {repeats} --out {out}`. "
        "Policy = actor of the PPO policy (features extractor, "
        "MLP, action head), once per step; generator = every network evaluation of the baseline episode (CFG included).",
        "",
        "| env | steps | policy params (actor + critic) | generator params | policy GFLOPs | generator GFLOPs | FLOPs share | policy s | generator s | time share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ] + [
        f"| {r['env']} | {r['steps']} | {r['policy_parameters'] / 1e6:.2f}M | {r['generator_parameters'] / 1e6:.2f}M "
        f"| {r['policy_gflops']:.2f} | {r['generator_gflops']:.1f} | {r['flops_pct']:.2f}% "
        f"| {r['policy_s']:.3f} | {r['generator_s']:.3f} | {r['time_pct']:.2f}% |"
        for r in rows
    ])


if __name__ == "__main__":
    main()
