"""The MaskGIT sampler on a tiny random MaskGIT.

Checks the MDP's invariants (docs/design.md 2) whatever the knob values: decoded tokens are never re-masked,
each step decodes at least one token while any are masked, the last step decodes them all, and the
number left masked is exactly the projected ratio's. Also: Gumbel-max sampling and confidence ranking,
the cosine baseline, CFG wiring, per-lane knobs, bit-for-bit seeds, the NFE accounting, features, and
clear errors on NaN/inf knobs and wrong shapes.
"""

from __future__ import annotations

import math

import pytest
import torch

from adagen_env.errors import InvalidArgument, InvalidKnobValue
from adagen_env.models.maskgit import MaskGIT, MaskGITConfig
from adagen_env.models.vq import VQConfig
from adagen_env.samplers import make_generator
from adagen_env.samplers.maskgit import MaskGITSampler

B = 4
NUM_CLASSES = 3
N = 16  # 4x4 token grid
V = 16


@pytest.fixture(scope="module")
def model() -> MaskGIT:
    torch.manual_seed(0)
    tokenizer = VQConfig(resolution=16, base_channels=8, codebook_size=V, code_dim=4)
    net = MaskGIT(MaskGITConfig(tokenizer=tokenizer, width=32, depth=1, heads=2, num_classes=NUM_CLASSES))
    with torch.no_grad():  # larger logits than the default init, so that knobs visibly matter
        net.head.weight.mul_(5)
    return net.eval()


def labels() -> torch.Tensor:
    return torch.arange(B) % NUM_CLASSES


def run_episode(sampler: MaskGITSampler, schedule: torch.Tensor, seed: int = 0):
    """Step through an episode with (B, H, K) knobs; returns the images and the grids before/after each step."""
    state = sampler.reset(labels(), make_generator(seed))
    grids = [state.ids.clone()]
    for k in range(sampler.horizon):
        state = sampler.step(state, schedule[:, k])
        grids.append(state.ids.clone())
    return sampler.decode(state), grids


def check_masking_rules(sampler: MaskGITSampler, schedule: torch.Tensor, grids: list[torch.Tensor]) -> None:
    mask_id = sampler.model.mask_id
    for k in range(sampler.horizon):
        before, after = grids[k], grids[k + 1]
        was_masked, is_masked = before == mask_id, after == mask_id
        # Decoded tokens stay decoded and unchanged.
        assert not (is_masked & ~was_masked).any(), f"step {k} re-masked a decoded token"
        assert torch.equal(after[~was_masked], before[~was_masked]), f"step {k} changed a decoded token"
        # Exactly the projected count stays masked: min(floor(N r), #masked - 1), 0 at the last step.
        n_before = was_masked.sum(1)
        ratio = schedule[:, k, 0].double().clamp(0, 1)
        expected = torch.minimum(torch.floor(ratio * N).long(), (n_before - 1).clamp_min(0))
        if k == sampler.horizon - 1:
            expected = torch.zeros_like(expected)
        assert torch.equal(is_masked.sum(1), expected), f"step {k}: {is_masked.sum(1)} masked, expected {expected}"
        assert ((n_before == 0) | (is_masked.sum(1) < n_before)).all(), f"step {k} decoded nothing"
        assert (after[~is_masked] < V).all() and (after[~is_masked] >= 0).all()
    assert not (grids[-1] == mask_id).any(), "the last step left masked tokens"


EXTREMES = [0.0, 1.0, -1e30, 1e30, 1e-30, 1 - 1e-7, float(torch.finfo(torch.float32).max), 0.5]


@pytest.mark.parametrize("num_steps", [1, 2, 5, 20])
def test_masking_rules_hold_for_any_knobs(model, num_steps):
    sampler = MaskGITSampler(model, num_steps=num_steps)
    g = torch.Generator().manual_seed(num_steps)
    h = sampler.horizon
    schedules = [
        sampler.baseline_schedule()[None].expand(B, -1, -1).clone(),
        torch.rand(B, h, 4, generator=g),  # random values in the knob ranges
        torch.rand(B, h, 4, generator=g) * torch.tensor([1.0, 10.0, 10.0, 10.0]),
        torch.randn(B, h, 4, generator=g) * 1e6,  # huge, both signs
        torch.zeros(B, h, 4),  # decode everything at once, no noise, argmax
        torch.ones(B, h, 4),  # ask to keep everything masked
        torch.tensor(EXTREMES[:B])[:, None, None].expand(B, h, 4).clone(),
        torch.tensor(EXTREMES[B:])[:, None, None].expand(B, h, 4).clone(),
        torch.linspace(0, 1, h)[None, :, None].expand(B, -1, 4).clone(),  # mask ratio rising over the episode
    ]
    for schedule in schedules:
        images, grids = run_episode(sampler, schedule)
        check_masking_rules(sampler, schedule, grids)
        assert images.shape == (B, 3, 16, 16)
        assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1


def test_projection_is_idempotent_on_a_grid_of_49_tokens():
    """The env projects, then `step` projects again: m / N must map back to m tokens (float32 m / 49 * 49
    falls below 27, for one)."""
    torch.manual_seed(0)
    tokenizer = VQConfig(resolution=28, base_channels=8, codebook_size=V, code_dim=4)  # 7x7 grid
    sampler = MaskGITSampler(MaskGIT(MaskGITConfig(tokenizer=tokenizer, width=16, depth=1, heads=2)), num_steps=3)
    g = torch.Generator().manual_seed(0)
    state = sampler.reset(torch.zeros(64, dtype=torch.long), make_generator(0))
    knobs = torch.rand(64, 4, generator=g) * torch.tensor([1.0, 3.0, 3.0, 3.0])
    knobs[:50, 0] = torch.arange(50) / 49  # every whole count exactly
    once = sampler.project(state, knobs)
    assert torch.equal(sampler.project(state, once), once)
    assert torch.equal((once[:50, 0] * 49).round(), torch.arange(50.0).clamp(max=48))


def test_baseline_follows_the_cosine_schedule(model):
    sampler = MaskGITSampler(model, num_steps=6)
    values = sampler.baseline_values()
    progress = (torch.arange(6) + 1 - 1e-3) / 6
    torch.testing.assert_close(values[:, 0], torch.cos(math.pi / 2 * progress))
    torch.testing.assert_close(values[:, 1], 4.5 * (1 - progress))  # remask_temp decays linearly from 4.5
    assert torch.equal(values[:, 2], torch.ones(6))
    torch.testing.assert_close(values[:, 3], (torch.arange(6) + 1e-3) / 6 * 1.0)  # CFG ramps from ~0
    constant = MaskGITSampler(model, num_steps=6, cfg_scale=2.0, cfg_schedule="constant").baseline_values()
    assert torch.equal(constant[:, 3], torch.full((6,), 2.0)) and torch.equal(constant[:, :3], values[:, :3])
    with pytest.raises(InvalidArgument, match="cfg_schedule"):
        MaskGITSampler(model, cfg_schedule="cosine")
    schedule = sampler.baseline_schedule()
    _, grids = run_episode(sampler, schedule[None].expand(B, -1, -1))
    left = torch.stack([(grid == sampler.model.mask_id).sum(1) for grid in grids[1:]], dim=1)  # (B, H)
    expected = torch.floor(N * torch.cos(math.pi / 2 * progress)).long()
    assert torch.equal(left, expected[None].expand(B, -1)), f"{left[0].tolist()} vs {expected.tolist()}"


def test_first_step_samples_by_gumbel_max_and_keeps_the_most_confident(model):
    """Temperature ~0, no re-mask noise, no guidance: tokens are the argmax and the most confident stay."""
    sampler = MaskGITSampler(model, num_steps=2)
    state = sampler.reset(labels(), make_generator(0))
    logits = state.cond  # (B, N, V) cached conditional logits
    knobs = torch.tensor([[0.5, 0.0, 1e-4, 0.0]]).expand(B, -1)
    new = sampler.step(state, knobs)
    decoded = new.ids != sampler.model.mask_id
    assert torch.equal(decoded.sum(1), torch.full((B,), N // 2))
    argmax = logits.argmax(-1)
    assert torch.equal(new.ids[decoded], argmax[decoded])
    confidence = logits.log_softmax(-1).max(-1).values  # (B, N)
    lowest_kept = torch.where(decoded, confidence, torch.inf).min(1).values
    highest_masked = torch.where(decoded, -torch.inf, confidence).max(1).values
    assert (lowest_kept >= highest_masked).all()


def test_sampling_temperature_and_remask_noise_add_randomness(model):
    sampler = MaskGITSampler(model, num_steps=2)
    cold = torch.tensor([[0.0, 0.0, 1e-4, 0.0]]).expand(B, -1)
    hot = torch.tensor([[0.0, 0.0, 5.0, 0.0]]).expand(B, -1)
    ids = {}
    for name, knobs in [("cold", cold), ("hot", hot)]:
        for seed in (0, 1):
            ids[name, seed] = sampler.step(sampler.reset(labels(), make_generator(seed)), knobs).ids
    assert torch.equal(ids["cold", 0], ids["cold", 1]), "temperature ~0 must be deterministic (argmax)"
    assert not torch.equal(ids["hot", 0], ids["hot", 1])


def test_cfg_knob(model):
    """w = 0 is exactly the unguided sampler; a large w changes the result."""
    guided = MaskGITSampler(model, num_steps=4, cfg_scale=1.0)
    unguided = MaskGITSampler(model, num_steps=4, cfg_scale=None)
    schedule = guided.baseline_schedule()[None].expand(B, -1, -1).clone()
    schedule[..., 3] = 0.0
    a, _ = run_episode(guided, schedule, seed=3)
    b, _ = run_episode(unguided, schedule[..., :3], seed=3)
    assert torch.equal(a, b)
    schedule[..., 3] = 20.0
    c, _ = run_episode(guided, schedule, seed=3)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("knob", [0, 1, 2, 3])
def test_per_sample_knobs_act_per_lane(model, knob):
    sampler = MaskGITSampler(model, num_steps=4)
    schedule = sampler.baseline_schedule()[None].expand(B, -1, -1).clone()
    base, base_grids = run_episode(sampler, schedule)
    changed = schedule.clone()
    changed[0, :-1, knob] = [0.05, 0.0, 10.0, 30.0][knob]
    images, grids = run_episode(sampler, changed)
    trajectory = torch.stack(grids, dim=1)  # (B, H + 1, N)
    base_trajectory = torch.stack(base_grids, dim=1)
    assert not torch.equal(trajectory[0], base_trajectory[0]), "lane 0's knob did not change lane 0"
    assert torch.equal(trajectory[1:], base_trajectory[1:]), "lane 0's knob changed other lanes"
    assert torch.equal(images[1:], base[1:])


def test_seeds_reproduce_bit_for_bit(model):
    sampler = MaskGITSampler(model, num_steps=4, remask_temp=2.0)
    schedule = sampler.baseline_schedule()[None].expand(B, -1, -1).clone()
    schedule[..., 2] = 2.0  # hot sampling so that seeds matter
    a, grids_a = run_episode(sampler, schedule, seed=7)
    b, grids_b = run_episode(sampler, schedule, seed=7)
    c, grids_c = run_episode(sampler, schedule, seed=8)
    assert torch.equal(a, b) and all(torch.equal(x, y) for x, y in zip(grids_a, grids_b))
    assert not torch.equal(grids_a[-1], grids_c[-1])
    torch.testing.assert_close(
        sampler.sample(labels(), make_generator(7)), sampler.sample(labels(), make_generator(7)), rtol=0, atol=0
    )


def test_a_clean_tokenizer_gets_the_data_grain_per_lane_and_seed():
    torch.manual_seed(0)
    tokenizer = VQConfig(resolution=16, base_channels=8, codebook_size=V, code_dim=4, grain_sigma=0.02)
    net = MaskGIT(
        MaskGITConfig(tokenizer=tokenizer, width=32, depth=1, heads=2, num_classes=NUM_CLASSES, codebook_tied=True)
    ).eval()
    sampler = MaskGITSampler(net, num_steps=3)
    schedule = sampler.baseline_schedule()[None].expand(B, -1, -1)
    a, grids = run_episode(sampler, schedule, seed=3)
    b, _ = run_episode(sampler, schedule, seed=3)
    grain = a - net.tokenizer.decode(grids[-1])  # what the decoder's clean output got on top
    inside = (a > 0) & (a < 1)  # not clamped
    assert torch.equal(a, b) and 0.015 < float(grain[inside].std()) < 0.025
    both = inside[:, 0] & inside[:, 1]
    torch.testing.assert_close(grain[:, 0][both], grain[:, 1][both])  # one grain field for every channel
    wide = MaskGITSampler(net, num_steps=3)
    state = wide.reset(torch.arange(2 * B) % NUM_CLASSES, make_generator(3))
    for k in range(3):
        state = wide.step(state, torch.cat([schedule[:, k], schedule[:, k]]))
    assert torch.equal(wide.decode(state)[:B], a)  # a lane's grain does not depend on the lanes beside it


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("knob", [0, 1, 2, 3])
def test_non_finite_knobs_raise_naming_the_knob(model, bad, knob):
    sampler = MaskGITSampler(model, num_steps=2)
    name = sampler.knob_names[knob]
    schedule = sampler.baseline_schedule()
    for step in range(sampler.horizon):
        state = sampler.reset(labels(), make_generator(0))
        for k in range(step):
            state = sampler.step(state, schedule[k].expand(B, -1))
        knobs = schedule[step].expand(B, -1).clone()
        knobs[1, knob] = bad
        with pytest.raises(ValueError, match=f"'{name}'") as info:
            sampler.step(state, knobs)
        assert isinstance(info.value, InvalidKnobValue) and "lane 1" in str(info.value)


@pytest.mark.parametrize("cfg_scale", [None, 1.0])
def test_wrong_knob_shape_raises(model, cfg_scale):
    sampler = MaskGITSampler(model, num_steps=2, cfg_scale=cfg_scale)
    k = len(sampler.knob_specs)
    assert k == (4 if cfg_scale else 3)
    state = sampler.reset(labels(), make_generator(0))
    for shape in [(B, k + 1), (k,), (B - 1, k), (1, k)]:
        with pytest.raises(InvalidKnobValue, match="shape"):
            sampler.step(state, torch.full(shape, 0.5))


@pytest.mark.parametrize("cfg_scale", [None, 2.0])
@pytest.mark.parametrize("num_steps", [1, 4])
def test_nfe_accounting_matches_network_calls(model, cfg_scale, num_steps):
    sampler = MaskGITSampler(model, num_steps=num_steps, cfg_scale=cfg_scale)
    expected = num_steps * (2 if cfg_scale else 1)
    assert sampler.episode_nfe == expected
    calls = []
    handle = model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        sampler.sample(labels(), make_generator(0))
    finally:
        handle.remove()
    assert len(calls) == expected and all(n == B for n in calls)


def test_features_are_the_conditional_pass_on_the_current_grid(model):
    sampler = MaskGITSampler(model, num_steps=3)
    state = sampler.reset(labels(), make_generator(0))
    schedule = sampler.baseline_schedule()
    for k in range(sampler.horizon):
        feats = sampler.features(state)
        assert feats.shape == (B, *sampler.feature_shape) == (B, 32, 4, 4) and feats.dtype == torch.float32
        logits, expected = model(state.ids, state.labels)
        torch.testing.assert_close(feats, expected)
        torch.testing.assert_close(state.cond, logits)
        state = sampler.step(state, schedule[k].expand(B, -1))
    assert sampler.features(state).shape == (B, 32, 4, 4)  # the terminal observation
    assert sampler.image_shape == (3, 16, 16)


def test_zero_residual_prior_reproduces_the_baseline(model):
    sampler = MaskGITSampler(model, num_steps=5)
    from adagen_env.samplers.base import activate_all

    torch.testing.assert_close(activate_all(sampler.knob_specs, sampler.prior()), sampler.baseline_values())


def test_lifecycle_and_argument_errors(model):
    sampler = MaskGITSampler(model, num_steps=1)
    state = sampler.reset(labels(), make_generator(0))
    with pytest.raises(InvalidArgument, match="finished episode"):
        sampler.decode(state)
    state = sampler.step(state, sampler.baseline_schedule()[0].expand(B, -1))
    with pytest.raises(InvalidArgument, match="episode is over"):
        sampler.step(state, sampler.baseline_schedule()[0].expand(B, -1))
    with pytest.raises(InvalidArgument, match="labels"):
        sampler.reset(torch.tensor([0, NUM_CLASSES]), make_generator(0))
    with pytest.raises(InvalidArgument, match="num_steps"):
        MaskGITSampler(model, num_steps=0)
    with pytest.raises(InvalidArgument, match="cfg_scale"):
        MaskGITSampler(model, cfg_scale=float("nan"))
    with pytest.raises(InvalidArgument, match="remask_temp"):
        MaskGITSampler(model, remask_temp=-1.0)
