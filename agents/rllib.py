"""`adagen train --engine rllib`: PPO from Ray RLlib (new API stack) over N env runners, with ONE discriminator.

What runs where (docs/design.md 6):

* each env runner (a Ray actor; the driver itself when N = 0) holds its own copy of the frozen generator and
  `num_envs / N` lanes of the native batch (`gym_env_vectorize_mode="vector_entry_point"`: one generator forward
  per step serves them all). It scores finished images with a *copy* of the discriminator (`RunnerReward`) that
  never learns; it only keeps the images and labels it scored;
* the driver holds the learner (`num_learners=0`), the one online discriminator (`SharedDiscriminator`), the
  evaluation env and the run directory.

One update (`RLlibRun.step`), read top to bottom:

    1. algo.train()      every runner samples `episodes_per_update` episodes of each of its lanes, scored by its copy
                         of D; the learner runs PPO on them; RLlib sends the new policy weights to the runners
    2. collect           the driver takes every runner's finished images and labels (the fakes), in runner order
    3. update D          one `AdversarialReward.update` per runner batch, as the single-process env makes per batch
    4. broadcast D       the driver's discriminator weights go to every runner: all score with the same D next update
    5. std, logs, eval, checkpoint

Why the driver updates D and broadcasts it (rather than scoring centrally): rewards stay where the images are made
(a runner sends back the images once, not once to be scored and again to train on), the reward needs no round trip
inside an episode, and RLlib's sampling loop is untouched. The price is a lag of one update: the rewards of update k
come from D as it was after update k - 1, where the single-process SB3 path scores each batch with D as it was just
before that batch.

Checkpoints: `<run_dir>/checkpoints/update_<k>/` holds RLlib's state (`algo.save_to_path`, msgpack state files: read
back without unpickling) and `adagen_state.pt` (the discriminator with its optimiser and streams, the driver's RNG,
elapsed time; tensors and numbers, `torch.load(weights_only=True)`); `latest.json` names the newest and is replaced
atomically, so a kill while saving leaves the previous checkpoint in use. A resume continues the update counter, the
discriminator, the policy, its optimiser and the std schedule; the env runners' episode streams start afresh from
the seed (RLlib does not checkpoint them), so a resumed run is not bit-identical to an unbroken one.

Letters: B lanes in all, N env runners, H horizon, A controlled knobs, C/h/w feature grid, R image side.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import ray
import torch
from gymnasium.vector import VectorEnv
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.tune.registry import register_env
from torch import nn

from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.rewards import RewardModel, make_reward_model
from agents.args import Args
from agents.policies import DEFAULT_ACTION_STD, AdaGenExtractor
from agents.runs import find_run_dir

ENV_NAME = "adagen-rllib"
"""The name `make_env` is registered under with Tune (registration travels to every runner with the config)."""
STATE = "adagen_state.pt"
LATEST = "latest.json"


# -- the policy -----------------------------------------------------------------------------------------------------
class AdaGenRLModule(TorchRLModule, ValueFunctionAPI):
    """The SB3 policy of `agents.policies` as an RLlib RLModule: two `AdaGenExtractor` trunks (actor, critic), a
    zero-initialised action head and a fixed exploration std, so the untrained deterministic policy is u = 0.

    `model_config`: `hidden` (D, default 128), `action_std` (initial std, default 0.6). The std is a buffer (no
    gradient), set by `set_action_std`; it travels with the weights. Observations arrive as RLlib batches them:
    `features` (B, C, h, w), `step` (B,) int64, and `prev_action` (B, A) under action smoothing.
    """

    def setup(self) -> None:
        hidden = int(self.model_config.get("hidden", 128))
        std = float(self.model_config.get("action_std", DEFAULT_ACTION_STD))
        self.horizon = int(self.observation_space["step"].n)
        action_dim = int(self.action_space.shape[0])
        self.pi_trunk = AdaGenExtractor(self.observation_space, hidden=hidden)
        self.vf_trunk = AdaGenExtractor(self.observation_space, hidden=hidden)
        self.action_head = nn.Linear(hidden, action_dim)
        nn.init.zeros_(self.action_head.weight)
        nn.init.zeros_(self.action_head.bias)
        self.value_head = nn.Linear(hidden, 1)
        self.register_buffer("log_std", torch.full((action_dim,), math.log(std)))

    def set_action_std(self, std: float) -> None:
        """Set the exploration std (raw residual units) of every action dimension."""
        self.log_std.fill_(math.log(std))

    def _trunk_input(self, obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """RLlib's batch -> the extractor's input: `step` (B,) as the one-hot (B, H) SB3 feeds it."""
        steps = torch.nn.functional.one_hot(obs["step"].long(), self.horizon).float()
        return {**obs, "step": steps}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        mean = self.action_head(self.pi_trunk(self._trunk_input(batch[Columns.OBS])))  # (B, A)
        return {Columns.ACTION_DIST_INPUTS: torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)}  # (B, 2A)

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        return self.value_head(self.vf_trunk(self._trunk_input(batch[Columns.OBS]))).squeeze(-1)  # (B,)


class ModulePolicy:
    """An RLModule behind SB3's `predict` (the `agents.rollout.Predictor` protocol), for `generate`."""

    def __init__(self, module: AdaGenRLModule) -> None:
        self.module = module

    @torch.no_grad()
    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        obs = {key: torch.as_tensor(np.asarray(value)) for key, value in observation.items()}
        inputs = self.module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]  # (B, 2A)
        mean, log_std = inputs.chunk(2, dim=-1)
        actions = mean if deterministic else mean + log_std.exp() * torch.randn_like(mean)
        return actions.cpu().numpy().astype(np.float32), None


# -- one discriminator for every runner -----------------------------------------------------------------------------
class RunnerReward(RewardModel):
    """An env runner's copy of the run's discriminator: scores with the weights the driver last broadcast, never
    learns, and keeps every batch it was asked to learn from (the fakes) until the driver collects them.

    Args:
        inner: the runner's `AdversarialReward` (its weights are overwritten by `load_weights`).
    """

    online = True

    def __init__(self, inner: RewardModel) -> None:
        self.inner = inner
        self.fakes: list[tuple[np.ndarray, np.ndarray]] = []

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.inner.score(images, labels)

    def update(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Keep (B, 3, R, R) images and (B,) labels for the driver; statistics come from the driver's update."""
        self.fakes.append((images.detach().float().cpu().numpy(), labels.cpu().numpy()))
        return {}

    def pop_fakes(self) -> list[tuple[np.ndarray, np.ndarray]]:
        fakes, self.fakes = self.fakes, []
        return fakes

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        self.inner.discriminator.load_state_dict(weights)

    def weights(self) -> dict[str, torch.Tensor]:
        return self.inner.discriminator.state_dict()


def _runner_reward(runner: Any) -> RunnerReward | None:
    env = getattr(runner, "env", None)
    reward = None if env is None else getattr(env.unwrapped, "reward_model", None)
    return reward if isinstance(reward, RunnerReward) else None


def on_every_runner(algo: Any, func: Any) -> list[tuple[int, Any]]:
    """`func(runner)` on every env runner that has an env (the remote ones; the driver's own when N = 0), as
    sorted (runner index, result) pairs. `func` must be importable on the runners (a module-level function, or a
    closure over plain values).

    Raises:
        RuntimeError: a runner did not answer (RLlib's `foreach_env_runner` drops failed calls).
    """
    group = algo.env_runner_group

    def call(runner: Any) -> tuple[int, Any] | None:
        return None if getattr(runner, "env", None) is None else (runner.worker_index, func(runner))

    answers = [a for a in group.foreach_env_runner(call, local_env_runner=True) if a is not None]
    expected = group.num_remote_env_runners() or 1
    if len(answers) != expected:
        raise RuntimeError(
            f"{expected} env runners should have answered, {len(answers)} did: "
            f"{sorted(index for index, _ in answers)}; the missing ones' errors are in the Ray session's "
            "logs (/tmp/ray/session_latest/logs on the head node)"
        )
    return sorted(answers, key=lambda answer: answer[0])


def _pop_fakes(runner: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    reward = _runner_reward(runner)
    return [] if reward is None else reward.pop_fakes()


def _runner_weights(runner: Any) -> dict[str, torch.Tensor] | None:
    reward = _runner_reward(runner)
    return None if reward is None else reward.weights()


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names and bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(weights[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class SharedDiscriminator:
    """The run's one online discriminator, on the driver: learns from the fakes of every runner, then broadcasts.

    Args:
        reward: the driver's `AdversarialReward` (the one that learns).
    """

    def __init__(self, reward: RewardModel) -> None:
        self.reward = reward

    def broadcast(self, algo: Any) -> None:
        """Every runner's copy takes the driver's weights."""
        weights = {k: v.cpu() for k, v in self.reward.discriminator.state_dict().items()}

        def load(runner: Any) -> None:
            reward = _runner_reward(runner)
            if reward is not None:
                reward.load_weights(weights)

        on_every_runner(algo, load)

    def update(self, algo: Any) -> dict[str, float]:
        """Collect every runner's fakes (ordered by runner index), learn from each batch, broadcast; returns the
        last batch's statistics and `disc/fakes`, the images learned from."""
        collected = on_every_runner(algo, _pop_fakes)
        stats: dict[str, float] = {}
        count = 0
        for _, batches in collected:
            for images, labels in batches:
                stats = self.reward.update(torch.tensor(images), torch.tensor(labels))  # copies: Ray's are read-only
                count += len(labels)
        self.broadcast(algo)
        return {**stats, "disc/fakes": float(count)}

    def runner_digests(self, algo: Any) -> dict[int, str]:
        """Runner index -> `weights_digest` of its copy of the discriminator."""
        return {index: weights_digest(w) for index, w in on_every_runner(algo, _runner_weights) if w is not None}


# -- the env on each runner -----------------------------------------------------------------------------------------
def make_env(config: dict[str, Any]) -> VectorEnv:
    """RLlib's env creator (runs on every env runner): the SB3 path's wrapper stack over `gym.make_vec`.

    `config`: `env_id`, `env_kwargs` (keyword arguments of the env, `reward_model` included), `smoothing` (beta),
    `group_size`, and `num_envs` (lanes of this runner, added by RLlib). An online reward becomes a `RunnerReward`.
    """
    import adagen_env  # noqa: F401  (registers the AdaGen ids in this process)
    from adagen_env.wrappers import GroupRelativeReward, VectorActionSmoothing

    group_size = int(config.get("group_size", 1))
    env = gym.make_vec(
        config["env_id"],
        num_envs=int(config["num_envs"]),
        vectorization_mode="vector_entry_point",
        group_size=group_size,
        **config["env_kwargs"],
    )
    unwrapped = env.unwrapped
    if unwrapped.reward_model is not None and unwrapped.reward_model.online:
        unwrapped.reward_model = RunnerReward(unwrapped.reward_model)
    if group_size > 1:
        env = GroupRelativeReward(env)
    beta = float(config["smoothing"])
    return VectorActionSmoothing(env, beta) if beta > 0 else env


# -- the run --------------------------------------------------------------------------------------------------------
def ppo_config(args: Args, env_config: dict[str, Any], horizon: int) -> PPOConfig:
    """RLlib's PPO with the SB3 preset's values (`agents.presets`): gamma = lambda = 1, clip 0.2, value coefficient
    0.5, no entropy bonus, no KL term, grad norm 10, lr 1e-4, 5 epochs over 4 minibatches of `episodes_per_update`
    (2) episodes of every lane. `args.algo_kwargs` overrides them (`PPOConfig.training` names, plus
    `episodes_per_update` and `minibatches`)."""
    overrides = dict(args.algo_kwargs)
    episodes = int(overrides.pop("episodes_per_update", 2))
    minibatches = int(overrides.pop("minibatches", 4))
    if episodes < 1 or minibatches < 1:
        raise InvalidArgument(f"episodes_per_update and minibatches must be >= 1, got {episodes} and {minibatches}")
    runners = args.num_env_runners
    batch = episodes * horizon * args.num_envs
    training = {
        "lr": 1e-4,
        "gamma": 1.0,
        "lambda_": 1.0,
        "clip_param": 0.2,
        "vf_loss_coeff": 0.5,
        "entropy_coeff": 0.0,
        "use_kl_loss": False,
        "grad_clip": 10.0,
        "num_epochs": 5,
        "train_batch_size_per_learner": batch,
        "minibatch_size": max(1, batch // minibatches),
    }
    training.update(overrides)
    cuda = str(args.device).startswith("cuda")
    return (
        PPOConfig()
        .environment(ENV_NAME, env_config=env_config, normalize_actions=False, clip_actions=False)
        .env_runners(
            num_env_runners=runners,
            num_envs_per_env_runner=args.num_envs // max(1, runners),
            gym_env_vectorize_mode="vector_entry_point",
            rollout_fragment_length=episodes * horizon,
            num_cpus_per_env_runner=1,
            num_gpus_per_env_runner=(1 / max(1, runners)) if cuda else 0,
        )
        .learners(num_learners=0, num_gpus_per_learner=1 if cuda else 0)
        .rl_module(rl_module_spec=RLModuleSpec(module_class=AdaGenRLModule, model_config={"action_std": args.std_init}))
        .training(**training)
        .debugging(seed=args.seed)
        .experimental(_use_msgpack_checkpoints=True)
    )


def validate(args: Args) -> None:
    """Check what the RLlib engine needs beyond `agents.train.validate`."""
    from agents.train import validate as validate_common

    validate_common(args)
    if args.algo != "ppo":
        raise InvalidArgument(f"--engine rllib trains PPO only, got --algo {args.algo}")
    if args.stop_knob:
        raise InvalidArgument("--engine rllib does not train compute-aware episodes (--stop-knob); use --engine sb3")
    if args.num_env_runners < 0:
        raise InvalidArgument(f"num_env_runners must be >= 0 (0: sample in the driver), got {args.num_env_runners}")
    share = args.num_envs // max(1, args.num_env_runners)
    if args.num_envs % max(1, args.num_env_runners) or share % args.group_size:
        raise InvalidArgument(
            f"num_envs ({args.num_envs}) must split evenly over num_env_runners "
            f"({args.num_env_runners}) into shares that group_size ({args.group_size}) divides"
        )


def std_at(args: Args, updates: int) -> float:
    """The exploration std after `updates` updates (`agents.callbacks.StdSchedule`'s step decay, floor 0.1)."""
    return max(0.1, args.std_init if updates < args.std_decay_after else args.std_final)


IDENTITY = (
    "env_id",
    "knobs",
    "horizon",
    "feature_shape",
    "smoothing",
    "num_envs",
    "sampler_config",
    "reward_model",
    "group_size",
    "env_kwargs",
)
"""Metadata a resumed run must share with its checkpoint."""


class RLlibRun:
    """A run of `adagen train --engine rllib`: build (or resume) it, `step()` once per update, `close()`.

    Args:
        args: the run's arguments (`engine="rllib"`); `run_dir` and `horizon` are filled in.
        env_overrides: keyword arguments merged into the env's on the driver and every runner (e.g. `generator`, a
            `.safetensors` path, or `sampler_kwargs`).

    Raises:
        InvalidArgument: bad arguments.
        CheckpointError: `--resume` found no checkpoint, or one of another env / knob set / reward.
    """

    def __init__(self, args: Args, env_overrides: dict[str, Any] | None = None) -> None:
        validate(args)
        self.args = args
        run_dir, resuming = find_run_dir(args, LATEST, "rllib-ppo")
        args.run_dir = str(run_dir)
        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)

        # 1. The driver's env: metadata, the evaluation env (final images, no reward), and the discriminator.
        env_kwargs = {
            "num_steps": args.num_steps,
            "device": args.device,
            "knobs": args.knobs,
            "base_schedule": args.base_schedule,
            "feature_pool": args.feature_pool,
            "feature_dtype": args.feature_dtype,
            "observation": args.observation,
            **(env_overrides or {}),
        }
        import adagen_env  # noqa: F401  (registers the AdaGen ids)

        probe = gym.make_vec(
            args.env,
            num_envs=min(args.num_envs, args.eval_samples),
            vectorization_mode="vector_entry_point",
            reward_model=None,
            return_images=True,
            **env_kwargs,
        )
        unwrapped = probe.unwrapped
        beta = type(unwrapped).default_smoothing if args.smoothing is None else args.smoothing
        args.smoothing, args.horizon = beta, unwrapped.horizon
        from agents.train import smooth

        self.eval_env = smooth(probe, beta)
        sampler = unwrapped.sampler
        self.knob_names = list(sampler.knob_names)
        reward = make_reward_model(args.reward_model, sampler.num_classes, sampler.image_shape[-1], args.device)
        self.discriminator = SharedDiscriminator(reward) if reward.online else None
        self.meta = {
            "engine": "rllib",
            "env_id": args.env,
            "algo": "ppo",
            "paradigm": unwrapped.paradigm,
            "knobs": list(unwrapped.controlled),
            "knob_names": self.knob_names,
            "horizon": unwrapped.horizon,
            "feature_shape": list(probe.single_observation_space["features"].shape),
            "smoothing": beta,
            "num_envs": args.num_envs,
            "num_env_runners": args.num_env_runners,
            "sampler_config": sampler.config(),
            "reward_model": args.reward_model,
            "group_size": args.group_size,
            "env_kwargs": {
                k: v
                for k, v in env_kwargs.items()
                if k != "device" and isinstance(v, str | int | float | list | type(None))
            },
        }

        # 2. The algorithm: runners build their envs with `make_env` from this config.
        if not ray.is_initialized():  # a cluster: RAY_ADDRESS, or ray.init(address=...) before this
            local = {} if "RAY_ADDRESS" in os.environ else {"num_cpus": max(2, args.num_env_runners)}
            ray.init(include_dashboard=False, log_to_driver=False, **local)
        register_env(ENV_NAME, make_env)
        env_config = {
            "env_id": args.env,
            "smoothing": beta,
            "group_size": args.group_size,
            "env_kwargs": {**env_kwargs, "reward_model": args.reward_model},
        }
        self.algo = ppo_config(args, env_config, unwrapped.horizon).build_algo()
        self.updates, self.elapsed_before = 0, 0.0
        if resuming:
            self._restore(run_dir)
        elif self.discriminator is not None:
            self.discriminator.broadcast(self.algo)  # every copy starts from the driver's weights
        self.set_action_std(std_at(args, self.updates))
        self._start = time.monotonic()

        # 3. Logs: tensorboard and progress.csv in the run directory (both continue across resumes).
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2, default=str) + "\n")
        (run_dir / "meta.json").write_text(json.dumps(self.meta, indent=2, default=str) + "\n")
        self.writer = SummaryWriter(str(run_dir))
        if not resuming:
            table = "| parameter | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in asdict(args).items())
            self.writer.add_text("hyperparameters", table, global_step=0)
        self.run_dir = run_dir
        self.last_eval: dict[str, float] | None = None
        self.baseline_scores: dict[str, float] | None = None

    # -- one update ---------------------------------------------------------------------------------------------
    @property
    def module(self) -> AdaGenRLModule:
        """The policy, as the driver's env runner holds it (RLlib copies the learner's weights to it every update)."""
        return self.algo.get_module(DEFAULT_MODULE_ID)

    def set_action_std(self, std: float) -> None:
        """Exploration std on the learner and on every runner (both sample with it from the next update on)."""
        self.algo.learner_group.foreach_learner(lambda learner: learner.module[DEFAULT_MODULE_ID].set_action_std(std))

        on_every_runner(self.algo, lambda runner: runner.module.set_action_std(std))
        self.std = std

    @property
    def elapsed(self) -> float:
        """Wall seconds of training, this process and the ones before."""
        return self.elapsed_before + time.monotonic() - self._start

    def step(self) -> dict[str, float]:
        """One update (see the module docstring); returns the row written to progress.csv."""
        start = time.monotonic()
        result = self.algo.train()
        row: dict[str, float] = {}
        if self.discriminator is not None:
            disc_start = time.monotonic()
            row.update(self.discriminator.update(self.algo))
            row["charts/disc_seconds"] = time.monotonic() - disc_start
        self.updates += 1
        self.set_action_std(std_at(self.args, self.updates))
        runners = result.get("env_runners", {})
        learner = result.get("learners", {}).get(DEFAULT_MODULE_ID, {})
        timers = result.get("timers", {})  # RLlib's, smoothed over recent updates
        seconds = time.monotonic() - start
        steps = float(runners.get("num_env_steps_sampled", 0.0))
        row.update(
            {
                "charts/updates": float(self.updates),
                "charts/wall_minutes": self.elapsed / 60,
                "charts/action_std": self.std,
                "charts/env_steps_per_second": steps / seconds if seconds > 0 else 0.0,
                "charts/env_steps": steps,
                **{
                    f"charts/{name}_seconds": float(timers[key])
                    for name, key in (("sample", "env_runner_sampling_timer"), ("learn", "learner_update_timer"))
                    if key in timers
                },
                "reward/terminal_mean": float(runners.get("episode_return_mean", math.nan)),
                **{
                    f"losses/{key}": float(learner[key])
                    for key in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss")
                    if key in learner
                },
            }
        )
        if self.args.eval_every and self.updates % self.args.eval_every == 0:
            row.update({f"eval/{k}": v for k, v in self.evaluate().items()})
        for key, value in row.items():
            self.writer.add_scalar(key, value, self.updates)
        self._append_progress(row)
        if self.updates % self.args.checkpoint_every == 0:
            self.save()
        return row

    def evaluate(self) -> dict[str, float]:
        """Yardsticks of the deterministic policy and of the baseline on the fixed evaluation set (like the SB3
        path's `PolicyEvaluation`: same labels, same seed, same env); keys `<metric>` and `<metric>_baseline`."""
        from adagen_env.metrics import balanced_labels, compute_metrics
        from agents.rollout import ZeroPolicy, generate

        labels = balanced_labels(self.args.eval_samples, self.eval_env.unwrapped.sampler.num_classes)
        metrics = ("fid", "prc", "ssl", "oracle")
        if self.baseline_scores is None:
            base = generate(
                ZeroPolicy(self.eval_env.single_action_space.shape[0]), self.eval_env, labels, self.args.eval_seed
            )
            self.baseline_scores = compute_metrics(base.images, base.labels, metrics=metrics, device=self.args.device)
        gen = generate(ModulePolicy(self.module), self.eval_env, labels, self.args.eval_seed)
        scores = compute_metrics(gen.images, gen.labels, metrics=metrics, device=self.args.device)
        out = {}
        for key, value in scores.items():
            if key not in ("num_samples", "num_reference"):
                out[key], out[f"{key}_baseline"] = float(value), float(self.baseline_scores[key])
        self.last_eval = out
        return out

    def _append_progress(self, row: dict[str, float]) -> None:
        path = self.run_dir / "progress.csv"
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=sorted(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    # -- checkpoints --------------------------------------------------------------------------------------------
    def save(self) -> Path:
        """Write `checkpoints/update_<k>/` then point `latest.json` at it (atomic rename); older ones are removed."""
        folder = self.run_dir / "checkpoints" / f"update_{self.updates:06d}"
        if folder.exists():
            shutil.rmtree(folder)
        self.algo.save_to_path(str((folder / "rllib").resolve()), use_msgpack=True)
        reward = None if self.discriminator is None else self.discriminator.reward.state_dict()
        torch.save(
            {
                "updates": self.updates,
                "elapsed_seconds": self.elapsed,
                "reward_model": reward,
                "torch_rng": torch.get_rng_state(),
            },
            folder / STATE,
        )
        pointer = {**self.meta, "updates": self.updates, "checkpoint": str(folder.relative_to(self.run_dir))}
        tmp = self.run_dir / f"{LATEST}.tmp"
        tmp.write_text(json.dumps(pointer, indent=2, default=str) + "\n")
        os.replace(tmp, self.run_dir / LATEST)
        for old in (self.run_dir / "checkpoints").iterdir():
            if old != folder:
                shutil.rmtree(old)
        return folder

    def _restore(self, run_dir: Path) -> None:
        pointer = json.loads((run_dir / LATEST).read_text())
        mismatched = {k: (pointer.get(k), self.meta[k]) for k in IDENTITY if pointer.get(k) != self.meta[k]}
        if mismatched:
            lines = "; ".join(f"{k}: checkpoint {a!r}, this run {b!r}" for k, (a, b) in mismatched.items())
            raise CheckpointError(f"{str(run_dir / LATEST)!r} was trained with other settings: {lines}")
        folder = run_dir / pointer["checkpoint"]
        try:
            state = torch.load(folder / STATE, weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(f"cannot read {str(folder / STATE)!r}: {exc}") from exc
        self.algo.restore_from_path(str((folder / "rllib").resolve()))
        self.algo.env_runner_group.sync_weights(from_worker_or_learner_group=self.algo.learner_group)
        if self.discriminator is not None and state["reward_model"] is not None:
            self.discriminator.reward.load_state_dict(state["reward_model"])
            self.discriminator.broadcast(self.algo)
        torch.set_rng_state(state["torch_rng"])
        self.updates, self.elapsed_before = int(state["updates"]), float(state["elapsed_seconds"])

    def close(self) -> None:
        self.writer.close()
        self.algo.stop()
        self.eval_env.close()


def train(args: Args, env_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train (or resume) a run with RLlib until `total_updates` or the budget; returns a summary like
    `agents.train.train`'s (run_dir, updates, elapsed, last eval scores)."""
    from tqdm import tqdm

    run = RLlibRun(args, env_overrides)
    budget = None if args.budget_minutes is None else args.budget_minutes * 60
    stopped_by_budget = False
    bar = tqdm(total=args.total_updates, initial=run.updates, unit="update", disable=not args.progress_bar)
    try:
        while run.updates < args.total_updates:
            if budget is not None and run.elapsed >= budget:
                stopped_by_budget = True
                break
            row = run.step()
            bar.update(1)
            bar.set_postfix(
                reward=f"{row['reward/terminal_mean']:.3f}", steps_per_s=f"{row['charts/env_steps_per_second']:.0f}"
            )
        if run.updates % args.checkpoint_every or stopped_by_budget:
            run.save()
        return {
            "run_dir": str(run.run_dir),
            "checkpoint": str(run.run_dir / LATEST),
            "updates": run.updates,
            "elapsed_seconds": run.elapsed,
            "stopped_by_budget": stopped_by_budget,
            "eval": run.last_eval,
        }
    finally:
        bar.close()
        run.close()


__all__ = [
    "AdaGenRLModule",
    "ModulePolicy",
    "RLlibRun",
    "RunnerReward",
    "SharedDiscriminator",
    "make_env",
    "ppo_config",
    "train",
    "weights_digest",
]
