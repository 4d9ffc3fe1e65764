"""The next-scale autoregressive (VAR) paradigm: one token map per step, coarse to fine, with per-sample knobs.

One policy call per scale, as in AdaGen's public VAR generator and VAR's
`autoregressive_infer_cfg`:

| code | paper / anchor |
|---|---|
| `si`, `S` | scale index and number of scales; H = S |
| `cond`, `uncond` | L_c, L_u: logits of the current scale's queries, conditional and null-class |
| `w` (knob "cfg") | guidance ramped by scale: t = w si / (S - 1), L = (1 + t) L_c - t L_u |
| knob "top_k" | keep the int(top_k) most probable tokens of L (int(top_k) <= 0: no filter) |
| knob "top_p" | then keep the smallest set of mass >= top_p (VAR's `sample_with_top_k_top_p_`) |
| knob "temperature" | tau: ids = argmax(L_kept / tau + Gumbel) |
| `f_hat` | running sum of the upsampled, phi-refined code maps; decoded at the end |

Validity whatever the knobs: the most probable token always survives the filters, so at least one
token is kept; at scale 0 the CFG knob has no effect (t = 0, and no unconditional pass is run). The
conditional pass that produces scale si's logits runs at the end of step si - 1 (at `reset` for
si = 0); the hidden states of its queries, resized to the g x g token grid, are the features.

Letters: B lanes, n = pn*pn tokens of the current scale, V codebook size, d code width, D feature width.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from adagen_env.errors import InvalidArgument
from adagen_env.models.var import VAR
from adagen_env.samplers.base import (
    MAX_CFG,
    TEMPERATURE_RANGE,
    KnobSpec,
    LaneNoise,
    Sampler,
    cfg_mix,
    check_knobs,
    check_precision,
    decode_with_grain,
    gumbel_max,
)

CFG_KNOB = "cfg"
TOP_K_KNOB = "top_k"
TOP_P_KNOB = "top_p"
TEMPERATURE_KNOB = "temperature"


def top_k_top_p_keep(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Which tokens survive top-k then top-p filtering, per lane, without a loop over the batch.

    Args:
        logits: (B, n, V).
        top_k: (B,) integers; k <= 0 keeps every token, k >= V too.
        top_p: (B,) in [0, 1]; top-p is applied to the top-k-renormalised distribution. The most
            probable token is always kept.

    Returns:
        (B, n, V) bool, True where a token may be drawn.
    """
    v = logits.shape[-1]
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, n, V)
    rank = torch.arange(v, device=logits.device)
    k = torch.where(top_k <= 0, v, top_k.clamp(max=v))  # (B,)
    keep = rank < k[:, None, None]  # (B, 1, V), broadcast below
    probs = sorted_logits.masked_fill(~keep, -torch.inf).softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the strictly more probable tokens
    keep = keep & (mass_before < top_p[:, None, None])
    keep[..., 0] = True
    return torch.zeros_like(keep).scatter(-1, order, keep)


@dataclass
class VARState:
    """Lanes of a VAR sampler; every tensor has B on its first axis."""

    f_hat: torch.Tensor
    """(B, d, g, g) sum of the refined code maps of the scales sampled so far."""
    inputs: torch.Tensor
    """(B, Lp - 1, d) transformer queries of scales 1 .. step (empty before step 1)."""
    ids: torch.Tensor
    """(B, L_step) token ids of the scales sampled so far, concatenated coarse to fine."""
    labels: torch.Tensor
    """(B,) class ids."""
    step: int
    """Index of the next scale (and policy call), 0 .. H."""
    cond: torch.Tensor | None = None
    """(B, n, V) float32 conditional logits of scale `step` (None once the episode is over)."""
    feats: torch.Tensor | None = None
    """(B, D, g, g) hidden states of that pass's queries, resized to the token grid (kept on a finished state)."""
    noise: LaneNoise | None = None
    """The episode's sampling noise, seeded from the generator given to `reset` (per lane, per step)."""


class VARSampler(Sampler[VARState]):
    """Schedule-controlled next-scale sampling of a `VAR` (Tian et al. 2024, arXiv 2404.02905).

    Args:
        model: a frozen `VAR` (multi-scale tokenizer + transformer).
        cfg_scale: the baseline's constant guidance weight w (ramped by scale inside the step);
            `None` turns guidance off (no "cfg" knob, no unconditional passes).
        top_k: the baseline's top-k (0: no filter; must be < V); None means VAR's 900 of 4096,
            scaled to the vocabulary.
        top_p: the baseline's top-p in (0, 1].
        device: where sampling runs.
        precision: one of `PRECISIONS`: "bfloat16" runs the transformer's forwards under autocast; sampling and the
            tokenizer stay float32.
    """

    def __init__(
        self,
        model: VAR,
        cfg_scale: float | None = 1.5,
        top_k: int | None = None,
        top_p: float = 0.96,
        device: torch.device | str = "cpu",
        precision: str = "float32",
    ) -> None:
        self.precision = check_precision(precision)
        v = model.vocab_size
        top_k = round(900 / 4096 * v) if top_k is None else top_k
        if cfg_scale is not None and not (0 < cfg_scale <= MAX_CFG):
            raise InvalidArgument(f"cfg_scale must be in (0, {MAX_CFG}] or None (no guidance), got {cfg_scale!r}")
        if not isinstance(top_k, int) or not 0 <= top_k < v:
            raise InvalidArgument(
                f"top_k must be an int in [0, {v}) (0: no filter; V = {v} is the vocabulary), got {top_k!r}"
            )
        if not 0 < top_p <= 1:
            raise InvalidArgument(f"top_p must be in (0, 1], got {top_p!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.cfg_scale, self.top_k, self.top_p = cfg_scale, top_k, top_p
        self.scales = model.scales
        self.horizon = len(self.scales)
        self.num_classes = model.config.num_classes
        g = self.scales[-1]
        self.feature_shape = (model.config.width, g, g)
        tok = model.config.tokenizer
        self.image_shape = (tok.channels, tok.resolution, tok.resolution)
        specs = []
        if cfg_scale is not None:
            specs.append(
                KnobSpec(
                    CFG_KNOB, "softplus", "guidance weight w, ramped by scale: t = w si/(S-1), (1+t) cond - t uncond"
                )
            )
        specs += [
            KnobSpec(
                TOP_K_KNOB, "scaled_sigmoid", "keep the int(top_k) most probable tokens (<= 0: all)", scale=float(v)
            ),
            KnobSpec(TOP_P_KNOB, "sigmoid", "then keep the smallest set of tokens of probability mass >= top_p"),
            KnobSpec(TEMPERATURE_KNOB, "softplus", "sampling temperature of this scale's tokens"),
        ]
        self.knob_specs = tuple(specs)
        self._index = {spec.name: i for i, spec in enumerate(self.knob_specs)}

    def config(self) -> dict:
        return {"cfg_scale": self.cfg_scale, "top_k": self.top_k, "top_p": self.top_p, **self.precision_config()}

    # -- schedule ---------------------------------------------------------------------------------
    def baseline_values(self) -> torch.Tensor:
        """VAR's evaluation settings at every scale: constant CFG, fixed top-k and top-p, temperature 1.

        The top-k value is k + 0.5, so that the float round trip through the prior still truncates to k.
        """
        ones = torch.ones(self.horizon, device=self.device)
        columns = [] if self.cfg_scale is None else [ones * self.cfg_scale]
        columns += [ones * (self.top_k + 0.5), ones * self.top_p, ones]
        return torch.stack(columns, dim=-1)

    def project(self, state: VARState, knobs: torch.Tensor) -> torch.Tensor:
        """CFG clipped to [0, 100]; top-k truncated to an integer in [0, V] (0: no filter); top-p clipped
        to [0, 1]; temperature clipped to its range."""
        check_knobs(self.knob_specs, knobs, state.labels.shape[0])
        i = self._index
        projected = knobs.clone()
        if self.cfg_scale is not None:
            projected[:, i[CFG_KNOB]] = knobs[:, i[CFG_KNOB]].clamp(0, MAX_CFG)
        projected[:, i[TOP_K_KNOB]] = torch.trunc(knobs[:, i[TOP_K_KNOB]]).clamp(0, self.model.vocab_size)
        projected[:, i[TOP_P_KNOB]] = knobs[:, i[TOP_P_KNOB]].clamp(0, 1)
        projected[:, i[TEMPERATURE_KNOB]] = knobs[:, i[TEMPERATURE_KNOB]].clamp(*TEMPERATURE_RANGE)
        return projected

    # -- lifecycle --------------------------------------------------------------------------------
    @torch.no_grad()
    def reset(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> VARState:
        """Start B lanes with an empty f_hat and run the conditional pass of scale 0."""
        labels = self.check_labels(labels)
        b, tok = labels.shape[0], self.model.tokenizer.config
        f_hat = torch.zeros(b, tok.code_dim, tok.grid, tok.grid, device=self.device)
        inputs = torch.zeros(b, 0, tok.code_dim, device=self.device)
        ids = torch.zeros(b, 0, dtype=torch.long, device=self.device)
        noise = LaneNoise.start(generator, self.device)
        return self._evaluate(VARState(f_hat=f_hat, inputs=inputs, ids=ids, labels=labels, step=0, noise=noise))

    def features(self, state: VARState) -> torch.Tensor:
        """(B, D, g, g) hidden states of the current scale's queries, resized to the token grid (on a
        finished state, those the last step's policy saw: the terminal observation)."""
        return state.feats.float()

    @torch.no_grad()
    def intermediate(self, state: VARState) -> torch.Tensor:
        """The image of the scales sampled so far (the decoder on the partial sum f_hat)."""
        return decode_with_grain(
            self.model.tokenizer, self.model.tokenizer.decode_fhat(state.f_hat), state.noise, self.horizon
        ).float()

    def step_nfe(self, step_index: int) -> int:
        """The conditional pass of this scale, plus an unconditional one when guided, except at scale 0 (t = 0)."""
        return 1 + (1 if self.cfg_scale is not None and step_index > 0 else 0)

    @torch.no_grad()
    def step(self, state: VARState, knobs: torch.Tensor) -> VARState:
        """Sample the token map of scale `state.step`; `knobs` is (B, K) in `knob_specs` order (projected here)."""
        if state.step >= self.horizon:
            raise InvalidArgument(f"episode is over: all {self.horizon} steps were taken; call reset")
        knobs = self.project(state, knobs)
        i, si = self._index, state.step
        # 1. Guidance ramped by scale: t = w si / (S - 1), L = (1 + t) L_c - t L_u = L_c + t (L_c - L_u).
        logits = state.cond
        if self.cfg_scale is not None and si > 0:
            null = torch.full_like(state.labels, self.model.null_class)
            with self.autocast():
                uncond = self.model(null, state.inputs)[0][:, self.model.scale_slice(si)].float()
            t = knobs[:, i[CFG_KNOB]] * si / (self.horizon - 1)
            logits = cfg_mix(state.cond, uncond, t[:, None, None])
        # 2. Top-k, then top-p on the guided distribution at temperature 1 (the argmax always survives).
        keep = top_k_top_p_keep(logits, knobs[:, i[TOP_K_KNOB]].long(), knobs[:, i[TOP_P_KNOB]])
        # 3. Gumbel-max at temperature tau over the kept tokens.
        noise = state.noise.gumbel(tuple(logits.shape), si, 0, self.device)
        ids = gumbel_max(logits.masked_fill(~keep, -torch.inf), knobs[:, i[TEMPERATURE_KNOB]], noise)  # (B, n)
        # 4. Add the map to f_hat; the next scale's queries are f_hat area-downsampled
        #    (VAR's `get_next_autoregressive_input`).
        f_hat = self.model.tokenizer.add_scale(state.f_hat, ids, si)
        new = replace(state, f_hat=f_hat, ids=torch.cat([state.ids, ids], dim=1), step=si + 1, cond=None)
        if new.step == self.horizon:
            return new
        inputs = torch.cat([state.inputs, self.model.tokenizer.next_input(f_hat, si + 1)], dim=1)
        return self._evaluate(replace(new, inputs=inputs))

    def _evaluate(self, state: VARState) -> VARState:
        """Conditional pass over the prefix up to scale `state.step`: cache its logits and resized hidden states."""
        with self.autocast():
            logits, hidden = self.model(state.labels, state.inputs)
        part = self.model.scale_slice(state.step)
        pn, g = self.scales[state.step], self.scales[-1]
        h = hidden[:, part].float().transpose(1, 2).reshape(hidden.shape[0], -1, pn, pn)  # (B, D, pn, pn)
        feats = h if pn == g else F.interpolate(h, size=(g, g), mode="bicubic", align_corners=False)
        return replace(state, cond=logits[:, part].float(), feats=feats)

    @torch.no_grad()
    def decode(self, state: VARState) -> torch.Tensor:
        if state.step != self.horizon:
            raise InvalidArgument(
                f"decode needs a finished episode ({self.horizon} steps), this state is at step {state.step}"
            )
        return self.model.tokenizer.decode_fhat(state.f_hat)


__all__ = ["VARSampler", "VARState", "top_k_top_p_keep"]
