"""`adagen train --engine rllib` (agents/rllib.py): one local Ray, two env runners, a tiny `AdaGen/SiT-v0`.

The Ray tests share one run (starting Ray and two runners is most of their time), so they run in file order: the
untrained policy first, then one update, then a resume from its checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.args import Args
from agents.cli import build_parser, main


def test_the_command_line_has_the_engine_flags_and_imports_no_ray() -> None:
    args = build_parser().parse_args(["train", "--engine", "rllib", "--num-env-runners", "3"])
    assert (args.engine, args.num_env_runners) == ("rllib", 3)
    code = "import sys; from agents.cli import build_parser; build_parser(); print('ray' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.split() == ["False", "False"]


try:
    import ray
except ModuleNotFoundError:  # the `rllib` extra is not installed
    ray = None
needs_ray = pytest.mark.skipif(
    ray is None, reason="Ray RLlib is not installed (the `rllib` extra: pip install 'adagen-env[rllib]')"
)
if ray is not None:
    from ray import cloudpickle

    from adagen_env.envs import SiTVectorEnv
    from agents.rllib import ModulePolicy, RLlibRun, on_every_runner, weights_digest
    from agents.rollout import ZeroPolicy, generate

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this file's functions run on the runners


@pytest.mark.skipif(ray is not None, reason="Ray is installed: the message is for an install without it")
def test_the_rllib_engine_without_ray_names_the_install_command(tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"pip install 'adagen-env\[rllib\]'"):
        main(["train", "--engine", "rllib", "--logdir", str(tmp_path)])


def tiny_args(logdir: Path, **overrides) -> Args:
    """AdaGen/SiT-v0 with the shipped flow model, 2 steps (horizon 3), 4 lanes over 2 runners, one small epoch."""
    values = {
        "env": "AdaGen/SiT-v0",
        "engine": "rllib",
        "num_env_runners": 2,
        "num_envs": 4,
        "num_steps": 2,
        "total_updates": 1,
        "eval_every": 0,
        "checkpoint_every": 1,
        "logdir": str(logdir),
        "run_name": "run",
        "progress_bar": False,
        "algo_kwargs": {"num_epochs": 1, "episodes_per_update": 1, "minibatches": 1},
    }
    return Args(**{**values, **overrides})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("rllib")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the runners inherit it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    run = RLlibRun(tiny_args(logdir))
    yield run
    if run.algo is not None:
        run.close()
    ray.shutdown()


def _deterministic_episode(runner):
    """One deterministic episode of every lane on a runner: (actions (B, H, A), applied knobs (B, H, K))."""
    episodes = runner.sample(num_episodes=runner.num_envs, explore=False)
    runner.env.unwrapped.reward_model.pop_fakes()  # not training data
    actions = np.stack([np.asarray(e.get_actions()) for e in episodes])
    knobs = np.stack([np.stack([info["knobs"] for info in e.get_infos()[1:]]) for e in episodes])
    return actions, knobs


@needs_ray
def test_the_untrained_policy_is_the_baseline_on_the_driver_and_on_the_runners(run) -> None:
    env = run.eval_env
    labels = np.arange(4) % env.unwrapped.sampler.num_classes
    policy = generate(ModulePolicy(run.module), env, labels, seed=3)
    baseline = generate(ZeroPolicy(env.single_action_space.shape[0]), env, labels, seed=3)
    assert torch.equal(policy.images, baseline.images) and np.array_equal(policy.knobs, baseline.knobs)
    assert isinstance(env.unwrapped, SiTVectorEnv)
    answers = on_every_runner(run.algo, _deterministic_episode)
    assert [index for index, _ in answers] == [1, 2]
    for _, (actions, knobs) in answers:
        assert actions.shape == (2, 3, 2) and not actions.any()  # 2 lanes per runner, horizon 3, knobs time and cfg
        np.testing.assert_array_equal(knobs, baseline.knobs[:2])


@needs_ray
def test_one_update_trains_with_one_discriminator_shared_by_every_runner(run) -> None:
    driver = run.discriminator.reward
    before = weights_digest(driver.discriminator.state_dict())
    assert set(run.discriminator.runner_digests(run.algo).values()) == {before}  # broadcast at build time
    policy_before = {k: v.clone() for k, v in run.module.state_dict().items()}

    row = run.step()

    after = weights_digest(driver.discriminator.state_dict())
    digests = run.discriminator.runner_digests(run.algo)
    assert sorted(digests) == [1, 2] and set(digests.values()) == {after} and after != before
    assert row["disc/fakes"] == 4  # both runners' finished images reached the one update
    assert driver.num_updates == 2 * driver.updates_per_batch  # one update per runner batch
    assert row["charts/env_steps"] == 2 * 4 * 3  # RLlib's count includes the deterministic episodes above
    assert np.isfinite(row["losses/policy_loss"]) and np.isfinite(row["reward/terminal_mean"])
    changed = [k for k, v in run.module.state_dict().items() if not torch.equal(v, policy_before[k])]
    assert "action_head.weight" in changed
    assert json.loads((run.run_dir / "latest.json").read_text())["updates"] == 1
    header = (run.run_dir / "progress.csv").read_text().splitlines()[0].split(",")
    assert "reward/terminal_mean" in header and "disc/loss" in header


@needs_ray
def test_a_resumed_run_continues_policy_discriminator_and_counter(run) -> None:
    policy = {k: v.clone() for k, v in run.module.state_dict().items()}
    driver = run.discriminator.reward
    disc, num_updates = weights_digest(driver.discriminator.state_dict()), driver.num_updates
    logdir = Path(run.args.logdir)
    run.close()
    run.algo = None  # closed: the fixture must not close it again

    saved = logdir / "run" / json.loads((logdir / "run" / "latest.json").read_text())["checkpoint"]
    states = sorted(f.name for f in saved.rglob("*state*") if f.is_file())
    assert states and all(name.endswith(".msgpack") for name in states if name != "adagen_state.pt")  # no pickles
    resumed = RLlibRun(
        tiny_args(
            logdir,
            resume=True,
            num_env_runners=0,
            total_updates=2,  # samples in the driver
            eval_every=2,
            eval_samples=8,
        )
    )
    try:
        assert resumed.updates == 1
        assert all(torch.equal(v, policy[k]) for k, v in resumed.module.state_dict().items())
        assert weights_digest(resumed.discriminator.reward.discriminator.state_dict()) == disc
        assert resumed.discriminator.reward.num_updates == num_updates
        assert set(resumed.discriminator.runner_digests(resumed.algo).values()) == {disc}
        row = resumed.step()
        assert row["charts/updates"] == 2 and row["disc/fakes"] == 4
        assert math.isfinite(row["eval/fd_ssl"]) and math.isfinite(row["eval/fd_ssl_baseline"])  # the periodic eval
    finally:
        resumed.close()
