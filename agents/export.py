"""`adagen export-schedule`: a trained policy as a static schedule file, for tools that take a fixed schedule.

    adagen export-schedule --policy benchmarks/results/policy_sit/policy.zip --out runs/export/sit.json
    adagen bench --env AdaGen/SiT-v0 --policy benchmarks/results/policy_sit/policy.zip --schedule runs/export/sit.json

The deterministic policy runs on its own env (`adagen eval`'s: the checkpoint's step count, knobs, smoothing and base
schedule) over `num_samples` class-balanced labels with sampling seed `EXPORT_SEED`, and the knob values it applied
(after the env's projection, so whatever base schedule it was trained on) are averaged over the images, step by
step. The (H, K) mean is the file's table (`adagen_env.samplers.schedules.save_schedule`: an env's `base_schedule`,
`adagen bench --schedule`, `Sampler.sample` take it); the file also holds

* `per_class_schedule`: (C, H, K), the same mean over each class's images (row c is class c);
* `export`: the policy file, its algorithm and base schedule, and the label set and seed;
* `time_grid` (DiT / SiT only, `time_grid`): the time knob as diffusers' schedulers take it.

Letters: N images, C classes, H horizon, K knobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from adagen_env.adapters.diffusers_dit import DiscreteVPPath
from adagen_env.errors import InvalidArgument
from adagen_env.metrics import balanced_labels
from adagen_env.models.paths import LinearPath, VPPath
from adagen_env.samplers import Sampler
from adagen_env.samplers.ode import CFG_KNOB, TIME_KNOB, ODESampler
from adagen_env.samplers.schedules import save_schedule
from agents.checkpoint import check_meta, generator_expectation, load_model
from agents.evaluate import eval_env
from agents.rollout import generate
from agents.train import EnvFn, compute_aware

EXPORT_SEED = 3000
"""Sampling seed of the export: no evaluation uses it (evaluations 0, 1, 2; the bench's search 1000 to 1002;
training's periodic evaluation 1234), so a bench row of the exported table is not scored on the noise it was
averaged over."""


def time_grid(sampler: Sampler, table: torch.Tensor) -> dict[str, Any] | None:
    """The time (and CFG) columns of an ODE sampler's (H, K) table in the forms diffusers' schedulers take; None for
    the other paradigms.

    Step k < H - 1 evaluates the model at time t_k and the last step lands on the data end, so the NFE = H - 1
    evaluation times are t_0 .. t_{H-2}. The evaluation at t_k is guided with the CFG of step k + 1 (step 0's is
    unused). Each `schedulers` entry names a diffusers scheduler and the `set_timesteps` keyword arguments that give
    it these noise levels (checked against diffusers 0.42):

    * flow (SiT): `FlowMatchEulerDiscreteScheduler`, `sigmas` = 1 - t_k (its x = sigma noise + (1 - sigma) data);
    * VP (DiT): `EulerDiscreteScheduler`, `sigmas` = sigma_t / alpha_t = sqrt((1 - alpha_bar) / alpha_bar), the
      noise level on any VP table, ending with the data end's 0;
    * and for a diffusers DiT (`DiscreteVPPath`) also `DPMSolverMultistepScheduler`, `timesteps` = T t_k - 1 on the
      model's own training table. The shipped VP DiT is trained in continuous time, with no such table, so it gets
      no `timesteps`.
    """
    if not isinstance(sampler, ODESampler):
        return None
    path = sampler.path
    times = table[:, sampler.knob_names.index(TIME_KNOB)].double()
    evaluations = times[:-1]
    if isinstance(path, LinearPath):
        meaning = "linear (rectified-flow) path x_t = t data + (1 - t) noise: t = 0 is noise, t = 1 the data"
        schedulers = [
            {
                "scheduler": "FlowMatchEulerDiscreteScheduler",
                "set_timesteps": {"sigmas": (1 - evaluations).tolist()},
                "note": "sigma = 1 - t; the scheduler appends the terminal 0 itself and shifts the sigmas it is given, so "
                "build it with shift=1.0 and use_dynamic_shifting=False",
            }
        ]
    else:
        kind = f"{path.schedule} noise schedule" if isinstance(path, VPPath) else "the model's discrete training table"
        meaning = (
            f"variance-preserving path x_t = alpha_t data + sigma_t noise ({kind}): t = 1 is noise, t = 0 the data"
        )
        ratio = path.sigma(evaluations) / path.alpha(evaluations)
        schedulers = [
            {
                "scheduler": "EulerDiscreteScheduler",
                "set_timesteps": {"sigmas": [*ratio.tolist(), 0.0]},
                "note": "sigma = sigma_t / alpha_t; the scheduler finds each noise level's timestep on its own "
                "alphas_cumprod, so the grid carries over to any VP model by noise level",
            }
        ]
        if isinstance(path, DiscreteVPPath):
            schedulers.append(
                {
                    "scheduler": "DPMSolverMultistepScheduler",
                    "set_timesteps": {"timesteps": path.timestep(evaluations).round().long().tolist()},
                    "note": f"training timesteps n = {path.num_train_timesteps} t - 1 of this model's table, rounded to "
                    "integers (set_timesteps takes int64)",
                }
            )
    grid: dict[str, Any] = {
        "times": times.tolist(),
        "meaning": meaning,
        "solver": sampler.solver,
        "schedulers": schedulers,
    }
    if CFG_KNOB in sampler.knob_names:
        cfg = table[1:, sampler.knob_names.index(CFG_KNOB)].double()
        grid["cfg"] = cfg.tolist()
        grid["guidance_scale"] = (cfg + 1).tolist()  # diffusers' uncond + s (cond - uncond): s = w + 1
    return grid


def export_schedule(
    policy_path: str | Path,
    out_path: str | Path,
    num_samples: int = 1000,
    seed: int = EXPORT_SEED,
    batch_size: int = 64,
    device: str = "cpu",
    env_fn: EnvFn | None = None,
) -> Path:
    """Write the mean knob trajectory of a trained policy as a schedule file (see the module docstring).

    Args:
        policy_path: a checkpoint or exported policy of `adagen train`.
        out_path: the schedule file to write.
        num_samples: images the mean is taken over (class-balanced labels; at least one per class).
        seed: sampling seed (`generate`'s).
        batch_size: lanes of the env the policy runs on.
        device: where the policy and the generator run.
        env_fn: builds the unwrapped env instead of `gym.make_vec` (tests).

    Raises:
        InvalidArgument: fewer samples than classes, a batch size below 1, or a compute-aware policy.
        CheckpointError: a corrupt checkpoint, or one trained on another sampler or generator.
    """
    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
    model, meta = load_model(policy_path, device=device)
    if compute_aware(meta)["stop_knob"]:
        raise InvalidArgument(
            f"{str(policy_path)!r} is a compute-aware policy (stop_knob): its images stop at different steps, so no "
            "one static (H, K) table runs them; export a policy trained without --stop-knob"
        )
    env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], batch_size, device, env_fn)
    unwrapped = env.unwrapped
    sampler = unwrapped.sampler
    check_meta(
        policy_path,
        meta,
        {
            "horizon": unwrapped.horizon,
            "knobs": list(unwrapped.controlled),
            "sampler_config": sampler.config(),
            **generator_expectation(meta, unwrapped),
        },
    )
    classes = sampler.num_classes
    if num_samples < classes:
        raise InvalidArgument(
            f"num_samples must be at least the {classes} classes (a per-class mean each), got {num_samples}"
        )
    generation = generate(model, env, balanced_labels(num_samples, classes), seed)
    knobs = np.asarray(generation.knobs, dtype=np.float64)  # (N, H, K)
    labels = generation.labels.numpy()
    table = torch.from_numpy(knobs.mean(axis=0)).float()
    per_class = np.stack([knobs[labels == c].mean(axis=0) for c in range(classes)])  # (C, H, K)
    extra: dict[str, Any] = {
        "per_class_schedule": per_class.astype(np.float32).tolist(),
        "export": {
            "policy": str(policy_path),
            "algo": meta["algo"],
            "labels": "class-balanced",
            "num_samples": num_samples,
            "seed": seed,
            "policy_base_schedule": meta["env_kwargs"].get("base_schedule"),
        },
    }
    grid = time_grid(sampler, table)
    if grid is not None:
        extra["time_grid"] = grid
    source = (
        f"adagen export-schedule: mean applied knobs of the deterministic policy {str(policy_path)!r} on "
        f"{num_samples} class-balanced labels, seed {seed}"
    )
    return save_schedule(out_path, sampler, table, env_id=meta["env_id"], source=source, extra=extra)


__all__ = ["EXPORT_SEED", "export_schedule", "time_grid"]
