"""VAR: a multi-scale residual VQ tokenizer and a block-causal transformer over its scales, in one module.

Tian et al., "Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale Prediction"
(arXiv 2404.02905). The sequence is the S token maps, coarse to fine, concatenated: L = sum(pn^2)
positions. The query of scale 0 is the class embedding (the start token; id `num_classes` is the
null class of classifier-free guidance); the queries of scale s >= 1 are the running sum `f_hat` of
the coarser scales, area-downsampled to pn_s x pn_s and embedded linearly. A block-causal mask lets
every position attend to its own scale and all coarser ones, so one pass over the prefix up to
scale s predicts the whole map of scale s. The class embedding is also added to every position,
a light stand-in for VAR's AdaLN conditioning. With `codebook_tied` the logits also score the hidden
state against the code vectors (as MaskGIT's do). The hidden states after the final LayerNorm of the
current scale's queries are what the schedule policy observes, as in AdaGen's public code.

Training (`var_loss`) has two stages in one run of the zoo's training loop, like `maskgit_loss`:
the tokenizer first, then the transformer with teacher forcing on the frozen tokenizer's maps.

Letters: B batch, V codebook size, d code width, D width, S scales, L positions of all scales, Lp a prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from adagen_env.errors import InvalidArgument
from adagen_env.models.maskgit import LossFn, TokenTransformerConfig, TransformerBlock, two_stage_loss
from adagen_env.models.vq import MultiScaleVQTokenizer, VQConfig


def _default_tokenizer() -> VQConfig:
    return VQConfig(codebook_size=256, scales=(1, 2, 3, 4, 6, 8))


@dataclass
class VARConfig(TokenTransformerConfig):
    """Shape of a `VAR`: its tokenizer is multi-scale, and its `scales` are the transformer's scales."""

    tokenizer: VQConfig = field(default_factory=_default_tokenizer)
    """The multi-scale tokenizer."""
    width: int = 128
    """Transformer width D."""


class VAR(nn.Module):
    """Multi-scale tokenizer + next-scale prediction transformer.

    `forward(labels, inputs)` takes (B,) labels and the (B, Lp - 1, d) queries of scales 1 .. s (empty
    for s = 0), and returns logits (B, Lp, V) and hidden states (B, Lp, D) of the prefix up to scale s.
    """

    def __init__(self, config: VARConfig) -> None:
        super().__init__()
        if not config.tokenizer.scales:
            raise InvalidArgument(
                "VAR needs a multi-scale tokenizer: set config.tokenizer.scales, e.g. (1, 2, 3, 4, 6, 8)"
            )
        self.config = config
        d, scales = config.width, config.tokenizer.scales
        self.tokenizer = MultiScaleVQTokenizer(config.tokenizer)
        self.class_embed = nn.Embedding(config.num_classes + 1, d)  # + null class
        self.word_embed = nn.Linear(config.tokenizer.code_dim, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.seq_len, d))
        self.level_embed = nn.Embedding(len(scales), d)
        self.blocks = nn.ModuleList(TransformerBlock(d, config.heads) for _ in range(config.depth))
        self.final_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.tokenizer.codebook_size)
        if config.codebook_tied:
            self.code_out = nn.Linear(d, config.tokenizer.code_dim, bias=False)
        for p in (self.pos_embed, self.class_embed.weight, self.level_embed.weight):
            nn.init.normal_(p, std=0.02)
        levels = torch.cat([torch.full((pn * pn,), si) for si, pn in enumerate(scales)])  # (L,)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("block_causal", levels[:, None] >= levels[None, :], persistent=False)  # (L, L)
        # Counts the calls of `var_loss` so that the two training stages survive a resume.
        self.register_buffer("trained_steps", torch.zeros((), dtype=torch.long))

    @property
    def scales(self) -> tuple[int, ...]:
        return self.config.tokenizer.scales

    @property
    def seq_len(self) -> int:
        """L: positions of all scales together."""
        return sum(pn * pn for pn in self.scales)

    def scale_slice(self, si: int) -> slice:
        """Positions of scale `si` in the concatenated sequence."""
        start = sum(pn * pn for pn in self.scales[:si])
        return slice(start, start + self.scales[si] ** 2)

    @property
    def vocab_size(self) -> int:
        return self.config.tokenizer.codebook_size

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def forward(self, labels: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = inputs.shape[1] + 1
        c = self.class_embed(labels)[:, None]  # (B, 1, D)
        x = torch.cat([c, self.word_embed(inputs) + c], dim=1)  # (B, Lp, D)
        x = x + self.pos_embed[:, :length] + self.level_embed(self.levels[:length])
        mask = self.block_causal[:length, :length]
        for block in self.blocks:
            x = block(x, mask)
        h = self.final_norm(x)  # (B, Lp, D)
        logits = self.head(h)  # (B, Lp, V)
        if self.config.codebook_tied:
            logits = logits + self.code_out(h) @ self.tokenizer.codebook.codes.t()
        return logits, h


def var_loss(tokenizer_steps: int, label_dropout: float = 0.1, decoder_batch: int = 32) -> LossFn:
    """The two-stage zoo loss of a `VAR`.

    Args:
        tokenizer_steps: the first this many calls train the tokenizer (reconstruction, phi, commitment,
            EMA codebook); later calls train the transformer by teacher forcing on the frozen tokenizer.
            A run shorter than this (e.g. `adagen zoo train var --steps 50`) trains the tokenizer only.
        label_dropout, decoder_batch: as `maskgit_loss`'s (the null-class probability; decoder fine-tuning images).
    """

    def transformer_loss(
        model: nn.Module, tokenized: torch.Tensor, labels: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        with torch.no_grad():
            ids = model.tokenizer.encode(tokenized)  # S maps [(B, pn*pn)]
            _, inputs = model.tokenizer.ids_to_fhat(ids)  # (B, L - 1, d)
        drop = torch.rand(labels.shape[0], generator=g, device=g.device).to(labels.device) < label_dropout
        labels = torch.where(drop, torch.full_like(labels, model.null_class), labels)
        logits, _ = model(labels, inputs)  # (B, L, V)
        return F.cross_entropy(logits.flatten(0, 1), torch.cat(ids, dim=1).flatten())

    return two_stage_loss(tokenizer_steps, decoder_batch, transformer_loss)


__all__ = ["VAR", "VARConfig", "var_loss"]
