"""What the diffusers adapters share: the lazy diffusers import, directory checks and loading, the checks of a latent
model's VAE, feature pooling, the prompt-embedding table of the text-conditioned families, the adapted models' common
config fields and interface, VAE decoding and the latent ODE sampler's overrides.

Letters: B lanes, C prompts (the env's classes), L prompt tokens, E prompt-token width, P pooled-prompt width,
N tokens, D transformer width, g token-grid side, g' pooled side.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import nn

from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.samplers.base import randn
from adagen_env.samplers.ode import ODEState

INSTALL_HINT = 'pip install "adagen-env[diffusers]"  (or: pip install "diffusers==0.42.*")'
SERVED_BY = {
    "DiTTransformer2DModel": "AdaGen/DiT-v0",
    "Transformer2DModel": "AdaGen/DiT-v0",
    "SD3Transformer2DModel": "AdaGen/SiT-v0",
    "UVit2DModel": "AdaGen/MaskGIT-v0",
}
"""Transformer class names of the adapted families -> the env whose adapter loads them (named in refusals)."""
PROMPTS_FILE = "prompts.safetensors"
"""The prompt table a text-conditioned pipeline directory must hold for `generator=DIR` (`PromptTable.save`)."""


def require_diffusers() -> Any:
    """The diffusers module, or an ImportError that says how to install it."""
    try:
        import diffusers
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ImportError(f"the diffusers adapters need the diffusers package: {INSTALL_HINT}") from exc
    return diffusers


def class_name(obj: Any) -> str:
    return type(obj).__name__ if obj is not None else "None"


def read_json(path: Path, root: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"diffusers directory {str(root)!r}: cannot read {path.relative_to(root)}: {exc}"
        ) from exc


@dataclass(frozen=True)
class Layout:
    """The pipeline directory an adapter loads: `model/` and `decoder/` folders (diffusers' `from_pretrained`
    layout), an optional `scheduler/`."""

    adapter: str
    """The adapter's name in messages ("DiT")."""
    model_classes: tuple[str, ...]
    """`_class_name`s `transformer/config.json` may carry."""
    model_description: str
    """What the adapter takes, in messages ("a class-conditional DiTTransformer2DModel")."""
    decoder: str
    """The decoder's folder ("vae", "vqvae")."""
    decoder_class: str
    """Its `_class_name` ("AutoencoderKL", "VQModel")."""
    decoder_role: str
    """Why it is needed, in the missing-VAE message."""
    accepts: Callable[[dict], bool] = lambda config: True
    """Further test of an accepted class's config (the hub DiT's legacy `Transformer2DModel` name)."""
    model: str = "transformer"
    prompts: bool = False
    """The directory holds a prompt table (`PROMPTS_FILE`): a text-conditioned family."""

    @property
    def expected(self) -> str:
        return (
            f"diffusers' from_pretrained layout: {self.model}/ (a {self.model_classes[0]}), {self.decoder}/ (a "
            f"{self.decoder_class}), scheduler/"
        )


def check_directory(root: Path, layout: Layout) -> dict | None:
    """Refuse what is not `layout`'s pipeline directory, naming the problem; returns the scheduler config (or None).

    Raises:
        CheckpointError: not a directory, not a diffusers model, a single model's folder, another model family
            (a UNet, another transformer class), a missing or wrong decoder.
    """
    if not root.is_dir():
        raise CheckpointError(f"diffusers directory {str(root)!r} does not exist or is not a directory")
    where = f"diffusers directory {str(root)!r}"
    model = root / layout.model / "config.json"
    if not model.is_file():
        if (root / "unet").is_dir():
            raise CheckpointError(
                f"{where} holds a UNet (unet/): another model family; the {layout.adapter} adapter "
                f"takes {layout.expected}"
            )
        if (root / "config.json").is_file():
            name = read_json(root / "config.json", root).get("_class_name")
            raise CheckpointError(
                f"{str(root)!r} is a single model's folder ({name}), not a pipeline directory; "
                f"expected {layout.expected}"
            )
        found = sorted(p.name for p in root.iterdir())[:10]
        raise CheckpointError(
            f"{str(root)!r} is not a diffusers model directory (no {layout.model}/config.json; it "
            f"holds {found}); expected {layout.expected}"
        )
    config = read_json(model, root)
    name = config.get("_class_name")
    if name not in layout.model_classes or not layout.accepts(config):
        detail = f" (norm_type {config['norm_type']!r})" if "norm_type" in config else ""
        served = f" ({SERVED_BY[name]} serves it)" if name in SERVED_BY and name not in layout.model_classes else ""
        raise CheckpointError(
            f"{where}: {layout.model}/ holds a {name}{detail}, another model family{served}; the "
            f"{layout.adapter} adapter takes {layout.model_description}"
        )
    decoder = root / layout.decoder / "config.json"
    if not decoder.is_file():
        raise CheckpointError(f"{where}: missing VAE (no {layout.decoder}/config.json); {layout.decoder_role}")
    decoder_name = read_json(decoder, root).get("_class_name")
    if decoder_name != layout.decoder_class:
        raise CheckpointError(f"{where}: {layout.decoder}/ holds a {decoder_name}, not a {layout.decoder_class}")
    scheduler = root / "scheduler" / "scheduler_config.json"
    return read_json(scheduler, root) if scheduler.is_file() else None


def load_component(root: Path, folder: str, model_cls: type, dtype: torch.dtype | None) -> nn.Module:
    """`model_cls.from_pretrained(root, subfolder=folder)` from local files only; `CheckpointError` if unreadable."""
    diffusers = require_diffusers()
    # Without accelerate, diffusers initialises the weights before loading them (and says so); ask for that.
    options = {} if diffusers.utils.is_accelerate_available() else {"low_cpu_mem_usage": False}
    try:
        model = model_cls.from_pretrained(root, subfolder=folder, local_files_only=True, torch_dtype=dtype, **options)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"diffusers directory {str(root)!r}: cannot load {folder}/ as {model_cls.__name__}: {exc}"
        ) from exc
    # Without accelerate, diffusers assigns the file's tensors over a model built in `dtype` when the state dict's
    # first entry has the file's dtype (SD3's float32 positional-embedding buffer), so the weights keep that dtype.
    if dtype is not None and not model._keep_in_fp32_modules:
        model = model.to(dtype)
    return model


def load_pipeline(
    cls: type[nn.Module],
    path: str | Path,
    layout: Layout,
    dtype: torch.dtype | None,
    device: torch.device | str,
    **kwargs: Any,
) -> nn.Module:
    """`cls(transformer, decoder, [prompt table,] scheduler config, **kwargs)` from a local pipeline directory of
    `layout` (its first model class and its decoder class, local files only), frozen, in eval mode on `device`; where
    the layout has a prompt table, `prompts_in(path, kwargs.pop("prompts", None))`.

    Raises:
        CheckpointError: what `check_directory`, `prompts_in` and `load_component` refuse, and what `cls` refuses.
    """
    diffusers = require_diffusers()
    root = Path(path)
    scheduler = check_directory(root, layout)
    table = (prompts_in(root, kwargs.pop("prompts", None)),) if layout.prompts else ()
    transformer = load_component(root, layout.model, getattr(diffusers, layout.model_classes[0]), dtype)
    decoder = load_component(root, layout.decoder, getattr(diffusers, layout.decoder_class), dtype)
    try:
        model = cls(transformer, decoder, *table, scheduler, **kwargs)
    except InvalidArgument as exc:
        raise CheckpointError(f"diffusers directory {str(root)!r}: {exc}") from exc
    return model.to(device).eval().requires_grad_(False)


def check_decoder(decoder: Any, layout: Layout) -> None:
    """`InvalidArgument` unless `decoder` is a diffusers `layout.decoder_class`."""
    if decoder is None:
        raise InvalidArgument(f"missing VAE: {layout.decoder_role}")
    if not isinstance(decoder, getattr(require_diffusers(), layout.decoder_class)):
        raise InvalidArgument(f"{layout.decoder} must be a diffusers {layout.decoder_class}, got {class_name(decoder)}")


def check_components(transformer: Any, decoder: Any, layout: Layout, takes: str, elsewhere: str = "") -> None:
    """`InvalidArgument` unless `transformer` is a diffusers `layout.model_classes[0]` (else "transformer must be
    {takes}, got ...: another model family ({elsewhere})") and `decoder` passes `check_decoder`."""
    if not isinstance(transformer, getattr(require_diffusers(), layout.model_classes[0])):
        where = f" ({elsewhere})" if elsewhere else ""
        raise InvalidArgument(
            f"transformer must be {takes}, got {class_name(transformer)}: another model family{where}"
        )
    check_decoder(decoder, layout)


def check_latent_shape(transformer: nn.Module, vae: nn.Module) -> tuple[int, int, int]:
    """(latent channels, latent side, patch) of a latent transformer over `vae`; `InvalidArgument` for latents that
    are not square, not a whole number of patches or of other channels than the VAE's, or a VAE that is not RGB."""
    tc, vc = transformer.config, vae.config
    channels, side, patch = int(tc.in_channels), tc.sample_size, int(tc.patch_size)
    if not isinstance(side, int):
        raise InvalidArgument(f"latent shape not served: sample_size must be one int (square latents), got {side!r}")
    if side % patch:
        raise InvalidArgument(f"latent shape not served: sample_size {side} is not a multiple of patch_size {patch}")
    if int(vc.latent_channels) != channels:
        raise InvalidArgument(
            f"latent shape not served: the transformer takes {channels} latent channels, the VAE "
            f"makes {vc.latent_channels}"
        )
    if int(vc.out_channels) != 3:
        raise InvalidArgument(f"the VAE decodes {vc.out_channels}-channel images; the envs serve RGB (3 channels)")
    return channels, side, patch


def check_feature_options(depth: int, grid: int, feature_block: Any, feature_grid: Any, decode_batch: Any) -> int:
    """Validate the feature and decoding options of a model with `depth` blocks on a g x g token grid; returns the
    feature grid side (None: min(g, 8))."""
    feature_grid = min(grid, 8) if feature_grid is None else feature_grid
    if isinstance(feature_block, bool) or not isinstance(feature_block, int) or not -depth <= feature_block < depth:
        raise InvalidArgument(
            f"feature_block must be an int in [-{depth}, {depth}) (the model has {depth} blocks), got {feature_block!r}"
        )
    if isinstance(feature_grid, bool) or not isinstance(feature_grid, int) or not 1 <= feature_grid <= grid:
        raise InvalidArgument(
            f"feature_grid must be an int in [1, {grid}] (the token grid is {grid}x{grid}), got {feature_grid!r}"
        )
    if isinstance(decode_batch, bool) or not isinstance(decode_batch, int) or decode_batch < 1:
        raise InvalidArgument(f"decode_batch must be an int >= 1, got {decode_batch!r}")
    return feature_grid


def pool_tokens(tokens: torch.Tensor, grid: int, feature_grid: int) -> torch.Tensor:
    """(B, N = g*g, D) row-major tokens -> (B, D, g', g') float32, laid out on their grid and average-pooled."""
    b = tokens.shape[0]
    return F.adaptive_avg_pool2d(tokens.float().transpose(1, 2).reshape(b, -1, grid, grid), feature_grid)


@dataclass
class PromptTable:
    """The condition of a text-conditioned generator: C prompts' text-encoder outputs, which the env's labels
    0 .. C - 1 index, and the empty prompt's, which classifier-free guidance's unconditional pass uses (label C, the
    null class), as diffusers' pipelines encode `negative_prompt=""`.

    Args:
        embeds: (C, L, E) per-token embeddings (the pipelines' `prompt_embeds` / `encoder_hidden_states`).
        pooled: (C, P) pooled embeddings (`pooled_prompt_embeds`; aMUSEd's `prompt_embeds`).
        null_embeds: (L, E) of the empty prompt (`negative_prompt_embeds` when the negative prompt is "").
        null_pooled: (P,) of the empty prompt.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor
    null_embeds: torch.Tensor
    null_pooled: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("embeds", "pooled", "null_embeds", "null_pooled"):
            value = getattr(self, name)
            if not torch.is_tensor(value) or not value.is_floating_point() or not bool(torch.isfinite(value).all()):
                raise InvalidArgument(f"prompt table: {name} must be a finite floating-point tensor")
        e, p = self.embeds, self.pooled
        if e.ndim != 3 or e.shape[0] < 1 or p.ndim != 2 or p.shape[0] != e.shape[0]:
            raise InvalidArgument(
                f"prompt table: embeds must be (C, L, E) and pooled (C, P) with the same C >= 1, got "
                f"{tuple(e.shape)} and {tuple(p.shape)}"
            )
        if tuple(self.null_embeds.shape) != tuple(e.shape[1:]) or tuple(self.null_pooled.shape) != tuple(p.shape[1:]):
            raise InvalidArgument(
                f"prompt table: the empty prompt's embeddings must be {tuple(e.shape[1:])} and "
                f"{tuple(p.shape[1:])}, got {tuple(self.null_embeds.shape)} and "
                f"{tuple(self.null_pooled.shape)}"
            )

    @property
    def num_prompts(self) -> int:
        """C: the env's classes."""
        return self.embeds.shape[0]

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C + 1, L, E) and (C + 1, P) float32: the prompts, then the empty prompt at row C."""
        embeds = torch.cat([self.embeds, self.null_embeds[None]]).float()
        return embeds, torch.cat([self.pooled, self.null_pooled[None]]).float()

    def save(self, path: str | Path) -> None:
        """Write the table as safetensors (e.g. to `DIR/prompts.safetensors`, which `from_pretrained(DIR)` reads)."""
        from safetensors.torch import save_file

        save_file(
            {
                name: getattr(self, name).detach().cpu().contiguous().float()
                for name in ("embeds", "pooled", "null_embeds", "null_pooled")
            },
            str(path),
        )

    @classmethod
    def load(cls, path: str | Path) -> PromptTable:
        """Read a table `save` wrote; `CheckpointError` if it is missing or not one."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
            return cls(**{name: tensors[name] for name in ("embeds", "pooled", "null_embeds", "null_pooled")})
        except (OSError, KeyError, SafetensorError, InvalidArgument) as exc:
            raise CheckpointError(f"cannot read the prompt table {str(path)!r}: {exc!r}") from exc


def check_prompt_widths(prompts: Any, token_width: int, pooled_width: int, model: str) -> PromptTable:
    """`prompts` if it is a `PromptTable` whose widths (E, P) the model takes; else `InvalidArgument`."""
    if not isinstance(prompts, PromptTable):
        raise InvalidArgument(
            f"prompts must be a PromptTable (the condition: C prompts' embeddings and the empty "
            f"prompt's), got {class_name(prompts)}"
        )
    e, p = prompts.embeds.shape[-1], prompts.pooled.shape[-1]
    if (e, p) != (token_width, pooled_width):
        raise InvalidArgument(
            f"prompt embeddings of widths (tokens {e}, pooled {p}); the {model} takes ({token_width}, {pooled_width})"
        )
    return prompts


def prompts_in(root: Path, prompts: PromptTable | str | Path | None) -> PromptTable:
    """The prompt table given, read from a path, or read from `root / PROMPTS_FILE` when None."""
    if isinstance(prompts, PromptTable):
        return prompts
    path = root / PROMPTS_FILE if prompts is None else Path(prompts)
    if not path.is_file():
        raise CheckpointError(
            f"diffusers directory {str(root)!r}: no prompt table ({path} does not exist); a "
            "text-conditioned generator needs the embeddings of the prompts the env's labels index: "
            f"save a PromptTable as {PROMPTS_FILE} there, or pass prompts="
        )
    return PromptTable.load(path)


@torch.no_grad()
def decode_latents(vae: nn.Module, latents: torch.Tensor, decode_batch: int) -> torch.Tensor:
    """(B, C, s, s) diffusion latents -> (B, 3, R, R) float32 images in [0, 1], as diffusers' pipelines decode:
    `vae.decode(latents / scaling_factor + shift_factor)`, then (x / 2 + 0.5).clamp(0, 1)."""
    scaling = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    dtype = next(vae.parameters()).dtype
    images = []
    for chunk in latents.split(decode_batch):
        z = chunk.to(dtype) / scaling
        if shift is not None:
            z = z + shift
        images.append(vae.decode(z, return_dict=False)[0].float())
    return (torch.cat(images) / 2 + 0.5).clamp(0, 1)


@dataclass
class AdaptedConfig:
    """What the sampler and the env read about every adapted model (the names of the shipped models' configs)."""

    num_classes: int
    """Classes C (for a prompt table, its prompts); id C is the null class (the empty prompt)."""
    width: int
    """Transformer width D, the features' channels."""
    depth: int
    """Transformer blocks (or layers)."""
    feature_block: int
    """Index of the block whose output the policy sees."""
    feature_grid: int
    """Side of the pooled feature grid."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LatentConfig(AdaptedConfig):
    """What the sampler and the env read about an adapted model over VAE latents (`DiTConfig`'s names)."""

    channels: int
    """Latent channels (the sampler's state is a latent)."""
    resolution: int
    """Latent side (`sample_size`)."""
    image_resolution: int
    """Side of the decoded images (latent side x the VAE's upsampling)."""
    patch: int
    num_train_timesteps: int


class AdaptedModel(nn.Module):
    """What the adapted models share: the null class after the C classes (or prompts), the pooled feature grid of a
    hooked block, their transformer's dtype, the prompt table as buffers. A subclass sets `transformer` and `config`
    (an `AdaptedConfig`) and calls `hook_features` on its feature block."""

    transformer: nn.Module
    config: AdaptedConfig
    layout: Layout
    """The pipeline directory `from_pretrained` reads."""

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        prompts: PromptTable | str | Path | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
        **kwargs: Any,
    ) -> Self:
        """Load a local diffusers directory of the class's `layout` (`transformer/`, the decoder's folder, optional
        `scheduler/`, and a text-conditioned family's prompt table); nothing is downloaded.

        Args:
            path: the directory (e.g. a local copy of the hub's facebook/DiT-XL-2-256,
                stabilityai/stable-diffusion-3-medium-diffusers or amused/amused-256).
            prompts: for a text-conditioned family, the `PromptTable`, or the path of one `PromptTable.save` wrote;
                None: `path/prompts.safetensors`.
            dtype: the models' dtype (e.g. torch.bfloat16); float32 when None (diffusers' default).
            device: where the models go.
            kwargs: `feature_block`, `feature_grid`, `decode_batch` (see the class).
        Raises:
            CheckpointError: the directory does not exist, is not a diffusers model, holds another model family,
                lacks the decoder or the prompt table, cannot be read, or holds a latent shape or token grid the
                envs cannot serve.
        """
        if prompts is not None:
            kwargs["prompts"] = prompts
        return load_pipeline(cls, path, cls.layout, dtype, device, **kwargs)

    @property
    def null_class(self) -> int:
        """The label of guidance's unconditional pass: C (for a prompt table, the empty prompt's row)."""
        return self.config.num_classes

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(D, g', g'): one sample's pooled feature grid."""
        return (self.config.width, self.config.feature_grid, self.config.feature_grid)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    def hold_prompts(self, prompts: PromptTable) -> None:
        """Keep the table as buffers `prompt_embeds` (C + 1, L, E) and `pooled_prompt_embeds` (C + 1, P), row C the
        empty prompt."""
        embeds, pooled = prompts.stacked()
        self.register_buffer("prompt_embeds", embeds)
        self.register_buffer("pooled_prompt_embeds", pooled)

    def hook_features(self, block: nn.Module) -> None:
        """Keep `block`'s output in `_captured` at every forward (`_capture`)."""
        self._captured: torch.Tensor | None = None
        block.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        self._captured = output


class LatentModel(AdaptedModel):
    """An adapted model over VAE latents: what `LatentODESampling` reads. A subclass sets `vae`, `decode_batch` and
    `config` (a `LatentConfig`)."""

    vae: nn.Module
    config: LatentConfig

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C_lat, g p, g p): one sample's latent, the sampler's state."""
        return (self.config.channels, self.config.resolution, self.config.resolution)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(3, R, R): one decoded image."""
        return (3, self.config.image_resolution, self.config.image_resolution)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C_lat, g p, g p) latents -> (B, 3, R, R) float32 images in [0, 1], as diffusers' pipelines decode."""
        return decode_latents(self.vae, latents, self.decode_batch)


class LatentODESampling:
    """The overrides an ODE sampler over a latent model needs (mixed in before `DiffusionSampler` / `FlowSampler`):
    noise drawn in the model's `latent_shape` at reset, the model's VAE decoding, and the decoded current latent
    as the intermediate image. The model provides `latent_shape`, `image_shape` and `decode`."""

    def __init__(self, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(model, *args, **kwargs)
        self.latent_shape, self.image_shape = model.latent_shape, model.image_shape

    def reset(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> ODEState:
        labels = self.check_labels(labels)
        x = randn((labels.shape[0], *self.latent_shape), generator, self.device)
        return ODEState(x=x, t=torch.full_like(labels, self.path.noise_end, dtype=torch.float32), labels=labels, step=0)

    def intermediate(self, state: ODEState) -> torch.Tensor:
        """The current noisy latent x_t decoded by the VAE, (B, 3, R, R) in [0, 1]."""
        return self.model.decode(state.x)

    def decode(self, state: ODEState) -> torch.Tensor:
        if state.step != self.horizon:
            raise InvalidArgument(
                f"decode needs a finished episode ({self.horizon} steps), this state is at step {state.step}"
            )
        return self.model.decode(state.x)


__all__ = [
    "INSTALL_HINT",
    "PROMPTS_FILE",
    "SERVED_BY",
    "AdaptedConfig",
    "AdaptedModel",
    "LatentConfig",
    "LatentModel",
    "LatentODESampling",
    "Layout",
    "PromptTable",
    "check_components",
    "check_decoder",
    "check_directory",
    "check_feature_options",
    "check_latent_shape",
    "check_prompt_widths",
    "decode_latents",
    "load_component",
    "load_pipeline",
    "pool_tokens",
    "prompts_in",
    "require_diffusers",
]
