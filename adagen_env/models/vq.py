"""VQ tokenizers of the token paradigms: a single-scale one for MaskGIT, a multi-scale residual one for VAR.

Both share a small convolutional encoder and decoder (downsampling factor f = 2**downsample) and a
codebook updated by exponential moving averages with k-means initialisation and dead-code restarts
(van den Oord et al. 2017, arXiv 1711.00937, appendix; restarts as in Jukebox, arXiv 2005.00341).

- `VQTokenizer` (MaskGIT, Chang et al. 2022, arXiv 2202.04200): one token per f x f patch, a g x g grid.
- `MultiScaleVQTokenizer` (VAR, Tian et al. 2024, arXiv 2404.02905, its `quant.py`): token maps at
  `scales` (1, 2, ..., g) quantise the residual left by the coarser ones. The map of scale s is looked
  up, upsampled bicubically to g x g, refined by that scale's conv `phi_s`
  (h <- (1 - r) h + r conv(h), r = 0.5) and added to the running sum `f_hat`; the transformer's input
  for scale s + 1 is `f_hat` area-downsampled to that scale.

With `grain_sigma` > 0 a tokenizer learns to reconstruct the *clean* rendering of each training image
(`clean_pair`: the procedural data renders both), so its codes describe the shapes and not the per-pixel grain;
sampling then adds iid grain of that standard deviation to the decoded image (`add_grain`), as a Gaussian decoder
p(x | z) = N(decoder(z), sigma^2) would.

Letters: B batch, R image side, d code width, V codebook size, g token-grid side, M vectors, S scales,
pn side of one scale's map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adagen_env.data.shapes import GRAIN_SIGMA, ShapesDataset, render_shapes
from adagen_env.errors import InvalidArgument


@dataclass
class VQConfig:
    """Shape and codebook dynamics of a tokenizer; round-trips to JSON beside the shipped weights."""

    resolution: int = 32
    """Image side R in pixels."""
    channels: int = 3
    """Image channels."""
    base_channels: int = 32
    """Conv width at full resolution; doubled at each downsampling."""
    downsample: int = 2
    """Number of stride-2 stages: the token grid is g = R / 2**downsample on a side."""
    codebook_size: int = 512
    """V, the number of codes (token ids 0 .. V - 1)."""
    code_dim: int = 32
    """d, the width of a code vector."""
    codebook_decay: float = 0.99
    """EMA decay of the codebook statistics."""
    dead_count: float = 1.0
    """A code whose EMA count of assigned vectors per batch falls below this is restarted on a random vector."""
    commitment: float = 0.25
    """Weight beta of the commitment loss ||z - sg(q)||^2."""
    scales: tuple[int, ...] = ()
    """Map sides of the multi-scale residual tokenizer, coarse to fine, ending at g; empty for single scale."""
    phi_ratio: float = 0.5
    """r of VAR's per-scale refinement h <- (1 - r) h + r conv(h)."""
    grain_sigma: float = 0.0
    """0: reconstruct the images as they are. > 0: reconstruct their clean renderings, and add iid grain of this
    standard deviation to decoded images when sampling (the data's `GRAIN_SIGMA`)."""

    def __post_init__(self) -> None:
        self.scales = tuple(int(s) for s in self.scales)  # JSON gives a list
        if self.resolution % 2**self.downsample:
            raise InvalidArgument(
                f"resolution {self.resolution} must be divisible by 2**downsample = {2**self.downsample}"
            )
        if self.scales and (
            self.scales[-1] != self.grid or list(self.scales) != sorted(set(self.scales)) or self.scales[0] < 1
        ):
            raise InvalidArgument(
                f"scales must be strictly increasing sides >= 1 ending at the token grid {self.grid}, got {self.scales}"
            )

    @property
    def grid(self) -> int:
        """g, the side of the (finest) token grid."""
        return self.resolution // 2**self.downsample

    def to_dict(self) -> dict:
        return asdict(self)


def clean_pair(
    batch: int,
    config: VQConfig,
    num_classes: int,
    generator: torch.Generator,
    labels: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, clean, labels): `batch` fresh shapes drawn from `generator` (of the (B,) `labels` given, else uniform
    classes), (B, C, R, R) with their grain and without it, and their (B,) classes, on the generator's device."""
    data = ShapesDataset(config.resolution, num_classes=num_classes)
    if labels is None:
        labels = torch.randint(num_classes, (batch,), generator=generator, device=generator.device)
    factors = data.draw_factors(labels, generator)
    clean = render_shapes(
        labels, {k: v for k, v in factors.items() if k != "grain"}, data.class_names, config.resolution
    )
    return render_shapes(labels, factors, data.class_names), clean, labels


def reconstruction_batch(
    config: VQConfig, images: torch.Tensor, batch: int, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What a tokenizer-training step reconstructs: the first `batch` of `images` themselves (target None), or with
    `config.grain_sigma` > 0 a fresh `clean_pair` (images, their clean renderings)."""
    if config.grain_sigma > 0:
        return clean_pair(batch, config, num_classes, generator)[:2]
    return images[:batch], None


def token_batch(
    config: VQConfig, images: torch.Tensor, labels: torch.Tensor, num_classes: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) whose tokens a transformer-training step learns: the batch itself, or with
    `config.grain_sigma` > 0 the clean renderings of a fresh batch, so the targets carry no grain at all."""
    if config.grain_sigma > 0:
        _, clean, fresh = clean_pair(images.shape[0], config, num_classes, generator)
        return clean, fresh.to(labels.device)
    return images, labels


def add_grain(images: torch.Tensor, sigma: float, noise: torch.Tensor) -> torch.Tensor:
    """(B, C, R, R) images in [0, 1] + sigma * (B, 1, R, R) standard-normal noise (one grain field for every
    channel, as the data's), clamped to [0, 1]."""
    return (images + sigma * noise.to(images)).clamp(0, 1)


@torch.no_grad()
def round_trip(tokenizer: nn.Module, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, C, R, R) images in [0, 1] encoded and decoded by a tokenizer of either kind, plus iid grain of its
    `grain_sigma` drawn from `generator` where it decodes clean renderings (as its generator's samples get)."""
    out = tokenizer.decode(tokenizer.encode(images))
    sigma = tokenizer.config.grain_sigma
    if sigma <= 0:
        return out
    b, _, r, _ = out.shape
    return add_grain(out, sigma, torch.randn(b, 1, r, r, generator=generator, device=generator.device))


FLIP_SCENES = 1000
"""Scenes whose token ids `grain_flip_rates` compares under two draws of the grain, by default."""


@torch.no_grad()
def grain_flip_rates(
    tokenizer: nn.Module, scenes: int = FLIP_SCENES, seed: int = 0, sigma: float = GRAIN_SIGMA
) -> list[float]:
    """Share of the token ids of `scenes` shapes scenes that change when their grain is drawn again with standard
    deviation `sigma`: one rate per token map, coarse to fine (a single one for a single-scale tokenizer).

    Raises:
        InvalidArgument: `scenes` is not a positive int, or `sigma` is negative.
    """
    if not isinstance(scenes, int) or scenes < 1:
        raise InvalidArgument(f"scenes must be an int >= 1, got {scenes!r}")
    if not sigma >= 0:
        raise InvalidArgument(f"sigma must be >= 0, got {sigma!r}")
    g = torch.Generator().manual_seed(seed)
    data = ShapesDataset(tokenizer.config.resolution)
    labels = torch.arange(scenes) % data.num_classes
    factors = data.draw_factors(labels, g)
    redrawn = {**factors, "grain": torch.randn(factors["grain"].shape, generator=g) * sigma}
    device = next(tokenizer.parameters()).device
    a, b = (tokenizer.encode(render_shapes(labels, f).to(device)) for f in (factors, redrawn))
    pairs = zip(a, b) if isinstance(a, list) else [(a, b)]
    return [float((x != y).float().mean()) for x, y in pairs]


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a skip connection, at constant width."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.GroupNorm(8, width),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """(B, C, R, R) images in [-1, 1] -> (B, d, g, g) continuous codes."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        c = config.base_channels
        layers: list[nn.Module] = [nn.Conv2d(config.channels, c, 3, padding=1)]
        for _ in range(config.downsample):
            layers += [nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), ResBlock(2 * c)]
            c *= 2
        layers += [nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, config.code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """(B, d, g, g) quantised codes -> (B, C, R, R) images in [-1, 1] (not clamped)."""

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        c = config.base_channels * 2**config.downsample
        layers: list[nn.Module] = [nn.Conv2d(config.code_dim, c, 3, padding=1), ResBlock(c)]
        for i in range(config.downsample):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c // 2, 3, padding=1)]
            c //= 2
            if i < config.downsample - 1:
                layers.append(ResBlock(c))
        layers += [nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, config.channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Codebook(nn.Module):
    """V codes of width d, learned by EMA k-means rather than by gradients.

    Buffers (all shipped with the weights): `codes` (V, d), the EMA statistics `counts` (V,) and
    `sums` (V, d), and `initialised` (0 until `initialise` has run k-means on a batch).
    """

    def __init__(self, size: int, dim: int, decay: float, dead_count: float) -> None:
        super().__init__()
        self.size, self.dim, self.decay, self.dead_count = size, dim, decay, dead_count
        self.register_buffer("codes", torch.randn(size, dim) * 0.1)
        self.register_buffer("counts", torch.zeros(size))
        self.register_buffer("sums", torch.zeros(size, dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.long))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(M, d) vectors -> (M,) ids of their nearest codes (Euclidean)."""
        distances = z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codes.t() + self.codes.pow(2).sum(1)[None]  # (M, V)
        return distances.argmin(dim=1)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """(...,) token ids -> (..., d) code vectors; ids outside [0, V) are an error."""
        if ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise InvalidArgument(f"token ids must be an integer tensor, got dtype {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.size):
            raise InvalidArgument(
                f"token ids must be in [0, {self.size}) (the codebook size), "
                f"got range [{int(ids.min())}, {int(ids.max())}]"
            )
        return F.embedding(ids.long(), self.codes)

    @torch.no_grad()
    def initialise(self, z: torch.Tensor, generator: torch.Generator, iters: int = 5) -> None:
        """k-means initialisation on (M, d) vectors (M >= V): k-means++ seeding, then a few Lloyd iterations."""
        z = z.detach().float()
        if z.shape[0] < self.size:
            raise InvalidArgument(f"k-means initialisation needs at least V = {self.size} vectors, got {z.shape[0]}")
        # 1. k-means++ (Arthur & Vassilvitskii 2007): each new code is a vector drawn with probability ~ D^2.
        first = torch.randint(z.shape[0], (1,), generator=generator, device=generator.device).to(z.device)
        self.codes[0] = z[first[0]]
        nearest_sq = (z - self.codes[0]).pow(2).sum(1)  # (M,)
        for i in range(1, self.size):
            weights = nearest_sq.clamp_min(0) + 1e-12
            pick = torch.multinomial(weights.to(generator.device), 1, generator=generator).to(z.device)
            self.codes[i] = z[pick[0]]
            nearest_sq = torch.minimum(nearest_sq, (z - self.codes[i]).pow(2).sum(1))
        # 2. Lloyd iterations.
        for _ in range(iters):
            ids = self.nearest(z)
            counts = torch.bincount(ids, minlength=self.size).float()
            sums = torch.zeros_like(self.codes).index_add_(0, ids, z)
            used = counts > 0
            self.codes[used] = sums[used] / counts[used, None]
        ids = self.nearest(z)
        self.counts.copy_(torch.bincount(ids, minlength=self.size).float())
        self.sums.copy_(self.codes * self.counts[:, None])
        self.initialised.fill_(1)

    @torch.no_grad()
    def update(self, z: torch.Tensor, ids: torch.Tensor, generator: torch.Generator) -> None:
        """One EMA k-means step on (M, d) vectors `z` assigned to (M,) `ids`, then restart dead codes."""
        z = z.detach().float()
        # 1. EMA of the assignment counts and sums; codes are their Laplace-smoothed ratio.
        counts = torch.bincount(ids, minlength=self.size).float()
        sums = torch.zeros_like(self.sums).index_add_(0, ids, z)
        self.counts.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.sums.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.counts.sum()
        smoothed = (self.counts + 1e-5) / (total + self.size * 1e-5) * total
        self.codes.copy_(self.sums / smoothed[:, None])
        # 2. Dead-code restarts (Jukebox): a code used less than `dead_count` times per batch takes a random vector.
        dead = self.counts < self.dead_count
        n_dead = int(dead.sum())
        if n_dead:
            picks = z[torch.randint(z.shape[0], (n_dead,), generator=generator, device=generator.device).to(z.device)]
            self.codes[dead] = picks
            self.sums[dead] = picks
            self.counts[dead] = 1.0

    def usage(self) -> float:
        """Fraction of codes alive (EMA count >= dead_count)."""
        return float((self.counts >= self.dead_count).float().mean())


def _to_model_range(images: torch.Tensor) -> torch.Tensor:
    return images * 2 - 1  # [0, 1] -> [-1, 1]


def _to_images(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


class VQTokenizer(nn.Module):
    """Single-scale VQ tokenizer: (B, C, R, R) images <-> (B, g, g) token ids in [0, V).

    Args:
        config: a `VQConfig` with empty `scales`.
    """

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        if config.scales:
            raise InvalidArgument(
                f"VQTokenizer is single-scale; got scales {config.scales} (use MultiScaleVQTokenizer)"
            )
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.codebook = Codebook(config.codebook_size, config.code_dim, config.codebook_decay, config.dead_count)

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    def _quantise(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, C, R, R) in [0, 1] -> (z (B, d, g, g), q (B, d, g, g), ids (B, g, g))."""
        z = self.encoder(_to_model_range(images))
        b, d, g, _ = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # (B*g*g, d)
        ids = self.codebook.nearest(flat.detach())
        q = self.codebook.codes[ids].reshape(b, g, g, d).permute(0, 3, 1, 2)  # (B, d, g, g)
        return z, q, ids.reshape(b, g, g)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, R, R) images in [0, 1] -> (B, g, g) token ids."""
        return self._quantise(images)[2]

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, g, g) or (B, g*g) token ids in [0, V) -> (B, C, R, R) images in [0, 1]."""
        g = self.config.grid
        if ids.ndim not in (2, 3) or ids.shape[-1] * (ids.shape[-2] if ids.ndim == 3 else 1) != g * g:
            raise InvalidArgument(f"token ids must have shape (B, {g}, {g}) or (B, {g * g}), got {tuple(ids.shape)}")
        q = self.codebook.lookup(ids.reshape(-1, g, g)).permute(0, 3, 1, 2)  # (B, d, g, g)
        return _to_images(self.decoder(q))

    def loss(
        self, images: torch.Tensor, generator: torch.Generator, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Training loss of one batch (reconstruction of `target`, the images when None, + commitment); updates the
        codebook by EMA."""
        if self.training and not int(self.codebook.initialised):
            with torch.no_grad():
                z = self.encoder(_to_model_range(images))
            self.codebook.initialise(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), generator)
        z, q, ids = self._quantise(images)
        if self.training:
            self.codebook.update(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), ids.reshape(-1), generator)
        recon = self.decoder(z + (q - z).detach())  # straight-through estimator
        target = images if target is None else target
        return F.mse_loss(recon, _to_model_range(target)) + self.config.commitment * F.mse_loss(z, q.detach())

    def decoder_loss(self, images: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction loss of `target` (the images when None) that trains only the decoder on the frozen encoder
        and codebook."""
        with torch.no_grad():
            q = self._quantise(images)[1]
        return F.mse_loss(self.decoder(q), _to_model_range(images if target is None else target))


class MultiScaleVQTokenizer(nn.Module):
    """VAR's multi-scale residual tokenizer: images <-> S token maps of sides `config.scales`, one shared codebook.

    Args:
        config: a `VQConfig` whose `scales` end at the token grid g.
    """

    def __init__(self, config: VQConfig) -> None:
        super().__init__()
        if not config.scales:
            raise InvalidArgument("MultiScaleVQTokenizer needs config.scales, e.g. (1, 2, 3, 4, 6, 8)")
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.codebook = Codebook(config.codebook_size, config.code_dim, config.codebook_decay, config.dead_count)
        d = config.code_dim
        self.phi = nn.ModuleList(nn.Conv2d(d, d, 3, padding=1) for _ in config.scales)

    @property
    def vocab_size(self) -> int:
        return self.config.codebook_size

    @property
    def scales(self) -> tuple[int, ...]:
        return self.config.scales

    def add_scale(self, f_hat: torch.Tensor, ids: torch.Tensor, si: int) -> torch.Tensor:
        """Add scale `si`'s token map to the running sum: f_hat (B, d, g, g), ids (B, pn*pn) -> new f_hat."""
        pn = self.scales[si]
        h = self.codebook.lookup(ids).reshape(-1, pn, pn, self.config.code_dim).permute(0, 3, 1, 2)  # (B, d, pn, pn)
        return f_hat + self._refine(h, si)

    def _refine(self, h: torch.Tensor, si: int) -> torch.Tensor:
        """(B, d, pn, pn) looked-up codes -> (B, d, g, g): bicubic upsampling, then phi_si."""
        g, r = self.config.grid, self.config.phi_ratio
        if h.shape[-1] != g:
            h = F.interpolate(h, size=(g, g), mode="bicubic", align_corners=False)
        return (1 - r) * h + r * self.phi[si](h)

    def next_input(self, f_hat: torch.Tensor, si: int) -> torch.Tensor:
        """The transformer's input for scale `si` >= 1: f_hat (B, d, g, g) area-downsampled -> (B, pn*pn, d)."""
        pn = self.scales[si]
        x = f_hat if pn == self.config.grid else F.interpolate(f_hat, size=(pn, pn), mode="area")
        return x.flatten(2).transpose(1, 2)  # (B, pn*pn, d)

    def _quantise(
        self, images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """images -> (z (B, d, g, g), f_hat (B, d, g, g), ids [(B, pn*pn)] and residuals [(B*pn*pn, d)] per scale)."""
        z = self.encoder(_to_model_range(images))
        rest, f_hat = z.detach(), torch.zeros_like(z)
        ids_per_scale, residuals = [], []
        for si, pn in enumerate(self.scales):
            # 1. The residual at this scale's resolution, quantised to its nearest codes.
            r = rest if pn == self.config.grid else F.interpolate(rest, size=(pn, pn), mode="area")
            flat = r.permute(0, 2, 3, 1).reshape(-1, r.shape[1])  # (B*pn*pn, d)
            ids = self.codebook.nearest(flat)
            # 2. Upsample + phi, then move it from the residual into f_hat (phi keeps its gradient).
            h = self._refine(self.codebook.codes[ids].reshape(r.shape[0], pn, pn, -1).permute(0, 3, 1, 2), si)
            f_hat = f_hat + h
            rest = rest - h.detach()
            ids_per_scale.append(ids.reshape(r.shape[0], pn * pn))
            residuals.append(flat)
        return z, f_hat, ids_per_scale, residuals

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, C, R, R) images in [0, 1] -> S token maps [(B, pn*pn)], coarse to fine."""
        return self._quantise(images)[2]

    def ids_to_fhat(self, ids_per_scale: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """S token maps -> (f_hat (B, d, g, g), teacher-forcing inputs (B, L - 1, d) of scales 1 .. S-1)."""
        b, g = ids_per_scale[0].shape[0], self.config.grid
        f_hat = torch.zeros(b, self.config.code_dim, g, g, device=self.codebook.codes.device)
        inputs = []
        for si, ids in enumerate(ids_per_scale):
            f_hat = self.add_scale(f_hat, ids, si)
            if si + 1 < len(self.scales):
                inputs.append(self.next_input(f_hat, si + 1))
        return f_hat, torch.cat(inputs, dim=1)

    def decode_fhat(self, f_hat: torch.Tensor) -> torch.Tensor:
        """(B, d, g, g) summed codes -> (B, C, R, R) images in [0, 1]."""
        return _to_images(self.decoder(f_hat))

    def decode(self, ids_per_scale: list[torch.Tensor]) -> torch.Tensor:
        """S token maps [(B, pn*pn)] with ids in [0, V) -> (B, C, R, R) images in [0, 1]."""
        if len(ids_per_scale) != len(self.scales):
            raise InvalidArgument(f"decode needs one token map per scale {self.scales}, got {len(ids_per_scale)}")
        for pn, ids in zip(self.scales, ids_per_scale):
            if ids.ndim != 2 or ids.shape[1] != pn * pn:
                raise InvalidArgument(
                    f"the token map of scale {pn} must have shape (B, {pn * pn}), got {tuple(ids.shape)}"
                )
        return self.decode_fhat(self.ids_to_fhat(ids_per_scale)[0])

    def loss(
        self, images: torch.Tensor, generator: torch.Generator, target: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Training loss of one batch (reconstruction of `target`, the images when None); updates the shared codebook
        by EMA on every scale's residuals (VAR's `quant.py`).

        Reconstruction through a straight-through f_hat; phi learns from ||f_hat - sg(z)||^2; the commitment
        term pulls the encoder towards f_hat.
        """
        if self.training and not int(self.codebook.initialised):
            # k-means on the encoder's map pooled to every scale (the residuals need codes to exist first).
            with torch.no_grad():
                z = self.encoder(_to_model_range(images))
                pooled = [
                    F.interpolate(z, size=(pn, pn), mode="area").permute(0, 2, 3, 1).reshape(-1, z.shape[1])
                    for pn in self.scales
                ]
            self.codebook.initialise(torch.cat(pooled), generator)
        z, f_hat, ids, residuals = self._quantise(images)
        if self.training:
            self.codebook.update(torch.cat(residuals), torch.cat([i.reshape(-1) for i in ids]), generator)
        recon = self.decoder(z + (f_hat - z).detach())
        target = _to_model_range(images if target is None else target)
        return (
            F.mse_loss(recon, target)
            + F.mse_loss(f_hat, z.detach())
            + self.config.commitment * F.mse_loss(z, f_hat.detach())
        )

    def decoder_loss(self, images: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction loss of `target` (the images when None) that trains only the decoder on the frozen encoder,
        codebook and phi."""
        with torch.no_grad():
            f_hat = self._quantise(images)[1]
        return F.mse_loss(self.decoder(f_hat), _to_model_range(images if target is None else target))


__all__ = [
    "Codebook",
    "Decoder",
    "Encoder",
    "MultiScaleVQTokenizer",
    "VQConfig",
    "VQTokenizer",
    "add_grain",
    "clean_pair",
    "grain_flip_rates",
    "reconstruction_batch",
    "round_trip",
    "token_batch",
]
