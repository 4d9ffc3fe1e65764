"""The AdaGen policy network as an SB3 features extractor, and policies whose untrained output is the baseline.

Paper: "AdaGen: Learning Adaptive Policy for Image Synthesis" (arXiv 2603.06993); network from AdaNAT
`libs/policy.py` / AdaGen `core/policy_backbone.py`, scaled to our feature sizes:

    features (B, C, h, w) -> tokens (B, N, C) -> Linear C->D per token -> AdaLN(c)     # (B, N, D)
    -> (B, D, h, w) -> depthwise Conv3x3 stride 2 -> GELU -> Conv1x1 D->D/4 -> GELU -> flatten
    -> [concat prev_action] -> Linear -> AdaLN(c) -> GELU -> Linear -> D -> AdaLN(c) -> GELU   # (B, D)

where c = MLP(sinusoidal(step)) conditions every AdaLN: LayerNorm without affine, then `* (1 + scale) + shift`
with `[shift, scale] = Linear(SiLU(c))` zero-initialised (DiT's adaLN-Zero). The anchor's widths are D = 512 for
C = 768..1920 features on a 16x16 grid; ours are D = 128 for C = 128 on 8x8 (about 0.3M parameters).

Actor and critic each get their own trunk (`share_features_extractor=False`, as AdaNAT's separate value net).
The action head is zero-initialised and the exploration std fixed (log std not learned; a callback decays it),
so the untrained deterministic policy outputs exactly u = 0: the baseline schedule (STYLE.md 17).

Letters: B lanes, C feature channels, h/w feature grid, N = h*w tokens, D hidden width, H horizon, A actions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentMultiInputActorCriticPolicy
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from adagen_env.errors import InvalidArgument

DEFAULT_ACTION_STD = 0.6
"""Anchor's fixed exploration std (AdaNAT `action_std`), in raw residual units."""


def step_embedding(steps: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """DiT's sinusoidal embedding of (B,) integer steps -> (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=steps.device) / half)
    args = steps.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1) if dim % 2 else emb


class StepEmbedder(nn.Module):
    """Step index k -> conditioning vector c: sinusoidal(frequency_dim) -> Linear -> SiLU -> Linear. (B,) -> (B, D)."""

    def __init__(self, width: int, frequency_dim: int = 64) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        return self.mlp(step_embedding(steps, self.frequency_dim))


class AdaLN(nn.Module):
    """LayerNorm (no affine, eps 1e-6) modulated by c: `norm(x) * (1 + scale) + shift`, zero-initialised.

    x is (B, D) or (B, N, D); c is (B, Dc).
    """

    def __init__(self, width: int, cond_width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=-1)  # (B, D) each
        if x.ndim == 3:
            shift, scale = shift[:, None], scale[:, None]  # (B, 1, D)
        return self.norm(x) * (1 + scale) + shift


class FeatureTrunk(nn.Module):
    """The convolutional half: per-token embedding, AdaLN, depthwise + pointwise conv. (B, C, h, w) -> (B, F)."""

    def __init__(self, channels: int, width: int, conv_channels: int) -> None:
        super().__init__()
        self.embed = nn.Linear(channels, width) if channels != width else nn.Identity()
        self.adaln = AdaLN(width, width)
        self.conv = nn.Sequential(
            nn.Conv2d(width, width, 3, stride=2, padding=1, groups=width),
            nn.GELU(),
            nn.Conv2d(width, conv_channels, 1),
            nn.GELU(),
            nn.Flatten(),
        )

    def forward(self, features: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b, _, h, w = features.shape
        tokens = features.flatten(2).transpose(1, 2)  # (B, N, C)
        tokens = self.adaln(self.embed(tokens), c)  # (B, N, D)
        grid = tokens.transpose(1, 2).reshape(b, -1, h, w)  # (B, D, h, w)
        return self.conv(grid)  # (B, conv_channels * ceil(h/2) * ceil(w/2))


class AdaGenExtractor(BaseFeaturesExtractor):
    """The anchor's policy backbone up to its last AdaLN + GELU; one instance per trunk (actor, critic).

    Args:
        observation_space: `Dict(features=Box (C, h, w), step=Discrete(H)[, prev_action=Box (A,)])`.
        hidden: D, the token width and the output size (anchor: 512).
        conv_channels: channels of the 1x1 conv (anchor: 128 = D / 4); D // 4 when None.
        mlp_width: width of the first MLP layer (anchor: 1024 = 2 D); 2 * D when None.
        frequency_dim: size of the sinusoidal step embedding (anchor: 256).
        step_conditioning: False feeds step 0 to the step embedder at every step, so the AdaLN modulations carry
            no step information (the step-conditioning ablation).

    `step` arrives as SB3's one-hot encoding of the Discrete space (B, H) and is turned back into indices;
    `prev_action` (present under action smoothing) joins the MLP input.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        hidden: int = 128,
        conv_channels: int | None = None,
        mlp_width: int | None = None,
        frequency_dim: int = 64,
        step_conditioning: bool = True,
    ) -> None:
        if not isinstance(observation_space, spaces.Dict) or not {"features", "step"} <= set(observation_space.spaces):
            raise InvalidArgument(
                f"AdaGenExtractor needs a Dict observation space with 'features' and 'step', got {observation_space}"
            )
        feature_space, step_space = observation_space["features"], observation_space["step"]
        if len(feature_space.shape) != 3 or not isinstance(step_space, spaces.Discrete):
            raise InvalidArgument(
                f"AdaGenExtractor needs features (C, h, w) and a Discrete step, got {feature_space} and {step_space}"
            )
        super().__init__(observation_space, features_dim=hidden)
        conv_channels = conv_channels or max(1, hidden // 4)
        mlp_width = mlp_width or 2 * hidden
        self.horizon = int(step_space.n)
        self.step_conditioning = step_conditioning
        self.prev_action_dim = (
            int(observation_space["prev_action"].shape[0]) if "prev_action" in observation_space.spaces else 0
        )
        channels = feature_space.shape[0]
        # One sub-module per Dict key (SB3 `CombinedExtractor`); the head merges them.
        self.extractors = nn.ModuleDict(
            {"features": FeatureTrunk(channels, hidden, conv_channels), "step": StepEmbedder(hidden, frequency_dim)}
        )
        with torch.no_grad():  # size of the flattened conv output, from one forward (SB3 `NatureCNN`)
            sample = torch.as_tensor(feature_space.sample()[None]).float()
            flat = self.extractors["features"](sample, torch.zeros(1, hidden)).shape[1]
        self.fc1 = nn.Linear(flat + self.prev_action_dim, mlp_width)
        self.adaln1 = AdaLN(mlp_width, hidden)
        self.fc2 = nn.Linear(mlp_width, hidden)
        self.adaln2 = AdaLN(hidden, hidden)
        self.act = nn.GELU()
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Anchor init: xavier-uniform Linear and Conv, step MLP N(0, 0.02), zero AdaLN modulations."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.extractors["step"].mlp:
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, AdaLN):
                nn.init.zeros_(module.modulation[-1].weight)
                nn.init.zeros_(module.modulation[-1].bias)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        features = observations["features"].float()  # (B, C, h, w)
        steps = (
            observations["step"].reshape(features.shape[0], -1).argmax(dim=-1)
        )  # one-hot (B, H) or (B, 1, H) -> (B,)
        if not self.step_conditioning:
            steps = torch.zeros_like(steps)
        c = self.extractors["step"](steps)  # (B, D)
        x = self.extractors["features"](features, c)  # (B, F)
        if self.prev_action_dim:
            x = torch.cat([x, observations["prev_action"].float().reshape(x.shape[0], -1)], dim=-1)  # (B, F + A)
        x = self.act(self.adaln1(self.fc1(x), c))  # (B, 2D)
        return self.act(self.adaln2(self.fc2(x), c))  # (B, D)


def _baseline_start(policy: Any) -> None:
    """Zero the action head, freeze log std, and rebuild the optimiser over the trainable parameters."""
    nn.init.zeros_(policy.action_net.weight)
    nn.init.zeros_(policy.action_net.bias)
    if isinstance(getattr(policy, "log_std", None), nn.Parameter):
        policy.log_std.requires_grad_(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    policy.optimizer = policy.optimizer_class(
        params, lr=policy.optimizer.param_groups[0]["lr"], **policy.optimizer_kwargs
    )


def _policy_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.setdefault("features_extractor_class", AdaGenExtractor)
    kwargs.setdefault("share_features_extractor", False)
    kwargs.setdefault("net_arch", {"pi": [], "vf": []})
    kwargs.setdefault("ortho_init", False)  # orthogonal init would overwrite the anchor's (and adaLN-Zero)
    kwargs.setdefault("log_std_init", math.log(DEFAULT_ACTION_STD))
    return kwargs


class AdaGenPolicy(MultiInputActorCriticPolicy):
    """Actor-critic for PPO / A2C: two `AdaGenExtractor` trunks, zero action head, fixed exploration std.

    Defaults (each overridable through `policy_kwargs`): `features_extractor_class=AdaGenExtractor`,
    `share_features_extractor=False`, `net_arch=dict(pi=[], vf=[])`, `ortho_init=False`,
    `log_std_init=log(0.6)`. `log_std` has `requires_grad=False`; `StdSchedule` changes it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **_policy_defaults(kwargs))
        _baseline_start(self)


class AdaGenRecurrentPolicy(RecurrentMultiInputActorCriticPolicy):
    """sb3-contrib's LSTM actor-critic with `AdaGenExtractor` trunks, zero action head and fixed std."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs = _policy_defaults(kwargs)
        kwargs.setdefault("lstm_hidden_size", 64)
        super().__init__(*args, **kwargs)
        _baseline_start(self)


def zero_actor_output(model: Any) -> None:
    """Zero the last layer of an off-policy actor (SAC `actor.mu`, TD3 `actor.mu[-2]`) so it starts at u = 0.

    SAC and TD3 squash through tanh and rescale to the Box: a zero pre-tanh output is the Box's centre, 0.
    """
    actor = model.actor
    last = actor.mu if isinstance(actor.mu, nn.Linear) else [m for m in actor.mu if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    target = getattr(model, "actor_target", None)
    if target is not None:
        target.load_state_dict(actor.state_dict())
