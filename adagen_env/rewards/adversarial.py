"""The adversarial reward: a class-conditional discriminator trained online against real images.

AdaNAT's reward, as in its public code: final images of finished episodes are the discriminator's fakes, fresh
real images with the same labels its reals; non-saturating BCE, Adam (lr 1e-4, betas 0.5 / 0.999),
a few updates per batch; the reward of an image is sigmoid of the discriminator's mean logit.
Because the discriminator keeps moving, the policy cannot overfit a fixed target.

Once the discriminator wins (every fake near logit -5 and below), sigmoid rewards all sit near 0 and PPO's signal
fades: that is the saturating generator objective of the original GAN. `reward="log-sigmoid"` is the
non-saturating one (log D, Goodfellow et al. 2014), whose reward keeps ranking confident fakes linearly in the logit.

Letters: B images, R image side, N tokens, D width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adagen_env.checks import check_images, check_labels
from adagen_env.data import ShapesDataset
from adagen_env.errors import InvalidArgument
from adagen_env.rewards.base import RewardModel
from adagen_env.rewards.projected import (
    AUGMENTATIONS,
    DEFAULT_AUGMENTATIONS,
    DEFAULT_BACKBONES,
    ProjectedDiscriminator,
    diff_augment,
)


class TransformerDiscriminator(nn.Module):
    """Patch tokens -> a few transformer layers -> per-token logits with class projection.

    logit_n = w . h_n + <embed(y), h_n> (projection discriminator, Miyato & Koyama 2018); the image's
    logit is the mean over tokens. Input (B, 3, R, R) in [0, 1]; output (B,) logits.
    """

    def __init__(
        self, num_classes: int, resolution: int, patch: int = 2, width: int = 64, depth: int = 2, heads: int = 4
    ) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, width, patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.randn(1, (resolution // patch) ** 2, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, 1)
        self.class_embed = nn.Embedding(num_classes, width)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(images * 2 - 1).flatten(2).transpose(1, 2) + self.pos_embed  # (B, N, D)
        h = self.norm(self.encoder(tokens))  # (B, N, D)
        logits = (
            self.out(h).squeeze(-1) + (h * self.class_embed(labels)[:, None]).sum(-1) / h.shape[-1] ** 0.5
        )  # (B, N)
        return logits.mean(dim=1)


class ConvDiscriminator(nn.Module):
    """Strided convolutions -> per-location logits with class projection; the convolutional option."""

    def __init__(self, num_classes: int, resolution: int, width: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, width, 3, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.out = nn.Conv2d(width, 1, 1)
        self.class_embed = nn.Embedding(num_classes, width)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.body(images * 2 - 1)  # (B, D, R/2, R/2)
        proj = (h * self.class_embed(labels)[:, :, None, None]).sum(1, keepdim=True) / h.shape[1] ** 0.5
        return (self.out(h) + proj).mean(dim=(1, 2, 3))


DISCRIMINATORS = {
    "transformer": TransformerDiscriminator,
    "conv": ConvDiscriminator,
    "projected": ProjectedDiscriminator,
}
REWARD_FUNCTIONS = {"sigmoid": torch.sigmoid, "log-sigmoid": F.logsigmoid}
"""Discriminator logit (B,) -> reward (B,): the anchor's D(x), or log D(x) (non-saturating)."""


class AdversarialReward(RewardModel):
    """Reward = sigmoid (or log-sigmoid) of D(image, label), a discriminator that learns online from every finished batch.

    Args:
        num_classes: classes of the env's labels.
        resolution: side of the final images.
        real_data: where reals come from (an object with `sample(n, labels=, generator=)`); the
            procedural shapes at `resolution` when None.
        architecture: "transformer" (default), "conv", or "projected" (`ProjectedDiscriminator`: trainable heads
            on frozen networks' features at several depths).
        backbones: the projected discriminator's frozen networks (of `BACKBONES`); None: `DEFAULT_BACKBONES`.
        augment: the DiffAugment operations (of `AUGMENTATIONS`: "colour", "translation", "cutout") applied to
            reals and fakes alike at every update, () for none; None: `DEFAULT_AUGMENTATIONS` (translation and
            cutout) for "projected", none for the pixel discriminators.
        reward: "sigmoid" (the anchor's D(x), in (0, 1)) or "log-sigmoid" (log D(x) <= 0, non-saturating).
        updates_per_batch: discriminator steps per batch of finished episodes.
        lr, betas: Adam settings (anchor: 1e-4, (0.5, 0.999)).
        device: where the discriminator lives.
        seed: seeds the discriminator's init and the real-data stream.
    """

    online = True

    def __init__(
        self,
        num_classes: int,
        resolution: int,
        real_data: object | None = None,
        architecture: str = "transformer",
        augment: tuple[str, ...] | list[str] | None = None,
        backbones: tuple[str, ...] | list[str] | None = None,
        reward: str = "sigmoid",
        updates_per_batch: int = 2,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        device: torch.device | str = "cpu",
        seed: int = 0,
    ) -> None:
        if architecture not in DISCRIMINATORS:
            raise InvalidArgument(f"architecture must be one of {sorted(DISCRIMINATORS)}, got {architecture!r}")
        if reward not in REWARD_FUNCTIONS:
            raise InvalidArgument(f"reward must be one of {sorted(REWARD_FUNCTIONS)}, got {reward!r}")
        if updates_per_batch < 1:
            raise InvalidArgument(f"updates_per_batch must be >= 1, got {updates_per_batch!r}")
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if architecture == "projected":
                self.backbones = tuple(backbones or DEFAULT_BACKBONES)
                self.discriminator = ProjectedDiscriminator(num_classes, resolution, backbones=self.backbones)
            elif backbones is not None:
                raise InvalidArgument(f"backbones are for the projected discriminator, not {architecture!r}")
            else:
                self.backbones = ()
                self.discriminator = DISCRIMINATORS[architecture](num_classes, resolution)
            self.discriminator.to(self.device)
        trainable = [p for p in self.discriminator.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=lr, betas=betas)
        if augment is None:
            augment = DEFAULT_AUGMENTATIONS if architecture == "projected" else ()
        if isinstance(augment, str) or any(op not in AUGMENTATIONS for op in augment):
            raise InvalidArgument(f"augment must be a sequence of {list(AUGMENTATIONS)}, got {augment!r}")
        self.augment = tuple(op for op in AUGMENTATIONS if op in augment)
        self.augment_rng = torch.Generator(device=self.device).manual_seed(seed + 2)
        self.real_data = real_data if real_data is not None else ShapesDataset(resolution, num_classes=num_classes)
        self.real_rng = torch.Generator().manual_seed(seed + 1)
        self.updates_per_batch = updates_per_batch
        self.architecture = architecture
        self.reward_function = REWARD_FUNCTIONS[reward]
        self.num_updates = 0

    @torch.no_grad()
    def score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images), check_labels(labels, images.shape[0])
        self.discriminator.eval()
        return self.reward_function(self.discriminator(images.to(self.device), labels.to(self.device))).float()

    @torch.enable_grad()  # callers may step the env under no_grad (TorchRL's collectors do)
    def update(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Non-saturating BCE steps: reals (same labels, fresh) vs these fakes; returns loss and accuracies."""
        if not self.training:
            return {}
        check_images(images), check_labels(labels, images.shape[0])
        fakes, labels = images.detach().to(self.device), labels.to(self.device)
        self.discriminator.train()
        for _ in range(self.updates_per_batch):
            reals, _ = self.real_data.sample(labels.shape[0], labels=labels.cpu(), generator=self.real_rng)
            reals, seen_fakes = reals.to(self.device), fakes
            if self.augment:
                reals = diff_augment(reals, self.augment_rng, self.augment)
                seen_fakes = diff_augment(fakes, self.augment_rng, self.augment)
            logits = self.discriminator(torch.cat([reals, seen_fakes]), torch.cat([labels, labels]))  # one pass
            logit_real, logit_fake = logits.chunk(2)
            loss = F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.num_updates += 1
        return {
            "disc/loss": loss.item(),
            "disc/acc_real": (logit_real > 0).float().mean().item(),
            "disc/acc_fake": (logit_fake < 0).float().mean().item(),
        }

    def state_dict(self) -> dict:
        return {
            "architecture": self.architecture,
            "backbones": list(self.backbones),
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "real_rng": self.real_rng.get_state(),
            "augment_rng": self.augment_rng.get_state(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("architecture") != self.architecture:
            raise InvalidArgument(
                f"discriminator state is for architecture {state.get('architecture')!r}, this reward uses {self.architecture!r}"
            )
        theirs = tuple(state.get("backbones") or (DEFAULT_BACKBONES if self.architecture == "projected" else ()))
        if theirs != self.backbones:
            raise InvalidArgument(
                f"discriminator state is for backbones {list(theirs)}, this reward uses {list(self.backbones)}"
            )
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.real_rng.set_state(state["real_rng"])
        if "augment_rng" in state:
            self.augment_rng.set_state(state["augment_rng"].to(self.augment_rng.get_state().device))
        self.num_updates = int(state["num_updates"])
