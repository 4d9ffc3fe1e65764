"""Callbacks: the std decay, the logged metrics and knob statistics, the FID evaluation and its figures."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from conftest import tiny_dit  # tests/conftest.py
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecMonitor

from adagen_env.errors import InvalidArgument
from adagen_env.samplers import DiffusionSampler
from agents import (
    PolicyEvaluation,
    SB3VecEnv,
    StdSchedule,
    TrainingLogger,
    knob_figure,
    make_model,
    timesteps_per_update,
)
from agents.rollout import ZeroPolicy, generate


def _tiny_model(tmp_path, reward_model="adversarial", formats=("csv",)):
    from adagen_env.envs import DiTVectorEnv

    sampler = DiffusionSampler(tiny_dit(), num_steps=2)  # horizon 3
    env = DiTVectorEnv(num_envs=2, generator=sampler, reward_model=reward_model)
    model = make_model(
        "ppo", VecMonitor(SB3VecEnv(env)), sampler.horizon, {"n_epochs": 1, "episodes_per_update": 1}, seed=0
    )
    model.set_logger(configure(str(tmp_path), list(formats)))
    return model, env, sampler


def _csv(tmp_path) -> list[dict[str, str]]:
    with open(tmp_path / "progress.csv") as handle:
        return list(csv.DictReader(handle))


def test_std_schedule_decays_after_n_updates(tmp_path) -> None:
    model, _, sampler = _tiny_model(tmp_path)
    tpu = timesteps_per_update(model, sampler.horizon)
    assert tpu == 3 * 2
    schedule = StdSchedule(tpu, std_init=0.6, std_final=0.3, decay_after=2)
    assert [schedule.std_at(u) for u in range(4)] == [0.6, 0.6, 0.3, 0.3]
    model.learn(4 * tpu, callback=schedule)
    assert model.policy.log_std.detach().exp().allclose(torch.tensor(0.3))
    stds = [float(row["charts/action_std"]) for row in _csv(tmp_path)]
    assert stds == pytest.approx([0.6, 0.6, 0.3, 0.3])  # the std each update's rollout was collected with
    assert StdSchedule(tpu, 0.6, 0.3, decay_after=0, floor=0.5).std_at(0) == 0.5
    with pytest.raises(InvalidArgument, match="decay_after"):
        StdSchedule(tpu, decay_after=-1)


def test_training_logger_records_rewards_disc_and_knobs_per_step(tmp_path) -> None:
    model, _, sampler = _tiny_model(tmp_path)
    model.learn(2 * timesteps_per_update(model, sampler.horizon), callback=TrainingLogger(sampler.knob_names))
    rows = _csv(tmp_path)
    assert len(rows) == 2
    for row in rows:
        assert 0 < float(row["reward/terminal_mean"]) < 1
        for key in ("disc/loss", "disc/acc_real", "disc/acc_fake"):
            assert math.isfinite(float(row[key]))
        for name in sampler.knob_names:
            for k in range(sampler.horizon):
                assert math.isfinite(float(row[f"knobs/{name}/step_{k:02d}"]))
    # Step 0's time knob starts at the noise end (~1 for VP diffusion), the last one is the data end.
    assert float(rows[0]["knobs/time/step_00"]) > float(rows[0]["knobs/time/step_02"])


def test_evaluation_of_the_untrained_policy_equals_the_baseline(tmp_path) -> None:
    from adagen_env.envs import DiTVectorEnv

    model, _, sampler = _tiny_model(tmp_path, reward_model=None, formats=("csv", "tensorboard"))
    eval_env = DiTVectorEnv(num_envs=4, generator=sampler, reward_model=None, return_images=True)
    tpu = timesteps_per_update(model, sampler.horizon)
    evaluation = PolicyEvaluation(
        eval_env,
        labels=np.arange(8) % 4,
        seed=3,
        every=1,
        timesteps_per_update=tpu,
        metrics=("fid", "ssl"),
        grid_size=4,
    )
    evaluation.init_callback(model)
    scores = evaluation.evaluate()
    assert scores["fid"] == evaluation.baseline_scores["fid"]  # u = 0 is the baseline, same labels and noise
    assert evaluation.best_score == scores["fd_ssl"]  # selection by FD-SSL, the other yardsticks logged beside
    model.learn(tpu, callback=evaluation)
    assert evaluation.last_scores is not None and math.isfinite(evaluation.last_scores["fid"])
    logged = _csv(tmp_path)[-1]
    assert {"eval/fid", "eval/fid_baseline", "eval/fd_ssl", "eval/best_fd_ssl"} <= set(logged)
    assert list(tmp_path.glob("events.out.tfevents.*"))
    with pytest.raises(InvalidArgument, match="every"):
        PolicyEvaluation(eval_env, [0, 1], 0, every=0, timesteps_per_update=tpu)


def test_evaluation_saves_the_best_model_with_its_metadata(tmp_path) -> None:
    from adagen_env.envs import DiTVectorEnv
    from agents.checkpoint import load_model, read_meta

    model, _, sampler = _tiny_model(tmp_path, reward_model=None)
    eval_env = DiTVectorEnv(num_envs=4, generator=sampler, reward_model=None, return_images=True)
    tpu = timesteps_per_update(model, sampler.horizon)
    best = tmp_path / "best_model.zip"
    evaluation = PolicyEvaluation(
        eval_env,
        labels=np.arange(8) % 4,
        seed=3,
        every=1,
        timesteps_per_update=tpu,
        metrics=("ssl",),
        grid_size=0,
        best_model_path=best,
        meta={
            "env_id": "AdaGen/DiT-v0",
            "algo": "ppo",
            "knobs": ["time", "cfg"],
            "horizon": sampler.horizon,
            "num_envs": 4,
            "observation_keys": sorted(eval_env.single_observation_space.spaces),
            "feature_shape": list(eval_env.single_observation_space["features"].shape),
        },
    )
    evaluation.init_callback(model)
    first = evaluation.evaluate()["fd_ssl"]
    meta = read_meta(best)
    assert meta["best_eval_score"] == first and meta["selected_by"] == "fd_ssl" and meta["env_id"] == "AdaGen/DiT-v0"
    saved = best.stat().st_mtime_ns
    evaluation.best_score = -1.0  # nothing can beat it now: the file must stay as it is
    evaluation.evaluate()
    assert best.stat().st_mtime_ns == saved
    loaded, _ = load_model(best)
    obs = eval_env.reset(seed=0)[0]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_knob_figure_has_one_axis_per_knob() -> None:
    knobs = np.random.default_rng(0).random((5, 3, 2))
    fig = knob_figure(["time", "cfg"], knobs, baseline=knobs[0])
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "time"


def test_generate_pads_the_last_batch(tiny_case) -> None:
    env_cls, sampler = tiny_case
    env = env_cls(num_envs=4, generator=sampler, reward_model=None, return_images=True)
    gen = generate(ZeroPolicy(len(sampler.knob_specs)), env, np.arange(6) % 2, seed=0)
    assert gen.images.shape == (6, *sampler.image_shape) and gen.knobs.shape == (
        6,
        sampler.horizon,
        len(sampler.knob_specs),
    )
    again = generate(ZeroPolicy(len(sampler.knob_specs)), env, np.arange(6) % 2, seed=0)
    assert torch.equal(gen.images, again.images)


class _SharpnessReward:
    """A reward that is a known function of quality: high-frequency energy (blur lowers it)."""

    training = False

    def score(self, images, labels):
        return (images[..., 1:] - images[..., :-1]).abs().mean(dim=(1, 2, 3))


class _ConstantReward(_SharpnessReward):
    def score(self, images, labels):
        return torch.zeros(images.shape[0])


def test_alignment_probe_logs_the_auc_and_warns_when_the_reward_loses_quality(tmp_path) -> None:
    from adagen_env.envs import DiTVectorEnv
    from agents.callbacks import AlignmentProbe

    model, _, sampler = _tiny_model(tmp_path, reward_model=None)
    eval_env = DiTVectorEnv(num_envs=4, generator=sampler, reward_model=None, return_images=True)
    tpu = timesteps_per_update(model, sampler.horizon)
    good = AlignmentProbe(_SharpnessReward(), eval_env, np.arange(8) % 4, seed=3, every=1, timesteps_per_update=tpu)
    good.init_callback(model)
    assert min(good.probe()) > 0.9
    flat = AlignmentProbe(_ConstantReward(), eval_env, np.arange(8) % 4, seed=3, every=1, timesteps_per_update=tpu)
    flat.init_callback(model)
    with pytest.warns(UserWarning, match="losing track of image quality"):
        assert flat.probe() == (0.5, 0.5)
    model.learn(tpu, callback=good)
    assert {"reward/alignment_auc", "reward/alignment_paired"} <= set(_csv(tmp_path)[-1])
