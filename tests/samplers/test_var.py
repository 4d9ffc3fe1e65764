"""The VAR sampler and its top-k / top-p filter on a tiny random VAR.

Checks: the filter's edge cases (k <= 0 no filter, k = 1 argmax only, tiny top-p keeps the argmax,
per-lane k and p in one call), the top-k truncation in the projection, that CFG has no effect at scale 0
(and runs no unconditional pass there) but does later, block-causal attention, that sampling rebuilds
f_hat exactly as the tokenizer does from the same ids, per-lane knobs, bit-for-bit seeds, the NFE
accounting, the features, and clear errors on NaN/inf knobs and wrong shapes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adagen_env.errors import InvalidArgument, InvalidKnobValue
from adagen_env.models.var import VAR, VARConfig
from adagen_env.models.vq import VQConfig
from adagen_env.samplers import make_generator
from adagen_env.samplers.base import activate_all
from adagen_env.samplers.var import VARSampler, top_k_top_p_keep

B = 4
NUM_CLASSES = 3
V = 16
SCALES = (1, 2, 4)


@pytest.fixture(scope="module")
def model() -> VAR:
    torch.manual_seed(0)
    tokenizer = VQConfig(resolution=16, base_channels=8, codebook_size=V, code_dim=4, scales=SCALES)
    net = VAR(VARConfig(tokenizer=tokenizer, width=32, depth=2, heads=2, num_classes=NUM_CLASSES))
    with torch.no_grad():
        net.head.weight.mul_(5)
    return net.eval()


def labels() -> torch.Tensor:
    return torch.arange(B) % NUM_CLASSES


def run_episode(sampler: VARSampler, schedule: torch.Tensor, seed: int = 0):
    """Step through an episode with (B, H, K) knobs; returns the images and the final state."""
    state = sampler.reset(labels(), make_generator(seed))
    for k in range(sampler.horizon):
        state = sampler.step(state, schedule[:, k])
    return sampler.decode(state), state


def baseline(sampler: VARSampler) -> torch.Tensor:
    return sampler.baseline_schedule()[None].expand(B, -1, -1).clone()


# -- the filter -----------------------------------------------------------------------------------
def test_top_k_top_p_edge_cases():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, 5, V, generator=g) * 3
    order = logits.argsort(-1, descending=True)
    everything = torch.ones(B, 5, V, dtype=torch.bool)
    ones = torch.ones(B)
    # k <= 0 is no filter; so is k >= V.
    for k in (0, -3, V, V + 10):
        assert torch.equal(top_k_top_p_keep(logits, torch.full((B,), k), ones), everything)
    # k = 1 keeps exactly the argmax.
    keep = top_k_top_p_keep(logits, torch.ones(B, dtype=torch.long), ones)
    assert torch.equal(keep, F.one_hot(logits.argmax(-1), V).bool())
    # k = 3 keeps exactly the three most probable tokens.
    keep = top_k_top_p_keep(logits, torch.full((B,), 3), ones)
    assert torch.equal(keep.sum(-1), torch.full((B, 5), 3))
    assert keep.gather(-1, order[..., :3]).all()
    # A tiny (or zero) top-p keeps the argmax only.
    for p in (1e-9, 0.0):
        keep = top_k_top_p_keep(logits, torch.zeros(B, dtype=torch.long), torch.full((B,), p))
        assert torch.equal(keep, F.one_hot(logits.argmax(-1), V).bool())


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05] + [0.0] * (V - 4))
    logits = probs.clamp_min(1e-12).log()[None, None].expand(B, 1, -1)
    k0 = torch.zeros(B, dtype=torch.long)
    for p, kept in [(0.4, 1), (0.5, 1), (0.6, 2), (0.8, 2), (0.81, 3), (0.96, 4), (1.0, 4)]:
        keep = top_k_top_p_keep(logits, k0, torch.full((B,), p))
        assert int(keep[0, 0].sum()) == kept, f"top_p {p}: kept {int(keep[0, 0].sum())}, expected {kept}"
        assert keep[0, 0, :kept].all()
    # top-p acts on the top-k-renormalised distribution: with k = 2 the masses are 0.625 / 0.375.
    keep = top_k_top_p_keep(logits, torch.full((B,), 2), torch.full((B,), 0.6))
    assert int(keep[0, 0].sum()) == 1


def test_filter_is_per_lane():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(B, 3, V, generator=g)
    k = torch.tensor([0, 1, 2, 5])
    p = torch.tensor([1.0, 1.0, 1.0, 1e-6])
    keep = top_k_top_p_keep(logits, k, p)
    assert keep.sum(-1).tolist() == [[V] * 3, [1] * 3, [2] * 3, [1] * 3]
    for lane in range(B):
        alone = top_k_top_p_keep(logits[lane : lane + 1], k[lane : lane + 1], p[lane : lane + 1])
        assert torch.equal(alone[0], keep[lane])


# -- the sampler ----------------------------------------------------------------------------------
def test_projection_truncates_top_k_and_clips(model):
    sampler = VARSampler(model)
    state = sampler.reset(labels(), make_generator(0))
    knobs = torch.tensor(
        [
            [1.5, 2.9, 0.5, 1.0],
            [-1.0, -3.0, 2.0, 0.0],
            [1e9, 1e9, -1.0, 1e9],
            [0.0, 0.99, 1.0, 1e-9],
        ]
    )
    out = sampler.project(state, knobs)
    assert out[:, 1].tolist() == [2.0, 0.0, float(V), 0.0]
    assert out[:, 0].tolist() == [1.5, 0.0, 100.0, 0.0]
    assert out[:, 2].tolist() == [0.5, 1.0, 0.0, 1.0]
    assert out[2, 3] == 100.0 and out[3, 3] == pytest.approx(1e-4)
    assert torch.equal(sampler.project(state, out), out)  # the env projects, then `step` projects again


def test_baseline_schedule_and_prior(model):
    sampler = VARSampler(model, cfg_scale=1.5, top_k=5, top_p=0.9)
    values = sampler.baseline_schedule()
    assert values.shape == (len(SCALES), 4)
    torch.testing.assert_close(values, sampler.baseline_values())
    assert torch.trunc(values[:, 1]).tolist() == [5.0] * 3  # k + 0.5 survives the float round trip as k
    torch.testing.assert_close(values[:, [0, 2, 3]], torch.tensor([[1.5, 0.9, 1.0]] * 3))
    torch.testing.assert_close(activate_all(sampler.knob_specs, sampler.prior()), sampler.baseline_values())
    assert VARSampler(model).top_k == round(900 / 4096 * V)


def test_top_k_one_samples_the_argmax_whatever_the_seed(model):
    sampler = VARSampler(model, cfg_scale=None)
    schedule = baseline(sampler)
    schedule[..., 0] = 1.5  # k = 1
    schedule[..., 2] = 5.0  # hot temperature: only the filter makes it deterministic
    state_a = run_episode(sampler, schedule, seed=0)[1]
    state_b = run_episode(sampler, schedule, seed=1)[1]
    assert torch.equal(state_a.ids, state_b.ids)
    # And it is the argmax of the conditional logits at every scale.
    state = sampler.reset(labels(), make_generator(5))
    for k in range(sampler.horizon):
        argmax = state.cond.argmax(-1)
        state = sampler.step(state, schedule[:, k])
        assert torch.equal(state.ids[:, -argmax.shape[1] :], argmax)


def test_cfg_has_no_effect_at_scale_zero_but_does_later(model):
    sampler = VARSampler(model, cfg_scale=1.5)
    schedule = baseline(sampler)
    schedule[..., 3] = 3.0  # hot, so that the logits matter
    a = run_episode(sampler, schedule, seed=2)[1]
    changed = schedule.clone()
    changed[:, 0, 0] = 50.0  # huge CFG at scale 0 only
    b = run_episode(sampler, changed, seed=2)[1]
    assert torch.equal(a.ids, b.ids) and torch.equal(a.f_hat, b.f_hat)
    changed = schedule.clone()
    changed[:, 1:, 0] = 50.0
    c = run_episode(sampler, changed, seed=2)[1]
    assert not torch.equal(a.ids[:, 1:], c.ids[:, 1:])
    assert torch.equal(a.ids[:, :1], c.ids[:, :1])


def test_cfg_is_ramped_by_scale(model):
    """At scale si the guided logits are (1 + t) c - t u with t = w si / (S - 1) (VAR's ramp)."""
    sampler = VARSampler(model)
    w = 8.0
    knobs = torch.tensor([[w, 1.5, 1.0, 1.0]]).expand(B, -1)  # top-k 1: the sample is the guided argmax
    state = sampler.reset(labels(), make_generator(0))
    state = sampler.step(state, knobs)
    for si in range(1, len(SCALES)):
        c = state.cond
        u = model(torch.full_like(state.labels, NUM_CLASSES), state.inputs)[0][:, model.scale_slice(si)]
        t = w * si / (len(SCALES) - 1)
        expected = ((1 + t) * c - t * u).argmax(-1)
        assert not torch.equal(expected, ((1 + w) * c - w * u).argmax(-1)) or si == len(SCALES) - 1
        state = sampler.step(state, knobs)
        assert torch.equal(state.ids[:, model.scale_slice(si)], expected)


def test_block_causal_attention(model):
    """The logits of a scale do not depend on the queries of finer scales."""
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(B, 4 + 16, 4, generator=g)
    logits, hidden = model(labels(), inputs)
    assert logits.shape == (B, 21, V) and hidden.shape == (B, 21, 32)
    perturbed = inputs.clone()
    perturbed[:, 4:] += 1.0  # change scale 2's queries
    logits2, _ = model(labels(), perturbed)
    torch.testing.assert_close(logits2[:, :5], logits[:, :5])
    assert not torch.allclose(logits2[:, 5:], logits[:, 5:])
    prefix, _ = model(labels(), inputs[:, :4])  # the prefix pass the sampler runs gives the same logits
    torch.testing.assert_close(prefix, logits[:, :5], rtol=1e-5, atol=1e-5)


def test_sampling_rebuilds_f_hat_like_the_tokenizer(model):
    sampler = VARSampler(model)
    images, state = run_episode(sampler, baseline(sampler), seed=4)
    sizes = [pn * pn for pn in SCALES]
    maps = list(state.ids.split(sizes, dim=1))
    f_hat, inputs = model.tokenizer.ids_to_fhat(maps)
    torch.testing.assert_close(state.f_hat, f_hat, rtol=0, atol=1e-6)
    torch.testing.assert_close(state.inputs, inputs, rtol=0, atol=1e-6)  # the training queries
    torch.testing.assert_close(images, model.tokenizer.decode(maps), rtol=0, atol=1e-6)
    assert images.shape == (B, 3, 16, 16) and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("knob", [0, 1, 2, 3])
def test_per_sample_knobs_act_per_lane(model, knob):
    sampler = VARSampler(model)
    schedule = baseline(sampler)
    schedule[..., 1] = 0.0  # no top-k filter, so that temperature and top-p matter
    base_images, base = run_episode(sampler, schedule, seed=1)
    changed = schedule.clone()
    changed[0, :, knob] = [30.0, 1.0, 1e-6, 0.05][knob]
    images, state = run_episode(sampler, changed, seed=1)
    assert not torch.equal(state.ids[0], base.ids[0]), "lane 0's knob did not change lane 0"
    assert torch.equal(state.ids[1:], base.ids[1:]), "lane 0's knob changed other lanes"
    assert torch.equal(images[1:], base_images[1:])


def test_seeds_reproduce_bit_for_bit(model):
    sampler = VARSampler(model, top_k=0, top_p=1.0)
    a = sampler.sample(labels(), make_generator(7))
    b = sampler.sample(labels(), make_generator(7))
    c = sampler.sample(labels(), make_generator(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("knob", [0, 1, 2, 3])
def test_non_finite_knobs_raise_naming_the_knob(model, bad, knob):
    sampler = VARSampler(model)
    name = sampler.knob_names[knob]
    schedule = sampler.baseline_schedule()
    for step in range(sampler.horizon):
        state = sampler.reset(labels(), make_generator(0))
        for k in range(step):
            state = sampler.step(state, schedule[k].expand(B, -1))
        knobs = schedule[step].expand(B, -1).clone()
        knobs[3, knob] = bad
        with pytest.raises(ValueError, match=f"'{name}'") as info:
            sampler.step(state, knobs)
        assert isinstance(info.value, InvalidKnobValue) and "lane 3" in str(info.value)


@pytest.mark.parametrize("cfg_scale", [None, 1.5])
def test_wrong_knob_shape_raises(model, cfg_scale):
    sampler = VARSampler(model, cfg_scale=cfg_scale)
    k = len(sampler.knob_specs)
    assert sampler.knob_names == (("cfg",) if cfg_scale else ()) + ("top_k", "top_p", "temperature")
    state = sampler.reset(labels(), make_generator(0))
    for shape in [(B, k + 1), (k,), (B - 1, k), (1, k)]:
        with pytest.raises(InvalidKnobValue, match="shape"):
            sampler.step(state, torch.full(shape, 0.5))


@pytest.mark.parametrize("cfg_scale", [None, 1.5])
def test_nfe_accounting_matches_network_calls(model, cfg_scale):
    sampler = VARSampler(model, cfg_scale=cfg_scale)
    s = len(SCALES)
    expected = s + (s - 1 if cfg_scale else 0)  # no unconditional pass at scale 0 (t = 0)
    assert sampler.episode_nfe == expected
    calls = []
    handle = model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        sampler.sample(labels(), make_generator(0))
    finally:
        handle.remove()
    assert len(calls) == expected and all(n == B for n in calls)


def test_features_are_the_current_scale_resized(model):
    sampler = VARSampler(model)
    state = sampler.reset(labels(), make_generator(0))
    schedule = sampler.baseline_schedule()
    for si, pn in enumerate(SCALES):
        feats = sampler.features(state)
        assert feats.shape == (B, *sampler.feature_shape) == (B, 32, 4, 4) and feats.dtype == torch.float32
        _, hidden = model(state.labels, state.inputs)
        own = hidden[:, model.scale_slice(si)].transpose(1, 2).reshape(B, 32, pn, pn)
        expected = own if pn == 4 else F.interpolate(own, size=(4, 4), mode="bicubic", align_corners=False)
        torch.testing.assert_close(feats, expected)
        if pn == 1:  # a 1x1 map resizes to a constant grid
            torch.testing.assert_close(feats, feats[..., :1, :1].expand_as(feats))
        state = sampler.step(state, schedule[si].expand(B, -1))
    assert sampler.features(state).shape == (B, 32, 4, 4)  # the terminal observation


def test_lifecycle_and_argument_errors(model):
    sampler = VARSampler(model)
    state = sampler.reset(labels(), make_generator(0))
    with pytest.raises(InvalidArgument, match="finished episode"):
        sampler.decode(state)
    for k in range(sampler.horizon):
        state = sampler.step(state, sampler.baseline_schedule()[k].expand(B, -1))
    with pytest.raises(InvalidArgument, match="episode is over"):
        sampler.step(state, sampler.baseline_schedule()[0].expand(B, -1))
    with pytest.raises(InvalidArgument, match="labels"):
        sampler.reset(torch.tensor([0, NUM_CLASSES]), make_generator(0))
    with pytest.raises(InvalidArgument, match=r"top_k must be an int in \[0, 16\)"):
        VARSampler(model, top_k=V)
    with pytest.raises(InvalidArgument, match="top_p"):
        VARSampler(model, top_p=0.0)
    with pytest.raises(InvalidArgument, match="cfg_scale"):
        VARSampler(model, cfg_scale=-1.0)
