"""A Stable Diffusion 3 flow transformer (`SD3Transformer2DModel` + `AutoencoderKL`) as a generator of the flow paradigm.

`DiffusersSD3` gives the pair the shipped flow DiT's call signature, `model(x_t, t, labels) -> (velocity, features)`,
so the existing `FlowSampler` (Euler = "ddim" on the linear path, or DPM-Solver++(2M); per-lane time and CFG knobs,
projection, NFE accounting) drives the real model. The condition is a prompt, not a class: the model holds a
`PromptTable` of C prompts' text-encoder outputs, the env's labels 0 .. C - 1 pick a row, and the null class C is the
empty prompt, the unconditional pass of classifier-free guidance (as `StableDiffusion3Pipeline` encodes
`negative_prompt=""`). `DiffusersSD3Sampler` is `FlowSampler` over latents, with the scheduler's own time grid as the
baseline, so a zero action is SD3's `FlowMatchEulerDiscreteScheduler` loop.

What maps to what (SD3-medium: latent 16 x 128 x 128, patch 2, 24 blocks of width 1536, shift 3):

| sampler side | model side |
|---|---|
| time t in [0, 1] (0: noise, 1: data), x_t = t x + (1 - t) noise | sigma = 1 - t, x_sigma = (1 - sigma) x + sigma noise; timestep T sigma (T = 1000) |
| velocity x - noise (the linear path's target) | minus the transformer's output (it predicts noise - x) |
| label y in [0, C) | `encoder_hidden_states` = `prompts.embeds[y]` (C, L, E), `pooled_projections` = `prompts.pooled[y]` |
| null class C (CFG) | the empty prompt's pair (`prompts.null_embeds`, `prompts.null_pooled`) |
| CFG weight w: cond + w (cond - uncond) | diffusers' guidance_scale s = w + 1 (SD3's default 7.0 is w = 6) |
| features (D, g', g') | the image-token hidden states after block `feature_block` (forward hook; the blocks return (context, image tokens)), (B, N, D) laid out on their (D, g, g) grid, average-pooled to g' = `feature_grid` |
| baseline time grid | t_k = 1 - sigma_k, the scheduler's `set_timesteps(N)` sigmas (its shift included) and the terminal 0 |
| decode | `vae.decode(latent / scaling_factor + shift_factor)` (SD3's VAE: 1.5305, 0.0609), then (x / 2 + 0.5).clamp(0, 1) |

Euler on the linear path is the first-order DPM-Solver++ update the sampler already has ("ddim"): x_next =
(sigma' / sigma) x + (1 - sigma' / sigma) x0 = x + (sigma' - sigma) v, the scheduler's step. So "ddim" is the default
solver here, and with the default baseline a zero action reproduces `FlowMatchEulerDiscreteScheduler` to float
tolerance (tests/adapters/test_diffusers_sd3.py).

Loading: `from_pretrained(directory)` reads diffusers' pipeline layout (`transformer/`, `vae/`, optional `scheduler/`;
the text encoders are not read) with `local_files_only=True`, and the prompt table from `prompts.safetensors` there
(or `prompts=`); or build `DiffusersSD3(transformer, vae, prompts, scheduler)` from ready objects. Without a
scheduler, SD3's (`FlowMatchEulerDiscreteScheduler(shift=3.0)`) is assumed. diffusers is imported when a model is
built, never before.

Letters: B lanes, C prompts, L prompt tokens, E prompt-token width, P pooled width, g latent side / patch (token
grid), D transformer width, N = g*g tokens.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adagen_env.adapters.common import (
    LatentConfig,
    LatentModel,
    LatentODESampling,
    Layout,
    PromptTable,
    check_components,
    check_feature_options,
    check_latent_shape,
    check_prompt_widths,
    class_name,
    pool_tokens,
    require_diffusers,
)
from adagen_env.errors import InvalidArgument
from adagen_env.samplers.flow import FlowSampler

LAYOUT = Layout(
    adapter="SD3",
    model_classes=("SD3Transformer2DModel",),
    model_description="an SD3Transformer2DModel",
    decoder="vae",
    decoder_class="AutoencoderKL",
    decoder_role="SD3 needs its AutoencoderKL to decode latents",
    prompts=True,
)
SCHEDULER = "FlowMatchEulerDiscreteScheduler"
"""The scheduler class whose time grid the baseline takes; SD3's default is `shift=3.0`."""
REFUSED_SCHEDULER_OPTIONS = {
    "use_dynamic_shifting": "resolution-dependent shifting (mu) is not served",
    "invert_sigmas": "inverted sigmas belong to another model family (Mochi)",
    "stochastic_sampling": "stochastic sampling is not an ODE; the env's transitions are deterministic",
}


@dataclass
class DiffusersSD3Config(LatentConfig):
    """What the sampler and the env read about an adapted SD3 transformer: `LatentConfig`'s fields (`num_classes`:
    the table's prompts; `feature_block`: the block whose image-token output the policy sees)."""


def _scheduler_of(scheduler: Any) -> Any:
    """A fresh `FlowMatchEulerDiscreteScheduler` from an object, a config dict, or None (SD3's, shift 3)."""
    diffusers = require_diffusers()
    if scheduler is None:
        scheduler = {"_class_name": SCHEDULER, "shift": 3.0}
    if isinstance(scheduler, dict):
        name = scheduler.get("_class_name", SCHEDULER)
        if name != SCHEDULER:
            raise InvalidArgument(
                f"scheduler {name} is not a {SCHEDULER}: another model family (SD3 samples on the "
                "flow-matching sigmas of its own scheduler)"
            )
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(scheduler)
    if not isinstance(scheduler, diffusers.FlowMatchEulerDiscreteScheduler):
        raise InvalidArgument(
            f"scheduler {class_name(scheduler)} is not a {SCHEDULER}: another model family (SD3 "
            "samples on the flow-matching sigmas of its own scheduler)"
        )
    for option, why in REFUSED_SCHEDULER_OPTIONS.items():
        if scheduler.config.get(option):
            raise InvalidArgument(f"scheduler option {option}=True: {why}")
    return copy.deepcopy(scheduler)


class DiffusersSD3(LatentModel):
    """A diffusers SD3 flow transformer, its VAE and a prompt table with the shipped flow DiT's interface (see the
    module docstring).

    `forward(x, t, y)` takes latents x (B, C_lat, g p, g p), times t (B,) in [0, 1] on the linear path and labels y
    (B,) in [0, C] (C: the empty prompt) and returns the velocity (B, C_lat, g p, g p) and the features
    (B, D, feature_grid, feature_grid), both float32 whatever the models' dtype.

    Args:
        transformer: a `diffusers.SD3Transformer2DModel`.
        vae: its `diffusers.AutoencoderKL` (SD3's has `scaling_factor` 1.5305 and `shift_factor` 0.0609).
        prompts: the `PromptTable` the labels index (embeds (C, L, joint_attention_dim), pooled
            (C, pooled_projection_dim), and the empty prompt's pair).
        scheduler: a `FlowMatchEulerDiscreteScheduler`, its config dict, or None for SD3's (shift 3); its
            `set_timesteps` grid is the baseline.
        feature_block: the block whose image-token hidden states are the features (-1: the last).
        feature_grid: side of the average-pooled feature grid, at most the token grid g; None: min(g, 8)
            (SD3-medium at 1024 px: 1536 x 8 x 8 from 64 x 64 tokens).
        decode_batch: latents decoded per VAE call (bounds the decoder's memory).
    """

    paradigm = "flow"
    """The env paradigm this model serves (`AdaGen/SiT-v0`)."""
    layout = LAYOUT

    def __init__(
        self,
        transformer: nn.Module,
        vae: nn.Module | None,
        prompts: PromptTable,
        scheduler: Any = None,
        feature_block: int = -1,
        feature_grid: int | None = None,
        decode_batch: int = 16,
    ) -> None:
        super().__init__()
        check_components(
            transformer, vae, LAYOUT, "a diffusers SD3Transformer2DModel", "class-conditional DiTs go to AdaGen/DiT-v0"
        )
        tc, vc = transformer.config, vae.config
        channels, side, patch = check_latent_shape(transformer, vae)
        grid = side // patch
        if tc.pos_embed_max_size is not None and grid > tc.pos_embed_max_size:
            raise InvalidArgument(
                f"latent shape not served: the {grid}x{grid} token grid exceeds the positional "
                f"embedding's {tc.pos_embed_max_size}x{tc.pos_embed_max_size}"
            )
        if int(transformer.out_channels) != channels:
            raise InvalidArgument(
                f"latent shape not served: the transformer outputs {transformer.out_channels} "
                f"channels; its velocity must have the latent's {channels}"
            )
        prompts = check_prompt_widths(
            prompts,
            int(tc.joint_attention_dim),
            int(tc.pooled_projection_dim),
            "SD3 transformer (joint_attention_dim, pooled_projection_dim)",
        )
        depth = len(transformer.transformer_blocks)
        feature_grid = check_feature_options(depth, grid, feature_block, feature_grid, decode_batch)
        self.scheduler = _scheduler_of(scheduler)
        self.transformer, self.vae = transformer, vae
        self.decode_batch, self.grid = decode_batch, grid
        self.hold_prompts(prompts)
        upsampling = 2 ** (len(vc.block_out_channels) - 1)
        self.config = DiffusersSD3Config(
            num_classes=prompts.num_prompts,
            channels=channels,
            resolution=side,
            image_resolution=side * upsampling,
            patch=patch,
            width=int(transformer.inner_dim),
            depth=depth,
            num_train_timesteps=int(self.scheduler.config.num_train_timesteps),
            feature_block=feature_block % depth,
            feature_grid=feature_grid,
        )
        self.hook_features(transformer.transformer_blocks[feature_block])

    # -- what the sampler reads (and `LatentModel`'s shapes, dtype and decoding) --------------------
    def sigmas(self, num_steps: int) -> torch.Tensor:
        """(num_steps + 1,) float32 sigmas of the scheduler's `set_timesteps(num_steps)`, from 1 to the terminal 0."""
        self.scheduler.set_timesteps(num_steps)
        return self.scheduler.sigmas.float().cpu()

    def _capture(self, module: nn.Module, args: Any, output: tuple[torch.Tensor | None, torch.Tensor]) -> None:
        self._captured = output[1]  # (context tokens or None, image tokens (B, N, D))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        timestep = (1 - t.float()) * self.config.num_train_timesteps  # T sigma
        self._captured = None
        out = self.transformer(
            x.to(self.dtype),
            encoder_hidden_states=self.prompt_embeds[y].to(self.dtype),
            pooled_projections=self.pooled_prompt_embeds[y].to(self.dtype),
            timestep=timestep,
            return_dict=False,
        )[0]
        tokens, self._captured = self._captured, None
        return -out.float(), pool_tokens(tokens, self.grid, self.config.feature_grid)


class DiffusersSD3Sampler(LatentODESampling, FlowSampler):
    """`FlowSampler` over a `DiffusersSD3`: latent noise at reset, VAE decoding, the scheduler's time grid as baseline.

    Same arguments as `ODESampler`, with SD3's defaults: `solver="ddim"` (Euler on the linear path, the scheduler's
    update) and `cfg_scale=6.0` (diffusers' guidance_scale 7.0; w = s - 1). The minimum gap between times is at most
    half the baseline grid's smallest step, so the projection leaves the scheduler's grid as it is.
    """

    def __init__(
        self,
        model: DiffusersSD3,
        num_steps: int = 8,
        solver: str = "ddim",
        cfg_scale: float | None = 6.0,
        device: torch.device | str = "cpu",
        precision: str = "float32",
    ) -> None:
        if not isinstance(model, DiffusersSD3):
            raise InvalidArgument(f"DiffusersSD3Sampler needs a DiffusersSD3, got {class_name(model)}")
        super().__init__(
            model, num_steps=num_steps, solver=solver, cfg_scale=cfg_scale, device=device, precision=precision
        )
        self.grid_times = 1 - model.sigmas(num_steps)
        """(H,) the baseline times on the linear path, 0 (noise) to 1 (data)."""
        gaps = self.grid_times[1:] - self.grid_times[:-1]
        if not bool((gaps > 0).all()):
            raise InvalidArgument(
                f"the scheduler's {num_steps}-step sigmas do not strictly decrease: {model.sigmas(num_steps).tolist()}"
            )
        self.min_gap = min(self.min_gap, float(gaps.min()) / 2)

    def baseline_values(self) -> torch.Tensor:
        """The scheduler's time grid t_k = 1 - sigma_k, constant CFG."""
        values = super().baseline_values()
        values[:, 0] = self.grid_times.to(values.device)
        return values


DiffusersSD3.sampler_cls = DiffusersSD3Sampler
"""The sampler an env builds around this model (`AdaGenVectorEnv` reads `model.sampler_cls`)."""


def from_pretrained(path: str | Path, **kwargs: Any) -> DiffusersSD3:
    """`DiffusersSD3.from_pretrained` (the entry `adagen_env.adapters.load_pretrained` calls)."""
    return DiffusersSD3.from_pretrained(path, **kwargs)


__all__ = ["DiffusersSD3", "DiffusersSD3Config", "DiffusersSD3Sampler", "PromptTable", "from_pretrained"]
