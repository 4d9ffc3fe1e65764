"""`adagen train`: train a schedule policy on an AdaGen env with Stable-Baselines3, resumably.

Reads top to bottom (like CleanRL's `ppo_continuous_action.py`): the `Args` (in `agents.args`, which imports no
torch, so the command line builds its flags from them cheaply), the run directory, one seeding block, the wrapper
stack, the model (new, or loaded from the run's checkpoint), the logger and the hyperparameter table, the callbacks,
`learn`.

    adagen train --env AdaGen/SiT-v0                       # PPO, 64 lanes, the paradigm's defaults
    adagen train --env AdaGen/SiT-v0 --budget-minutes 30 --logdir runs/ --resume
    adagen train --env AdaGen/SiT-v0 --num-steps 16 --stop-knob --nfe-cost 0.01   # compute-aware episodes
    adagen train --env AdaGen/DiT-v0 --generator DIT_DIR --reward-model adversarial-conv --real-data TRAIN_DIR \
        --reference REF_DIR --inception-weights INCEPTION.pth   # a diffusers model (docs/diffusers.md)

Wrapper stack: `gym.make_vec(env)` (the native batch) -> `GroupRelativeReward` when `group_size` > 1 ->
`VectorActionSmoothing(beta)` when beta > 0 (beta = the env class's `default_smoothing` unless given) ->
`SB3VecEnv` -> `VecMonitor`.
Run directory: `<logdir>/<env>__<algo>__<seed>__<stamp>`, holding tensorboard and CSV logs, `args.json`,
`hyperparameters.md` and the checkpoint pair. `--resume` picks the newest such directory with a checkpoint
(or `--run-name`, or `<logdir>` itself when it holds one) and continues from its step counters; tensorboard
continues across resumes, and the previous `progress.csv` becomes `progress.until-update-<k>.csv` (SB3 starts
that file afresh).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv
from stable_baselines3.common.logger import TensorBoardOutputFormat, configure
from stable_baselines3.common.vec_env import VecMonitor

import adagen_env
from adagen_env.errors import InvalidArgument
from adagen_env.metrics import balanced_labels
from adagen_env.outputs import write_text
from adagen_env.rewards import REAL_DATA_REWARDS
from adagen_env.wrappers import GroupRelativeReward, VectorActionSmoothing
from agents.args import Args  # torch-free, for the command line; re-exported here
from agents.callbacks import AlignmentProbe, Checkpointer, PolicyEvaluation, ProgressBar, StdSchedule, TrainingLogger
from agents.checkpoint import (
    BEST_MODEL,
    CHECKPOINT,
    check_meta,
    generator_expectation,
    load_model,
    load_replay_buffer,
    load_state,
    read_meta,
    replay_buffer_path,
    set_env_rng_state,
    set_rng_state,
)
from agents.generators import generator_source, real_reward
from agents.monitors import CollapseMonitor
from agents.presets import get_algorithm, make_model, resolve_hyperparameters, timesteps_per_update
from agents.runs import find_run_dir
from agents.scoring import Scoring
from agents.vec_env import SB3VecEnv

EnvFn = Callable[..., VectorEnv]
"""(num_envs=, reward_model=, return_images=, generator=None, group_size=1) -> a Gymnasium vector env of AdaGen
(unwrapped)."""


def default_env_fn(args: Args) -> EnvFn:
    """Builds `args.env` through `gym.make_vec` with the run's env arguments: on `args.generator` when set (a
    `generator=` given to the builder wins: a ready sampler), with the discriminator's reals from `args.real_data`
    when set."""

    def make(
        num_envs: int, reward_model: Any, return_images: bool, generator: Any = None, group_size: int = 1
    ) -> VectorEnv:
        kwargs: dict[str, Any] = {
            "num_envs": num_envs,
            "group_size": group_size,
            "device": args.device,
            "knobs": args.knobs,
            "base_schedule": args.base_schedule,
            "reward_model": reward_model,
            "feature_pool": args.feature_pool,
            "feature_dtype": args.feature_dtype,
            "observation": args.observation,
            "return_images": return_images,
        }
        if args.stop_knob:  # compute-aware episodes; left out otherwise, so other envs need not know the arguments
            kwargs.update(stop_knob=True, nfe_cost=args.nfe_cost)
        if generator is None:
            kwargs["num_steps"] = args.num_steps
            if args.generator is not None:
                kwargs["generator"] = args.generator
        else:
            kwargs["generator"] = generator  # a ready sampler: its step count is already set
        if args.real_data is not None and isinstance(reward_model, str):
            # The reals take the generator's classes and side: build its sampler first, then the env around it.
            sampler = gym.make_vec(
                args.env, vectorization_mode="vector_entry_point", **{**kwargs, "reward_model": None}
            ).unwrapped.sampler
            kwargs.pop("num_steps", None)
            kwargs["generator"] = sampler
            kwargs["reward_model"] = real_reward(reward_model, sampler, args.real_data, args.device)
        return gym.make_vec(args.env, vectorization_mode="vector_entry_point", **kwargs)

    if args.env not in gym.registry:
        import difflib

        close = difflib.get_close_matches(args.env, [k for k in gym.registry if k.startswith("AdaGen/")], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidArgument(
            f"unknown env id {args.env!r}; AdaGen envs: {sorted(adagen_env.envs.ENVIRONMENTS)}.{hint}"
        )
    return make


def compute_aware(meta: dict[str, Any]) -> dict[str, Any]:
    """The compute-aware settings of a checkpoint's metadata, `stop_knob` and `nfe_cost` (older runs: off)."""
    env_kwargs = meta.get("env_kwargs", {})
    return {"stop_knob": bool(env_kwargs.get("stop_knob", False)), "nfe_cost": float(env_kwargs.get("nfe_cost", 0.0))}


def smooth(env: VectorEnv, beta: float) -> VectorEnv:
    """The smoothing layer of the wrapper stack (none when beta is 0)."""
    return VectorActionSmoothing(env, beta) if beta > 0 else env


def validate(args: Args) -> None:
    """Check the arguments a user can get wrong, before anything is built."""
    get_algorithm(args.algo)
    for name in ("num_envs", "total_updates", "checkpoint_every", "eval_samples", "group_size"):
        if getattr(args, name) < 1:
            raise InvalidArgument(f"{name} must be >= 1, got {getattr(args, name)}")
    if args.eval_every < 0:
        raise InvalidArgument(f"eval_every must be >= 0 (0: no evaluation), got {args.eval_every}")
    if args.budget_minutes is not None and not (math.isfinite(args.budget_minutes) and args.budget_minutes > 0):
        raise InvalidArgument(f"budget_minutes must be a finite number > 0, got {args.budget_minutes}")
    if args.smoothing is not None and not 0 <= args.smoothing < 1:
        raise InvalidArgument(f"smoothing must be an EMA beta in [0, 1), got {args.smoothing}")
    if args.num_envs % args.group_size:
        raise InvalidArgument(f"group_size ({args.group_size}) must divide num_envs ({args.num_envs})")
    if not (math.isfinite(args.nfe_cost) and args.nfe_cost >= 0):
        raise InvalidArgument(f"nfe_cost must be a finite number >= 0, got {args.nfe_cost}")
    if args.nfe_cost and not args.stop_knob:
        raise InvalidArgument("nfe_cost needs stop_knob: without the stop action every lane spends the same NFE")
    given = [name for name in ("generator", "real_data", "reference") if getattr(args, name) is not None]
    if args.engine == "rllib" and given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise InvalidArgument(f"--engine rllib does not take {flags} yet; use --engine sb3")
    args.generator = generator_source(args.generator)
    if args.real_data is not None:
        if args.reward_model not in REAL_DATA_REWARDS:
            raise InvalidArgument(
                f"--real-data needs a reward model that takes real images, one of {list(REAL_DATA_REWARDS)}; got "
                f"--reward-model {args.reward_model} (its frozen networks were trained on the shapes data)"
            )
        args.real_data = str(Path(args.real_data).expanduser().resolve())
    Scoring(args.reference, args.inception_weights)  # refuses a half or missing pair before anything is built


def train(args: Args, env_fn: EnvFn | None = None) -> dict[str, Any]:
    """Train (or resume) a run; returns a summary (run_dir, updates, num_timesteps, elapsed, last eval scores).

    Args:
        args: the run's arguments; `run_dir` and `horizon` are filled in.
        env_fn: builds the unwrapped vector env (`EnvFn`); `gym.make_vec(args.env, ...)` when None. Tests pass
            tiny generators this way.

    Raises:
        InvalidArgument: bad arguments.
        CheckpointError: `--resume` found a corrupt checkpoint, or one of another env / knob set / algorithm.
    """
    validate(args)
    env_fn = env_fn or default_env_fn(args)
    run_dir, resuming = find_run_dir(args, CHECKPOINT, args.algo)
    args.run_dir = str(run_dir)
    if resuming:  # the generator and real images the run recorded, unless given again
        recorded = read_meta(run_dir / CHECKPOINT)
        if args.generator is None:
            args.generator = recorded.get("env_kwargs", {}).get("generator")
        if args.real_data is None:
            args.real_data = recorded.get("real_data")

    # 1. Seeding (SB3 seeds again in the model constructor; a resume restores every stream from the checkpoint).
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    # 2. The wrapper stack.
    base = env_fn(
        num_envs=args.num_envs, reward_model=args.reward_model, return_images=False, group_size=args.group_size
    )
    if args.group_size > 1:
        base = GroupRelativeReward(base)
    beta = type(base.unwrapped).default_smoothing if args.smoothing is None else args.smoothing
    args.smoothing = beta
    env = smooth(base, beta)
    adapter = SB3VecEnv(env)
    venv = VecMonitor(adapter)
    unwrapped = env.unwrapped
    built = {"stop_knob": bool(getattr(unwrapped, "stop_knob", False)), "nfe_cost": getattr(unwrapped, "nfe_cost", 0.0)}
    if built != {"stop_knob": args.stop_knob, "nfe_cost": args.nfe_cost}:
        raise InvalidArgument(
            f"the env was built with {built}, the run asks for stop_knob={args.stop_knob}, nfe_cost={args.nfe_cost}"
        )
    args.horizon = unwrapped.horizon
    scoring = Scoring(args.reference, args.inception_weights)
    if args.eval_every:
        scoring.check_sampler(unwrapped.sampler)
    meta = {
        "env_id": args.env,
        "algo": args.algo,
        "paradigm": unwrapped.paradigm,
        "knobs": list(unwrapped.controlled),
        "knob_names": list(unwrapped.sampler.knob_names),
        "horizon": unwrapped.horizon,
        "observation_keys": sorted(env.single_observation_space.spaces),
        "feature_shape": list(env.single_observation_space["features"].shape),
        "smoothing": beta,
        "num_envs": args.num_envs,
        "sampler_config": unwrapped.sampler.config(),
        "generator_digest": unwrapped.generator_digest,
        "env_kwargs": {
            "num_steps": args.num_steps,
            "knobs": args.knobs,
            "feature_pool": args.feature_pool,
            "feature_dtype": args.feature_dtype,
            "observation": args.observation,
            "base_schedule": None if unwrapped.base_schedule is None else unwrapped.base_schedule.tolist(),
            "stop_knob": args.stop_knob,
            "nfe_cost": args.nfe_cost,
            "generator": args.generator,
        },
        "group_size": args.group_size,
        "reward_model": args.reward_model,
        "real_data": args.real_data,
        "algo_kwargs": args.algo_kwargs,
        "adagen_env_version": adagen_env.__version__,
    }

    # 3. The model: loaded from the checkpoint (counters, optimiser, hyperparameters) or new from the preset.
    elapsed_before, callback_state = 0.0, {}
    if resuming:
        path = run_dir / CHECKPOINT
        saved = read_meta(path)
        identity = (
            "env_id",
            "algo",
            "knobs",
            "horizon",
            "observation_keys",
            "feature_shape",
            "smoothing",
            "num_envs",
            "sampler_config",
        )
        check_meta(path, saved, {**{key: meta[key] for key in identity}, **generator_expectation(saved, unwrapped)})
        saved_observation = saved.get("env_kwargs", {}).get("observation", "features")  # older runs: features
        check_meta(path, {"observation": saved_observation}, {"observation": args.observation})
        check_meta(path, {"group_size": saved.get("group_size", 1)}, {"group_size": args.group_size})  # older: 1
        saved_base = {"base_schedule": saved.get("env_kwargs", {}).get("base_schedule")}  # older runs: none
        check_meta(path, saved_base, {"base_schedule": meta["env_kwargs"]["base_schedule"]})
        check_meta(path, compute_aware(saved), compute_aware(meta))
        model, _ = load_model(path, env=venv, device=args.device)
        state = load_state(path, model.num_timesteps)
        if unwrapped.reward_model is not None and state["reward_model"] is not None:
            unwrapped.reward_model.load_state_dict(state["reward_model"])
        set_rng_state(state["rng"])
        set_env_rng_state(env, state["env_rng"])  # SB3's first reset replays the episodes the run stopped at
        adapter.clear_seed()  # loading seeded the env again; continue its restored stream instead
        buffer_file = replay_buffer_path(run_dir, model.num_timesteps)
        if getattr(model, "replay_buffer", None) is not None and buffer_file.is_file():
            load_replay_buffer(model.replay_buffer, buffer_file)
        elapsed_before, callback_state = state["elapsed_seconds"], state["callbacks"]
        hyperparameters = {"(resumed from)": str(path)}
    else:
        model = make_model(
            args.algo,
            venv,
            unwrapped.horizon,
            args.algo_kwargs,
            seed=args.seed,
            device=args.device,
            verbose=args.verbose,
        )
        hyperparameters = resolve_hyperparameters(
            args.algo, unwrapped.horizon, args.num_envs, env.single_action_space.shape[0], args.algo_kwargs
        )
    tpu = timesteps_per_update(model, unwrapped.horizon)
    meta["timesteps_per_update"] = tpu
    total_timesteps = args.total_updates * tpu

    # 4. Logger (tensorboard + CSV in the run directory; continues across resumes) and the hyperparameter table.
    run_dir.mkdir(parents=True, exist_ok=True)
    progress = run_dir / "progress.csv"
    if resuming and progress.is_file() and progress.stat().st_size:  # SB3 truncates it: keep the earlier segment
        progress.rename(run_dir / f"progress.until-update-{model.num_timesteps // tpu}.csv")  # (an empty one has none)
    logger = configure(str(run_dir), ["tensorboard", "csv", *(["stdout"] if args.verbose else [])])
    model.set_logger(logger)
    write_text(run_dir / "args.json", json.dumps(asdict(args), indent=2, default=str))
    table = "| parameter | value |\n|---|---|\n" + "\n".join(
        f"| {key} | {value} |" for key, value in {**asdict(args), **hyperparameters}.items()
    )
    write_text(run_dir / "hyperparameters.md", table + "\n")
    for fmt in logger.output_formats:
        if isinstance(fmt, TensorBoardOutputFormat):
            fmt.writer.add_text("hyperparameters", table, global_step=model.num_timesteps)

    # 5. Callbacks, in the order they act at an update boundary: std, evaluation, then the checkpoint.
    callbacks: list[Any] = [
        TrainingLogger(unwrapped.sampler.knob_names),
        StdSchedule(tpu, args.std_init, args.std_final, args.std_decay_after),
    ]
    stateful: dict[str, Any] = {}
    evaluation = None
    if args.eval_every:
        eval_env = smooth(
            env_fn(
                num_envs=min(args.num_envs, args.eval_samples),
                reward_model=None,
                return_images=True,
                generator=unwrapped.sampler,
            ),
            beta,
        )
        labels = balanced_labels(args.eval_samples, unwrapped.sampler.num_classes)
        evaluation = PolicyEvaluation(
            eval_env,
            labels,
            args.eval_seed,
            args.eval_every,
            tpu,
            device=args.device,
            best_model_path=run_dir / BEST_MODEL,
            meta=meta,
            # The collapse monitor measures in FD-SSL's space, on the shapes data.
            monitor=None if scoring.real else CollapseMonitor(unwrapped.sampler.num_classes, device=args.device),
            scoring=scoring,
        )
        if "evaluation" in callback_state:
            evaluation.load_state_dict(callback_state["evaluation"])
        stateful["evaluation"] = evaluation
        callbacks.append(evaluation)
        if unwrapped.reward_model is not None and unwrapped.reward_model.online:  # an online reward: watch it
            probe = AlignmentProbe(unwrapped.reward_model, eval_env, labels, args.eval_seed, args.eval_every, tpu)
            callbacks.append(probe)
    budget = None if args.budget_minutes is None else args.budget_minutes * 60
    checkpointer = Checkpointer(
        run_dir,
        args.checkpoint_every,
        tpu,
        env,
        meta,
        budget,
        elapsed_before,
        stateful,
        marks=None if evaluation is None else evaluation.marks,
    )
    callbacks.append(checkpointer)
    if args.progress_bar:
        callbacks.append(ProgressBar(total_timesteps, checkpointer if budget is not None else None))

    # 6. Train.
    remaining = total_timesteps - model.num_timesteps
    if remaining <= 0:
        print(f"{run_dir}: already trained {model.num_timesteps // tpu} of {args.total_updates} updates")
    elif budget is not None and elapsed_before >= budget:
        print(f"{run_dir}: the budget of {args.budget_minutes} minutes is spent ({elapsed_before / 60:.1f} minutes)")
    else:
        model.learn(remaining, callback=callbacks, log_interval=1, reset_num_timesteps=not resuming)
    venv.close()
    return {
        "run_dir": str(run_dir),
        "checkpoint": str(run_dir / CHECKPOINT),
        "best_model": str(run_dir / BEST_MODEL) if (run_dir / BEST_MODEL).is_file() else None,
        "updates": model.num_timesteps // tpu,
        "num_timesteps": model.num_timesteps,
        "elapsed_seconds": checkpointer.elapsed,
        "stopped_by_budget": checkpointer.stopped_by_budget,
        "eval": None if evaluation is None else evaluation.last_scores,
    }


def args_from_namespace(namespace: Any) -> Args:
    """`Args` from the CLI's parsed namespace (flags that are not `Args` fields are ignored; a flag left at None
    takes the field's default)."""
    names = {f.name for f in fields(Args)}
    values = {key: value for key, value in vars(namespace).items() if key in names and value is not None}
    if isinstance(values.get("algo_kwargs"), str):
        try:
            values["algo_kwargs"] = json.loads(values["algo_kwargs"])
        except json.JSONDecodeError as exc:
            raise InvalidArgument(
                "--algo-kwargs must be a JSON object, e.g. '{\"learning_rate\": 3e-4}'; "
                f"got {values['algo_kwargs']!r}: {exc}"
            ) from exc
        if not isinstance(values["algo_kwargs"], dict):
            raise InvalidArgument(f"--algo-kwargs must be a JSON object, got {values['algo_kwargs']!r}")
    return Args(**values)


__all__ = ["Args", "EnvFn", "args_from_namespace", "compute_aware", "default_env_fn", "train"]
