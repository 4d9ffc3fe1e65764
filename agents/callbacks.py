"""SB3 callbacks of AdaGen training: metrics, exploration-std decay, FID evaluation, checkpoints, progress.

All of them count *updates* (`agents.presets.timesteps_per_update`) and act at update boundaries, in
`_on_rollout_start` (the previous update's training is done, the env is at an episode boundary): so a checkpoint
or an evaluation always sees a whole number of updates, and a resumed run repeats none of them.

Tensorboard namespaces (STYLE.md 20): `reward/` terminal rewards (and the NFE spent of compute-aware runs), `disc/` the discriminator's loss and accuracies
(from the env's infos), `knobs/<knob>/step_<k>` mean knob value per step index, `charts/` std, wall time,
`eval/` every yardstick of the deterministic policy and of the baseline, image grids (policy row over baseline
row) and knob-trajectory figures; `reward/alignment_auc` whether the online reward still ranks quality; `monitor/`
per-class recall and near-duplicates of the evaluation batch against the baseline's (`agents.monitors`).

Letters: B lanes, H horizon, K knobs, N evaluation images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure, Image

from adagen_env.errors import InvalidArgument
from agents.checkpoint import env_rng_state, rng_state, save_checkpoint, save_model
from agents.monitors import CollapseMonitor
from agents.rollout import ZeroPolicy, generate
from agents.scoring import SHAPES, Scoring

IMAGE_ONLY = ("stdout", "log", "json", "csv")
"""Logger formats that cannot show images or figures."""


class UpdateCallback(BaseCallback):
    """Base: calls `_on_update(updates)` once per update boundary (and once more at the end of training).

    Args:
        timesteps_per_update: SB3 timesteps of one update (rollout or episode of every lane).
    """

    def __init__(self, timesteps_per_update: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if timesteps_per_update < 1:
            raise InvalidArgument(f"timesteps_per_update must be >= 1, got {timesteps_per_update}")
        self.timesteps_per_update = timesteps_per_update
        self._last_update: int | None = None

    @property
    def updates(self) -> int:
        """Updates finished so far (continues across a resume: it derives from `model.num_timesteps`)."""
        return self.model.num_timesteps // self.timesteps_per_update

    def _at_boundary(self) -> bool:
        return self.model.num_timesteps % self.timesteps_per_update == 0

    def _on_training_start(self) -> None:
        self._last_update = self.updates

    def _on_rollout_start(self) -> None:
        if self._at_boundary() and self.updates != self._last_update:
            self._last_update = self.updates
            self._on_update(self.updates)

    def _on_training_end(self) -> None:
        self._on_rollout_start()

    def _on_step(self) -> bool:
        return True

    def _on_update(self, updates: int) -> None:
        """Hook: `updates` updates are finished."""


class StdSchedule(UpdateCallback):
    """The anchor's fixed exploration std with one step decay: `std_init` until `decay_after` updates, then
    `std_final` (AdaNAT: 0.6 -> 0.3 at update 500, floor 0.1). Sets the policy's frozen `log_std`.

    Args:
        timesteps_per_update: SB3 timesteps of one update.
        std_init: std before the decay, in raw residual units.
        std_final: std from update `decay_after` on.
        decay_after: updates before the decay (0: `std_final` from the start).
        floor: lower bound on the std.
    """

    def __init__(
        self,
        timesteps_per_update: int,
        std_init: float = 0.6,
        std_final: float = 0.3,
        decay_after: int = 500,
        floor: float = 0.1,
    ) -> None:
        super().__init__(timesteps_per_update)
        if not (std_init > 0 and std_final > 0 and floor >= 0):
            raise InvalidArgument(
                f"stds must be positive and floor >= 0, got std_init={std_init}, std_final={std_final}, floor={floor}"
            )
        if decay_after < 0:
            raise InvalidArgument(f"decay_after must be >= 0 updates, got {decay_after}")
        self.std_init, self.std_final, self.decay_after, self.floor = std_init, std_final, decay_after, floor

    def std_at(self, updates: int) -> float:
        """The exploration std after `updates` updates."""
        return max(self.floor, self.std_init if updates < self.decay_after else self.std_final)

    def _on_training_start(self) -> None:
        super()._on_training_start()
        self._apply(self.updates)

    def _on_update(self, updates: int) -> None:
        self._apply(updates)

    def _apply(self, updates: int) -> None:
        log_std = getattr(self.model.policy, "log_std", None)
        if not isinstance(log_std, torch.nn.Parameter):
            return  # SAC / TD3 explore their own way
        std = self.std_at(updates)
        with torch.no_grad():
            log_std.fill_(math.log(std))
        self.logger.record("charts/action_std", std)


class TrainingLogger(BaseCallback):
    """Terminal rewards (the reward model's, before any group baseline), discriminator statistics and per-step
    knob means from the env's infos, per rollout.

    The step index of each transition is read from the observation the action was taken on
    (`model._last_obs["step"]`, before SB3 moves it on), so lanes need not be in lock step.

    Args:
        knob_names: names of the K knobs in `info["knobs"]`.
    """

    def __init__(self, knob_names: Sequence[str]) -> None:
        super().__init__()
        self.knob_names = tuple(knob_names)
        self._clear()

    def _clear(self) -> None:
        self._knob_sum: dict[int, np.ndarray] = {}
        self._knob_count: dict[int, np.ndarray] = {}
        self._rewards: list[float] = []
        self._nfe: list[float] = []
        self._disc: dict[str, list[float]] = {}

    def _on_step(self) -> bool:
        infos, dones = self.locals["infos"], np.asarray(self.locals["dones"])
        obs = getattr(self.model, "_last_obs", None)
        if isinstance(obs, dict) and "step" in obs and all("knobs" in info for info in infos):
            knobs = np.stack([info["knobs"] for info in infos])  # (B, K); NaN in lanes that stopped
            finite = np.isfinite(knobs)
            steps = np.asarray(obs["step"]).reshape(-1)
            for k in np.unique(steps):
                lanes = steps == k
                self._knob_sum[int(k)] = self._knob_sum.get(int(k), 0) + np.where(finite, knobs, 0)[lanes].sum(axis=0)
                self._knob_count[int(k)] = self._knob_count.get(int(k), 0) + finite[lanes].sum(axis=0)
        rewards = np.asarray(self.locals["rewards"])
        for i in np.flatnonzero(dones):  # group rollouts train on centred rewards: log the reward model's own
            self._rewards.append(float(infos[i].get("raw_reward", rewards[i])))
            if "episode_nfe" in infos[i]:  # compute-aware episodes: the NFE the lane actually spent
                self._nfe.append(float(infos[i]["episode_nfe"]))
            for key in ("disc/loss", "disc/acc_real", "disc/acc_fake"):
                if key in infos[i]:
                    self._disc.setdefault(key, []).append(float(infos[i][key]))
        return True

    def _on_rollout_end(self) -> None:
        if not self._rewards:
            return  # off-policy rollouts can be single steps: wait for finished episodes
        self.logger.record("reward/terminal_mean", float(np.mean(self._rewards)))
        self.logger.record("reward/terminal_std", float(np.std(self._rewards)))
        if self._nfe:
            self.logger.record("reward/episode_nfe_mean", float(np.mean(self._nfe)))
        for key, values in self._disc.items():
            self.logger.record(key, float(np.mean(values)))
        for k in sorted(self._knob_sum):
            for name, total, count in zip(self.knob_names, self._knob_sum[k], self._knob_count[k]):
                if count:  # every lane may have stopped before step k
                    self.logger.record(f"knobs/{name}/step_{k:02d}", float(total / int(count)))
        self._clear()


def knob_figure(knob_names: Sequence[str], policy_knobs: np.ndarray, baseline: np.ndarray | None = None) -> Any:
    """Matplotlib figure of knob trajectories: mean (and +- std band) over images per step, baseline dashed.

    Args:
        knob_names: K names.
        policy_knobs: (N, H, K) knob values; NaN (steps after an image stopped) are left out of the statistics.
        baseline: (H, K) baseline schedule, or None.
    """
    from matplotlib.figure import Figure as MplFigure

    n_knobs = len(knob_names)
    fig = MplFigure(figsize=(3.2 * n_knobs, 2.6), layout="constrained")
    axes = fig.subplots(1, n_knobs, squeeze=False)[0]
    steps = np.arange(policy_knobs.shape[1])
    finite = np.isfinite(policy_knobs)
    count = np.maximum(finite.sum(axis=0), 1)
    mean = np.where(finite, policy_knobs, 0).sum(axis=0) / count  # (H, K)
    std = np.sqrt((np.where(finite, policy_knobs - mean, 0) ** 2).sum(axis=0) / count)
    mean, std = np.where(finite.any(axis=0), mean, np.nan), np.where(finite.any(axis=0), std, np.nan)
    for i, (ax, name) in enumerate(zip(axes, knob_names)):
        ax.plot(steps, mean[:, i], marker="o", label="policy")
        ax.fill_between(steps, mean[:, i] - std[:, i], mean[:, i] + std[:, i], alpha=0.25)
        if baseline is not None:
            ax.plot(steps, baseline[:, i], "k--", label="baseline")
        ax.set_title(name)
        ax.set_xlabel("step")
    axes[0].legend(fontsize="small")
    return fig


class PolicyEvaluation(UpdateCallback):
    """Every `every` updates: FID (and KID, IS, precision/recall, class agreement) of the deterministic policy on a
    fixed label and seed set, next to the baseline schedule's on the same set; an image grid of policy samples
    (top row) over baseline samples (bottom row); a figure of the policy's knob trajectories.

    Args:
        eval_env: a Gymnasium vector env like the training one (same generator, knobs, smoothing), built with
            `return_images=True` and `reward_model=None`.
        labels: (N,) fixed class ids (e.g. `adagen_env.metrics.balanced_labels(N)`).
        seed: fixed sampling seed.
        every: updates between evaluations.
        timesteps_per_update: SB3 timesteps of one update.
        metrics: `compute_metrics` switches.
        grid_size: images per row of the grid (0: no grid).
        device: where the metric's feature network runs.
        best_model_path: where to save the policy each time its selection score (`scoring.selection`: FD-SSL, or
            the Inception FID against real images) is the best so far (like SB3's `EvalCallback`); a checkpoint zip
            with `meta` plus `updates`, `selected_by` and `best_eval_score`. None: not saved. The other yardsticks are
            logged beside it, so that the selection does not grade itself.
        meta: run metadata stored in the best model (`agents.checkpoint.read_meta`).
        monitor: watches the batch for collapse against the baseline's (`agents.monitors.CollapseMonitor`), logged
            under `monitor/`; an alarm warns and joins `marks()` (the metadata of later checkpoints). None: off.
        scoring: what the images are scored against (`agents.scoring.Scoring`); the shapes data when None.
    """

    def __init__(
        self,
        eval_env: VectorEnv,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        seed: int,
        every: int,
        timesteps_per_update: int,
        metrics: tuple[str, ...] = ("fid", "prc", "ssl", "oracle"),
        grid_size: int = 8,
        device: str = "cpu",
        best_model_path: str | Path | None = None,
        meta: dict[str, Any] | None = None,
        monitor: CollapseMonitor | None = None,
        scoring: Scoring | None = None,
    ) -> None:
        super().__init__(timesteps_per_update)
        self.scoring = scoring or SHAPES
        self.selection = self.scoring.selection
        if every < 1:
            raise InvalidArgument(f"every must be >= 1 update, got {every}")
        self.monitor = monitor
        self.alarms: list[dict[str, Any]] = []
        self.best_model_path = None if best_model_path is None else Path(best_model_path)
        self.meta = meta or {}
        self.eval_env, self.seed, self.every = eval_env, seed, every
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if self.labels.numel() < 2:
            raise InvalidArgument(f"evaluation needs at least 2 labels, got {self.labels.numel()}")
        self.metrics, self.grid_size, self.device = metrics, grid_size, device
        self.baseline_scores: dict[str, float] | None = None
        self._baseline_images: torch.Tensor | None = None
        self._baseline_knobs: np.ndarray | None = None
        self.last_scores: dict[str, float] | None = None
        self.best_score = math.inf

    def _on_update(self, updates: int) -> None:
        if updates % self.every == 0:
            self.evaluate()

    def evaluate(self) -> dict[str, float]:
        """Run the evaluation now, log it, and return the policy's scores."""
        sampler = self.eval_env.unwrapped.sampler
        if self.baseline_scores is None or self._baseline_images is None:
            action_dim = self.eval_env.single_action_space.shape[0]
            base = generate(ZeroPolicy(action_dim), self.eval_env, self.labels, self.seed)
            self.baseline_scores = self.scoring.score(base.images, base.labels, self.metrics, self.device)
            self._baseline_images = base.images[: self.grid_size]
            self._baseline_knobs = base.knobs.mean(axis=0)  # (H, K) as applied (after the validity projection)
            if self.monitor is not None:
                self.monitor.set_baseline(base.images, base.labels)
        gen = generate(self.model, self.eval_env, self.labels, self.seed)
        scores = self.scoring.score(gen.images, gen.labels, self.metrics, self.device)
        if self.monitor is not None:
            self._watch(gen.images, gen.labels)
        for key, value in scores.items():
            if key not in ("num_samples", "num_reference"):
                self.logger.record(f"eval/{key}", value)
                self.logger.record(f"eval/{key}_baseline", self.baseline_scores[key])
        self.logger.record("eval/nfe", gen.nfe)
        if gen.sample_nfe is not None:  # compute-aware episodes: the NFE an image actually spent
            self.logger.record("eval/nfe_spent_mean", float(gen.sample_nfe.mean()))
        if self.selection in scores:
            score = scores[self.selection]
            if score < self.best_score and self.best_model_path is not None:
                best = {"updates": self.updates, "selected_by": self.selection, "best_eval_score": score}
                save_model(self.model, self.best_model_path, {**self.meta, **self.marks(), **best})
            self.best_score = min(self.best_score, score)
            self.logger.record(f"eval/best_{self.selection}", self.best_score)
        if self.grid_size:
            from torchvision.utils import make_grid

            grid = make_grid(
                torch.cat([gen.images[: self.grid_size], self._baseline_images]), nrow=self.grid_size, padding=1
            )
            self.logger.record("eval/images_policy_over_baseline", Image(grid, "CHW"), exclude=IMAGE_ONLY)
        self.logger.record(
            "eval/knob_trajectories",
            Figure(knob_figure(sampler.knob_names, gen.knobs, self._baseline_knobs), close=False),
            exclude=IMAGE_ONLY,
        )
        self.last_scores = scores
        return scores

    def _watch(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Log the monitor's view of the policy's batch beside the baseline's; warn and keep an alarm."""
        stats, reasons = self.monitor.check(images, labels)
        base = self.monitor.baseline
        for key in ("recall", "duplicates"):
            self.logger.record(f"monitor/{key}", stats[key])
            self.logger.record(f"monitor/{key}_baseline", base[key])
        for c, value in enumerate(stats["class_recall"]):
            self.logger.record(f"monitor/recall_class_{c}", value)
        self.logger.record("monitor/alarm", float(bool(reasons)))
        if reasons:
            import warnings

            self.alarms.append({"updates": self.updates, "reasons": reasons})
            warnings.warn(f"update {self.updates}: the policy may be collapsing: " + "; ".join(reasons), stacklevel=2)

    def marks(self) -> dict[str, Any]:
        """What checkpoints saved from now on carry in their metadata: `collapse_alarms`, every alarm so far
        ({"updates", "reasons"}), when there was one."""
        return {"collapse_alarms": list(self.alarms)} if self.alarms else {}

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "selected_by": self.selection, "alarms": list(self.alarms)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("selected_by") == self.selection:  # a run selected by another yardstick starts afresh
            self.best_score = state["best_score"]
        self.alarms = list(state.get("alarms", []))


class AlignmentProbe(UpdateCallback):
    """Every `every` updates: the AUC and the paired AUC with which the training reward ranks fixed better images
    above fixed worse ones (`adagen_env.rewards.probe`), logged as `reward/alignment_auc` and
    `reward/alignment_paired`; a warning when the paired one falls below `warn_below`, because a reward near 0.5 no
    longer knows good from bad.

    The default probe pair is the baseline schedule's images on `eval_env` (better) and the same images blurred
    with a Gaussian of 1 pixel (worse), which every yardstick of the sensitivity table ranks the same way.

    Args:
        reward_model: the training env's reward model.
        eval_env: a vector env like the training one, built with `return_images=True` and `reward_model=None`.
        labels: (N,) fixed class ids; seed: fixed sampling seed.
        every: updates between probes; timesteps_per_update: SB3 timesteps of one update.
        warn_below: AUC under which the run warns.
    """

    def __init__(
        self,
        reward_model: Any,
        eval_env: VectorEnv,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        seed: int,
        every: int,
        timesteps_per_update: int,
        warn_below: float = 0.6,
    ) -> None:
        super().__init__(timesteps_per_update)
        if every < 1:
            raise InvalidArgument(f"every must be >= 1 update, got {every}")
        self.reward_model, self.eval_env, self.seed, self.every = reward_model, eval_env, seed, every
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.warn_below = warn_below
        self.better: torch.Tensor | None = None
        self.worse: torch.Tensor | None = None
        self.last_auc: float | None = None
        self.last_paired: float | None = None

    def _on_update(self, updates: int) -> None:
        if updates % self.every == 0:
            self.probe()

    def probe(self) -> tuple[float, float]:
        """Score the probe pair with the current reward; log and return (AUC, paired AUC)."""
        from torchvision.transforms.functional import gaussian_blur

        from adagen_env.rewards.probe import alignment_auc

        if self.better is None or self.worse is None:
            action_dim = self.eval_env.single_action_space.shape[0]
            self.better = generate(ZeroPolicy(action_dim), self.eval_env, self.labels, self.seed).images
            self.worse = gaussian_blur(self.better, [7, 7], [1.0, 1.0])
        self.last_auc, self.last_paired = alignment_auc(
            self.reward_model, self.better, self.labels, self.worse, self.labels
        )
        self.logger.record("reward/alignment_auc", self.last_auc)
        self.logger.record("reward/alignment_paired", self.last_paired)
        if self.last_paired < self.warn_below:
            import warnings

            warnings.warn(
                f"update {self.updates}: the reward prefers a sharp baseline image to its blurred copy "
                f"with probability {self.last_paired:.3f} (< {self.warn_below}): it is losing track of "
                "image quality",
                stacklevel=2,
            )
        return self.last_auc, self.last_paired


class Checkpointer(UpdateCallback):
    """Every `every` updates (and when training ends, or the wall-clock budget runs out): `checkpoint.zip` +
    `checkpoint_state.pt` in `run_dir` (see `agents.checkpoint`). Also keeps the budget: once the run's total
    wall time (across resumes) passes `budget_seconds`, it saves and stops training at the next update boundary.

    Args:
        run_dir: where the checkpoint goes.
        every: updates between checkpoints.
        timesteps_per_update: SB3 timesteps of one update.
        env: the Gymnasium vector env being trained on (its reward model and random streams are saved).
        meta: run metadata stored in the zip (`agents.checkpoint.read_meta`).
        budget_seconds: total wall-time budget, or None.
        elapsed_before: wall time spent before this process (a resumed run).
        stateful: callbacks whose `state_dict()` is saved, by name.
        marks: returns entries for the metadata of each checkpoint (`PolicyEvaluation.marks`), or None.
    """

    def __init__(
        self,
        run_dir: str | Path,
        every: int,
        timesteps_per_update: int,
        env: VectorEnv,
        meta: dict[str, Any],
        budget_seconds: float | None = None,
        elapsed_before: float = 0.0,
        stateful: dict[str, Any] | None = None,
        marks: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(timesteps_per_update)
        if every < 1:
            raise InvalidArgument(f"checkpoint every must be >= 1 update, got {every}")
        self.marks = marks
        self.run_dir, self.every, self.env, self.meta = Path(run_dir), every, env, meta
        self.budget_seconds, self.elapsed_before = budget_seconds, elapsed_before
        self.stateful = stateful or {}
        self.stopped_by_budget = False
        self._start = time.monotonic()
        self.last_saved: int | None = None

    @property
    def elapsed(self) -> float:
        """Wall seconds of training so far, this process and the ones before."""
        return self.elapsed_before + time.monotonic() - self._start

    def _on_training_start(self) -> None:
        super()._on_training_start()
        self._start = time.monotonic()

    def _on_update(self, updates: int) -> None:
        self.logger.record("charts/wall_minutes", self.elapsed / 60)
        self.logger.record("charts/updates", updates)
        over = self.budget_seconds is not None and self.elapsed >= self.budget_seconds
        if over or updates % self.every == 0:
            self.save()
        if over:
            self.stopped_by_budget = True

    def _on_step(self) -> bool:
        return not self.stopped_by_budget

    def _on_training_end(self) -> None:
        if not self.stopped_by_budget and self._at_boundary() and self.updates != self.last_saved:
            self._last_update = self.updates
            self.save()

    def save(self) -> Path:
        """Write the checkpoint pair now."""
        reward_model = getattr(self.env.unwrapped, "reward_model", None)
        state = {
            "reward_model": None if reward_model is None else reward_model.state_dict(),
            "rng": rng_state(),
            "env_rng": env_rng_state(self.env),
            "elapsed_seconds": self.elapsed,
            "callbacks": {name: cb.state_dict() for name, cb in self.stateful.items()},
        }
        meta = {**self.meta, **(self.marks() if self.marks is not None else {}), "updates": self.updates}
        path = save_checkpoint(self.model, self.run_dir, meta, state)
        self.last_saved = self.updates
        return path


class ProgressBar(BaseCallback):
    """A tqdm bar (plain tqdm: SB3's own bar needs `rich`) with the mean episode reward: over timesteps, or over the
    wall-clock budget when the run has one (a budgeted run stops on time, long before its timestep target).

    Args:
        total_timesteps: the run's target `num_timesteps` (a resumed run starts the bar where it stopped).
        budget: the run's `Checkpointer` when it keeps a wall-time budget (the bar then counts its seconds).
    """

    def __init__(self, total_timesteps: int, budget: Checkpointer | None = None) -> None:
        super().__init__()
        self.total_timesteps = total_timesteps
        self.budget = budget
        self.bar: Any = None

    def _on_training_start(self) -> None:
        from tqdm.auto import tqdm

        if self.budget is None:
            self.bar = tqdm(
                total=self.total_timesteps, initial=self.model.num_timesteps, unit="step", dynamic_ncols=True
            )
        else:
            self.bar = tqdm(
                total=round(self.budget.budget_seconds),
                initial=round(self.budget.elapsed),
                unit="s",
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s budget [{elapsed}{postfix}]",
            )

    def _on_step(self) -> bool:
        if self.budget is None:
            self.bar.update(self.training_env.num_envs)
        else:
            self.bar.update(min(self.budget.elapsed, self.bar.total) - self.bar.n)
        return True

    def _on_rollout_end(self) -> None:
        if self.model.ep_info_buffer:
            self.bar.set_postfix(reward=f"{np.mean([e['r'] for e in self.model.ep_info_buffer]):.3f}", refresh=False)

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
