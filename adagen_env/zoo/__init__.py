"""The model zoo: small generators trained on the shapes data, shipped with the package, loaded by name.

`ZOO` maps a name to its recipe (model class, config, training loss and hyper-parameters), like DiT's
`DiT_models` table. Weights live in `adagen_env/zoo/weights/<name>.safetensors` beside
`<name>.json` (the model config and how it was trained). Nothing is ever downloaded.

    >>> from adagen_env import zoo
    >>> model = zoo.load("diffusion")  # a frozen DiT on the cosine VP path
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from adagen_env.data.shapes import GRAIN_SIGMA
from adagen_env.errors import InvalidArgument
from adagen_env.models.classifier import ClassifierConfig, ShapesClassifier, classifier_loss
from adagen_env.models.dit import DiT, DiTConfig
from adagen_env.models.factors import FactorNet, FactorNetConfig, factor_loss
from adagen_env.models.maskgit import MaskGIT, MaskGITConfig, maskgit_loss
from adagen_env.models.paths import PATHS, path_for, time_at_log_snr
from adagen_env.models.ssl import SSLConfig, SSLEncoder, ssl_loss
from adagen_env.models.var import VAR, VARConfig, var_loss
from adagen_env.models.vq import VQConfig
from adagen_env.models.weights import WEIGHTS_DIR, load_shipped, load_state, weights_path
from adagen_env.zoo.training import SEGMENTS, LossFn, TrainConfig, train

TIME_SAMPLINGS = ("uniform", "logit-normal", "log-snr-normal")
"""How training draws t: uniform on [0, 1]; sigmoid of a standard normal (SD3's logit-normal, which spends more of the
training on the middle of the path, where the shape of the image gets decided); or the time whose log-SNR is
normal with std `LOG_SNR_STD`, which is logit-normal on the linear (flow) path and carries that recipe's noise levels
over to the VP path (where logit-normal times mostly draw log-SNR far below 0, and rarely the low-noise end)."""
LOG_SNR_STD = 2.0
"""log-SNR = 2 logit(t) on the linear path, so logit-normal times there have log-SNR ~ N(0, 2^2)."""


def continuous_loss(path_name: str, label_dropout: float = 0.1, time_sampling: str = "uniform") -> LossFn:
    """Denoising / flow-matching regression loss on the named path, to the model config's target; label dropout."""
    if time_sampling not in TIME_SAMPLINGS:
        raise InvalidArgument(f"unknown time_sampling {time_sampling!r}; choose from {TIME_SAMPLINGS}")
    if path_name not in PATHS:
        raise InvalidArgument(f"unknown path {path_name!r}; choose from {sorted(PATHS)}")

    def loss_fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x_data = images * 2 - 1  # [0, 1] -> [-1, 1]
        b = x_data.shape[0]
        path = path_for(path_name, model.config)
        if time_sampling == "uniform":
            t = torch.rand(b, generator=g, device=g.device).to(x_data.device)
        elif time_sampling == "logit-normal":
            t = torch.sigmoid(torch.randn(b, generator=g, device=g.device)).to(x_data.device)
        else:
            t = time_at_log_snr(path, LOG_SNR_STD * torch.randn(b, generator=g, device=g.device).to(x_data.device))
        if path_name == "diffusion":
            t = 1e-3 + (1 - 1e-3) * t
        noise = torch.randn(x_data.shape, generator=g, device=g.device).to(x_data.device)
        drop = torch.rand(b, generator=g, device=g.device).to(x_data.device) < label_dropout
        labels = torch.where(drop, torch.full_like(labels, model.null_class), labels)
        x_t, target = path.training_pair(x_data, noise, t)
        prediction, _ = model(x_t, t, labels)
        return (prediction - target).pow(2).mean()

    return loss_fn


@dataclass
class ZooEntry:
    """How one zoo generator is built and trained."""

    paradigm: str
    """Which sampler drives it: "diffusion", "flow", "maskgit" or "var"."""
    model_cls: type[nn.Module]
    """Called with the config to build the network."""
    config: Any
    """The network's config dataclass instance."""
    loss: LossFn
    """Training loss."""
    train_config: TrainConfig = field(default_factory=TrainConfig)
    """Training hyper-parameters of the shipped weights."""


MASKGIT_TOKENIZER_STEPS = 1200
"""Steps of the MaskGIT recipe's tokenizer stage (the transformer's start after it)."""
VAR_TOKENIZER_STEPS = 1200
"""Steps of the VAR recipe's tokenizer stage."""
CONTINUOUS_TRAINING = TrainConfig(steps=16000, batch_size=64, lr=1e-3, warmup=300, checkpoint_every=500)
"""The DiT recipe shared by the diffusion and flow generators."""

ZOO: dict[str, ZooEntry] = {
    # `adagen zoo train flow --steps 100` ran at 4.0 it/s on the idle 2-core CPU: 16000 steps are about 67 min.
    # Logit-normal times were chosen over uniform ones in exploratory GPU runs (ad-hoc, not a committed result).
    # Diffusion predicts v on the cosine VP schedule: at equal training it beats epsilon on the linear-beta schedule
    # (class agreement 0.794 vs 0.680 at NFE 32; `benchmarks/results/diffusion_recipe/diffusion_recipe.md`).
    "diffusion": ZooEntry(
        "diffusion",
        DiT,
        DiTConfig(prediction="v", noise_schedule="cosine"),
        continuous_loss("diffusion", time_sampling="logit-normal"),
        CONTINUOUS_TRAINING,
    ),
    "flow": ZooEntry(
        "flow", DiT, DiTConfig(), continuous_loss("flow", time_sampling="logit-normal"), CONTINUOUS_TRAINING
    ),
    # Token paradigms at 32x32: tokenizer first, then the transformer (see `maskgit_loss`, `var_loss`).
    # s/step measured on the 2-core CPU with 1 thread beside another training (about 2x pessimistic):
    # MaskGIT 1.25 (tokenizer) / 2.12 (transformer), VAR at batch 64 0.72 / 2.31.
    # MaskGIT: a tokenizer of the clean renderings (its codes carry no grain; sampling adds the data's grain back),
    # a codebook-tied transformer, the learning rate warmed up again when the transformer stage starts. Its loss
    # still fell at step 9000, so a third stage (its own warm-up and cosine decay) trains on to 20000; the first
    # 9000 steps are those of the 9000-step recipe. Many hours on the busy machine: it trains in sittings
    # (`adagen zoo train maskgit` resumes from --workdir).
    "maskgit": ZooEntry(
        "maskgit",
        MaskGIT,
        MaskGITConfig(
            tokenizer=VQConfig(base_channels=24, codebook_size=512, grain_sigma=GRAIN_SIGMA),
            width=128,
            depth=6,
            heads=4,
            codebook_tied=True,
        ),
        maskgit_loss(tokenizer_steps=MASKGIT_TOKENIZER_STEPS),
        TrainConfig(
            steps=20000, batch_size=128, lr=5e-4, warmup=100, resolution=32, stages=(MASKGIT_TOKENIZER_STEPS, 9000)
        ),
    ),
    # VAR: the same recipe on its multi-scale tokenizer (its inputs already are sums of codes; the logits are tied).
    "var": ZooEntry(
        "var",
        VAR,
        VARConfig(
            tokenizer=VQConfig(base_channels=24, codebook_size=256, scales=(1, 2, 3, 4, 6, 8), grain_sigma=GRAIN_SIGMA),
            width=128,
            depth=6,
            codebook_tied=True,
        ),
        var_loss(tokenizer_steps=VAR_TOKENIZER_STEPS),
        TrainConfig(steps=8000, batch_size=64, lr=5e-4, warmup=100, resolution=32, stages=(VAR_TOKENIZER_STEPS,)),
    ),
    # The metrics' feature network: trained like a zoo model, never used as a generator or a reward.
    "shapes-classifier": ZooEntry(
        "classifier",
        ShapesClassifier,
        ClassifierConfig(),
        classifier_loss,
        TrainConfig(steps=1500, batch_size=128, lr=2e-3, warmup=100, weight_decay=5e-4, resolution=32),
    ),
    # The frozen rewards' network (batch-FID, classifier log-probability): smaller, another seed, never the metric's.
    "reward-classifier": ZooEntry(
        "classifier",
        ShapesClassifier,
        ClassifierConfig(width=16),
        classifier_loss,
        TrainConfig(steps=600, batch_size=128, lr=2e-3, warmup=50, weight_decay=5e-4, resolution=32, seed=1),
    ),
    # The oracle metrics' factor network (`adagen_env.metrics.oracle`): regresses each image's generating factors.
    # `adagen zoo train shapes-factors` took about 7 minutes on the 2-core CPU (shapes-ssl: 10).
    "shapes-factors": ZooEntry(
        "measure",
        FactorNet,
        FactorNetConfig(width=16),
        factor_loss,
        TrainConfig(steps=3000, batch_size=128, lr=2e-3, warmup=100, weight_decay=1e-4, seed=2),
    ),
    # The FD-SSL yardstick's encoder (`adagen_env.models.ssl`): a batch of 64 scenes is 256 contrastive views.
    "shapes-ssl": ZooEntry(
        "measure",
        SSLEncoder,
        SSLConfig(),
        ssl_loss,
        TrainConfig(steps=2000, batch_size=64, lr=2e-3, warmup=100, weight_decay=1e-4, seed=3),
    ),
}

MEASURING_PARADIGMS = ("classifier", "measure")
"""Paradigms of zoo networks that measure or reward images rather than make them."""
GENERATORS = tuple(name for name, recipe in ZOO.items() if recipe.paradigm not in MEASURING_PARADIGMS)


def entry(name: str) -> ZooEntry:
    """The recipe of zoo model `name`; an unknown name gets the list of names and a suggestion."""
    if name not in ZOO:
        close = difflib.get_close_matches(name, list(ZOO), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidArgument(f"unknown zoo model {name!r}; available: {sorted(ZOO)}.{hint}")
    return ZOO[name]


def load(name: str, device: str | torch.device = "cpu", weights_dir: str | Path = WEIGHTS_DIR) -> nn.Module:
    """Build zoo model `name` and load its shipped weights; returns it frozen, in eval mode.

    Raises:
        InvalidArgument: unknown name.
        CheckpointError: weights missing, unreadable, or of another shape than the config says.
    """
    recipe = entry(name)
    return load_shipped(name, recipe.model_cls, type(recipe.config), recipe.config, device, weights_dir)


def weights_digest(model: nn.Module) -> str:
    """First 16 hex digits of the SHA-256 of a model's state dict (names, shapes, dtypes, values): which generator
    weights a policy was trained against, so that it is never scored on other weights by accident."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def train_and_export(
    name: str,
    workdir: str | Path,
    device: str = "cpu",
    steps: int | None = None,
    weights_dir: str | Path = WEIGHTS_DIR,
) -> Path:
    """Run (or resume) the recipe of `name` and write its EMA weights and metadata into `weights_dir`; the metadata
    lists the run's sittings (steps, wall time, git commit) and their total wall time."""
    recipe = entry(name)
    config = recipe.train_config if steps is None else TrainConfig(**{**recipe.train_config.__dict__, "steps": steps})
    torch.manual_seed(config.seed)
    model = recipe.model_cls(recipe.config)
    run_dir = Path(workdir) / name
    ema = train(model, recipe.loss, config, run_dir, device=device, desc=f"zoo {name}")
    segments = json.loads((run_dir / SEGMENTS).read_text()) if (run_dir / SEGMENTS).exists() else []
    out = weights_path(name, weights_dir)
    save_weights(
        ema,
        out,
        {
            "config": recipe.config.to_dict(),
            "train": config.__dict__,
            "paradigm": recipe.paradigm,
            "device": str(device),
            "segments": segments,
            "wall_seconds": round(sum(s["seconds"] for s in segments), 1),
        },
    )
    return out


def save_weights(model: nn.Module, path: str | Path, meta: dict[str, Any]) -> None:
    """Write `model`'s weights to `path` (.safetensors) and `meta` beside it (.json): the pair `load` and the envs'
    `generator=PATH` read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


__all__ = [
    "GENERATORS",
    "WEIGHTS_DIR",
    "ZOO",
    "ZooEntry",
    "entry",
    "load",
    "load_state",
    "save_weights",
    "train_and_export",
    "weights_digest",
    "weights_path",
]
