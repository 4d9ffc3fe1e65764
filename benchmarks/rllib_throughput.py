"""Training throughput, env steps per second, of PPO on `AdaGen/SiT-v0`: SB3 in one process over the native batch
vs RLlib (`agents/rllib.py`) with 1 and with 2 env runners, at equal lanes and equal PPO settings.

Every configuration builds its run, trains one warm-up update, then times `--updates` updates (rollout, PPO epochs,
and for RLlib the discriminator's collect / update / broadcast); an env step is one lane's step, so an update is
`episodes_per_update (2) x H x lanes` of them for both engines. Configurations alternate within each repeat, so
drift in machine load hits them alike. Each run starts from the same seed, so repeats of one configuration also say
whether it is deterministic: the digests of the policy and discriminator weights after the last update are compared.

Needs the `rllib` extra (its own environment: Ray 2.60 pins gymnasium 1.2.2).

    OMP_NUM_THREADS=1 python benchmarks/rllib_throughput.py --lanes 16 --num-steps 8 --updates 4 --repeats 2 \\
        --note "..." --out benchmarks/results/rllib_throughput/rllib_throughput
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from common import CallTimer, write_results

from agents.args import Args
from agents.rllib import RLlibRun, weights_digest

EPISODES = 2
"""episodes_per_update of both engines (the SB3 preset's)."""


def sb3_run(args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    """SB3 PPO through `agents.train`'s own pieces: the native batch behind `SB3VecEnv`, the preset, the policy."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import VecMonitor

    import adagen_env  # noqa: F401
    from adagen_env.wrappers import VectorActionSmoothing
    from agents.presets import make_model, timesteps_per_update
    from agents.vec_env import SB3VecEnv

    torch.manual_seed(0)
    env = gym.make_vec(
        "AdaGen/SiT-v0", num_envs=args.lanes, num_steps=args.num_steps, vectorization_mode="vector_entry_point"
    )
    beta = type(env.unwrapped).default_smoothing
    venv = VecMonitor(SB3VecEnv(VectorActionSmoothing(env, beta)))
    horizon = env.unwrapped.horizon
    model = make_model("ppo", venv, horizon, {"episodes_per_update": EPISODES}, seed=0)
    tpu = timesteps_per_update(model, horizon)
    model.learn(tpu)  # warm-up update
    timer = CallTimer(model, ("train",))  # PPO's epochs; the rest of `learn` is the rollout
    start = time.perf_counter()
    model.learn(args.updates * tpu, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    policy = weights_digest(model.policy.state_dict())
    disc = weights_digest(env.unwrapped.reward_model.discriminator.state_dict())
    venv.close()
    return {
        "seconds": seconds,
        "env_steps": args.updates * tpu,
        "learn_seconds": timer.seconds / args.updates,
        "sample_seconds": (seconds - timer.seconds) / args.updates,
        "policy": policy,
        "discriminator": disc,
    }


def rllib_run(args: argparse.Namespace, runners: int, logdir: Path) -> dict[str, Any]:
    run_args = Args(
        env="AdaGen/SiT-v0",
        engine="rllib",
        num_env_runners=runners,
        num_envs=args.lanes,
        num_steps=args.num_steps,
        eval_every=0,
        checkpoint_every=10**6,
        logdir=str(logdir),
        progress_bar=False,
        algo_kwargs={"episodes_per_update": EPISODES},
    )
    run = RLlibRun(run_args)
    try:
        run.step()  # warm-up update
        start = time.perf_counter()
        rows = [run.step() for _ in range(args.updates)]
        seconds = time.perf_counter() - start
        horizon = run.eval_env.unwrapped.horizon
        return {
            "seconds": seconds,
            "env_steps": args.updates * EPISODES * horizon * args.lanes,
            "env_steps_rllib_counted": sum(row["charts/env_steps"] for row in rows),
            "sample_seconds": statistics.mean(row["charts/sample_seconds"] for row in rows),
            "learn_seconds": statistics.mean(row["charts/learn_seconds"] for row in rows),
            "disc_seconds": statistics.mean(row["charts/disc_seconds"] for row in rows),
            "policy": weights_digest(run.module.state_dict()),
            "discriminator": weights_digest(run.discriminator.reward.discriminator.state_dict()),
        }
    finally:
        run.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lanes", type=int, default=16, help="lanes in all (split evenly over RLlib's runners)")
    parser.add_argument("--num-steps", type=int, default=8, help="SiT steps (horizon = steps + 1)")
    parser.add_argument("--updates", type=int, default=4, help="timed updates per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--note", default="", help="what else ran on the machine")
    parser.add_argument("--out", default="runs/rllib_throughput/rllib_throughput")
    args = parser.parse_args()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    configs = [("sb3", 0), ("rllib", 1), ("rllib", 2)]
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for engine, runners in configs:
                name = "sb3" if engine == "sb3" else f"rllib-{runners}"
                logdir = Path(tmp) / f"{name}-{repeat}"
                result = sb3_run(args, logdir) if engine == "sb3" else rllib_run(args, runners, logdir)
                result["steps_per_second"] = result["env_steps"] / result["seconds"]
                runs.setdefault(name, []).append(result)
                print(name, repeat, f"{result['steps_per_second']:.1f} env steps/s")
    ray.shutdown()

    rows = []
    for name, results in runs.items():
        rates = [r["steps_per_second"] for r in results]
        rows.append(
            {
                "engine": name,
                "lanes": args.lanes,
                "lanes_per_process": args.lanes if name == "sb3" else args.lanes // int(name.split("-")[1]),
                "median_steps_per_second": statistics.median(rates),
                "steps_per_second": rates,
                "same_weights_every_repeat": len({(r["policy"], r["discriminator"]) for r in results}) == 1,
                "runs": results,
            }
        )
    table = [
        "# PPO training throughput on AdaGen/SiT-v0: SB3 vs RLlib, equal lanes",
        "",
        f"`OMP_NUM_THREADS=1 python benchmarks/rllib_throughput.py --lanes {args.lanes} --num-steps {args.num_steps} "
        f"--updates {args.updates} --repeats {args.repeats} --out {{out}}`, {{date}}, torch threads in the driver: "
        "{threads}, one CPU (one thread) per RLlib env runner, a local Ray with 2 CPUs.",
        "",
        f"Machine: 2 CPU cores. {args.note}",
        "",
        f"{args.lanes} lanes in all, {args.num_steps} steps (horizon {args.num_steps + 1}), the projected "
        f"discriminator, PPO with {EPISODES} episodes of every lane per update, 5 epochs over 4 minibatches; "
        f"{args.updates} timed updates after one warm-up, per run.",
        "",
        "Seconds per update: sampling (SB3: `learn` outside `train`, the env's discriminator steps included; RLlib:"
        " its `env_runner_sampling_timer`), learning (SB3's `train`; RLlib's `learner_update_timer`) and, for RLlib,"
        " the driver's discriminator collect / update / broadcast; medians over the repeats.",
        "",
        "| engine | lanes per process | env steps/s (median) | each repeat | sampling s | learning s | discriminator s |"
        " same weights every repeat |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        each = ", ".join(f"{rate:.1f}" for rate in row["steps_per_second"])
        part = {
            key: statistics.median(r[key] for r in row["runs"]) if key in row["runs"][0] else None
            for key in ("sample_seconds", "learn_seconds", "disc_seconds")
        }
        cells = " | ".join("-" if value is None else f"{value:.2f}" for value in part.values())
        table.append(
            f"| {row['engine']} | {row['lanes_per_process']} | {row['median_steps_per_second']:.1f} | "
            f"{each} | {cells} | {'yes' if row['same_weights_every_repeat'] else 'no'} |"
        )
    write_results(argparse.Namespace(batch=args.lanes, repeats=args.repeats, out=args.out), rows, table)


if __name__ == "__main__":
    main()
