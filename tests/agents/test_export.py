"""`adagen export-schedule` and `adagen bench --schedule`: a policy's mean trajectory as a schedule file, read back,
benched beside its policy, and bad files refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import (
    FAST_PPO,
    smoke_bench_argv,
    smoke_train_argv,
    tiny_dit,
)  # tests/conftest.py, tests/agents/conftest.py
from test_train import env_fn, tiny_args

from adagen_env.envs import DiTVectorEnv
from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.evaluation import generate_static
from adagen_env.metrics import METRICS, balanced_labels, compute_metrics
from adagen_env.samplers import DiffusionSampler, FlowSampler
from adagen_env.samplers.schedules import load_schedule, read_schedule, save_schedule, static_schedule
from agents.bench import BenchConfig, bench, schedule_files
from agents.checkpoint import load_model, save_model
from agents.cli import main
from agents.evaluate import eval_env
from agents.export import EXPORT_SEED, export_schedule, time_grid
from agents.rollout import ZeroPolicy, generate
from agents.train import train

TINY_BENCH = dict(num_samples=4, seeds=(0, 1), search_samples=4, search_rounds=0, batch_size=4, hand_made=False)


@pytest.fixture(scope="module")
def adaptive_policy(tmp_path_factory):
    """A tiny DiT policy whose action head is random, so its knobs differ from the baseline and between lanes."""
    tmp_path = tmp_path_factory.mktemp("policy")
    summary = train(tiny_args(tmp_path, total_updates=1), env_fn())
    model, meta = load_model(summary["checkpoint"])
    torch.manual_seed(0)
    with torch.no_grad():
        model.policy.action_net.weight.normal_(std=0.5)
        model.policy.action_net.bias.normal_(std=0.5)
    return save_model(model, tmp_path / "policy.zip", meta)


def test_an_exported_table_read_back_reproduces_the_policy_mean_trajectory(adaptive_policy, tmp_path) -> None:
    out = export_schedule(adaptive_policy, tmp_path / "policy.json", num_samples=10, batch_size=3, env_fn=env_fn())
    model, meta = load_model(adaptive_policy)
    env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], 3, "cpu", env_fn())
    sampler = env.unwrapped.sampler
    policy_run = generate(model, env, balanced_labels(10), EXPORT_SEED)  # (10, H, K) knobs, the last batch padded
    mean = policy_run.knobs.astype(np.float64).mean(axis=0)
    assert policy_run.knobs.std(axis=0).max() > 1e-3  # the lanes differ: the table is a mean, not a copy
    assert not np.allclose(mean, sampler.baseline_schedule().numpy(), atol=1e-3)
    table = load_schedule(out, sampler)
    np.testing.assert_allclose(table.numpy(), mean, rtol=0, atol=1e-6)
    record = read_schedule(out)
    labels = policy_run.labels.numpy()
    per_class = np.asarray(record["per_class_schedule"])
    assert per_class.shape == (sampler.num_classes, sampler.horizon, len(sampler.knob_names))
    np.testing.assert_allclose(per_class[3], policy_run.knobs[labels == 3].mean(axis=0), atol=1e-6)
    assert record["env_id"] == "AdaGen/DiT-v0" and str(adaptive_policy) in record["source"]
    assert record["export"]["seed"] == EXPORT_SEED and record["export"]["labels"] == "class-balanced"
    assert record["time_grid"]["times"] == pytest.approx(table[:, 0].tolist())
    # Read back as a base schedule, the zero action applies the table itself at every step and in every lane.
    static = DiTVectorEnv(num_envs=3, generator=sampler, reward_model=None, return_images=True, base_schedule=str(out))
    replay = generate(ZeroPolicy(len(meta["knobs"])), static, balanced_labels(10), seed=5)
    np.testing.assert_allclose(replay.knobs, np.broadcast_to(table.numpy(), replay.knobs.shape), rtol=0, atol=1e-6)


def test_export_refuses_too_few_samples_and_a_corrupt_policy(adaptive_policy, tmp_path) -> None:
    with pytest.raises(InvalidArgument, match="at least the 8 classes"):
        export_schedule(adaptive_policy, tmp_path / "x.json", num_samples=7, env_fn=env_fn())
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="corrupt"):
        export_schedule(broken, tmp_path / "x.json", env_fn=env_fn())
    assert not (tmp_path / "x.json").exists()


def test_save_schedule_refuses_extra_entries_it_cannot_keep(tmp_path) -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=2)
    table = sampler.baseline_schedule()
    with pytest.raises(InvalidArgument, match=r"overwrite .*'horizon'"):
        save_schedule(tmp_path / "a.json", sampler, table, extra={"horizon": 5})
    with pytest.raises(InvalidArgument, match="finite JSON"):
        save_schedule(tmp_path / "a.json", sampler, table, extra={"spread": [float("nan")]})
    assert not (tmp_path / "a.json").exists()
    save_schedule(tmp_path / "a.json", sampler, table, extra={"note": [1, 2]})
    assert read_schedule(tmp_path / "a.json")["note"] == [1, 2]
    torch.testing.assert_close(load_schedule(tmp_path / "a.json", sampler), table.cpu())


def test_the_flow_time_grid_is_what_flow_match_euler_runs() -> None:
    diffusers = pytest.importorskip("diffusers")
    sampler = FlowSampler(tiny_dit(), num_steps=4)
    table = static_schedule(sampler, spacing="shift", shift=3.0)
    grid = time_grid(sampler, table)
    (entry,) = grid["schedulers"]
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler()
    scheduler.set_timesteps(**entry["set_timesteps"])
    times = table[:-1, 0].double()
    torch.testing.assert_close(scheduler.sigmas.double(), torch.cat([1 - times, torch.zeros(1)]), atol=1e-6, rtol=0)
    data, noise = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    for k, timestep in enumerate(scheduler.timesteps):  # diffusers' x at each step is the linear path's x_t
        t = times[k].float()
        x_t = sampler.path.alpha(t) * data + sampler.path.sigma(t) * noise
        torch.testing.assert_close(scheduler.scale_noise(data, timestep[None], noise), x_t, atol=1e-5, rtol=0)
    assert grid["cfg"] == pytest.approx(table[1:, 1].tolist()) and grid["guidance_scale"][0] == pytest.approx(2.0)


def test_the_vp_time_grid_gives_diffusers_the_same_noise_levels() -> None:
    diffusers = pytest.importorskip("diffusers")
    from adagen_env.adapters.diffusers_dit import DiscreteVPPath

    shipped = DiffusionSampler(tiny_dit(), num_steps=4)
    names = [e["scheduler"] for e in time_grid(shipped, shipped.baseline_schedule())["schedulers"]]
    assert names == ["EulerDiscreteScheduler"]  # a continuous-time VP model has no training timesteps to give
    betas = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    trailing = diffusers.DPMSolverMultistepScheduler(**betas, timestep_spacing="trailing")
    trailing.set_timesteps(4)
    sampler = DiffusionSampler(tiny_dit(), num_steps=4)
    sampler.path = DiscreteVPPath(trailing.alphas_cumprod)
    times = torch.cat([(trailing.timesteps.double() + 1) / 1000, torch.zeros(1)]).float()  # diffusers' own grid
    grid = time_grid(sampler, torch.stack([times, torch.ones(5)], dim=-1))
    euler, dpm = grid["schedulers"]
    assert dpm["scheduler"] == "DPMSolverMultistepScheduler"
    assert dpm["set_timesteps"]["timesteps"] == trailing.timesteps.tolist()
    scheduler = diffusers.EulerDiscreteScheduler(**betas)
    scheduler.set_timesteps(**euler["set_timesteps"])  # noise levels -> timesteps on its own table
    torch.testing.assert_close(scheduler.timesteps.double(), trailing.timesteps.double(), atol=1e-3, rtol=0)


def _sit_file(tmp_path, steps: int, name: str = "shift3.json", **edits):
    """A schedule file for the shipped SiT at `steps` (the SD3 shift-3 table), its JSON entries then edited."""
    sampler = eval_env("AdaGen/SiT-v0", {"num_steps": steps}, 0.0, 1, "cpu").unwrapped.sampler
    table = static_schedule(sampler, spacing="shift", shift=3.0)
    path = save_schedule(tmp_path / name, sampler, table, env_id="AdaGen/SiT-v0", source="test")
    record = json.loads(path.read_text())
    for key, value in edits.items():
        record[key] = value(record[key]) if callable(value) else value
    path.write_text(json.dumps(record))
    return path, sampler, table


def test_the_bench_row_of_a_schedule_file_is_generate_static_with_its_table(tmp_path) -> None:
    path, sampler, table = _sit_file(tmp_path, steps=3)
    config = BenchConfig(step_grid={"AdaGen/SiT-v0": (2,)}, baseline_step_grid={}, **TINY_BENCH)
    rows = bench(config, out_dir=tmp_path / "bench", schedules=[path])["rows"]
    (row,) = [r for r in rows if r["kind"] == "static"]
    assert row["method"] == "static shift3" and row["steps"] == 3 and row["params"]["schedule_file"] == str(path)
    baseline = next(r for r in rows if r["kind"] == "baseline" and r["steps"] == 3)
    assert row["nfe"] == baseline["nfe"] and row["schedule"] == table.tolist()
    labels = balanced_labels(config.num_samples)
    for seed, scores in zip(config.seeds, row["per_seed"]):
        gen = generate_static(sampler, table, labels, seed, config.batch_size)
        expected = compute_metrics(gen.images, gen.labels, metrics=METRICS)
        assert {k: scores[k] for k in expected} == pytest.approx(expected)
    assert "| static shift3 | static |" in (tmp_path / "bench" / "bench.md").read_text()


@pytest.mark.parametrize(
    "edits, error, match",
    [
        ({"horizon": 5}, CheckpointError, "horizon 5"),
        ({"knob_names": ["time"]}, CheckpointError, "knob_names"),
        ({"env_id": None}, InvalidArgument, "names env None"),
        ({"sampler_config": lambda c: {**c, "solver": "ddim"}}, InvalidArgument, "other sampler settings.*'solver'"),
        (
            {"sampler_config": lambda c: {k: v for k, v in c.items() if k != "num_steps"}},
            InvalidArgument,
            "no num_steps",
        ),
        ({"schedule": lambda s: [[2.0, c] for _, c in s]}, InvalidArgument, "knob 'time' at step 0 is 2.0"),
        ({"format": "other/1"}, CheckpointError, "not a schedule file"),
    ],
)
def test_bench_refuses_a_schedule_file_that_does_not_fit(tmp_path, edits, error, match) -> None:
    path, _, _ = _sit_file(tmp_path, steps=2, **edits)
    with pytest.raises(error, match=match):
        schedule_files([path])


def test_cli_exports_a_policy_and_benches_the_schedule_beside_it(tmp_path, capsys) -> None:
    main(smoke_train_argv(tmp_path / "runs", "--algo-kwargs", FAST_PPO))
    checkpoint = json.loads(capsys.readouterr().out)["checkpoint"]
    out = tmp_path / "sit_policy.json"
    main(["export-schedule", "--policy", checkpoint, "--out", str(out), "--num-samples", "8", "--batch-size", "4"])
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert read_schedule(out)["time_grid"]["schedulers"][0]["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    main(smoke_bench_argv(checkpoint, tmp_path / "bench", "--schedule", str(out), "--baseline-steps"))
    table = capsys.readouterr().out
    assert "| adaptive |" in table and "| static sit_policy | static |" in table
    with pytest.raises(SystemExit, match="adagen export-schedule: error: .*does not exist"):
        main(["export-schedule", "--policy", str(tmp_path / "none.zip"), "--out", str(out)])
