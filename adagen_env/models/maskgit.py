"""MaskGIT: a VQ tokenizer and a bidirectional transformer over its token grid, in one module.

Chang et al., "MaskGIT: Masked Generative Image Transformer" (arXiv 2202.04200). The transformer
reads the g x g grid of token ids (id V is [MASK]) after a class token (id `num_classes` is the null
class of classifier-free guidance) and predicts every position's token. Its hidden states after the
final LayerNorm, before the logits head, are the feature grid the schedule policy observes (as
AdaGen's U-ViT features are in its public code).

Training (`maskgit_loss`) has two stages in one run of the zoo's training loop: the tokenizer first,
then the transformer on the frozen tokenizer's tokens with a cosine-distributed mask ratio and label
dropout, while the decoder keeps fine-tuning on the frozen codes.

Letters: B batch, V codebook size, g token-grid side, N = g*g tokens, D width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from adagen_env.errors import InvalidArgument
from adagen_env.models.vq import VQConfig, VQTokenizer, reconstruction_batch, token_batch

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
"""The zoo's loss signature (`adagen_env.zoo.training.LossFn`; not imported, the zoo imports this module)."""


@dataclass
class TokenTransformerConfig:
    """Shape of a token transformer and its tokenizer (MaskGIT, VAR); round-trips to JSON beside the shipped weights."""

    tokenizer: VQConfig = field(default_factory=VQConfig)
    """The tokenizer."""
    width: int = 160
    """Transformer width D."""
    depth: int = 6
    """Transformer blocks."""
    heads: int = 4
    """Attention heads."""
    num_classes: int = 8
    """Classes; id `num_classes` is the null class used for classifier-free guidance."""
    codebook_tied: bool = False
    """Tie the logits (and MaskGIT's token embedding) to the tokenizer's code vectors: each logit gets a bilinear
    score of the hidden state and the code, head(h) + code_out(h) codes^T, and a MaskGIT token's input is its
    learned embedding + a linear map of its code (VAR's inputs already are sums of codes). Neighbouring codes
    decode to nearly the same patch; tied, the transformer need not learn that from scratch."""

    def __post_init__(self) -> None:
        if isinstance(self.tokenizer, dict):  # from JSON
            self.tokenizer = VQConfig(**self.tokenizer)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class MaskGITConfig(TokenTransformerConfig):
    """Shape of a `MaskGIT`: its tokenizer is single-scale (`scales` empty)."""


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + MLP block (nanoGPT's `Block`), with an optional attention mask."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, D); mask: (L, L) bool, True where a query may attend to a key; -> (B, L, D)."""
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, length, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, L, hs)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(y.transpose(1, 2).reshape(b, length, d))
        return x + self.mlp(self.norm2(x))


class MaskGIT(nn.Module):
    """Tokenizer + bidirectional token transformer.

    `forward(ids, labels)` takes (B, N) ids in [0, V] (V = `mask_id`) and (B,) labels (the null class
    for the unconditional pass) and returns logits (B, N, V) and features (B, D, g, g).
    """

    def __init__(self, config: MaskGITConfig) -> None:
        super().__init__()
        if config.tokenizer.scales:
            raise InvalidArgument(f"MaskGIT needs a single-scale tokenizer, got scales {config.tokenizer.scales}")
        self.config = config
        d, v, n = config.width, config.tokenizer.codebook_size, config.tokenizer.grid**2
        self.tokenizer = VQTokenizer(config.tokenizer)
        self.token_embed = nn.Embedding(v + 1, d)  # + [MASK]
        self.class_embed = nn.Embedding(config.num_classes + 1, d)  # + null class
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, d))
        self.blocks = nn.ModuleList(TransformerBlock(d, config.heads) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, v)
        if config.codebook_tied:
            self.code_in = nn.Linear(config.tokenizer.code_dim, d)
            self.code_out = nn.Linear(d, config.tokenizer.code_dim, bias=False)
        for p in (self.pos_embed, self.token_embed.weight, self.class_embed.weight):
            nn.init.normal_(p, std=0.02)
        # Counts the calls of `maskgit_loss` so that the two training stages survive a resume.
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.long))

    @property
    def vocab_size(self) -> int:
        """V: token ids 0 .. V - 1 are codes."""
        return self.config.tokenizer.codebook_size

    @property
    def mask_id(self) -> int:
        """The [MASK] token id (= V)."""
        return self.vocab_size

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    @property
    def num_tokens(self) -> int:
        """N = g*g positions of the token grid."""
        return self.config.tokenizer.grid**2

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(D, g, g): one sample's feature grid."""
        g = self.config.tokenizer.grid
        return (self.config.width, g, g)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, g = ids.shape[0], self.config.tokenizer.grid
        tokens = self.token_embed(ids)  # (B, N, D)
        if self.config.codebook_tied:
            codes = self.tokenizer.codebook.codes  # (V, d)
            padded = torch.cat([codes, codes.new_zeros(1, codes.shape[1])])  # [MASK] has no code
            tokens = tokens + self.code_in(padded[ids])
        x = torch.cat([self.class_embed(labels)[:, None], tokens], dim=1) + self.pos_embed  # (B, N+1, D)
        for block in self.blocks:
            x = block(x)
        h = self.final_norm(x[:, 1:])  # (B, N, D), image tokens only
        features = h.transpose(1, 2).reshape(b, -1, g, g)  # (B, D, g, g)
        logits = self.head(h)  # (B, N, V)
        if self.config.codebook_tied:
            logits = logits + self.code_out(h) @ codes.t()
        return logits, features


def two_stage_loss(tokenizer_steps: int, decoder_batch: int, transformer_loss: LossFn) -> LossFn:
    """The zoo loss of a token model (`model.tokenizer`, `model.trained_steps`): the first `tokenizer_steps` calls
    train the tokenizer; later calls take `transformer_loss(model, images, labels, g)` on `token_batch`'s images and
    labels (the transformer's loss on the frozen tokenizer's tokens), plus the decoder's loss on `decoder_batch`
    images of frozen codes (none when 0)."""

    def loss_fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        step = int(model.trained_steps)
        model.trained_steps += 1
        tokenizer, num_classes = model.tokenizer, model.config.num_classes
        if step < tokenizer_steps:
            inputs, target = reconstruction_batch(tokenizer.config, images, images.shape[0], num_classes, g)
            return tokenizer.loss(inputs, g, target)
        tokenized, labels = token_batch(tokenizer.config, images, labels, num_classes, g)
        loss = transformer_loss(model, tokenized, labels, g)
        if decoder_batch > 0:
            recon_inputs, target = reconstruction_batch(tokenizer.config, images, decoder_batch, num_classes, g)
            loss = loss + tokenizer.decoder_loss(recon_inputs, target)
        return loss

    return loss_fn


def maskgit_loss(tokenizer_steps: int, label_dropout: float = 0.1, decoder_batch: int = 32) -> LossFn:
    """The two-stage zoo loss of a `MaskGIT`.

    Args:
        tokenizer_steps: the first this many calls train the tokenizer (reconstruction, commitment, EMA
            codebook); later calls train the transformer on the frozen tokenizer's tokens. A run
            shorter than this (e.g. `adagen zoo train maskgit --steps 50`) trains the tokenizer only.
        label_dropout: probability of replacing a label by the null class (for CFG).
        decoder_batch: images of each transformer-stage batch that also fine-tune the decoder on the
            frozen codes, so that the shipped (EMA) decoder matches the codebook the transformer learned.
    """

    def transformer_loss(
        model: nn.Module, tokenized: torch.Tensor, labels: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        ids = model.tokenizer.encode(tokenized).flatten(1)  # (B, N)
        b, n = ids.shape
        dev = ids.device
        u = lambda *shape: torch.rand(*shape, generator=g, device=g.device).to(dev)  # noqa: E731
        # 1. Mask ratio r = cos(pi/2 * u), u ~ U(0, 1): at least one masked token per image.
        n_masked = torch.ceil(torch.cos(math.pi / 2 * u(b)) * n).clamp(1, n).long()  # (B,)
        ranks = u(b, n).argsort(dim=1).argsort(dim=1)  # (B, N) a random permutation's ranks
        masked = ranks < n_masked[:, None]
        inputs = torch.where(masked, torch.full_like(ids, model.mask_id), ids)
        # 2. Label dropout for classifier-free guidance.
        labels = torch.where(u(b) < label_dropout, torch.full_like(labels, model.null_class), labels)
        logits, _ = model(inputs, labels)
        return F.cross_entropy(logits[masked], ids[masked])

    return two_stage_loss(tokenizer_steps, decoder_batch, transformer_loss)


__all__ = ["MaskGIT", "MaskGITConfig", "TransformerBlock", "maskgit_loss", "two_stage_loss"]
