"""Static schedule families: defaults are the baseline, hand-made members are valid, errors name the problem."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_CASES, tiny_dit

from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.samplers import DiffusionSampler, FlowSampler, make_generator
from adagen_env.samplers.schedules import (
    HAND_MADE,
    SPACINGS,
    cfg_curve,
    check_schedule,
    family_key,
    load_schedule,
    ode_times,
    save_schedule,
    search_space,
    search_start,
    static_schedule,
)


@pytest.mark.parametrize("case", sorted(TINY_CASES))
def test_family_defaults_are_the_baseline_and_every_member_runs(case: str) -> None:
    sampler = TINY_CASES[case][1]()
    assert torch.allclose(static_schedule(sampler), sampler.baseline_values(), atol=1e-6)
    labels = torch.tensor([0, 1])
    for name, params in HAND_MADE[family_key(sampler)].items():
        schedule = static_schedule(sampler, **params)
        assert schedule.shape == (sampler.horizon, len(sampler.knob_specs)), name
        images = sampler.sample(labels, make_generator(0), schedule)
        assert images.shape == (2, *sampler.image_shape) and torch.isfinite(images).all(), name
    start = search_start(sampler)
    for name, values in search_space(sampler).items():
        assert start[name] in values
    static_schedule(sampler, **start)  # the search's start is a member of the family


@pytest.mark.parametrize("sampler_cls", [DiffusionSampler, FlowSampler])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_time_grids_run_from_noise_to_data_strictly_monotone(sampler_cls, spacing: str) -> None:
    sampler = sampler_cls(tiny_dit(), num_steps=6)
    times = ode_times(sampler, spacing, shift=3.0, rho=7.0)
    path = sampler.path
    assert times.shape == (7,) and times[0] == path.noise_end and times[-1] == path.data_end
    progress = (times - path.noise_end) / (path.data_end - path.noise_end)
    assert (progress.diff() > 0).all(), progress


def test_shift_moves_steps_towards_the_noise_and_one_is_uniform() -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=4)
    uniform = ode_times(sampler, "uniform")
    assert torch.allclose(ode_times(sampler, "shift", shift=1.0), uniform)
    assert (ode_times(sampler, "shift", shift=3.0)[1:-1] < uniform[1:-1]).all()  # noise is at t = 0 on this path
    assert (ode_times(sampler, "shift", shift=0.5)[1:-1] > uniform[1:-1]).all()


def test_logsnr_grid_is_uniform_in_log_snr_inside_the_ends() -> None:
    sampler = DiffusionSampler(tiny_dit(), num_steps=6)
    times = ode_times(sampler, "logsnr").double()
    p = sampler.path
    lam = 2 * (torch.log(p.alpha(times[1:-1])) - torch.log(p.sigma(times[1:-1])))
    steps = lam.diff()
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-4)


def test_cfg_shapes_keep_the_mean_or_guide_only_in_the_interval() -> None:
    progress = torch.linspace(0, 1, 11)
    assert torch.allclose(cfg_curve("ramp", 2.0, progress).mean(), torch.tensor(2.0))
    assert torch.equal(cfg_curve("constant", 2.0, progress), torch.full((11,), 2.0))
    interval = cfg_curve("interval", 2.0, progress)
    assert interval[0] == 0 and interval[5] == 2.0 and interval[-1] == 0


def test_bad_parameters_are_refused_with_their_name() -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=4)
    with pytest.raises(InvalidArgument, match="spacing"):
        static_schedule(sampler, spacing="karras")
    with pytest.raises(InvalidArgument, match="cfg_shape"):
        static_schedule(sampler, cfg_shape="cosine")
    with pytest.raises(InvalidArgument, match="shift"):
        static_schedule(sampler, spacing="shift", shift=0.0)
    with pytest.raises(InvalidArgument, match="mask_power.*valid"):
        static_schedule(sampler, mask_power=2.0)
    maskgit = TINY_CASES["maskgit"][1]()
    with pytest.raises(InvalidArgument, match="mask"):
        static_schedule(maskgit, mask="exp")
    unguided = FlowSampler(tiny_dit(), num_steps=4, cfg_scale=None)
    assert static_schedule(unguided).shape == (5, 1) and "cfg" not in search_space(unguided)


def test_schedule_files_round_trip_and_refuse_what_does_not_fit(tmp_path) -> None:
    sampler = FlowSampler(tiny_dit(), num_steps=4)
    table = static_schedule(sampler, spacing="shift", shift=2.0, cfg=1.5)
    path = save_schedule(tmp_path / "s" / "shift2.json", sampler, table, env_id="AdaGen/SiT-v0", source="test")
    assert torch.equal(load_schedule(path, sampler), table)
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(CheckpointError, match="horizon"):
        load_schedule(path, FlowSampler(tiny_dit(), num_steps=3))
    with pytest.raises(CheckpointError, match="knob_names"):
        load_schedule(path, FlowSampler(tiny_dit(), num_steps=4, cfg_scale=None))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_schedule(tmp_path / "missing.json", sampler)
    (tmp_path / "other.json").write_text('{"schedule": [[1, 1]]}')
    with pytest.raises(CheckpointError, match="not a schedule file"):
        load_schedule(tmp_path / "other.json", sampler)
    with pytest.raises(InvalidArgument, match=r"shape \(5, 2\)"):
        check_schedule(sampler, table[:4])
    bad = table.clone()
    bad[2, 0] = 1.5  # a time past the noise end
    with pytest.raises(InvalidArgument, match="knob 'time' at step 2 is 1.5"):
        check_schedule(sampler, bad)
    bad[2, 0] = float("nan")
    with pytest.raises(InvalidArgument, match="knob 'time' at step 2"):
        save_schedule(tmp_path / "nan.json", sampler, bad)
