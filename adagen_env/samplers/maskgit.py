"""The masked-token (MaskGIT) paradigm: parallel decoding of a token grid with per-sample, per-step knobs.

One policy call per decoding step, as in AdaGen's public MaskGIT generator:

| code | paper / anchor |
|---|---|
| `cond`, `uncond` | L_c, L_u: logits of the conditional and the null-class pass on the current grid |
| `w` (knob "cfg") | w_k: guided logits L = L_c + w (L_c - L_u) |
| `tau` (knob "temperature") | tau_1: sampling temperature, tokens = argmax(L / tau_1 + Gumbel) |
| `remask_temp` | tau_2: confidence = log softmax(L)[token] + tau_2 * Gumbel |
| `ratio` (knob "mask_ratio") | r_k: fraction of the N tokens left masked after the step |

Validity, whatever the knobs (docs/design.md 2): decoded tokens are never re-masked; while masked tokens
remain each step decodes at least one; the last step decodes every remaining token; the image is
decoded from a complete grid. The conditional pass that produces step k's logits runs at the end of
step k - 1 (at `reset` for k = 0) and its hidden states are the features the policy sees for step k,
so every step costs one conditional and one unconditional pass.

Letters: B lanes, N = g*g tokens, V codebook size, D feature width, g token-grid side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from adagen_env.errors import InvalidArgument
from adagen_env.models.maskgit import MaskGIT
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
    gumbel_noise,
)

MASK_RATIO_KNOB = "mask_ratio"
REMASK_TEMP_KNOB = "remask_temp"
TEMPERATURE_KNOB = "temperature"
CFG_KNOB = "cfg"
MAX_REMASK_TEMP = 100.0
"""Re-masking temperatures are clipped to [0, MAX_REMASK_TEMP]."""
CFG_SCHEDULES = ("linear", "constant")
"""The baseline's guidance over the steps: a linear ramp from ~0 to `cfg_scale`, or `cfg_scale` at every step."""


@dataclass
class MaskGITState:
    """Lanes of a MaskGIT sampler; every tensor has B on its first axis."""

    ids: torch.Tensor
    """(B, N) current grid: a code id in [0, V) where decoded, the mask id V where still masked."""
    labels: torch.Tensor
    """(B,) class ids."""
    step: int
    """Index of the next policy call, 0 .. H."""
    cond: torch.Tensor | None = None
    """(B, N, V) float32 conditional logits on `ids` (None once the episode is over)."""
    feats: torch.Tensor | None = None
    """(B, D, g, g) hidden states of that conditional pass (kept on a finished state)."""
    noise: LaneNoise | None = None
    """The episode's sampling noise, seeded from the generator given to `reset` (per lane, per step)."""


class MaskGITSampler(Sampler[MaskGITState]):
    """Schedule-controlled MaskGIT decoding (Chang et al. 2022, arXiv 2202.04200; AdaNAT arXiv 2409.00342).

    Args:
        model: a frozen `MaskGIT` (tokenizer + transformer).
        num_steps: H, the number of decoding steps (>= 1).
        remask_temp: tau_2 of the baseline at the first step; it decays linearly to ~0 at the last (4.5: MaskGIT's
            and MUSE's choice temperature; near-greedy selection makes more steps worse,
            `benchmarks/results/token_baselines`).
        cfg_scale: the baseline's guidance weight (at the last step of the linear schedule); `None` turns guidance
            off (no "cfg" knob, no unconditional passes).
        cfg_schedule: one of `CFG_SCHEDULES`.
        device: where sampling runs.
        precision: one of `PRECISIONS`: "bfloat16" runs the transformer's forwards under autocast; sampling and the
            tokenizer's decoder stay float32.
    """

    def __init__(
        self,
        model: MaskGIT,
        num_steps: int = 8,
        remask_temp: float = 4.5,
        cfg_scale: float | None = 1.0,
        cfg_schedule: str = "linear",
        device: torch.device | str = "cpu",
        precision: str = "float32",
    ) -> None:
        if not isinstance(num_steps, int) or num_steps < 1:
            raise InvalidArgument(f"num_steps must be an int >= 1, got {num_steps!r}")
        self.precision = check_precision(precision)
        if not (0 <= remask_temp <= MAX_REMASK_TEMP):
            raise InvalidArgument(f"remask_temp must be in [0, {MAX_REMASK_TEMP}], got {remask_temp!r}")
        if cfg_scale is not None and not (0 < cfg_scale <= MAX_CFG):
            raise InvalidArgument(f"cfg_scale must be in (0, {MAX_CFG}] or None (no guidance), got {cfg_scale!r}")
        if cfg_schedule not in CFG_SCHEDULES:
            raise InvalidArgument(f"cfg_schedule must be one of {CFG_SCHEDULES}, got {cfg_schedule!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.num_steps, self.remask_temp, self.cfg_scale = num_steps, remask_temp, cfg_scale
        self.cfg_schedule = cfg_schedule
        self.horizon = num_steps
        self.num_classes = model.config.num_classes
        self.feature_shape = model.feature_shape
        tok = model.config.tokenizer
        self.image_shape = (tok.channels, tok.resolution, tok.resolution)
        specs = [
            KnobSpec(MASK_RATIO_KNOB, "sigmoid", "fraction of the tokens left masked after this step"),
            KnobSpec(
                REMASK_TEMP_KNOB,
                "softplus",
                "scale of the Gumbel noise added to the confidences that pick the tokens to keep",
            ),
            KnobSpec(TEMPERATURE_KNOB, "softplus", "sampling temperature of the new tokens"),
        ]
        if cfg_scale is not None:
            specs.append(KnobSpec(CFG_KNOB, "softplus", "guidance weight w of this step: cond + w (cond - uncond)"))
        self.knob_specs = tuple(specs)

    def config(self) -> dict:
        return {
            "num_steps": self.num_steps,
            "remask_temp": self.remask_temp,
            "cfg_scale": self.cfg_scale,
            "cfg_schedule": self.cfg_schedule,
            **self.precision_config(),
        }

    # -- schedule ---------------------------------------------------------------------------------
    def baseline_values(self) -> torch.Tensor:
        """AdaGen's public heuristic, with ratio_k = (k + 1 - 1e-3) / H: cosine mask ratio
        cos(pi/2 ratio_k), re-mask temperature (1 - ratio_k) * remask_temp, temperature 1, and CFG
        (k + 1e-3) / H * cfg_scale ("linear") or cfg_scale at every step ("constant")."""
        k = torch.arange(self.horizon, dtype=torch.float32, device=self.device)
        progress = (k + 1 - 1e-3) / self.horizon
        columns = [torch.cos(math.pi / 2 * progress), (1 - progress) * self.remask_temp, torch.ones_like(k)]
        if self.cfg_scale is not None:
            ramp = (k + 1e-3) / self.horizon if self.cfg_schedule == "linear" else torch.ones_like(k)
            columns.append(ramp * self.cfg_scale)
        return torch.stack(columns, dim=-1)

    def project(self, state: MaskGITState, knobs: torch.Tensor) -> torch.Tensor:
        """Mask ratio -> the ratio of whole tokens actually left masked: floor(N r), at most the number
        of masked tokens minus one (so >= 1 is decoded while any remain), 0 at the last step.
        Temperatures and CFG are clipped to their ranges. Projecting twice changes nothing."""
        check_knobs(self.knob_specs, knobs, state.labels.shape[0])
        n = self.model.num_tokens
        n_masked = (state.ids == self.model.mask_id).sum(dim=1)  # (B,)
        # floor(N r), with a 1e-3-token tolerance so that projecting a projected ratio m / N gives m again.
        mask_len = torch.floor(knobs[:, 0].clamp(0, 1) * n + 1e-3)
        mask_len = torch.minimum(mask_len, (n_masked - 1).clamp_min(0).to(mask_len.dtype))
        if state.step == self.horizon - 1:
            mask_len = torch.zeros_like(mask_len)
        projected = knobs.clone()
        projected[:, 0] = mask_len / n
        projected[:, 1] = knobs[:, 1].clamp(0, MAX_REMASK_TEMP)
        projected[:, 2] = knobs[:, 2].clamp(*TEMPERATURE_RANGE)
        if self.cfg_scale is not None:
            projected[:, 3] = knobs[:, 3].clamp(0, MAX_CFG)
        return projected

    # -- lifecycle --------------------------------------------------------------------------------
    @torch.no_grad()
    def reset(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> MaskGITState:
        """Start B lanes on a fully masked grid and run the conditional pass of step 0."""
        labels = self.check_labels(labels)
        ids = torch.full(
            (labels.shape[0], self.model.num_tokens), self.model.mask_id, dtype=torch.long, device=self.device
        )
        noise = LaneNoise.start(generator, self.device)
        return self._evaluate(MaskGITState(ids=ids, labels=labels, step=0, noise=noise))

    def features(self, state: MaskGITState) -> torch.Tensor:
        """(B, D, g, g) hidden states of the conditional pass on the current grid (on a finished state,
        those the last step's policy saw: the terminal observation)."""
        return state.feats.float()

    @torch.no_grad()
    def intermediate(self, state: MaskGITState) -> torch.Tensor:
        """The current grid decoded, masked tokens filled with the conditional pass's most likely code."""
        ids = state.ids
        if state.cond is not None:
            ids = torch.where(ids == self.model.mask_id, state.cond.argmax(dim=-1), ids)
        return self.model.tokenizer.decode(ids).float()

    def step_nfe(self, step_index: int) -> int:
        """One conditional pass (the one whose features the policy saw) plus one unconditional pass when guided."""
        return 1 + (1 if self.cfg_scale is not None else 0)

    @torch.no_grad()
    def step(self, state: MaskGITState, knobs: torch.Tensor) -> MaskGITState:
        """Decode one step; `knobs` is (B, K) in `knob_specs` order (projected here)."""
        if state.step >= self.horizon:
            raise InvalidArgument(f"episode is over: all {self.horizon} steps were taken; call reset")
        knobs = self.project(state, knobs)
        b, n = state.ids.shape
        v, mask_id = self.model.vocab_size, self.model.mask_id
        masked = state.ids == mask_id  # (B, N)
        # 1. Guided logits L = L_c + w (L_c - L_u); L_c was cached by the previous pass.
        logits = state.cond
        if self.cfg_scale is not None:
            null = torch.full_like(state.labels, self.model.null_class)
            with self.autocast():
                uncond = self.model(state.ids, null)[0].float()
            logits = cfg_mix(state.cond, uncond, knobs[:, 3][:, None, None])
        # 2. Draw a token at every position by Gumbel-max at temperature tau_1; decoded ones stay.
        sampled = gumbel_max(logits, knobs[:, 2], state.noise.gumbel((b, n, v), state.step, 0, self.device))
        sampled = torch.where(masked, sampled, state.ids)
        # 3. Confidence: log-probability of the drawn token under L (temperature 1) + tau_2 * Gumbel;
        #    +inf on decoded positions, which can therefore never be re-masked.
        confidence = torch.log_softmax(logits, dim=-1).gather(-1, sampled[..., None])[..., 0]
        noise = state.noise.gumbel((b, n), state.step, 1, self.device)
        confidence = torch.where(masked, confidence + knobs[:, 1][:, None] * noise, torch.inf)
        # 4. Keep the mask_len least confident masked positions masked (rank-based: exact even with ties).
        mask_len = torch.round(knobs[:, 0] * n).long()  # (B,), already projected to [0, #masked - 1]
        ranks = confidence.argsort(dim=1, stable=True).argsort(dim=1)  # (B, N)
        remask = masked & (ranks < mask_len[:, None])
        ids = torch.where(remask, torch.full_like(sampled, mask_id), sampled)
        new = replace(state, ids=ids, step=state.step + 1, cond=None)
        # 5. The conditional pass on the new grid gives the next step's logits and features.
        return new if new.step == self.horizon else self._evaluate(new)

    def _evaluate(self, state: MaskGITState) -> MaskGITState:
        with self.autocast():
            logits, feats = self.model(state.ids, state.labels)
        return replace(state, cond=logits.float(), feats=feats.float())

    @torch.no_grad()
    def decode(self, state: MaskGITState) -> torch.Tensor:
        if state.step != self.horizon:
            raise InvalidArgument(
                f"decode needs a finished episode ({self.horizon} steps), this state is at step {state.step}"
            )
        assert not bool((state.ids == self.model.mask_id).any()), "the last step decodes every token"
        return decode_with_grain(
            self.model.tokenizer, self.model.tokenizer.decode(state.ids), state.noise, self.horizon
        )


__all__ = ["MaskGITSampler", "MaskGITState", "cfg_mix", "gumbel_max", "gumbel_noise"]
