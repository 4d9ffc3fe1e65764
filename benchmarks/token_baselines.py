"""The token generators' baseline settings over step counts: which re-mask temperature and guidance schedule make
more MaskGIT steps help, and how stable each tokenizer's codes are under a new draw of the data's grain.

MaskGIT runs its baseline schedule (zero actions) at 4, 8 and 16 steps with each setting of `SETTINGS`, on
class-balanced labels with the bench's seeding (`generate_static`); every row has every yardstick. The id-flip
rate is the share of token ids that change when the same scenes are rendered with another draw of the grain
(per scale for VAR's multi-scale tokenizer).

    python benchmarks/token_baselines.py --out benchmarks/results/token_baselines/token_baselines

With `--tokenizers CHECKPOINT`, only the tokenizers: the shipped MaskGIT's and that of a zoo training checkpoint of
the MaskGIT recipe (its EMA weights), each with its id-flip rate and the yardsticks of 1000 real images passed
through it (plus fresh grain where the tokenizer decodes clean images) against 1000 others.

    python benchmarks/token_baselines.py --tokenizers checkpoints/zoo/maskgit/checkpoint.pt \
        --out checkpoints/zoo/maskgit/tokenizers
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
from adagen_env import zoo
from adagen_env.evaluation import generate_static
from adagen_env.metrics import balanced_labels, compute_metrics, shapes_reference
from adagen_env.models.vq import FLIP_SCENES, grain_flip_rates, round_trip
from adagen_env.outputs import writable_dir, write_text
from agents.reporting import COLUMNS

STEPS = (4, 8, 16)
SETTINGS: dict[str, dict] = {
    "re-mask 1.0, linear CFG 1": {"remask_temp": 1.0, "cfg_scale": 1.0, "cfg_schedule": "linear"},
    "re-mask 4.5, linear CFG 1": {"remask_temp": 4.5, "cfg_scale": 1.0, "cfg_schedule": "linear"},
    "re-mask 4.5, constant CFG 1": {"remask_temp": 4.5, "cfg_scale": 1.0, "cfg_schedule": "constant"},
    "re-mask 4.5, no CFG": {"remask_temp": 4.5, "cfg_scale": None},
}
"""Row name -> the MaskGIT env's `sampler_kwargs`."""
KEYS = ("fid", "fd_ssl", "oracle_coverage", "oracle_fidelity", "class_agreement")


def reconstruction_scores(tokenizer: torch.nn.Module, num_samples: int = 1000, seed: int = 7) -> dict[str, float]:
    """The yardsticks of `num_samples` real images encoded and decoded (plus fresh grain for a clean tokenizer)."""
    u8, labels = shapes_reference(num_samples, tokenizer.config.resolution, seed=seed)
    images = round_trip(tokenizer, u8.float() / 255, torch.Generator().manual_seed(seed))
    scores = compute_metrics(images, labels, num_reference=num_samples)
    return {k: scores[k] for k in KEYS}


def tokenizers_report(checkpoint: str, out: Path) -> None:
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    recipe = zoo.entry("maskgit")
    trained = recipe.model_cls(recipe.config)
    trained.load_state_dict(state["ema"])
    rows = []
    for name, tokenizer in (
        ("shipped maskgit", zoo.load("maskgit").tokenizer),
        (f"{checkpoint} (step {state['step']})", trained.eval().tokenizer),
    ):
        rows.append(
            {
                "tokenizer": name,
                "flip_rate": grain_flip_rates(tokenizer, FLIP_SCENES)[0],
                **reconstruction_scores(tokenizer),
            }
        )
    lines = [
        "# MaskGIT tokenizers: id stability under the grain, and reconstruction",
        "",
        f"`python benchmarks/token_baselines.py --tokenizers {checkpoint}`; {FLIP_SCENES} scenes for the flip rate, "
        "1000 real 32x32 images reconstructed against 1000 others.",
        "",
        "| tokenizer | id-flip rate | " + " | ".join(COLUMNS[k] for k in KEYS) + " |",
        "|---|---|" + "---|" * len(KEYS),
    ]
    lines += [
        f"| {r['tokenizer']} | {r['flip_rate']:.3f} | " + " | ".join(f"{r[k]:.4g}" for k in KEYS) + " |" for r in rows
    ]
    write_text(out.with_suffix(".json"), json.dumps(rows, indent=2) + "\n")
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--out", default="runs/token_baselines/token_baselines")
    parser.add_argument(
        "--tokenizers",
        metavar="CHECKPOINT",
        default=None,
        help="only compare the shipped MaskGIT tokenizer with this zoo training checkpoint's",
    )
    args = parser.parse_args()
    out = Path(args.out)
    writable_dir(out.parent)  # before any work
    if args.tokenizers:
        tokenizers_report(args.tokenizers, out)
        return
    start, rows = time.time(), []
    labels = balanced_labels(args.num_samples)
    jobs = [(name, steps) for name in SETTINGS for steps in STEPS]
    for name, steps in tqdm(jobs, desc="token baselines"):
        env = gym.make_vec(
            "AdaGen/MaskGIT-v0",
            num_envs=args.batch_size,
            reward_model=None,
            num_steps=steps,
            sampler_kwargs=SETTINGS[name],
        )
        sampler = env.unwrapped.sampler
        gen = generate_static(sampler, sampler.baseline_schedule(), labels, args.seed, args.batch_size)
        scores = compute_metrics(gen.images, labels, num_reference=args.num_samples)
        rows.append(
            {
                "setting": name,
                "steps": steps,
                "nfe": gen.nfe,
                "generator_digest": env.unwrapped.generator_digest,
                **{k: scores[k] for k in KEYS},
            }
        )
    flips = {name: grain_flip_rates(zoo.load(name).tokenizer, FLIP_SCENES) for name in ("maskgit", "var")}
    meta = {
        "num_samples": args.num_samples,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "seconds": round(time.time() - start),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows, "flip_rates": flips}, indent=2) + "\n")
    write_text(out.with_suffix(".md"), markdown(meta, rows, flips))
    print(markdown(meta, rows, flips))


def markdown(meta: dict, rows: list[dict], flips: dict[str, list[float]]) -> str:
    lines = [
        "# Token generators: baseline settings and tokenizer stability",
        "",
        f"`python benchmarks/token_baselines.py`: the shipped MaskGIT's baseline schedule, {meta['num_samples']} "
        f"class-balanced samples a row (seed {meta['seed']}), every yardstick against as many real images. "
        f"{meta['threads']} threads, {meta['seconds']} s, {meta['date']}.",
        "",
        "| setting | steps | NFE | " + " | ".join(COLUMNS[k] for k in KEYS) + " |",
        "|---|---|---|" + "---|" * len(KEYS),
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['steps']} | {r['nfe']} | " + " | ".join(f"{r[k]:.4g}" for k in KEYS) + " |"
        )
    lines += [
        "",
        f"Id-flip rate under a re-draw of the grain ({FLIP_SCENES} scenes; per scale, coarse to fine, for VAR):",
        "",
    ]
    lines += [f"- {name}: " + ", ".join(f"{v:.3f}" for v in rates) for name, rates in flips.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
