"""The probability paths: each target's data estimate inverts its training pair; the config picks the target;
log-SNR inverts; the training times follow the chosen distribution."""

import dataclasses

import pytest
import torch

from adagen_env.errors import InvalidArgument
from adagen_env.models import DiT, DiTConfig
from adagen_env.models.paths import VP_PREDICTIONS, VP_SCHEDULES, LinearPath, VPPath, log_snr, path_for, time_at_log_snr
from adagen_env.samplers import DiffusionSampler, FlowSampler
from adagen_env.zoo import LOG_SNR_STD, continuous_loss

TINY_DIT = DiTConfig(resolution=16, width=32, depth=1, heads=2)


VP_PATHS = [VPPath(prediction=p, schedule=s) for p in VP_PREDICTIONS for s in VP_SCHEDULES]


@pytest.mark.parametrize("path", [*VP_PATHS, LinearPath()], ids=str)
def test_data_estimate_from_the_exact_target_recovers_the_data(path):
    g = torch.Generator().manual_seed(0)
    x_data, noise = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0.05, 0.3, 0.6, 0.95])
    x_t, target = path.training_pair(x_data, noise, t)
    torch.testing.assert_close(path.to_data(x_t, target, t), x_data, atol=1e-3, rtol=1e-3)


def test_v_target_is_alpha_noise_minus_sigma_data():
    path, x, n, t = VPPath(prediction="v"), torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0), torch.tensor([0.5])
    assert torch.allclose(path.training_pair(x, n, t)[1], path.alpha(t) * 2.0 - path.sigma(t) * 1.0)


def test_an_unknown_target_is_refused_by_name():
    with pytest.raises(InvalidArgument, match="'x0'"):
        VPPath(prediction="x0")
    with pytest.raises(InvalidArgument, match="DiTConfig.prediction"):
        DiTConfig(prediction="x0")
    with pytest.raises(InvalidArgument, match="DiTConfig.noise_schedule.*'sqrt'"):
        DiTConfig(noise_schedule="sqrt")


def test_samplers_and_the_zoo_loss_follow_the_config():
    v_config = dataclasses.replace(TINY_DIT, prediction="v")
    assert path_for("diffusion", v_config).prediction == "v"
    assert DiffusionSampler(DiT(v_config)).path.prediction == "v"
    assert DiffusionSampler(DiT(TINY_DIT)).path.prediction == "epsilon"
    assert isinstance(FlowSampler(DiT(v_config)).path, LinearPath)
    assert DiffusionSampler(DiT(dataclasses.replace(TINY_DIT, noise_schedule="cosine"))).path.schedule == "cosine"
    assert DiffusionSampler(DiT(TINY_DIT)).path.schedule == "linear"
    # The same weights under either config regress the same draws onto different targets.
    v_model, eps_model = DiT(v_config), DiT(TINY_DIT)
    eps_model.load_state_dict(v_model.state_dict())
    images, labels = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    loss_fn = continuous_loss("diffusion")
    losses = [loss_fn(m, images, labels, torch.Generator().manual_seed(0)) for m in (v_model, eps_model)]
    assert torch.isfinite(losses[0]) and not torch.isclose(losses[0], losses[1])


def test_cosine_schedule_ends_where_the_linear_one_does_and_is_centred():
    linear, cosine, ends = VPPath(), VPPath(schedule="cosine"), torch.tensor([0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(cosine.alpha(ends), linear.alpha(ends))
    torch.testing.assert_close(cosine.alpha(ends) ** 2 + cosine.sigma(ends) ** 2, torch.ones(2, dtype=torch.float64))
    assert abs(log_snr(cosine, torch.tensor(0.5)).item()) < 0.05 and log_snr(linear, torch.tensor(0.5)).item() < -2


@pytest.mark.parametrize("path", [VPPath(), VPPath(schedule="cosine"), LinearPath()], ids=str)
def test_time_at_log_snr_inverts_log_snr(path):
    target = torch.tensor([-8.0, -2.0, 0.0, 3.0, 8.0], dtype=torch.float64)
    torch.testing.assert_close(log_snr(path, time_at_log_snr(path, target)), target)


class _TimeRecorder(torch.nn.Module):
    """Stands in for a DiT in the zoo loss: predicts zeros and keeps the times it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.config, self.null_class, self.times = TINY_DIT, TINY_DIT.num_classes, []

    def forward(self, x, t, labels):
        self.times.append(t)
        return torch.zeros_like(x), None


def _training_times(path_name: str, time_sampling: str) -> torch.Tensor:
    model, images = _TimeRecorder(), torch.rand(4096, 3, 2, 2)
    continuous_loss(path_name, time_sampling=time_sampling)(
        model, images, torch.zeros(4096, dtype=torch.long), torch.Generator().manual_seed(0)
    )
    return model.times[0]


def test_log_snr_normal_times_are_logit_normal_on_the_flow_path():
    torch.testing.assert_close(_training_times("flow", "log-snr-normal"), _training_times("flow", "logit-normal"))


def test_log_snr_normal_times_have_normal_log_snr_on_the_vp_path():
    lam = log_snr(VPPath(), _training_times("diffusion", "log-snr-normal"))
    assert abs(lam.median().item()) < 0.15 and abs(lam.std().item() - LOG_SNR_STD) < 0.15
    # logit-normal times on the VP path sit far on the noisy side, which is why the option exists
    assert log_snr(VPPath(), _training_times("diffusion", "logit-normal")).median() < -2
