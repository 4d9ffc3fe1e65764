"""The static runner: each seeding draws what its users measured with."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_dit  # tests/conftest.py

from adagen_env.errors import InvalidArgument
from adagen_env.evaluation import batch_seed, generate_static
from adagen_env.metrics import balanced_labels
from adagen_env.samplers import FlowSampler, make_generator


def test_consecutive_seeding_draws_batch_b_from_seed_plus_b_without_padding() -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=3)
    labels = balanced_labels(5)
    gen = generate_static(sampler, None, labels, seed=7, batch_size=3, seeding="consecutive")
    expected = torch.cat([sampler.sample(labels[:3], make_generator(7)), sampler.sample(labels[3:], make_generator(8))])
    assert torch.equal(gen.images, expected)
    assert gen.knobs.shape == (5, sampler.horizon, len(sampler.knob_names)) and gen.nfe == sampler.episode_nfe


def test_env_seeding_pads_the_last_batch_and_seeds_it_with_batch_seed() -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=3)
    labels = balanced_labels(5)
    gen = generate_static(sampler, sampler.baseline_schedule(), labels, seed=7, batch_size=3)
    padded = torch.cat([labels[3:], labels.new_zeros(1)])
    assert torch.equal(gen.images[3:], sampler.sample(padded, make_generator(batch_seed(7, 1)))[:2])
    calls = []
    generate_static(sampler, None, labels, seed=7, batch_size=3, on_batch=calls.append)
    assert calls == [3, 2]


def test_an_unknown_seeding_is_refused() -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=3)
    with pytest.raises(InvalidArgument, match="seeding"):
        generate_static(sampler, None, balanced_labels(2), seed=0, batch_size=2, seeding="random")
