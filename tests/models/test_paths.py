"""The probability paths: each target's data estimate inverts its training pair; the config picks the target."""

import dataclasses

import pytest
import torch

from adagen_env.errors import InvalidArgument
from adagen_env.models import DiT, DiTConfig
from adagen_env.models.paths import VP_PREDICTIONS, LinearPath, VPPath, path_for
from adagen_env.samplers import DiffusionSampler, FlowSampler
from adagen_env.zoo import continuous_loss

TINY_DIT = DiTConfig(resolution=16, width=32, depth=1, heads=2)


@pytest.mark.parametrize("path", [*(VPPath(prediction=p) for p in VP_PREDICTIONS), LinearPath()], ids=str)
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


def test_samplers_and_the_zoo_loss_follow_the_config():
    v_config = dataclasses.replace(TINY_DIT, prediction="v")
    assert path_for("diffusion", v_config).prediction == "v"
    assert DiffusionSampler(DiT(v_config)).path.prediction == "v"
    assert DiffusionSampler(DiT(TINY_DIT)).path.prediction == "epsilon"
    assert isinstance(FlowSampler(DiT(v_config)).path, LinearPath)
    # The same weights under either config regress the same draws onto different targets.
    v_model, eps_model = DiT(v_config), DiT(TINY_DIT)
    eps_model.load_state_dict(v_model.state_dict())
    images, labels = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    loss_fn = continuous_loss("diffusion")
    losses = [loss_fn(m, images, labels, torch.Generator().manual_seed(0)) for m in (v_model, eps_model)]
    assert torch.isfinite(losses[0]) and not torch.isclose(losses[0], losses[1])
