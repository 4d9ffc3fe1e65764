"""The DiT's fused attention (`SelfAttention`, through SDPA) against `nn.MultiheadAttention` on the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adagen_env import zoo
from adagen_env.errors import InvalidArgument
from adagen_env.models.dit import SelfAttention


class _Reference(nn.Module):
    """`nn.MultiheadAttention` holding a `SelfAttention`'s weights, called as the DiT block calls it."""

    def __init__(self, attn: SelfAttention) -> None:
        super().__init__()
        width = attn.out_proj.in_features
        self.mha = nn.MultiheadAttention(width, attn.heads, batch_first=True)
        self.mha.load_state_dict(attn.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


def test_parameters_and_seeded_init_are_multihead_attentions():
    torch.manual_seed(3)
    ours = SelfAttention(32, 4)
    torch.manual_seed(3)
    theirs = nn.MultiheadAttention(32, 4, batch_first=True)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name


def test_width_must_split_into_heads():
    with pytest.raises(InvalidArgument, match="divisible by heads"):
        SelfAttention(30, 4)


def test_training_mode_gradients_match():
    torch.manual_seed(0)
    attn = SelfAttention(32, 4)
    ref = _Reference(attn)
    x = torch.randn(3, 10, 32, requires_grad=True)
    attn(x).square().sum().backward()
    ours = x.grad.clone()
    x.grad = None
    ref(x).square().sum().backward()
    torch.testing.assert_close(ours, x.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["diffusion", "flow"])
def test_shipped_dit_output_equals_multihead_attention(name):
    """Shipped weights load unchanged; prediction and features equal the MultiheadAttention DiT's to ~1e-5."""
    model = zoo.load(name)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 16, 16, generator=g)
    t = torch.rand(16, generator=g)
    y = torch.arange(16) % (model.null_class + 1)  # every class and the null class
    with torch.no_grad():
        out, feats = model(x, t, y)
        for block in model.blocks:
            block.attn = _Reference(block.attn)
        ref_out, ref_feats = model(x, t, y)
    assert not torch.equal(out, torch.zeros_like(out))
    torch.testing.assert_close(out, ref_out, rtol=0, atol=2e-5)
    torch.testing.assert_close(feats, ref_feats, rtol=0, atol=2e-5)
