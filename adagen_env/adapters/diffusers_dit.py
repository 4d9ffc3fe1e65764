"""A class-conditional diffusers DiT (DiT-XL/2-256 layout) as a generator of the diffusion paradigm.

`DiffusersDiT` gives a `DiTTransformer2DModel` + `AutoencoderKL` pair the call signature of the shipped DiT,
`model(x_t, t, labels) -> (prediction, features)`, so the existing ODE sampler (DPM-Solver++(2M) or DDIM, per-lane
time and CFG knobs, projection, NFE accounting) drives the real model unchanged. `DiffusersDiTSampler` is that
`DiffusionSampler` with the three things a latent model changes: noise is drawn in the latent shape, the finished
latent is decoded by the VAE, and the baseline time grid sits on the model's training timesteps.

What maps to what (DiT-XL/2-256: latent 4x32x32, 8 output channels, 1000 training steps, linear betas):

| sampler side | model side |
|---|---|
| time t in [0, 1] (1: noise, 0: data) | timestep n = T t - 1 in [-1, T - 1] (T = `num_train_timesteps`), fractional between grid points |
| `path.alpha(t)`, `path.sigma(t)` | sqrt(alpha_bar_n), sqrt(1 - alpha_bar_n), alpha_bar the scheduler's `alphas_cumprod`; alpha_bar_{-1} = 1 |
| prediction (epsilon) | the first C of the 2C learned-sigma output channels (the variance half is dropped, as `DiTPipeline` does) |
| null class (CFG) | `num_embeds_ada_norm` (1000), the label embedding's extra row, as `DiTPipeline` does |
| CFG weight w: cond + w (cond - uncond) | diffusers' guidance_scale s = w + 1: uncond + s (cond - uncond) |
| features (D, g', g') | hidden states after block `feature_block` (forward hook), (B, N, D) tokens as a (D, g, g) grid, average-pooled to g' = `feature_grid` |
| decode | `vae.decode(latent / scaling_factor)` (0.18215), then (x / 2 + 0.5).clamp(0, 1), as `DiTPipeline` does |

Why a path of its own (`DiscreteVPPath`): the shipped VP paths are continuous-time (the linear-beta one integrates
beta(t) = 0.1 + 19.9 t), while DiT-XL/2 was trained on the discrete product alpha_bar_n = prod_{i<=n} (1 - beta_i);
the two differ by a few percent in alpha_bar (about 7% at the noise end), so stepping on the continuous one would
not be the model's sampler. Between training timesteps log alpha_bar is interpolated linearly in n and the model
gets the fractional timestep (its sinusoidal embedding takes any real n); a time within `SNAP` of a training
timestep is put on it, so the round trip through the knob's sigmoid cannot move a grid time off the grid. With the
baseline ("trailing" spacing: n_k = round(T - k T / N) - 1, starting at pure noise n = T - 1 and ending at
alpha_bar = 1), a zero action reproduces diffusers' `DPMSolverMultistepScheduler` (or, for N dividing T,
`DDIMScheduler`) with `timestep_spacing="trailing"`, to float tolerance (tests/adapters/test_diffusers_dit.py).

Loading: `from_pretrained(directory)` reads diffusers' pipeline layout (`transformer/`, `vae/`, optional
`scheduler/`; the hub's facebook/DiT-XL-2-256 has it) with `local_files_only=True`; or build `DiffusersDiT(transformer,
vae, scheduler)` from ready objects. Only the scheduler's noise schedule (betas, `num_train_timesteps`,
`prediction_type`) is read; the solver is the env's. Without a scheduler, DiT's training schedule (linear betas
1e-4 to 0.02 over 1000 steps, epsilon) is assumed. diffusers is imported when a model is built, never before.

Letters: B lanes, C latent channels, g latent side / patch (token grid), D transformer width, T training timesteps.
"""

from __future__ import annotations

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
    check_components,
    check_feature_options,
    check_latent_shape,
    class_name,
    pool_tokens,
    require_diffusers,
)
from adagen_env.errors import InvalidArgument
from adagen_env.models.paths import VarPreservingRegression
from adagen_env.samplers.diffusion import DiffusionSampler

SNAP = 1e-3
"""Model timesteps within this distance of an integer are put on it (see the module docstring)."""
DIT_CLASSES = ("DiTTransformer2DModel", "Transformer2DModel")
"""Class names a DiT's `transformer/config.json` may carry: the hub's DiT-XL-2-256 predates `DiTTransformer2DModel`
and says `Transformer2DModel` with `norm_type="ada_norm_zero"`, which diffusers loads as a DiT."""
PREDICTIONS = {"epsilon": "epsilon", "v_prediction": "v"}
"""diffusers' `prediction_type` -> the VP path's prediction name."""
LAYOUT = Layout(
    adapter="DiT",
    model_classes=DIT_CLASSES,
    model_description="a class-conditional DiTTransformer2DModel",
    decoder="vae",
    decoder_class="AutoencoderKL",
    decoder_role="a latent DiT needs its AutoencoderKL to decode images",
    accepts=lambda config: (
        config.get("_class_name") != "Transformer2DModel" or config.get("norm_type") == "ada_norm_zero"
    ),
)


class DiscreteVPPath(VarPreservingRegression):
    """The VP path of a discrete-time diffusion model, alpha_t^2 + sigma_t^2 = 1, from t = 1 (noise) to t = 0 (data).

    Time t maps to the model's timestep n = T t - 1; alpha_t^2 = alpha_bar_n, the training schedule's cumulative
    product at n (1 at n = -1, the data end), with log alpha_bar linear in n between training timesteps.

    Args:
        alphas_cumprod: (T,) alpha_bar_0 .. alpha_bar_{T-1}, non-increasing in (0, 1] (a scheduler's `alphas_cumprod`).
        prediction: the model's target on the path, "epsilon" or "v" (`adagen_env.models.paths.VP_PREDICTIONS`).
    """

    noise_end, data_end = 1.0, 0.0

    def __init__(self, alphas_cumprod: torch.Tensor, prediction: str = "epsilon") -> None:
        table = torch.as_tensor(alphas_cumprod).detach().to("cpu", torch.float64).flatten()
        if prediction not in ("epsilon", "v"):
            raise InvalidArgument(f"prediction must be 'epsilon' or 'v', got {prediction!r}")
        if table.numel() < 2 or not bool(torch.isfinite(table).all()):
            raise InvalidArgument(f"alphas_cumprod must hold >= 2 finite values, got {table.numel()}")
        if bool((table > 1).any()) or bool((table < 0).any()) or bool((table[1:] > table[:-1]).any()):
            raise InvalidArgument("alphas_cumprod must be non-increasing values in [0, 1]")
        if prediction == "epsilon" and float(table[-1]) <= 0:
            raise InvalidArgument(
                "alphas_cumprod reaches 0 at the last timestep (a zero-terminal-SNR schedule): an "
                "epsilon model cannot give the data estimate there; use a v-prediction model"
            )
        self.prediction = prediction
        self.num_train_timesteps = table.numel()
        self.alphas_cumprod = table
        self._log_table = torch.cat([torch.zeros(1, dtype=torch.float64), table.log()])  # index j = n + 1
        self._tables: dict[torch.device, torch.Tensor] = {}

    def timestep(self, t: torch.Tensor) -> torch.Tensor:
        """Model timesteps n = T t - 1 (float64), clamped to [-1, T - 1], put on the integer within `SNAP`."""
        n = torch.as_tensor(t).double() * self.num_train_timesteps - 1
        nearest = n.round()
        n = torch.where((n - nearest).abs() <= SNAP, nearest, n)
        return n.clamp(-1, self.num_train_timesteps - 1)

    def time_of(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Inverse of `timestep`: training timesteps n -> times (n + 1) / T (float32)."""
        return ((torch.as_tensor(timesteps).double() + 1) / self.num_train_timesteps).float()

    def on_grid(self, t: torch.Tensor) -> torch.Tensor:
        """Times put on the nearest training timestep (or the data end): round(T t) / T."""
        tt = torch.as_tensor(t)
        return (torch.round(tt.double() * self.num_train_timesteps) / self.num_train_timesteps).to(tt.dtype)

    def _log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        j = self.timestep(t) + 1  # in [0, T]
        low = j.floor().clamp(0, self.num_train_timesteps - 1)
        frac = j - low
        device = j.device
        if device not in self._tables:
            self._tables[device] = self._log_table.to(device)
        table = self._tables[device]
        index = low.long()
        return table[index] * (1 - frac) + table[index + 1] * frac

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(0.5 * self._log_alpha_bar(t)).to(torch.as_tensor(t).dtype)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(self._log_alpha_bar(t))).to(torch.as_tensor(t).dtype)


@dataclass
class DiffusersDiTConfig(LatentConfig):
    """What the sampler and the env read about an adapted DiT: `LatentConfig`'s fields (`num_classes` is
    `num_embeds_ada_norm`) and the output's layout."""

    learned_sigma: bool
    """The output has 2C channels (epsilon, then the variance, which is dropped)."""
    prediction: str
    """"epsilon" or "v", from the scheduler's `prediction_type`."""


def _schedule_of(scheduler: Any) -> tuple[torch.Tensor, str]:
    """(alphas_cumprod, prediction) from a scheduler object, a scheduler config dict, or None (DiT's training one)."""
    diffusers = require_diffusers()
    if scheduler is None or isinstance(scheduler, dict):
        config = dict(scheduler or {})
        name = config.get("_class_name", "DDIMScheduler")
        cls = getattr(diffusers, str(name), None)
        if cls is None or not hasattr(cls, "from_config"):
            raise InvalidArgument(f"scheduler config names {name!r}, which is not a diffusers scheduler")
        scheduler = cls.from_config(config)
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if alphas_cumprod is None:
        raise InvalidArgument(
            f"scheduler {class_name(scheduler)} has no discrete VP schedule (alphas_cumprod): it belongs to another "
            "model family (e.g. a flow-matching scheduler); a DiT needs its DDPM/DDIM-style beta schedule"
        )
    prediction_type = getattr(scheduler.config, "prediction_type", "epsilon")
    if prediction_type not in PREDICTIONS:
        raise InvalidArgument(
            f"scheduler prediction_type {prediction_type!r} is not supported; one of {sorted(PREDICTIONS)}"
        )
    return torch.as_tensor(alphas_cumprod), PREDICTIONS[prediction_type]


class DiffusersDiT(LatentModel):
    """A diffusers class-conditional DiT and its VAE with the shipped DiT's interface (see the module docstring).

    `forward(x, t, y)` takes latents x (B, C, g p, g p), times t (B,) in [0, 1] and labels y (B,) (`null_class` for
    the unconditional pass) and returns the model's prediction (B, C, g p, g p) (epsilon, or v) and the features
    (B, D, feature_grid, feature_grid), both float32 whatever the models' dtype.

    Args:
        transformer: a `diffusers.DiTTransformer2DModel`.
        vae: its `diffusers.AutoencoderKL`.
        scheduler: a diffusers scheduler with `alphas_cumprod` (DDIM, DDPM, DPM-Solver, ...), its config dict, or None
            for DiT's training schedule (linear betas 1e-4 to 0.02, 1000 steps, epsilon).
        feature_block: the block whose output hidden states are the features (-1: the last, as the shipped DiT).
        feature_grid: side of the average-pooled feature grid, at most the token grid g; None: min(g, 8)
            (DiT-XL/2-256: 1152 x 8 x 8 from its 16 x 16 tokens).
        decode_batch: latents decoded per VAE call (bounds the decoder's memory).
    """

    paradigm = "diffusion"
    """The env paradigm this model serves (`AdaGen/DiT-v0`)."""
    layout = LAYOUT

    def __init__(
        self,
        transformer: nn.Module,
        vae: nn.Module | None,
        scheduler: Any = None,
        feature_block: int = -1,
        feature_grid: int | None = None,
        decode_batch: int = 16,
    ) -> None:
        super().__init__()
        check_components(
            transformer,
            vae,
            LAYOUT,
            "a diffusers DiTTransformer2DModel (class-conditional DiT)",
            "UNets, text-conditioned or flow transformers are not this adapter's",
        )
        tc, vc = transformer.config, vae.config
        channels, side, patch = check_latent_shape(transformer, vae)
        out_channels = int(tc.out_channels or channels)
        if out_channels not in (channels, 2 * channels):
            raise InvalidArgument(
                f"latent shape not served: the transformer outputs {out_channels} channels; expected "
                f"{channels} (the prediction) or {2 * channels} (prediction and learned sigma)"
            )
        depth, grid = len(transformer.transformer_blocks), side // patch
        feature_grid = check_feature_options(depth, grid, feature_block, feature_grid, decode_batch)
        alphas_cumprod, prediction = _schedule_of(scheduler)
        self.path = DiscreteVPPath(alphas_cumprod, prediction)
        self.transformer, self.vae = transformer, vae
        self.decode_batch = decode_batch
        num_classes = int(tc.num_embeds_ada_norm)
        table = transformer.transformer_blocks[0].norm1.emb.class_embedder.embedding_table
        self.has_null_class = table.num_embeddings > num_classes
        """The label embedding has the extra (null) row that classifier-free guidance needs."""
        upsampling = 2 ** (len(vc.block_out_channels) - 1)
        self.config = DiffusersDiTConfig(
            num_classes=num_classes,
            channels=channels,
            resolution=side,
            image_resolution=side * upsampling,
            patch=patch,
            width=int(transformer.inner_dim),
            depth=depth,
            learned_sigma=out_channels == 2 * channels,
            prediction=prediction,
            num_train_timesteps=self.path.num_train_timesteps,
            feature_block=feature_block % depth,
            feature_grid=feature_grid,
        )
        self.grid = grid
        self.hook_features(transformer.transformer_blocks[feature_block])

    # -- what the sampler reads (and `LatentModel`'s shapes, dtype and decoding) --------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        timestep = self.path.timestep(t).float()  # fractional off the training grid
        self._captured = None
        out = self.transformer(x.to(self.dtype), timestep=timestep, class_labels=y, return_dict=False)[0]
        tokens, self._captured = self._captured, None  # (B, N, D)
        prediction = out[:, : self.config.channels].float()
        return prediction, pool_tokens(tokens, self.grid, self.config.feature_grid)


class DiffusersDiTSampler(LatentODESampling, DiffusionSampler):
    """`DiffusionSampler` over a `DiffusersDiT`: latent noise at reset, VAE decoding, a baseline on the training grid.

    Same arguments as `ODESampler` (`num_steps`, `solver`, `cfg_scale`, `device`, `precision`); `cfg_scale` w is
    diffusers' guidance_scale minus 1 (DiTPipeline's default 4.0 is w = 3).
    """

    def __init__(
        self,
        model: DiffusersDiT,
        num_steps: int = 8,
        solver: str = "dpmpp2m",
        cfg_scale: float | None = 1.0,
        device: torch.device | str = "cpu",
        precision: str = "float32",
    ) -> None:
        if not isinstance(model, DiffusersDiT):
            raise InvalidArgument(f"DiffusersDiTSampler needs a DiffusersDiT, got {class_name(model)}")
        if cfg_scale is not None and not model.has_null_class:
            raise InvalidArgument(
                "this DiT has no null-class embedding (it was built with class_dropout_prob 0), so "
                "it cannot be guided; use cfg_scale=None"
            )
        super().__init__(
            model, num_steps=num_steps, solver=solver, cfg_scale=cfg_scale, device=device, precision=precision
        )

    def baseline_values(self) -> torch.Tensor:
        """The uniform grid put on the training timesteps (diffusers' "trailing" spacing), constant CFG."""
        values = super().baseline_values()
        values[:, 0] = self.model.path.on_grid(values[:, 0])
        return values


DiffusersDiT.sampler_cls = DiffusersDiTSampler
"""The sampler an env builds around this model (`AdaGenVectorEnv` reads `model.sampler_cls`)."""


def from_pretrained(path: str | Path, **kwargs: Any) -> DiffusersDiT:
    """`DiffusersDiT.from_pretrained` (the entry `adagen_env.adapters.load_pretrained` calls)."""
    return DiffusersDiT.from_pretrained(path, **kwargs)


__all__ = ["DiffusersDiT", "DiffusersDiTConfig", "DiffusersDiTSampler", "DiscreteVPPath", "from_pretrained"]
