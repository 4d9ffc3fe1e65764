"""Shared fixtures: tiny random-init generators of every paradigm, so mechanics tests run in milliseconds."""

from __future__ import annotations

import pytest
import torch

from adagen_env.envs import DiTVectorEnv, MaskGITVectorEnv, SiTVectorEnv, VARVectorEnv
from adagen_env.models import DiT, DiTConfig
from adagen_env.models.maskgit import MaskGIT, MaskGITConfig
from adagen_env.models.var import VAR, VARConfig
from adagen_env.models.vq import VQConfig
from adagen_env.samplers import DiffusionSampler, FlowSampler
from adagen_env.samplers.maskgit import MaskGITSampler
from adagen_env.samplers.var import VARSampler

TINY_DIT = DiTConfig(resolution=16, width=32, depth=1, heads=2)


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    """Tiny tensors gain nothing from threads, and on a busy 2-core machine OpenMP barriers cost ~100x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def sb3_logdir(tmp_path_factory):
    """SB3 models that learn without a logger of their own make a log folder; keep those out of the system temp dir."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3")))
        yield


def tiny_dit(seed: int = 0) -> DiT:
    torch.manual_seed(seed)
    model = DiT(TINY_DIT)
    # Break adaLN-zero so the random network's output depends on its inputs.
    for p in model.parameters():
        if p.abs().sum() == 0:
            torch.nn.init.normal_(p, std=0.05)
    return model


def tiny_maskgit_sampler() -> MaskGITSampler:
    torch.manual_seed(0)
    tokenizer = VQConfig(resolution=16, base_channels=8, codebook_size=16, code_dim=4)
    model = MaskGIT(MaskGITConfig(tokenizer=tokenizer, width=32, depth=1, heads=2, num_classes=8))
    return MaskGITSampler(model, num_steps=4)


def tiny_var_sampler() -> VARSampler:
    torch.manual_seed(0)
    tokenizer = VQConfig(resolution=16, base_channels=8, codebook_size=16, code_dim=4, scales=(1, 2, 4))
    model = VAR(VARConfig(tokenizer=tokenizer, width=32, depth=1, heads=2, num_classes=8))
    return VARSampler(model, top_k=4)


@pytest.fixture(params=[DiffusionSampler, FlowSampler], ids=["diffusion", "flow"])
def tiny_ode_sampler(request: pytest.FixtureRequest):
    return request.param(tiny_dit(), num_steps=4)


TINY_CASES = {
    "dit": (DiTVectorEnv, lambda: DiffusionSampler(tiny_dit(), num_steps=4)),
    "sit": (SiTVectorEnv, lambda: FlowSampler(tiny_dit(), num_steps=4)),
    "maskgit": (MaskGITVectorEnv, tiny_maskgit_sampler),
    "var": (VARVectorEnv, tiny_var_sampler),
}


@pytest.fixture(params=sorted(TINY_CASES))
def tiny_case(request: pytest.FixtureRequest):
    """(vector env class, a tiny sampler of its paradigm)."""
    env_cls, make_sampler = TINY_CASES[request.param]
    return env_cls, make_sampler()
