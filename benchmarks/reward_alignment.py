"""Does the projected discriminator learn to rank images by quality, with which augmentation and which backbones?

Offline, away from any policy: a fresh `AdversarialReward` (architecture "projected") learns from batches of 64
baseline samples of the shipped DiT at NFE 8 (`AdaGen/DiT-v0`, 4 steps) against reals, as it does in training (two
steps per batch), once per setting (`SETTINGS`: DiffAugment operations x frozen backbones). After some batches it
scores probe pairs of the same labels and noise (`adagen_env.rewards.probe`), each better-over-worse:

* NFE 64 over NFE 8 (what a better schedule would make);
* NFE-8 samples over their blurred copies (Gaussian sigma 0.7 px, the training probe's kind);
* with `--schedule`: that static table's NFE-8 samples over the baseline's (a table the headline yardsticks prefer,
  such as the CMA-ES one of `bench/dit4_cma`);
* with `--policy` as well: the table's samples over that policy's (one the headline yardsticks rank below the table
  while the classifier FID ranks it above, such as `policy_dit4_cma_base`).

A reward that knows good from bad has paired AUCs near 1; 0.5 is no signal.

    python benchmarks/reward_alignment.py --out benchmarks/results/reward_alignment/reward_alignment
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import torch
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

import adagen_env  # noqa: F401  (registers the envs)
from adagen_env.evaluation.static import generate_static
from adagen_env.metrics import balanced_labels
from adagen_env.outputs import write_text
from adagen_env.rewards.adversarial import AdversarialReward
from adagen_env.rewards.probe import alignment_auc
from adagen_env.samplers import make_generator
from adagen_env.samplers.schedules import load_schedule

SETTINGS = {
    "colour, translation, cutout / classifier": (("colour", "translation", "cutout"), ("reward-classifier",)),
    "translation, cutout / classifier": (("translation", "cutout"), ("reward-classifier",)),
    "none / classifier": ((), ("reward-classifier",)),
    "translation, cutout / tokenizer": (("translation", "cutout"), ("var-tokenizer",)),
    "translation, cutout / classifier + tokenizer": (("translation", "cutout"), ("reward-classifier", "var-tokenizer")),
}
PROBE_AT = (20, 60, 120, 240)
PROBE_SEED = 7


def sampler(steps: int):
    return gym.make_vec("AdaGen/DiT-v0", num_envs=1, num_steps=steps, reward_model=None).unwrapped.sampler


def policy_images(path: str, labels: torch.Tensor) -> torch.Tensor:
    """The deterministic policy's final images for `labels` (one batch, `PROBE_SEED`): the same noise as
    `generate_static(..., seeding="env")` draws at that batch size."""
    from agents.checkpoint import load_model
    from agents.evaluate import eval_env
    from agents.rollout import generate

    model, meta = load_model(path, device="cpu")
    env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], labels.shape[0], "cpu")
    return generate(model, env, labels, PROBE_SEED).images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-batches", type=int, default=40, help="distinct batches of 64 fakes (then cycled)")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS), metavar="SETTING")
    parser.add_argument("--schedule", help="a schedule file of AdaGen/DiT-v0 at 4 steps (the better static table)")
    parser.add_argument("--policy", help="a policy file on that env, probed as worse than --schedule's table")
    parser.add_argument("--out", default="runs/reward_alignment/reward_alignment")
    args = parser.parse_args()
    if args.policy and not args.schedule:
        parser.error("--policy needs --schedule")
    start = time.time()
    fast, slow = sampler(4), sampler(32)
    n = 64 * args.pool_batches
    pool_labels = balanced_labels(n)[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    pool = torch.cat([fast.sample(pool_labels[i : i + 256], make_generator(100 + i)) for i in range(0, n, 256)])
    labels = balanced_labels(256)
    nfe8 = generate_static(fast, None, labels, PROBE_SEED, 256).images
    nfe64 = generate_static(slow, None, labels, PROBE_SEED, 256).images
    probes = {"nfe64_over_nfe8": (nfe64, nfe8), "sharp_over_blurred": (nfe8, gaussian_blur(nfe8, [3, 3], [0.7, 0.7]))}
    if args.schedule:
        table = generate_static(fast, load_schedule(args.schedule, fast), labels, PROBE_SEED, 256).images
        probes["table_over_baseline"] = (table, nfe8)
        if args.policy:
            probes["table_over_policy"] = (table, policy_images(args.policy, labels))
    rows = []
    for name in tqdm(args.settings, desc="settings"):
        ops, backbones = SETTINGS[name]
        reward = AdversarialReward(8, 16, architecture="projected", augment=ops, backbones=backbones)
        for batch in range(1, PROBE_AT[-1] + 1):
            k = (batch - 1) % args.pool_batches
            stats = reward.update(pool[k * 64 : (k + 1) * 64], pool_labels[k * 64 : (k + 1) * 64])
            if batch in PROBE_AT:
                row = {"setting": name, "batches": batch, "acc_real": stats["disc/acc_real"]}
                row["acc_fake"] = stats["disc/acc_fake"]
                for probe, (better, worse) in probes.items():
                    row[f"{probe}_auc"], row[f"{probe}_paired"] = alignment_auc(reward, better, labels, worse, labels)
                rows.append(row)
    meta = {
        "pool_batches": args.pool_batches,
        "schedule": args.schedule,
        "policy": args.policy,
        "threads": torch.get_num_threads(),
        "seconds": round(time.time() - start),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    titles = {
        "nfe64_over_nfe8": "NFE 64 > NFE 8",
        "sharp_over_blurred": "sharp > blurred",
        "table_over_baseline": "table > baseline",
        "table_over_policy": "table > policy",
    }
    lines = [
        "# Reward alignment of the projected discriminator, by augmentation and backbones",
        "",
        f"`python benchmarks/reward_alignment.py`: {meta['pool_batches']} batches of 64 DiT NFE-8 fakes, cycled; "
        f"{meta['threads']} thread(s), {meta['seconds']} s, {meta['date']}. Table: `{meta['schedule']}`; policy: "
        f"`{meta['policy']}`. Paired AUC over 256 pairs of the same labels and noise (or the same image); "
        "1 = always ranks the better image higher, 0.5 = no signal.",
        "",
        "| augmentation, backbones | batches | D acc. real | D acc. fake | "
        + " | ".join(titles[p] for p in probes)
        + " |",
        "|---|---|---|---|" + "---|" * len(probes),
    ]
    for r in rows:
        cells = " | ".join(f"{r[f'{p}_paired']:.3f}" for p in probes)
        lines.append(f"| {r['setting']} | {r['batches']} | {r['acc_real']:.2f} | {r['acc_fake']:.2f} | {cells} |")
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
