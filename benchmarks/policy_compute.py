"""Policy compute as a fraction of the generator's: FLOPs and CPU time of the schedule policy vs the sampler.

For each registered paradigm whose generator ships: the untrained PPO policy of `adagen train` (same network
as a trained one) on the env with its default smoothing, and the sampler's baseline episode at the same batch.
FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` (matrix products, convolutions, attention)
over a whole episode: the policy's deterministic action at every step (the actor; the critic only trains)
vs every network evaluation of the sampler. Time: the median of `--repeats` episodes of each.

    python benchmarks/policy_compute.py --out benchmarks/results/policy_compute/policy_compute

AdaGen reports 0.07% to 0.4% for its policies on DiT-XL, VAR-d16..d30 and MaskGIT.

`--dit-xl2` measures the same at DiT-XL/2-256 scale instead, per env step (issue 22): a random-init diffusers
`DiTTransformer2DModel` with DiT-XL/2-256's config (`DIT_XL2`, built from the config dict, nothing downloaded)
behind the project's adapter (`DiffusersDiT`) in `AdaGen/DiT-v0` (generator = that model, its default 8 NFE and
CFG w = 1, no reward). Per `--xl-batches` batch: the generator's FLOPs and wall time of a middle env step (steps
1 .. H-2: the unconditional pass for the guided update, then the conditional pass at the next time: two
transformer passes), and the PPO policy's actor on that step's observation (1152 x 8 x 8 features). The VAE is a
small random `AutoencoderKL` (`SMALL_VAE`: 4 latent channels, 8x upsampling, as the adapter requires) that never
runs: the measured steps come before the final step's decode, so no VAE time or FLOPs are in the figures. It runs on
the CPU with one thread (`torch.set_num_threads(1)`); the load average is recorded at the start and the end.

    OMP_NUM_THREADS=1 python benchmarks/policy_compute.py --dit-xl2 --repeats 3 \
        --out benchmarks/results/policy_compute/policy_compute_dit_xl2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from common import CallTimer, parse_args, shipped_vector_envs, write_results
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from adagen_env.envs import DiTVectorEnv
from adagen_env.samplers import make_generator
from agents.presets import make_model
from agents.train import smooth
from agents.vec_env import SB3VecEnv

DEFAULT_OUT = "benchmarks/results/policy_compute/policy_compute"
DIT_XL2 = {
    "num_layers": 28,
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,
    "patch_size": 2,
    "sample_size": 32,
    "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_zero",
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "norm_elementwise_affine": False,
    "norm_num_groups": 32,
}
"""DiT-XL/2-256's transformer config (facebook/DiT-XL-2-256 `transformer/config.json`; diffusers'
scripts/convert_dit_to_diffusers.py builds it as depth 28, hidden 1152 = 16 heads x 72, patch 2, input 256 / 8 = 32,
learned sigma: 8 output channels; the remaining keys are `DiTTransformer2DModel`'s defaults, which match it)."""
SMALL_VAE = {
    "block_out_channels": (32, 32, 32, 32),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "layers_per_block": 1,
    "sample_size": 256,
}
"""A small random AutoencoderKL with the latent shape the adapter checks (4 channels, 8x upsampling: 256 px); it is
never run here (see the module docstring)."""


def policy_forwards(model, venv: SB3VecEnv) -> list:
    """The observations of one episode, as the policy's tensors (so timing excludes the generator)."""
    obs, out, done = venv.reset(), [], np.zeros(venv.num_envs, bool)
    while not done.all():
        obs_tensor, _ = model.policy.obs_to_tensor(obs)
        out.append(obs_tensor)
        obs, _, done, _ = venv.step(np.zeros((venv.num_envs, *venv.action_space.shape), np.float32))
    return out


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of `repeats` calls of fn()."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def dit_xl2_row(model, batch: int, repeats: int, policy_repeats: int) -> dict:
    """One batch size: env steps 0 .. repeats + 1 of `AdaGen/DiT-v0` around the DiT-XL/2 `model` (see the docstring)."""
    envs = gym.make_vec("AdaGen/DiT-v0", num_envs=batch, generator=model, reward_model=None)
    sampler = envs.sampler
    if repeats + 2 > sampler.horizon - 1:
        raise SystemExit(f"--repeats {repeats}: at most {sampler.horizon - 3} middle steps fit before the last step")
    venv = SB3VecEnv(smooth(envs, DiTVectorEnv.default_smoothing))
    agent = make_model("ppo", venv, sampler.horizon, seed=0)
    zero = np.zeros((venv.num_envs, *venv.action_space.shape), np.float32)
    transformer_timer = CallTimer(model, ("forward",))
    venv.reset()
    start = time.perf_counter()
    venv.step(zero)  # step 0: one conditional pass (also the warm-up)
    first_step_s = time.perf_counter() - start
    step_s, transformer_s = [], []
    for _ in range(repeats):  # middle steps: unconditional + conditional pass
        transformer_timer.seconds = 0.0
        start = time.perf_counter()
        venv.step(zero)
        step_s.append(time.perf_counter() - start)
        transformer_s.append(transformer_timer.seconds)
    # One more middle step, counted. FlopCounterMode has no formula for the CPU's fused attention kernel
    # (aten._scaled_dot_product_flash_attention_for_cpu counts 0), so that step runs SDPA's math backend, whose
    # matrix products it counts.
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        obs, _, _, _ = venv.step(zero)
    generator_flops = counter.get_total_flops()
    del transformer_timer, model.forward  # unwrap the instance's timed forward

    obs_tensor, _ = agent.policy.obs_to_tensor(obs)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        agent.policy._predict(obs_tensor, deterministic=True)
    policy_flops = counter.get_total_flops()

    def predict() -> None:
        with torch.no_grad():
            agent.policy._predict(obs_tensor, deterministic=True)

    predict()  # warm-up
    policy_s = median_seconds(predict, policy_repeats)
    row = {
        "env": "AdaGen/DiT-v0",
        "batch": batch,
        "num_steps": sampler.num_steps,
        "cfg_scale": sampler.cfg_scale,
        "observation_features": list(obs["features"].shape[1:]),
        "transformer_parameters": sum(p.numel() for p in model.transformer.parameters()),
        "transformer_parameters_one_embedder": sum(p.numel() for p in model.transformer.parameters())
        - sum(p.numel() for b in model.transformer.transformer_blocks[1:] for p in b.norm1.emb.parameters()),
        "policy_parameters": sum(p.numel() for p in agent.policy.parameters()),
        "actor_parameters": sum(p.numel() for p in agent.policy.pi_features_extractor.parameters())
        + sum(p.numel() for p in agent.policy.action_net.parameters()),
        "generator_step_gflops": generator_flops / 1e9,
        "policy_step_gflops": policy_flops / 1e9,
        "flops_pct": 100 * policy_flops / generator_flops,
        "generator_step_s": statistics.median(step_s),
        "generator_step_s_all": step_s,
        "transformer_step_s": statistics.median(transformer_s),
        "first_step_s": first_step_s,
        "policy_step_s": policy_s,
        "policy_repeats": policy_repeats,
    }
    row["time_pct"] = 100 * row["policy_step_s"] / row["generator_step_s"]
    return row


def dit_xl2(args: argparse.Namespace) -> None:
    """The `--dit-xl2` section (see the module docstring)."""
    import diffusers

    from adagen_env.adapters.diffusers_dit import DiffusersDiT

    torch.set_num_threads(1)
    load_start = os.getloadavg()
    torch.manual_seed(0)
    start = time.perf_counter()
    model = DiffusersDiT(diffusers.DiTTransformer2DModel(**DIT_XL2), diffusers.AutoencoderKL(**SMALL_VAE))
    print(f"built the DiT-XL/2 model in {time.perf_counter() - start:.1f} s", flush=True)
    rows = []
    for batch in args.xl_batches:
        before = os.getloadavg()
        row = dit_xl2_row(model, batch, args.repeats, args.policy_repeats)
        row["load_average_before"], row["load_average_after"] = before, os.getloadavg()
        rows.append(row)
        print(row, flush=True)
    load_end = os.getloadavg()
    out = args.out if args.out != DEFAULT_OUT else DEFAULT_OUT + "_dit_xl2"
    settings = argparse.Namespace(batch=list(args.xl_batches), repeats=args.repeats, out=out)
    load = (
        f"{load_start[0]:.2f} / {load_start[1]:.2f} / {load_start[2]:.2f} at the start, "
        f"{load_end[0]:.2f} / {load_end[1]:.2f} / {load_end[2]:.2f} at the end"
    )
    batches = " ".join(str(b) for b in args.xl_batches)
    extra = {
        "device": "cpu",
        "load_average_start": load_start,
        "load_average_end": load_end,
        "dit_config": DIT_XL2,
        "vae_config": SMALL_VAE,
        "vae_in_figures": False,
    }
    setting = (
        "**CPU, 1 thread** (`torch.set_num_threads(1)`, `OMP_NUM_THREADS=1`), on a 2-core machine shared with other "
        f"jobs (1 / 5 / 15 min load average {load}), so the times are disturbed upward by an unknown amount; FLOPs are "
        "exact. {date}. Command: `OMP_NUM_THREADS=1 python benchmarks/policy_compute.py --dit-xl2 "
        f"--xl-batches {batches} --repeats {{repeats}} --policy-repeats {args.policy_repeats} --out {{out}}`."
    )
    what = (
        "Generator: a random-init diffusers `DiTTransformer2DModel` with DiT-XL/2-256's config (28 layers, 16 heads x 72 "
        "= 1152 wide, patch 2, latent 4 x 32 x 32, 8 output channels, 1000 classes + null; diffusers' DiT holds its own "
        "copy of the timestep and label embedders in each block, hence about 75M parameters more than the paper's "
        "675M: the JSON's `transformer_parameters_one_embedder` counts them once, and the paper's count adds the "
        "fixed 256 x 1152 position embedding, a buffer here; running the copies is under 0.1% of a pass's FLOPs) "
        "through `DiffusersDiT` in "
        "`AdaGen/DiT-v0` (8 NFE, DPM-Solver++(2M), CFG w = 1). One middle env step = the unconditional pass of the "
        "guided update and the conditional pass at the next time (two transformer passes at the batch); its time is "
        "the median of {repeats} steps of the whole `env.step` (the transformer's own share in the JSON), its FLOPs one "
        "more step under `FlopCounterMode` (on SDPA's math backend, so that attention is counted: the counter gives "
        "the CPU's fused attention kernel 0 FLOPs). No VAE in the figures: the VAE is a small random `AutoencoderKL` "
        "that never runs (the steps measured come before the final decode). Policy: the actor of the untrained PPO "
        "policy (features extractor, action head) once on that step's observation (1152 x 8 x 8 features, step, "
        f"previous action) for all lanes, median of {args.policy_repeats} calls."
    )
    header = (
        "| batch | transformer params | policy params (actor + critic) | generator GFLOPs / step "
        "| policy GFLOPs / step | FLOPs share | generator s / step | policy s / step | time share |"
    )
    table = [
        f"| {r['batch']} | {r['transformer_parameters'] / 1e6:.1f}M | {r['policy_parameters'] / 1e6:.2f}M "
        f"| {r['generator_step_gflops']:.1f} | {r['policy_step_gflops']:.4f} | {r['flops_pct']:.3f}% "
        f"| {r['generator_step_s']:.2f} | {r['policy_step_s'] * 1e3:.2f} ms | {r['time_pct']:.3f}% |"
        for r in rows
    ]
    meta = write_results(
        settings,
        rows,
        [
            "# Policy compute vs the generator's at DiT-XL/2-256 scale, per env step (CPU, one thread)",
            "",
            setting,
            "",
            what,
            "",
            header,
            "|---|---|---|---|---|---|---|---|---|",
            *table,
        ],
        extra,
    )
    print(meta, flush=True)


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dit-xl2",
        action="store_true",
        help="measure per env step at DiT-XL/2-256 scale instead (see above); without --out, "
        "writes policy_compute_dit_xl2.{json,md}",
    )
    parser.add_argument("--xl-batches", type=int, nargs="+", default=[1, 4], help="batches of the --dit-xl2 section")
    parser.add_argument("--policy-repeats", type=int, default=20, help="timed policy calls per batch (--dit-xl2)")


def main() -> None:
    args = parse_args(__doc__, DEFAULT_OUT, options)
    if args.dit_xl2:
        dit_xl2(args)
        return
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

    write_results(
        args,
        rows,
        [
            "# Policy compute vs the generator's, per episode",
            "",
            "Batch {batch}, {threads} CPU threads, median of {repeats} episodes, {date}. "
            "Command: `python benchmarks/policy_compute.py --batch {batch} --repeats {repeats} --out {out}`. "
            "Policy = actor of the PPO policy (features extractor, "
            "MLP, action head), once per step; generator = every network evaluation of the baseline episode (CFG included).",
            "",
            "| env | steps | policy params (actor + critic) | generator params | policy GFLOPs | generator GFLOPs | FLOPs share | policy s | generator s | time share |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        + [
            f"| {r['env']} | {r['steps']} | {r['policy_parameters'] / 1e6:.2f}M | {r['generator_parameters'] / 1e6:.2f}M "
            f"| {r['policy_gflops']:.2f} | {r['generator_gflops']:.1f} | {r['flops_pct']:.2f}% "
            f"| {r['policy_s']:.3f} | {r['generator_s']:.3f} | {r['time_pct']:.2f}% |"
            for r in rows
        ],
    )


if __name__ == "__main__":
    main()
