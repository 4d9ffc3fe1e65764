"""Does the projected discriminator learn to rank images by quality, and which augmentation lets it?

Offline, away from any policy: a fresh `AdversarialReward` (architecture "projected") learns from batches of 64
baseline samples of the shipped DiT at NFE 8 (`AdaGen/DiT-v0`, 4 steps) against reals, as it does in training (two
steps per batch), once per DiffAugment setting. After some batches it scores two probe pairs of the same content
(`adagen_env.rewards.probe`): 256 samples at NFE 64 over the same labels and noise at NFE 8 (what a better schedule
would make) and the NFE-8 samples over their blurred copies (Gaussian sigma 0.7 px, the training probe's kind).
A reward that knows good from bad has AUCs near 1; 0.5 is no signal.

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
from adagen_env.metrics import balanced_labels
from adagen_env.outputs import write_text
from adagen_env.rewards.adversarial import AdversarialReward
from adagen_env.rewards.probe import alignment_auc
from adagen_env.samplers import make_generator

AUGMENTATIONS = {
    "colour, translation, cutout": ("colour", "translation", "cutout"),
    "translation, cutout": ("translation", "cutout"),
    "none": (),
}
PROBE_AT = (20, 60, 120, 240)


def sampler(steps: int):
    return gym.make_vec("AdaGen/DiT-v0", num_envs=1, num_steps=steps, reward_model=None).unwrapped.sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool-batches", type=int, default=40, help="distinct batches of 64 fakes (then cycled)")
    parser.add_argument("--out", default="runs/reward_alignment/reward_alignment")
    args = parser.parse_args()
    start = time.time()
    fast, slow = sampler(4), sampler(32)
    n = 64 * args.pool_batches
    pool_labels = balanced_labels(n)[torch.randperm(n, generator=torch.Generator().manual_seed(0))]
    pool = torch.cat([fast.sample(pool_labels[i : i + 256], make_generator(100 + i)) for i in range(0, n, 256)])
    labels = balanced_labels(256)
    nfe8, nfe64 = fast.sample(labels, make_generator(7)), slow.sample(labels, make_generator(7))
    blurred = gaussian_blur(nfe8, [3, 3], [0.7, 0.7])
    rows = []
    for name, ops in tqdm(AUGMENTATIONS.items(), desc="augmentations"):
        reward = AdversarialReward(8, 16, architecture="projected", augment=ops)
        for batch in range(1, PROBE_AT[-1] + 1):
            k = (batch - 1) % args.pool_batches
            stats = reward.update(pool[k * 64 : (k + 1) * 64], pool_labels[k * 64 : (k + 1) * 64])
            if batch in PROBE_AT:
                auc, paired = alignment_auc(reward, nfe64, labels, nfe8, labels)
                blur_auc, blur_paired = alignment_auc(reward, nfe8, labels, blurred, labels)
                rows.append(
                    {
                        "augment": name,
                        "batches": batch,
                        "acc_real": stats["disc/acc_real"],
                        "acc_fake": stats["disc/acc_fake"],
                        "nfe64_over_nfe8_auc": auc,
                        "nfe64_over_nfe8_paired": paired,
                        "sharp_over_blurred_auc": blur_auc,
                        "sharp_over_blurred_paired": blur_paired,
                    }
                )
    meta = {
        "pool_batches": args.pool_batches,
        "threads": torch.get_num_threads(),
        "seconds": round(time.time() - start),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    out = Path(args.out)
    write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Reward alignment of the projected discriminator, by augmentation",
        "",
        f"`python benchmarks/reward_alignment.py`: {meta['pool_batches']} batches of 64 DiT NFE-8 fakes, cycled; "
        f"{meta['threads']} thread(s), {meta['seconds']} s, {meta['date']}. AUC: unpaired; paired: same labels "
        "and noise (or the same image). 1 = always ranks the better image higher, 0.5 = no signal.",
        "",
        "| augmentation | batches | D acc. real | D acc. fake | NFE 64 > NFE 8 AUC | paired | sharp > blurred AUC | paired |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['augment']} | {r['batches']} | {r['acc_real']:.2f} | {r['acc_fake']:.2f} | "
            f"{r['nfe64_over_nfe8_auc']:.3f} | {r['nfe64_over_nfe8_paired']:.3f} | "
            f"{r['sharp_over_blurred_auc']:.3f} | {r['sharp_over_blurred_paired']:.3f} |"
        )
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
