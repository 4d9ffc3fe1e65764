"""The ODE samplers (diffusion on the VP path, rectified flow on the linear path) on a tiny random DiT.

Checks the MDP's invariants (docs/design.md 2): projected times strictly monotone with a minimum gap whatever
the knob values, the last time exactly the data end, per-lane knobs acting per lane, bit-for-bit seeds,
clear errors on NaN/inf knobs and wrong shapes, and the NFE accounting of guided and unguided episodes.
"""

from __future__ import annotations

import pytest
import torch

from adagen_env.errors import InvalidArgument, InvalidKnobValue
from adagen_env.models.dit import DiT, DiTConfig
from adagen_env.samplers import DiffusionSampler, FlowSampler, make_generator

SAMPLERS = [DiffusionSampler, FlowSampler]
B = 4
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def model() -> DiT:
    """A tiny DiT with every weight random (the zero-initialised output layers too, so outputs depend on the input)."""
    torch.manual_seed(0)
    net = DiT(DiTConfig(resolution=8, width=32, depth=1, heads=2, num_classes=NUM_CLASSES))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return net.eval()


def labels() -> torch.Tensor:
    return torch.arange(B) % NUM_CLASSES


def run_episode(sampler, schedule: torch.Tensor, seed: int = 0):
    """Step through an episode with (B, H, K) knob values; returns the images and the (B, H) times reached."""
    state = sampler.reset(labels(), make_generator(seed))
    times = []
    for k in range(sampler.horizon):
        state = sampler.step(state, schedule[:, k])
        times.append(state.t.clone())
    return sampler.decode(state), torch.stack(times, dim=1)


def progress(sampler, t: torch.Tensor) -> torch.Tensor:
    """Distance from the noise end, increasing towards the data for both paths."""
    return (t.double() - sampler.path.noise_end).abs()


EXTREME_TIMES = [0.0, 1.0, -1e30, 1e30, 1e-30, 1 - 1e-7, 0.5, float(torch.finfo(torch.float32).max)]  # 2 * B values


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("nfe", [1, 2, 5])
def test_times_strictly_monotone_with_min_gap(model, cls, nfe):
    sampler = cls(model, num_steps=nfe, cfg_scale=1.0)
    g = torch.Generator().manual_seed(nfe)
    schedules = [
        torch.rand(B, sampler.horizon, 2, generator=g),  # random values in the knob range
        torch.randn(B, sampler.horizon, 2, generator=g) * 1e6,  # huge, both signs
        torch.rand(B, sampler.horizon, 2, generator=g) * 1e-30,  # tiny
        torch.zeros(B, sampler.horizon, 2),
        torch.ones(B, sampler.horizon, 2),
        # Every lane its own extreme, constant over the episode; then a schedule running backwards in time.
        torch.tensor(EXTREME_TIMES[:B])[:, None, None].expand(B, sampler.horizon, 2).clone(),
        torch.tensor(EXTREME_TIMES[B:])[:, None, None].expand(B, sampler.horizon, 2).clone(),
        torch.linspace(sampler.path.data_end, sampler.path.noise_end, sampler.horizon)[None, :, None]
        .expand(B, -1, 2)
        .clone(),
    ]
    for schedule in schedules:
        images, times = run_episode(sampler, schedule)
        assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
        p = progress(sampler, times)  # (B, H)
        assert (p >= 0).all() and (p <= 1).all()
        gaps = p[:, 1:] - p[:, :-1]
        assert (gaps >= sampler.min_gap - 1e-6).all(), f"gaps {gaps.min().item()} < min_gap {sampler.min_gap}"
        # The last time is exactly the data end, in every lane.
        assert torch.equal(times[:, -1], torch.full((B,), float(sampler.path.data_end)))


@pytest.mark.parametrize("cls", SAMPLERS)
def test_baseline_times_are_uniform_and_end_on_data(model, cls):
    sampler = cls(model, num_steps=4, cfg_scale=None)
    schedule = sampler.baseline_schedule()[None].expand(B, -1, -1)
    _, times = run_episode(sampler, schedule)
    expected = torch.linspace(sampler.path.noise_end, sampler.path.data_end, sampler.horizon)
    torch.testing.assert_close(times[0], expected, atol=1e-5, rtol=0)
    assert times[0, -1].item() == sampler.path.data_end


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("knob", [0, 1])
def test_per_sample_knobs_act_per_lane(model, cls, knob):
    sampler = cls(model, num_steps=4, cfg_scale=1.0)
    schedule = sampler.baseline_schedule()[None].expand(B, -1, -1).clone()
    base_images, base_times = run_episode(sampler, schedule)
    changed = schedule.clone()
    if knob == 0:
        # Lane 0 lags: every intermediate time 10% closer to the noise end.
        changed[0, 1:-1, 0] = sampler.path.noise_end + 0.9 * (changed[0, 1:-1, 0] - sampler.path.noise_end)
    else:
        changed[0, :, 1] = 3.0  # stronger guidance in lane 0 only
    images, times = run_episode(sampler, changed)
    assert not torch.equal(images[0], base_images[0]), "lane 0's knobs did not change lane 0"
    assert torch.equal(images[1:], base_images[1:]), "lane 0's knobs changed other lanes"
    assert torch.equal(times[1:], base_times[1:])


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("solver", ["ddim", "dpmpp2m"])
def test_seeds_reproduce_bit_for_bit(model, cls, solver):
    sampler = cls(model, num_steps=3, solver=solver, cfg_scale=1.5)
    a = sampler.sample(labels(), make_generator(7))
    b = sampler.sample(labels(), make_generator(7))
    c = sampler.sample(labels(), make_generator(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("knob", [0, 1])
def test_non_finite_knobs_raise_naming_the_knob(model, cls, bad, knob):
    sampler = cls(model, num_steps=2, cfg_scale=1.0)
    name = sampler.knob_names[knob]
    for step in range(sampler.horizon):  # at every step, including the first and the last
        state = sampler.reset(labels(), make_generator(0))
        schedule = sampler.baseline_schedule()
        for k in range(step):
            state = sampler.step(state, schedule[k].expand(B, -1))
        knobs = schedule[step].expand(B, -1).clone()
        knobs[2, knob] = bad
        with pytest.raises(ValueError, match=f"'{name}'") as info:
            sampler.step(state, knobs)
        assert isinstance(info.value, InvalidKnobValue)
        assert "lane 2" in str(info.value)


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("cfg_scale", [None, 1.0])
def test_wrong_knob_shape_raises(model, cls, cfg_scale):
    sampler = cls(model, num_steps=2, cfg_scale=cfg_scale)
    k = len(sampler.knob_specs)
    state = sampler.reset(labels(), make_generator(0))
    for shape in [(B, k + 1), (k,), (B - 1, k), (B, k, 1), (1, k)]:
        with pytest.raises(InvalidKnobValue, match="shape"):
            sampler.step(state, torch.full(shape, 0.5))


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("cfg_scale", [None, 2.0])
@pytest.mark.parametrize("nfe", [1, 3, 6])
def test_nfe_accounting_matches_network_calls(model, cls, cfg_scale, nfe):
    sampler = cls(model, num_steps=nfe, cfg_scale=cfg_scale)
    expected = 2 * nfe if cfg_scale is not None else nfe
    assert sampler.episode_nfe == expected
    calls = []
    handle = model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        sampler.sample(labels(), make_generator(0))
    finally:
        handle.remove()
    assert len(calls) == expected  # every network evaluation is one batched forward over all lanes
    assert all(n == B for n in calls)
    assert sum(sampler.step_nfe(k) for k in range(sampler.horizon)) == expected


@pytest.mark.parametrize("cls", SAMPLERS)
def test_ddim_and_dpmpp2m_both_finish(model, cls):
    out = {}
    for solver in ["ddim", "dpmpp2m"]:
        sampler = cls(model, num_steps=4, solver=solver, cfg_scale=1.0)
        images = sampler.sample(labels(), make_generator(3))
        assert images.shape == (B, 3, 8, 8)
        assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
        out[solver] = images
    assert not torch.equal(out["ddim"], out["dpmpp2m"])  # the second-order correction is in use


@pytest.mark.parametrize("cls", SAMPLERS)
def test_lifecycle_errors(model, cls):
    sampler = cls(model, num_steps=1, cfg_scale=None)
    state = sampler.reset(labels(), make_generator(0))
    with pytest.raises(InvalidArgument, match="finished episode"):
        sampler.decode(state)
    for k in range(sampler.horizon):
        state = sampler.step(state, sampler.baseline_schedule()[k].expand(B, -1))
    with pytest.raises(InvalidArgument, match="episode is over"):
        sampler.step(state, sampler.baseline_schedule()[0].expand(B, -1))
    with pytest.raises(InvalidArgument, match="labels"):
        sampler.reset(torch.tensor([0, NUM_CLASSES]), make_generator(0))
    with pytest.raises(InvalidArgument, match="num_steps"):
        cls(model, num_steps=0)
    with pytest.raises(InvalidArgument, match="solver"):
        cls(model, num_steps=2, solver="euler")
    with pytest.raises(InvalidArgument, match="cfg_scale"):
        cls(model, num_steps=2, cfg_scale=float("nan"))


def test_times_beyond_the_noise_end_are_clamped_not_mirrored(model: DiT) -> None:
    """A start time past the noise end (t < 0 for flow, t > 1 for diffusion) projects to the noise end."""
    for cls, beyond in ((FlowSampler, -0.5), (DiffusionSampler, 1.5)):
        sampler = cls(model, num_steps=4)
        state = sampler.reset(torch.zeros(2, dtype=torch.long), make_generator(0))
        knobs = sampler.baseline_schedule()[0].expand(2, -1).clone()
        knobs[:, 0] = beyond
        assert torch.equal(sampler.project(state, knobs)[:, 0], torch.full((2,), sampler.path.noise_end))
