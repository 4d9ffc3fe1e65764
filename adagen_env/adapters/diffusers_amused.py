"""aMUSEd (`UVit2DModel` + `VQModel`) as a generator of the masked-token (MaskGIT) paradigm.

`DiffusersAmused` gives the pair the shipped MaskGIT's interface, `model(ids, labels) -> (logits, features)` and a
`tokenizer` that decodes token grids, so the existing `MaskGITSampler` (per-lane mask ratio, re-mask temperature,
sampling temperature and CFG knobs, projection, NFE accounting) drives the real model. As for SD3, the condition is a
`PromptTable`: the env's labels 0 .. C - 1 pick one of C prompts' CLIP outputs, the null class C is the empty
prompt (`AmusedPipeline` encodes `negative_prompt=""`). `DiffusersAmusedSampler` is `MaskGITSampler` with
`AmusedScheduler`'s schedule as the baseline.

What maps to what (amused-256: 16 x 16 tokens, codebook 8192, mask id 8255, 22 layers of width 1024):

| sampler side | model side |
|---|---|
| ids (B, N), mask id | `input_ids` (B, g, g); the scheduler's `mask_token_id` (in [codebook_size, vocab_size)) |
| logits (B, N, V) | the transformer's (B, V, g, g) output (V = `codebook_size`), flattened row-major |
| label y in [0, C) | `encoder_hidden_states` = `prompts.embeds[y]` (C, 77, 768: CLIP's penultimate hidden states), `pooled_text_emb` = `prompts.pooled[y]` (C, 768: `text_embeds`, the pipeline's `prompt_embeds`) |
| null class C (CFG) | the empty prompt's pair |
| CFG weight w: cond + w (cond - uncond) | diffusers' guidance_scale s = w + 1 (aMUSEd's default 10 is w = 9) |
| features (D, g', g') | the hidden states after transformer layer `feature_block` (forward hook), (B, N', D) on the layers' (D, h, h) grid (h = g / 2 when the model downsamples), average-pooled to g' = `feature_grid` |
| micro-conditioning | the pipeline's defaults: (R, R, crop 0, 0, aesthetic score 6) |
| tokenizer.decode | `vqvae.decode(ids, force_not_quantize=True, shape=(B, g, g, latent_channels)).clip(0, 1)` (codebook lookup) |

Baseline (`AmusedScheduler`, per step k of H): mask_len_k = max(1, floor(N m((k + 1) / H))) tokens left masked, m the
scheduler's `masking_schedule` (cosine: cos(pi/2 r); linear: 1 - r), none after the last step; the re-mask
temperature of its `set_timesteps(H, temperature)` (default linspace(2, 0, H)); sampling temperature 1 (the
scheduler samples from the softmax); constant CFG. The env's projection caps mask_len at the masked count minus one
as the scheduler does; where only one token is left masked before the last step, the scheduler keeps it masked and
the env decodes it (no such step with the cosine at aMUSEd's sizes).

The draws differ in form, not in law: the scheduler samples tokens with `torch.multinomial` and perturbs confidences
with `gumbel_noise` from one generator; the sampler uses Gumbel-max (an exact categorical draw) and per-lane
streams (`LaneNoise`). Fed the same draws, a zero action reproduces the scheduler's loop token for token
(tests/adapters/test_diffusers_amused.py).

Loading: `from_pretrained(directory)` reads diffusers' pipeline layout (`transformer/`, `vqvae/`, optional
`scheduler/`; the text encoder is not read) with `local_files_only=True`, and the prompt table from
`prompts.safetensors` there (or `prompts=`). Without a scheduler, mask id `vocab_size - 1` and the cosine schedule
are assumed. diffusers is imported when a model is built, never before.

Letters: B lanes, C prompts, g token-grid side, N = g*g tokens, V codebook size, D transformer width.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adagen_env.adapters.common import (
    AdaptedConfig,
    AdaptedModel,
    Layout,
    PromptTable,
    check_components,
    check_feature_options,
    check_prompt_widths,
    class_name,
    pool_tokens,
    require_diffusers,
)
from adagen_env.errors import InvalidArgument
from adagen_env.samplers.maskgit import MAX_REMASK_TEMP, MaskGITSampler

LAYOUT = Layout(
    adapter="aMUSEd",
    model_classes=("UVit2DModel",),
    model_description="aMUSEd's UVit2DModel",
    decoder="vqvae",
    decoder_class="VQModel",
    decoder_role="aMUSEd needs its VQModel to decode tokens",
    prompts=True,
)
MICRO_CONDS = (0.0, 0.0, 6.0)
"""`AmusedPipeline`'s default crop coordinates (0, 0) and aesthetic score 6, after the image width and height."""


@dataclass
class VQDecoderConfig:
    """What the MaskGIT sampler reads of a tokenizer (`VQConfig`'s names)."""

    channels: int
    resolution: int
    """Side R of the decoded images."""
    grid: int
    """Token-grid side g."""
    grain_sigma: float = 0.0
    """No output grain (the shipped tokenizers' option)."""


class VQDecoder(nn.Module):
    """aMUSEd's `VQModel` as the sampler's tokenizer: `decode(ids)` maps (B, N) code ids to (B, 3, R, R) float32
    images in [0, 1], as `AmusedPipeline` decodes, in chunks of `decode_batch`."""

    def __init__(self, vqvae: nn.Module, config: VQDecoderConfig, decode_batch: int) -> None:
        super().__init__()
        self.vqvae, self.config, self.decode_batch = vqvae, config, decode_batch

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        g, channels = self.config.grid, int(self.vqvae.config.latent_channels)
        images = []
        for chunk in ids.split(self.decode_batch):
            b = chunk.shape[0]
            out = self.vqvae.decode(chunk.reshape(b, g, g), force_not_quantize=True, shape=(b, g, g, channels))
            images.append(out.sample.float())
        return torch.cat(images).clip(0, 1)


@dataclass
class DiffusersAmusedConfig(AdaptedConfig):
    """What the sampler and the env read about an adapted aMUSEd (`MaskGITSampler` reads `MaskGITConfig`'s names):
    `AdaptedConfig`'s fields (`num_classes`: the table's prompts; `depth`, `feature_block`: transformer layers) and
    the token layout."""

    tokenizer: VQDecoderConfig
    codebook_size: int
    mask_id: int
    masking_schedule: str
    layer_grid: int
    """Side h of the transformer layers' token grid (g, or g / 2 when the model downsamples)."""


def _scheduler_of(scheduler: Any, vocab_size: int) -> Any:
    """A fresh `AmusedScheduler` from an object, a config dict, or None (mask id vocab_size - 1, cosine)."""
    diffusers = require_diffusers()
    if scheduler is None:
        scheduler = {"_class_name": "AmusedScheduler", "mask_token_id": vocab_size - 1}
    if isinstance(scheduler, dict):
        if scheduler.get("_class_name", "AmusedScheduler") != "AmusedScheduler":
            raise InvalidArgument(
                f"scheduler {scheduler['_class_name']} is not an AmusedScheduler: another model family"
            )
        scheduler = diffusers.AmusedScheduler.from_config(scheduler)
    if not isinstance(scheduler, diffusers.AmusedScheduler):
        raise InvalidArgument(f"scheduler {class_name(scheduler)} is not an AmusedScheduler: another model family")
    if scheduler.config.masking_schedule not in ("cosine", "linear"):
        raise InvalidArgument(f"masking_schedule {scheduler.config.masking_schedule!r} is not 'cosine' or 'linear'")
    return copy.deepcopy(scheduler)


class DiffusersAmused(AdaptedModel):
    """aMUSEd's transformer, its VQ decoder and a prompt table with the shipped MaskGIT's interface (see the module
    docstring).

    `forward(ids, labels)` takes (B, N) ids (codes in [0, V), or `mask_id`) and (B,) labels in [0, C] (C: the empty
    prompt) and returns logits (B, N, V) and features (B, D, feature_grid, feature_grid), both float32.

    Args:
        transformer: a `diffusers.UVit2DModel`.
        vqvae: its `diffusers.VQModel` (with `lookup_from_codebook`, as aMUSEd's).
        prompts: the `PromptTable` the labels index (embeds (C, L, encoder_hidden_size), pooled (C, cond_embed_dim),
            and the empty prompt's pair).
        scheduler: an `AmusedScheduler`, its config dict, or None (mask id vocab_size - 1, cosine).
        feature_block: the transformer layer whose output hidden states are the features (-1: the last).
        feature_grid: side of the average-pooled feature grid, at most the layers' grid h; None: min(h, 8)
            (amused-256: 1024 x 8 x 8).
        decode_batch: grids decoded per VQ call.
    """

    paradigm = "maskgit"
    """The env paradigm this model serves (`AdaGen/MaskGIT-v0`)."""
    layout = LAYOUT

    def __init__(
        self,
        transformer: nn.Module,
        vqvae: nn.Module | None,
        prompts: PromptTable,
        scheduler: Any = None,
        feature_block: int = -1,
        feature_grid: int | None = None,
        decode_batch: int = 16,
    ) -> None:
        super().__init__()
        check_components(transformer, vqvae, LAYOUT, "aMUSEd's diffusers UVit2DModel")
        tc, vc = transformer.config, vqvae.config
        side, codebook, vocab = tc.sample_size, int(tc.codebook_size), int(tc.vocab_size)
        if not isinstance(side, int):
            raise InvalidArgument(f"latent shape not served: sample_size must be one int (square grids), got {side!r}")
        if tc.downsample != tc.upsample or (tc.downsample and side % 2):
            raise InvalidArgument(
                f"latent shape not served: a {side}x{side} token grid with downsample="
                f"{tc.downsample}, upsample={tc.upsample} does not come back to its size"
            )
        if not vc.lookup_from_codebook:
            raise InvalidArgument(
                "latent shape not served: the VQModel does not look token ids up in its codebook "
                "(lookup_from_codebook=False), so it cannot decode token grids"
            )
        if int(vc.num_vq_embeddings) != codebook:
            raise InvalidArgument(
                f"latent shape not served: the transformer predicts {codebook} codes, the VQModel's "
                f"codebook has {vc.num_vq_embeddings}"
            )
        if vc.vq_embed_dim not in (None, vc.latent_channels):
            raise InvalidArgument(
                f"latent shape not served: codebook vectors of width {vc.vq_embed_dim} with "
                f"{vc.latent_channels} latent channels (AmusedPipeline decodes them as equal)"
            )
        if int(vc.out_channels) != 3:
            raise InvalidArgument(
                f"the VQModel decodes {vc.out_channels}-channel images; the envs serve RGB (3 channels)"
            )
        self.scheduler = _scheduler_of(scheduler, vocab)
        mask_id = int(self.scheduler.config.mask_token_id)
        if not codebook <= mask_id < vocab:
            raise InvalidArgument(
                f"mask_token_id {mask_id} must be a non-code id of the transformer's embedding, in "
                f"[{codebook}, {vocab})"
            )
        prompts = check_prompt_widths(
            prompts,
            int(tc.encoder_hidden_size),
            int(tc.cond_embed_dim),
            "UVit2DModel (encoder_hidden_size, cond_embed_dim)",
        )
        depth = len(transformer.transformer_layers)
        layer_grid = side // 2 if tc.downsample else side
        feature_grid = check_feature_options(depth, layer_grid, feature_block, feature_grid, decode_batch)
        resolution = side * 2 ** (len(vc.block_out_channels) - 1)
        tokenizer = VQDecoderConfig(channels=3, resolution=resolution, grid=side)
        self.transformer = transformer
        self.tokenizer = VQDecoder(vqvae, tokenizer, decode_batch)
        self.hold_prompts(prompts)
        self.register_buffer("micro_conds", torch.tensor([resolution, resolution, *MICRO_CONDS]))  # (5,)
        self.config = DiffusersAmusedConfig(
            num_classes=prompts.num_prompts,
            tokenizer=tokenizer,
            width=int(tc.hidden_size),
            depth=depth,
            codebook_size=codebook,
            mask_id=mask_id,
            masking_schedule=self.scheduler.config.masking_schedule,
            feature_block=feature_block % depth,
            feature_grid=feature_grid,
            layer_grid=layer_grid,
        )
        self.hook_features(transformer.transformer_layers[feature_block])

    # -- what the sampler reads (and `AdaptedModel`'s null class, feature shape and dtype) ----------
    @property
    def vocab_size(self) -> int:
        """V: the logits' width; ids 0 .. V - 1 are codes."""
        return self.config.codebook_size

    @property
    def mask_id(self) -> int:
        return self.config.mask_id

    @property
    def num_tokens(self) -> int:
        return self.config.tokenizer.grid**2

    @property
    def vqvae(self) -> nn.Module:
        return self.tokenizer.vqvae

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, g, dtype = ids.shape[0], self.config.tokenizer.grid, self.dtype
        self._captured = None
        logits = self.transformer(
            ids.reshape(b, g, g),
            micro_conds=self.micro_conds.expand(b, -1).to(dtype),
            pooled_text_emb=self.pooled_prompt_embeds[labels].to(dtype),
            encoder_hidden_states=self.prompt_embeds[labels].to(dtype),
        )  # (B, V, g, g)
        tokens, self._captured = self._captured, None  # (B, h*h, D)
        return logits.float().flatten(2).transpose(1, 2), pool_tokens(
            tokens, self.config.layer_grid, self.config.feature_grid
        )


class DiffusersAmusedSampler(MaskGITSampler):
    """`MaskGITSampler` over a `DiffusersAmused`, with `AmusedScheduler`'s schedule as the baseline.

    Args:
        model: the adapted aMUSEd.
        num_steps: H, decoding steps.
        remask_temp: what `AmusedScheduler.set_timesteps` takes as `temperature`: (start, end) of the linear re-mask
            temperatures over the steps, or one start (then the end is 0.01).
        cfg_scale: constant guidance weight w (diffusers' guidance_scale - 1; aMUSEd's 10 is 9); None: no guidance.
        device, precision: as `MaskGITSampler`.
    """

    def __init__(
        self,
        model: DiffusersAmused,
        num_steps: int = 12,
        remask_temp: float | tuple[float, float] = (2.0, 0.0),
        cfg_scale: float | None = 9.0,
        device: torch.device | str = "cpu",
        precision: str = "float32",
    ) -> None:
        if not isinstance(model, DiffusersAmused):
            raise InvalidArgument(f"DiffusersAmusedSampler needs a DiffusersAmused, got {class_name(model)}")
        temps = tuple(remask_temp) if isinstance(remask_temp, tuple | list) else (remask_temp,)
        if len(temps) not in (1, 2) or not all(isinstance(v, int | float) and 0 <= v <= MAX_REMASK_TEMP for v in temps):
            raise InvalidArgument(
                f"remask_temp must be a number or a (start, end) pair in [0, {MAX_REMASK_TEMP}], got {remask_temp!r}"
            )
        super().__init__(
            model,
            num_steps=num_steps,
            remask_temp=max(temps),
            cfg_scale=cfg_scale,
            cfg_schedule="constant",
            device=device,
            precision=precision,
        )
        self.remask_temp = temps if len(temps) == 2 else temps[0]

    def baseline_values(self) -> torch.Tensor:
        """`AmusedScheduler`'s mask counts and re-mask temperatures, temperature 1, constant CFG."""
        h, n = self.horizon, self.model.num_tokens
        scheduler = self.model.scheduler
        scheduler.set_timesteps(h, self.remask_temp)
        ratio = (torch.arange(h) + 1) / h  # the scheduler's (step_idx + 1) / len(timesteps), float32
        if self.model.config.masking_schedule == "cosine":
            mask_ratio = torch.cos(ratio * math.pi / 2)
        else:
            mask_ratio = 1 - ratio
        mask_len = (n * mask_ratio).floor().clamp_min(1)
        mask_len[-1] = 0
        columns = [mask_len / n, scheduler.temperatures.float().cpu(), torch.ones(h)]
        if self.cfg_scale is not None:
            columns.append(torch.full((h,), float(self.cfg_scale)))
        return torch.stack(columns, dim=-1).to(self.device)


DiffusersAmused.sampler_cls = DiffusersAmusedSampler
"""The sampler an env builds around this model (`AdaGenVectorEnv` reads `model.sampler_cls`)."""


def from_pretrained(path: str | Path, **kwargs: Any) -> DiffusersAmused:
    """`DiffusersAmused.from_pretrained` (the entry `adagen_env.adapters.load_pretrained` calls)."""
    return DiffusersAmused.from_pretrained(path, **kwargs)


__all__ = [
    "DiffusersAmused",
    "DiffusersAmusedConfig",
    "DiffusersAmusedSampler",
    "PromptTable",
    "VQDecoder",
    "VQDecoderConfig",
    "from_pretrained",
]
