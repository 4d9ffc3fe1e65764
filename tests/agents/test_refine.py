"""Inference-time refinement (`agents.refine`): best-of-K keeps the scorer's favourite, value lookahead's candidate
sets branch from one shared state and continue from the critic's favourite, the policy file keeps the discriminator,
`adagen eval` counts K x NFE."""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np
import pytest
import torch
from conftest import TINY_CASES  # tests/agents/conftest.py
from safetensors.torch import load
from test_train import env_fn, tiny_args

from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.metrics import balanced_labels
from adagen_env.rewards import RewardModel, make_reward_model
from agents.checkpoint import DISCRIMINATOR, export_policy, load_model, load_state, read_meta, save_model
from agents.cli import build_parser
from agents.evaluate import eval_env, evaluate
from agents.refine import best_of_k, keep_best, load_scorer, lookahead
from agents.rollout import ZeroPolicy, generate
from agents.train import smooth, train


class Brightness(RewardModel):
    """A fake scorer: the mean pixel value of each image."""

    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(1, 2, 3))


def maskgit_env_fn():
    env_cls, make_sampler = TINY_CASES["maskgit"]
    sampler = make_sampler()

    def make(num_envs: int, reward_model, return_images: bool, generator=None, group_size: int = 1):
        return env_cls(
            num_envs=num_envs,
            generator=generator or sampler,
            reward_model=reward_model,
            return_images=return_images,
            group_size=group_size,
        )

    return make


@pytest.fixture(scope="module")
def maskgit_policy(tmp_path_factory):
    """(policy file, env builder) of a tiny MaskGIT PPO run whose actor and critic heads are random, so that its
    candidate actions and the critic's values differ between lanes."""
    tmp_path = tmp_path_factory.mktemp("maskgit")
    make = maskgit_env_fn()
    summary = train(tiny_args(tmp_path, env="AdaGen/MaskGIT-v0", total_updates=1), make)
    model, meta = load_model(summary["checkpoint"])
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in (model.policy.action_net, model.policy.value_net):
            layer.weight.normal_(std=0.5)
            layer.bias.normal_(std=0.5)
    return save_model(model, tmp_path / "policy.zip", meta), summary["checkpoint"], make


def test_keep_best_picks_the_argmax_of_the_scores_it_was_given() -> None:
    scores = torch.tensor([0.1, 0.9, 0.3, 5.0, -1.0, 4.0, 2.0, 2.0, 1.0])  # three sets of three; the last one tied
    assert keep_best(scores, 3).tolist() == [1, 3, 6]
    random = torch.randn(40)
    expected = [int(np.argmax(row)) + 4 * i for i, row in enumerate(random.reshape(10, 4).numpy())]
    assert keep_best(random, 4).tolist() == expected
    assert keep_best(random, 1).tolist() == list(range(40))
    with pytest.raises(InvalidArgument, match="dividing"):
        keep_best(random, 3)


def test_best_of_k_keeps_each_label_s_highest_scoring_candidate() -> None:
    env = eval_env("AdaGen/DiT-v0", {}, 0.0, 6, "cpu", env_fn())  # 3 candidates x 2 labels per batch
    labels = balanced_labels(5)
    zero = ZeroPolicy(env.single_action_space.shape[0])
    kept = best_of_k(zero, env, labels, 7, 3, Brightness())
    candidates = generate(zero, env, labels.repeat_interleave(3), 7)
    brightness = candidates.images.mean(dim=(1, 2, 3)).reshape(5, 3)
    assert (brightness.max(dim=1).values - brightness.min(dim=1).values).min() > 0  # the choice matters
    choice = brightness.argmax(dim=1) + torch.arange(5) * 3
    torch.testing.assert_close(kept.images, candidates.images[choice], rtol=0, atol=0)
    assert kept.labels.tolist() == labels.tolist() and kept.knobs.shape == (5, *candidates.knobs.shape[1:])
    assert kept.nfe == 3 * candidates.nfe
    with pytest.raises(InvalidArgument, match="divides the env's 6 lanes"):
        best_of_k(zero, env, labels, 7, 4, Brightness())


def test_select_lanes_copies_the_state_and_the_smoothing_filter() -> None:
    env = smooth(env_fn()(num_envs=3, reward_model=None, return_images=True), 0.5)
    env.reset(seed=0, options={"labels": np.array([1, 2, 3])})
    env.step(np.array([[0.5, -0.5], [1.0, 0.2], [-1.0, 0.0]], dtype=np.float32))
    env.select_lanes(np.array([1, 1, 0]))
    assert env.unwrapped.labels.tolist() == [2, 2, 1]
    np.testing.assert_array_equal(env.smoothed[0], env.smoothed[1])
    obs, *_ = env.step(np.array([[0.3, 0.1], [0.3, 0.1], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(obs["features"][0], obs["features"][1])  # same state, filter and action
    np.testing.assert_array_equal(obs["prev_action"][0], obs["prev_action"][1])
    with pytest.raises(InvalidArgument, match="3 integer lane indices"):
        env.select_lanes(np.array([0, 3, 1]))


def test_lookahead_sets_share_their_branch_state_and_continue_from_the_critic_s_choice(maskgit_policy) -> None:
    path, _, make = maskgit_policy
    model, meta = load_model(path)
    k, b = 3, 2
    env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], k * b, "cpu", make)
    sampler = env.unwrapped.sampler
    inputs, outputs, values, finals = [], [], [], []
    step, predict_values, decode = sampler.step, model.policy.predict_values, sampler.decode

    def recording_step(state, knobs):
        inputs.append((state.ids.clone(), knobs.clone()))
        new = step(state, knobs)
        outputs.append(new.ids.clone())
        return new

    def recording_values(obs):
        out = predict_values(obs)
        values.append(out.flatten().clone())
        return out

    def recording_decode(state):
        images = decode(state)
        finals.append(images.clone())
        return images

    sampler.step, model.policy.predict_values, sampler.decode = recording_step, recording_values, recording_decode
    try:
        kept = lookahead(model, env, torch.tensor([1, 5]), 11, k, Brightness())
    finally:
        del sampler.step, sampler.decode
    horizon = sampler.horizon
    assert len(inputs) == horizon and len(values) == horizon - 1
    for t, (ids, knobs) in enumerate(inputs):
        sets, applied = ids.reshape(b, k, -1), knobs.reshape(b, k, -1)
        assert bool((sets == sets[:, :1]).all()), f"step {t}: the lanes of a candidate set branch from one state"
        assert bool((applied[:, 1:] != applied[:, :1]).any(dim=-1).all()), f"step {t}: each lane its own candidate"
        if t > 0:  # that state is the critic's favourite among the previous step's candidates
            chosen = keep_best(values[t - 1], k)
            expected = outputs[t - 1][chosen].reshape(b, 1, -1).expand(-1, k, -1)
            assert torch.equal(sets, expected)
    assert any(not torch.equal(v.reshape(b, k).argmax(1), torch.zeros(b, dtype=torch.long)) for v in values)
    final = finals[-1]
    torch.testing.assert_close(kept.images, final[keep_best(final.mean(dim=(1, 2, 3)), k)], rtol=0, atol=0)
    assert kept.nfe == k * sampler.episode_nfe and kept.knobs.shape == (b, horizon, len(sampler.knob_names))


def test_lookahead_with_one_candidate_is_the_deterministic_policy(maskgit_policy) -> None:
    path, _, make = maskgit_policy
    model, meta = load_model(path)
    env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], 2, "cpu", make)
    labels = balanced_labels(3)
    plain, refined = generate(model, env, labels, 4), lookahead(model, env, labels, 4, 1)
    torch.testing.assert_close(refined.images, plain.images, rtol=0, atol=0)
    np.testing.assert_allclose(refined.knobs, plain.knobs, rtol=0, atol=0)
    with pytest.raises(InvalidArgument, match="PPO or A2C"):
        lookahead(ZeroPolicy(4), env, labels, 4, 1)


def test_the_exported_policy_keeps_the_discriminator_pickle_free(maskgit_policy, tmp_path) -> None:
    _, checkpoint, _ = maskgit_policy
    shipped = export_policy(checkpoint, tmp_path / "shipped.zip")
    with zipfile.ZipFile(shipped) as archive:
        weights = load(archive.read(DISCRIMINATOR))  # safetensors: tensors only
    meta = read_meta(checkpoint)
    trained = load_state(checkpoint, meta["num_timesteps"])["reward_model"]["discriminator"]
    assert weights.keys() == trained.keys() and all(torch.equal(weights[n], trained[n]) for n in trained)
    images, labels = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    reference = make_reward_model(meta["reward_model"], 8, 16)
    reference.load_state_dict(load_state(checkpoint, meta["num_timesteps"])["reward_model"])
    for source in (checkpoint, shipped):
        scorer = load_scorer(source, 8, 16)
        assert not scorer.training
        torch.testing.assert_close(scorer.score(images, labels), reference.score(images, labels))
    untrained = make_reward_model(meta["reward_model"], 8, 16).score(images, labels)
    assert not torch.allclose(untrained, reference.score(images, labels))  # the weights came from the run
    model, _ = load_model(checkpoint)
    policy_only = save_model(model, tmp_path / "best_model.zip", meta)
    with pytest.raises(CheckpointError, match="holds no trained discriminator"):
        load_scorer(policy_only, 8, 16)


def test_eval_rows_of_refinement_count_k_times_the_nfe(maskgit_policy) -> None:
    path, checkpoint, make = maskgit_policy
    shipped = export_policy(checkpoint, path.with_name("shipped.zip"))
    results = evaluate(
        [shipped],
        baseline=True,
        num_samples=4,
        seeds=[0],
        batch_size=2,
        out_dir=None,
        metrics=("fid",),
        env_fn=make,
        best_of=2,
        lookahead=2,
    )
    rows = {row["name"]: row for row in results["rows"]}
    plain = rows[str(shipped)]["nfe"]
    assert rows[f"best-of-2 {shipped}"]["nfe"] == rows[f"lookahead-2 {shipped}"]["nfe"] == 2 * plain
    baseline_best = rows[f"best-of-2 baseline (scorer of {shipped})"]
    assert baseline_best["nfe"] == 2 * plain and baseline_best["nfe_per_candidate"] == plain
    assert rows[f"lookahead-2 {shipped}"]["refinement"]["method"] == "lookahead"
    with pytest.raises(InvalidArgument, match="refine a --policy"):
        evaluate(env_id="AdaGen/MaskGIT-v0", baseline=True, best_of=2, out_dir=None, env_fn=make)
    parsed = build_parser().parse_args(["eval", "--policy", "p.zip", "--best-of", "4", "--lookahead", "2"])
    assert (parsed.best_of, parsed.lookahead) == (4, 2)


@pytest.mark.parametrize("paradigm", sorted(TINY_CASES))
def test_selected_lanes_share_every_tensor_of_the_state(paradigm: str) -> None:
    _, make_sampler = TINY_CASES[paradigm]
    sampler = make_sampler()
    state = sampler.reset(torch.tensor([0, 1, 2]), torch.Generator().manual_seed(0))
    state = sampler.step(state, sampler.baseline_schedule()[0].expand(3, -1))
    picked = sampler.select_lanes(state, torch.tensor([2, 0, 2]))
    assert picked.step == state.step and torch.equal(picked.labels, torch.tensor([2, 0, 2]))
    for field in dataclasses.fields(state):
        value = getattr(state, field.name)
        if torch.is_tensor(value):
            assert torch.equal(getattr(picked, field.name), value[[2, 0, 2]]), field.name
