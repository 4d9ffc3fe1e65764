"""What a reward model adds to a PPO update's wall time: no reward vs each online discriminator.

One PPO update on `AdaGen/DiT-v0` at 4 steps (NFE 8) with 64 lanes, the trainer's wrapper stack and preset
(`agents.train`), for each reward model: none (zero rewards: the generator, the env and PPO alone), the pixel
discriminator ("adversarial") and the projected one ("adversarial-projected"). Updates alternate between the
reward models, so drift in machine load hits all alike; the median of `--repeats` rounds is reported. Each
update also times the reward model's own calls (`score` and `update`), which a busy machine disturbs less than
the end-to-end difference.

    python benchmarks/reward_cost.py --batch 64 --repeats 7 --out benchmarks/results/reward_cost/reward_cost
"""

from __future__ import annotations

import statistics
import time

from common import CallTimer, parse_args, write_results
from stable_baselines3.common.vec_env import VecMonitor

from agents.presets import make_model, timesteps_per_update
from agents.train import Args, default_env_fn, smooth
from agents.vec_env import SB3VecEnv

ENV_ID, NUM_STEPS = "AdaGen/DiT-v0", 4
REWARDS = (None, "adversarial", "adversarial-projected")


def build(reward: str | None, batch: int):
    """(model, reward timer, timesteps per update) for PPO on the env with `reward`."""
    args = Args(env=ENV_ID, num_steps=NUM_STEPS, num_envs=batch)
    env = default_env_fn(args)(num_envs=batch, reward_model=reward, return_images=False)
    timer = CallTimer(env.unwrapped.reward_model, ("score", "update"))
    venv = VecMonitor(SB3VecEnv(smooth(env, type(env.unwrapped).default_smoothing)))
    model = make_model("ppo", venv, env.unwrapped.horizon, seed=0)
    return model, timer, timesteps_per_update(model, env.unwrapped.horizon)


def timed_update(model, timer: CallTimer, tpu: int) -> tuple[float, float]:
    """(update seconds, seconds of it spent in the reward model)."""
    timer.seconds = 0.0
    start = time.perf_counter()
    model.learn(tpu, reset_num_timesteps=False)
    return time.perf_counter() - start, timer.seconds


def main() -> None:
    args = parse_args(__doc__, "benchmarks/results/reward_cost/reward_cost")
    runs = {reward: build(reward, args.batch) for reward in REWARDS}
    for model, timer, tpu in runs.values():  # warm-up
        timed_update(model, timer, tpu)
    seconds = {reward: ([], []) for reward in REWARDS}
    for r in range(args.repeats):
        for reward, (model, timer, tpu) in runs.items():
            total, inside = timed_update(model, timer, tpu)
            seconds[reward][0].append(total)
            seconds[reward][1].append(inside)
        print(
            f"round {r + 1}/{args.repeats}: " + ", ".join(f"{k}: {v[0][-1]:.2f}s" for k, v in seconds.items()),
            flush=True,
        )
    none = statistics.median(seconds[None][0])
    rows = []
    for reward, (totals, insides) in seconds.items():
        update, inside = statistics.median(totals), statistics.median(insides)
        rows.append(
            {
                "reward_model": reward or "none",
                "update_s": update,
                "reward_s": inside,
                "added_pct": 100 * (update / none - 1),
                "reward_share_pct": 100 * inside / update,
            }
        )
        print(rows[-1], flush=True)
    write_results(
        args,
        rows,
        [
            "# Reward cost: one PPO update with no reward vs each online discriminator",
            "",
            f"`{ENV_ID}` at {NUM_STEPS} steps (NFE 8), {{batch}} lanes, the trainer's preset and wrapper stack; median "
            "of {repeats} alternating rounds, {threads} CPU threads, {date}. Command: `python benchmarks/reward_cost.py "
            "--batch {batch} --repeats {repeats} --out {out}`.",
            "",
            "`added` is the update's wall time over the no-reward update's; `in reward` is the time spent inside the "
            "reward model's `score` and `update` calls, as a share of the update.",
            "",
            "| reward model | update (s) | in reward (s) | added | in reward |",
            "|---|---|---|---|---|",
        ]
        + [
            f"| {r['reward_model']} | {r['update_s']:.2f} | {r['reward_s']:.3f} | {r['added_pct']:+.1f}% "
            f"| {r['reward_share_pct']:.1f}% |"
            for r in rows
        ],
    )


if __name__ == "__main__":
    main()
