"""Fidelity-diversity blending (`agents.blend`): lambda 1 and 0 are the two policies exactly, a pair of different envs
is refused naming what differs, `adagen bench --blend` writes a row per lambda, its table and its figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_train import env_fn, tiny_args

from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.metrics import balanced_labels
from adagen_env.rewards import FidelityReward
from agents.bench import BenchConfig, bench, blend_plot_name
from agents.blend import BlendedPolicy, blend_identity, load_blend
from agents.checkpoint import load_model, load_state, read_meta, save_model
from agents.cli import build_parser, main
from agents.refine import load_scorer
from agents.rollout import generate
from agents.train import smooth, train


def _two_policies(checkpoint, out, **meta_overrides):
    """(fidelity file, diversity file): the run's policy with two different random action heads, in folders of
    their own; `meta_overrides` go into the diversity file's metadata."""
    files = []
    for seed, name in ((1, "fidelity"), (2, "diversity")):
        model, meta = load_model(checkpoint)
        torch.manual_seed(seed)
        with torch.no_grad():
            model.policy.action_net.weight.normal_(std=0.5)
            model.policy.action_net.bias.normal_(std=0.5)
        extra = meta_overrides if name == "diversity" else {}
        files.append(str(save_model(model, out / name / "policy.zip", {**meta, **extra})))
    return tuple(files)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("blend")
    return train(tiny_args(tmp_path, total_updates=1), env_fn())["checkpoint"], tmp_path


def test_lambda_one_and_zero_reproduce_the_two_policies_exactly(tiny_run) -> None:
    checkpoint, tmp_path = tiny_run
    blend = load_blend(*_two_policies(checkpoint, tmp_path / "exact"))
    env = smooth(env_fn()(num_envs=3, reward_model=None, return_images=True), blend.meta["smoothing"])
    labels = balanced_labels(5)  # two batches of 3 lanes, the last padded
    runs = {lam: generate(blend.at(lam), env, labels, seed=7) for lam in (0.0, 0.5, 1.0)}
    for lam, alone in ((1.0, blend.fidelity), (0.0, blend.diversity)):
        by_itself = generate(alone, env, labels, seed=7)
        assert torch.equal(runs[lam].images, by_itself.images) and np.array_equal(runs[lam].knobs, by_itself.knobs)
    assert not torch.equal(runs[0.5].images, runs[0.0].images) and not torch.equal(runs[0.5].images, runs[1.0].images)
    obs, _ = env.reset(seed=0)
    u_fidelity, _ = blend.fidelity.predict(obs, deterministic=True)
    u_diversity, _ = blend.diversity.predict(obs, deterministic=True)
    mixed, _ = blend.at(0.25).predict(obs, deterministic=True)
    assert not np.allclose(u_fidelity, u_diversity)
    np.testing.assert_allclose(mixed, 0.25 * u_fidelity + 0.75 * u_diversity, rtol=1e-6, atol=1e-7)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InvalidArgument, match="lambda"):
            BlendedPolicy(blend.fidelity, blend.diversity, bad)


@pytest.mark.parametrize(
    "override, key",
    [
        ({"generator_digest": "0" * 16}, "generator_digest"),
        ({"sampler_config": {"num_steps": 3}}, "sampler_config"),
        ({"smoothing": 0.0}, "smoothing"),
        ({"knobs": ["time"]}, "knobs"),
    ],
)
def test_policies_of_different_envs_are_refused_naming_the_key(tiny_run, override, key) -> None:
    checkpoint, tmp_path = tiny_run
    fidelity, diversity = _two_policies(checkpoint, tmp_path / key, **override)
    with pytest.raises(CheckpointError, match=rf"cannot blend .*\({key}: ") as caught:
        load_blend(fidelity, diversity)
    _, meta = load_model(checkpoint)
    assert [name for name in blend_identity(meta) if f"{name}: " in str(caught.value)] == [key]  # that key only


def test_a_different_observation_is_refused(tiny_run) -> None:
    checkpoint, tmp_path = tiny_run
    _, meta = load_model(checkpoint)
    fidelity, diversity = _two_policies(
        checkpoint, tmp_path / "observation", env_kwargs={**meta["env_kwargs"], "observation": "step-only"}
    )
    with pytest.raises(CheckpointError, match="env_kwargs.observation: 'features' vs 'step-only'"):
        load_blend(fidelity, diversity)


def test_bench_blend_writes_a_row_per_lambda_its_table_and_its_figure(tmp_path) -> None:
    run = train(tiny_args(tmp_path, env="AdaGen/SiT-v0", num_steps=2, total_updates=1))  # the shipped generator
    fidelity, diversity = _two_policies(run["checkpoint"], tmp_path)
    config = BenchConfig(
        step_grid={"AdaGen/SiT-v0": (2,)},
        baseline_step_grid={},
        hand_made=False,
        blend_lambdas=(0.0, 0.5, 1.0),
        num_samples=4,
        seeds=(0, 1),
        search_samples=4,
        search_rounds=0,
        batch_size=4,
    )
    rows = bench(config, policies=[fidelity, diversity], blends=[(fidelity, diversity)], out_dir=tmp_path / "bench")[
        "rows"
    ]
    by_method = {row["method"]: row for row in rows}
    blends = [row for row in rows if row["kind"] == "blend"]
    assert [row["params"]["lambda"] for row in blends] == [0.0, 0.5, 1.0]
    assert len({row["nfe"] for row in rows}) == 1  # equal NFE
    assert blends[-1]["per_seed"] == by_method["policy fidelity"]["per_seed"]  # lambda 1: the fidelity policy
    assert blends[0]["per_seed"] == by_method["policy diversity"]["per_seed"]  # lambda 0: the diversity policy
    assert blends[1]["per_seed"] != blends[0]["per_seed"]
    table = (tmp_path / "bench" / "bench.md").read_text()
    assert "Fidelity-diversity blend: lambda 0 0.5 1 of fidelity" in table
    assert "| lambda | precision | recall | classifier FID | FD-SSL | class agreement |" in table
    assert "| blend 0.5 (fidelity + diversity) | blend |" in table
    assert (tmp_path / "bench" / blend_plot_name("AdaGen/SiT-v0", 2)).stat().st_size > 0
    saved = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert saved["config"]["blend_lambdas"] == [0.0, 0.5, 1.0]


def test_cli_bench_blend_flags_and_refusal(tiny_run, tmp_path) -> None:
    args = build_parser().parse_args(["bench", "--blend", "f.zip", "d.zip", "--lambdas", "0", "1"])
    assert args.blend == [["f.zip", "d.zip"]] and args.lambdas == [0.0, 1.0]
    checkpoint, _ = tiny_run
    fidelity, diversity = _two_policies(checkpoint, tmp_path, generator_digest="0" * 16)
    with pytest.raises(SystemExit, match="cannot blend .*generator_digest"):
        main(["bench", "--env", "AdaGen/DiT-v0", "--blend", fidelity, diversity, "--out", str(tmp_path / "b")])
    with pytest.raises(SystemExit, match="blend_lambdas"):
        main(["bench", "--blend", fidelity, diversity, "--lambdas", "2", "--out", str(tmp_path / "b")])


def test_a_fidelity_policy_trains_on_the_mixed_reward_and_refines_with_it(tmp_path) -> None:
    run = train(tiny_args(tmp_path, reward_model="adversarial-projected+classifier", total_updates=1), env_fn())
    assert read_meta(run["checkpoint"])["reward_model"] == "adversarial-projected+classifier"
    scorer = load_scorer(run["checkpoint"], 8, 16)
    trained = load_state(run["checkpoint"], run["num_timesteps"])["reward_model"]["discriminator"]
    assert isinstance(scorer, FidelityReward) and not scorer.training
    assert all(torch.equal(scorer.discriminator.state_dict()[k], v) for k, v in trained.items())
