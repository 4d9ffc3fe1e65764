"""Compute-aware episodes on the RL side: `adagen train --stop-knob --nfe-cost` trains and records them, resume and
eval rebuild the same env, and every row counts the NFE its images actually spent."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_dit  # tests/agents/conftest.py
from test_train import tiny_args

from adagen_env import zoo
from adagen_env.envs import DiTVectorEnv
from adagen_env.envs.base import STOP_THRESHOLD
from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.metrics import balanced_labels
from adagen_env.rewards import RewardModel
from adagen_env.samplers import DiffusionSampler
from agents.checkpoint import load_model, read_meta, save_model
from agents.cli import build_parser, main
from agents.evaluate import eval_env, evaluate, markdown
from agents.refine import best_of_k, lookahead
from agents.rollout import ZeroPolicy, generate
from agents.train import args_from_namespace, train


class Brightness(RewardModel):
    """A frozen stand-in reward: each image's mean pixel value."""

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(1, 2, 3))


def stop_env_fn(nfe_cost: float = 0.0, stop_knob: bool = True):
    """Tiny DiT env builder (`agents.train.EnvFn`) with the stop action; 4 steps: horizon 5, stops at steps 1 .. 3."""
    sampler = DiffusionSampler(tiny_dit(0), num_steps=4)

    def make(num_envs: int, reward_model, return_images: bool, generator=None, group_size: int = 1):
        return DiTVectorEnv(
            num_envs=num_envs,
            generator=generator or sampler,
            reward_model=reward_model,
            return_images=return_images,
            group_size=group_size,
            stop_knob=stop_knob,
            nfe_cost=nfe_cost,
        )

    return make


@pytest.fixture(scope="module")
def stopping_policy(tmp_path_factory):
    """(policy file, training summary) of a tiny compute-aware PPO run (2 updates on 2 lanes, no smoothing) whose
    stop head is set so that the deterministic policy stops about half the images at step 1 and lets others run."""
    tmp_path = tmp_path_factory.mktemp("compute_aware")
    summary = train(tiny_args(tmp_path, stop_knob=True, nfe_cost=0.01, smoothing=0.0), stop_env_fn(0.01))
    model, meta = load_model(summary["checkpoint"])
    torch.manual_seed(0)
    with torch.no_grad():
        model.policy.action_net.weight[-1].normal_(std=3.0)
        model.policy.action_net.bias[-1] = 0.0
    probe = eval_env(meta["env_id"], meta["env_kwargs"], 0.0, 8, "cpu", stop_env_fn())
    probe.reset(seed=0, options={"labels": balanced_labels(8).numpy()})
    obs, *_ = probe.step(np.zeros((8, 3), np.float32))
    stop = model.predict(obs, deterministic=True)[0][:, -1]  # the stop entries at step 1, before the bias
    with torch.no_grad():
        model.policy.action_net.bias[-1] = STOP_THRESHOLD - float(np.median(stop))
    return save_model(model, tmp_path / "policy.zip", meta), summary


def test_train_flags_are_built_from_the_args_fields() -> None:
    args = args_from_namespace(build_parser().parse_args(["train", "--stop-knob", "--nfe-cost", "0.02"]))
    assert args.stop_knob is True and args.nfe_cost == 0.02
    plain = args_from_namespace(build_parser().parse_args(["train"]))
    assert plain.stop_knob is False and plain.nfe_cost == 0.0


def test_a_compute_aware_run_records_its_env_and_resumes_only_on_the_same_one(stopping_policy, tmp_path) -> None:
    _, summary = stopping_policy
    meta = read_meta(summary["checkpoint"])
    assert summary["updates"] == 2
    assert meta["env_kwargs"]["stop_knob"] is True and meta["env_kwargs"]["nfe_cost"] == 0.01
    model, _ = load_model(summary["checkpoint"])
    assert model.action_space.shape == (len(meta["knobs"]) + 1,)  # the knobs' residuals and the stop
    run = {"logdir": summary["run_dir"], "resume": True, "stop_knob": True, "smoothing": 0.0}
    resumed = train(tiny_args(tmp_path, total_updates=3, nfe_cost=0.01, **run), stop_env_fn(0.01))
    assert resumed["updates"] == 3 and resumed["run_dir"] == summary["run_dir"]
    with pytest.raises(CheckpointError, match="nfe_cost"):
        train(tiny_args(tmp_path, total_updates=4, nfe_cost=0.05, **run), stop_env_fn(0.05))
    plain = tiny_args(tmp_path, total_updates=4, logdir=summary["run_dir"], resume=True, smoothing=0.0)
    with pytest.raises(CheckpointError, match="stop_knob"):
        train(plain, stop_env_fn(stop_knob=False))


def test_train_refuses_a_cost_without_the_stop_and_an_env_that_ignores_the_flags(tmp_path) -> None:
    with pytest.raises(InvalidArgument, match="nfe_cost needs stop_knob"):
        train(tiny_args(tmp_path, nfe_cost=0.1), stop_env_fn(stop_knob=False))
    with pytest.raises(InvalidArgument, match="nfe_cost must be a finite number"):
        train(tiny_args(tmp_path, stop_knob=True, nfe_cost=-1.0), stop_env_fn())
    with pytest.raises(InvalidArgument, match="the env was built with"):
        train(tiny_args(tmp_path, stop_knob=True), stop_env_fn(stop_knob=False))


def test_eval_rows_count_the_nfe_each_image_actually_spent(stopping_policy, tmp_path) -> None:
    path, _ = stopping_policy
    model, meta = load_model(path)
    env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], 2, "cpu", stop_env_fn())
    labels = balanced_labels(6)
    generation = generate(model, env, labels, 3)
    # The NFE the env reported, lane by lane and step by step, for the same batches.
    spent_per_batch = []
    for start in range(0, 6, 2):
        from agents.rollout import batch_seed

        obs, _ = env.reset(seed=batch_seed(3, start // 2), options={"labels": labels[start : start + 2].numpy()})
        lanes, done = np.zeros(2, dtype=np.int64), False
        while not done:
            obs, _, terminated, _, info = env.step(model.predict(obs, deterministic=True)[0])
            lanes += info["nfe"]
            done = bool(terminated.all())
        spent_per_batch.append(lanes)
    spent = np.concatenate(spent_per_batch).tolist()
    budget = env.unwrapped.sampler.episode_nfe
    assert generation.nfe == budget and generation.sample_nfe.tolist() == spent
    assert generation.sample_nfe.min() < budget and len(set(generation.sample_nfe.tolist())) > 1  # not all alike
    assert generation.knobs.shape == (6, env.unwrapped.horizon, 2) and np.isnan(generation.knobs).any()

    results = evaluate(
        [path], baseline=True, num_samples=6, seeds=[3], batch_size=2, out_dir=tmp_path, env_fn=stop_env_fn()
    )
    policy, baseline = results["rows"]
    assert policy["nfe"] == pytest.approx(generation.sample_nfe.mean()) and policy["nfe_budget"] == budget
    assert policy["nfe_spent"]["per_seed"] == [pytest.approx(generation.sample_nfe.mean())]
    assert (policy["nfe_spent"]["min"], policy["nfe_spent"]["max"]) == (min(spent), max(spent))
    assert baseline["name"] == "baseline" and baseline["nfe"] == budget and baseline["nfe_spent"]["min"] == budget
    table = (tmp_path / "eval.md").read_text()
    assert "| env | schedule | NFE | NFE spent / image | classifier FID |" in table
    assert f"| {policy['nfe']:.4g} | {policy['nfe_spent']['mean']:.4g} ± 0 of {budget} |" in table
    assert json.loads((tmp_path / "eval.json").read_text())["rows"][0]["nfe_spent"] == policy["nfe_spent"]
    plain = markdown(
        {**results, "rows": [{k: v for k, v in r.items() if not k.startswith("nfe_")} for r in results["rows"]]}
    )
    assert "| env | schedule | NFE | classifier FID |" in plain and "NFE spent" not in plain


def test_eval_refuses_a_compute_aware_policy_on_an_env_without_the_stop(stopping_policy) -> None:
    path, _ = stopping_policy
    with pytest.raises(CheckpointError, match="stop_knob"):
        evaluate([path], num_samples=2, seeds=[0], batch_size=2, out_dir=None, env_fn=stop_env_fn(stop_knob=False))


def test_refinement_counts_what_every_candidate_spent(stopping_policy) -> None:
    path, _ = stopping_policy
    model, meta = load_model(path)
    labels = balanced_labels(4)
    k = 2
    env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], 2 * k, "cpu", stop_env_fn())
    budget = env.unwrapped.sampler.episode_nfe
    kept = best_of_k(model, env, labels, 5, k, Brightness())
    candidates = generate(model, env, labels.repeat_interleave(k), 5)
    assert kept.nfe == k * budget
    assert kept.sample_nfe.tolist() == candidates.sample_nfe.reshape(-1, k).sum(axis=1).tolist()
    single = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], 2, "cpu", stop_env_fn())
    plain, refined = generate(model, single, labels, 5), lookahead(model, single, labels, 5, 1)
    torch.testing.assert_close(refined.images, plain.images, rtol=0, atol=0)
    assert refined.sample_nfe.tolist() == plain.sample_nfe.tolist()
    wide = lookahead(model, env, labels, 5, k, Brightness())
    assert wide.nfe == k * budget and (wide.sample_nfe <= k * budget).all() and (wide.sample_nfe >= 2 * k).all()
    zero = generate(ZeroPolicy(env.single_action_space.shape[0]), env, labels, 5)
    assert zero.sample_nfe.tolist() == [budget] * 4  # a zero stop entry never stops


@pytest.mark.skipif(not zoo.weights_path("flow").exists(), reason="shipped flow weights not present")
def test_cli_trains_and_evaluates_a_compute_aware_policy_on_the_shipped_generator(tmp_path, capsys) -> None:
    common = ["--num-envs", "2", "--num-steps", "3", "--eval-every", "0", "--no-progress-bar"]
    flags = ["train", "--env", "AdaGen/SiT-v0", *common, "--stop-knob", "--nfe-cost", "0.01"]
    main([*flags, "--total-updates", "1", "--logdir", str(tmp_path / "runs"), "--algo-kwargs", '{"n_epochs": 1}'])
    summary = json.loads(capsys.readouterr().out)
    meta = read_meta(summary["checkpoint"])
    assert meta["env_kwargs"]["stop_knob"] is True and meta["env_kwargs"]["nfe_cost"] == 0.01
    argv = ["eval", "--policy", summary["checkpoint"], "--num-samples", "4", "--seeds", "0", "--batch-size", "2"]
    main([*argv, "--out", str(tmp_path / "eval")])
    table = capsys.readouterr().out
    row = json.loads((tmp_path / "eval" / "eval.json").read_text())["rows"][0]
    assert "NFE spent / image" in table and row["nfe_budget"] == 6 and row["nfe"] <= 6  # CFG: two passes a step


def _bench_script():
    """benchmarks/compute_aware.py as a module (the benchmarks are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "compute_aware.py"
    spec = importlib.util.spec_from_file_location("compute_aware_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_s_stop_offset_shifts_only_the_stop_entry() -> None:
    script = _bench_script()
    env = stop_env_fn()(num_envs=2, reward_model=None, return_images=True)
    labels = balanced_labels(4)
    zero = ZeroPolicy(env.single_action_space.shape[0])
    assert generate(zero, env, labels, 0).sample_nfe.tolist() == [env.sampler.episode_nfe] * 4
    early = generate(script.StopOffset(zero, 10.0), env, labels, 0)
    assert early.sample_nfe.tolist() == [env.sampler.step_nfe(0) + env.sampler.step_nfe(env.horizon - 1)] * 4
    obs, _ = env.reset(seed=0)
    actions, _ = script.StopOffset(zero, 2.5).predict(obs)
    assert actions.tolist() == [[0.0, 0.0, 2.5]] * 2


def test_the_benchmark_reports_the_smallest_nfe_that_matches_the_baseline_at_its_largest(tmp_path) -> None:
    script = _bench_script()

    def row(method, kind, nfe, fid, fd_ssl, coverage, spread=1.0):
        mean = {"fid": fid, "fd_ssl": fd_ssl, "oracle_coverage": coverage}
        extra = {"nfe_budget": 16, "nfe_spent": {"mean": nfe, "std": 0.2}} if kind == "policy" else {}
        params = {"stop_offset": 0.0} if kind == "policy" else {}
        std = {k: spread for k in mean}
        return {
            "method": method,
            "kind": kind,
            "steps": 8,
            "params": params,
            "nfe": nfe,
            "mean": mean,
            "std": std,
            **extra,
        }

    rows = [
        row("baseline", "baseline", 4, 30.0, 30.0, 30.0),
        row("baseline", "baseline", 8, 20.0, 20.0, 20.0),
        row("baseline", "baseline", 16, 10.0, 10.0, 10.0),
        row("policy a", "policy", 3.5, 25.0, 11.0, 25.0),
        row("policy a", "policy", 6.25, 10.5, 10.5, 10.5, spread=0.5),
        row("policy b", "policy", 9.0, 12.0, 12.0, 12.0),
    ]
    match = script.nfe_to_match(rows)
    assert match["target"]["nfe"] == 16
    assert match["methods"]["baseline"] == {"fid": 16, "fd_ssl": 16, "oracle_coverage": 16, "headline": 16}
    assert match["methods"]["policy a"] == {"fid": 6.25, "fd_ssl": 3.5, "oracle_coverage": 6.25, "headline": 6.25}
    assert match["methods"]["policy b"]["headline"] is None
    assert match["methods"]["any policy"]["fd_ssl"] == 3.5
    results = {
        "settings": {
            "env_id": "AdaGen/DiT-v0",
            "generator_digest": "0" * 16,
            "num_samples": 4,
            "seeds": [0],
            "batch_size": 2,
            "labels": "class-balanced",
        },
        "command": "python benchmarks/compute_aware.py",
        "threads": 1,
        "date": "today",
        "policies": [],
        "rows": rows,
        "nfe_to_match": match,
    }
    table = script.markdown(results)
    assert "| policy a | 6.25 | 3.5 | 6.25 | 6.25 |" in table and "| policy b |" in table
    assert "not within the points" in table and "6.25 ± 0.2 of 16" in table
    script.figure(results)  # draws without error
