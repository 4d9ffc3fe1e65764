"""The samplers' `precision` option, on tiny random generators of every paradigm and the shipped DiTs.

Checks: bfloat16 changes the network outputs (autocast is on) but only to bfloat16 rounding, every tensor the
state keeps is float32, a seed gives the same bits twice in each precision, bad values name the option (also
through an env's `sampler_kwargs`), and `config` records a non-default precision only.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TINY_CASES, tiny_dit  # tests/conftest.py

from adagen_env import zoo
from adagen_env.errors import InvalidArgument
from adagen_env.samplers import DiffusionSampler, FlowSampler, make_generator
from adagen_env.samplers.base import PRECISIONS

B = 6


def build(case: str, precision: str):
    """The tiny sampler of `case` rebuilt around the same model with `precision`."""
    sampler = TINY_CASES[case][1]()
    return type(sampler)(sampler.model, **sampler.config(), precision=precision)


def labels() -> torch.Tensor:
    return torch.arange(B) % 8


def first_pass(sampler):
    """Reset and take one baseline step: the state holds network outputs (cond, feats) of a pass after step 0."""
    state = sampler.reset(labels(), make_generator(0))
    return sampler.step(state, sampler.baseline_schedule()[0].expand(B, -1))


@pytest.mark.parametrize("case", sorted(TINY_CASES))
def test_bfloat16_rounds_the_network_outputs_and_keeps_the_state_float32(case):
    full, half = first_pass(build(case, "float32")), first_pass(build(case, "bfloat16"))
    for name in ("cond", "feats"):
        a, b = getattr(full, name), getattr(half, name)
        assert b.dtype == torch.float32, name
        assert not torch.equal(a, b), f"{name}: bfloat16 autocast changed nothing"
        scale = a.abs().max()
        assert (a - b).abs().max() <= 0.05 * scale, f"{name}: more than bfloat16 rounding"
    for name, value in vars(half).items():
        if torch.is_tensor(value) and value.is_floating_point():
            assert value.dtype == torch.float32, name


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("case", sorted(TINY_CASES))
def test_same_seed_same_precision_same_bits(case, precision):
    sampler = build(case, precision)
    first = sampler.sample(labels(), make_generator(5))
    again = build(case, precision).sample(labels(), make_generator(5))
    assert torch.equal(first, again)
    assert first.dtype == torch.float32


@pytest.mark.parametrize("name", ["diffusion", "flow"])
def test_shipped_dit_images_in_bfloat16_stay_near_the_float32_ones(name):
    """Measured: mean pixel difference 1.8e-3 / 1.6e-3, max 0.055 / 0.033."""
    cls = DiffusionSampler if name == "diffusion" else FlowSampler
    model = zoo.load(name)
    full = cls(model, num_steps=4).sample(torch.arange(8), make_generator(1))
    half = cls(model, num_steps=4, precision="bfloat16").sample(torch.arange(8), make_generator(1))
    diff = (full - half).abs()
    assert 0 < diff.max() < 0.1
    assert diff.mean() < 5e-3


@pytest.mark.parametrize("case", sorted(TINY_CASES))
def test_bad_precision_names_the_option(case):
    sampler = TINY_CASES[case][1]()
    for bad in ("float16", "bf16", None):
        with pytest.raises(InvalidArgument, match="precision must be one of"):
            type(sampler)(sampler.model, precision=bad)


def test_config_records_a_non_default_precision_only():
    model = tiny_dit()
    assert "precision" not in DiffusionSampler(model).config()
    assert DiffusionSampler(model, precision="bfloat16").config()["precision"] == "bfloat16"


def test_env_takes_precision_through_sampler_kwargs():
    kwargs = {"num_envs": 2, "num_steps": 2, "reward_model": None}
    with pytest.raises(InvalidArgument, match="precision must be one of"):
        gym.make_vec("AdaGen/DiT-v0", **kwargs, sampler_kwargs={"precision": "half"})
    runs = []
    for _ in range(2):
        env = gym.make_vec("AdaGen/DiT-v0", **kwargs, sampler_kwargs={"precision": "bfloat16"})
        assert env.unwrapped.sampler.precision == "bfloat16"
        obs, _ = env.reset(seed=3)
        obs, *_ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        runs.append(obs["features"])
    assert runs[0].dtype == np.float32
    assert np.array_equal(runs[0], runs[1])
