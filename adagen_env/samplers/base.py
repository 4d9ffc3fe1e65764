"""What every paradigm sampler shares: knob specs, activations, validation and the lifecycle.

A sampler is the transition function of the MDP over a batch of lanes (docs/design.md 3):
`reset(labels, generator) -> state`, `features(state)`, `step(state, knobs) -> state`, `decode(state)`.
Knob values are per sample, (B, K) in `knob_specs` order, already activated; `step` applies the
paradigm's validity projection itself, so no knob value can break the generator.

The baseline schedule is stored in pre-activation space (`prior`, (H, K)) and the baseline knob values
are `activate(prior)`: an env that adds a zero residual to the prior then runs bit for bit the same
computation as the sampler's own baseline run.

Letters: B lanes, K knobs, H horizon (policy calls per episode), C/h/w feature grid.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F

from adagen_env.checks import check_labels
from adagen_env.errors import InvalidArgument, InvalidKnobValue
from adagen_env.models.vq import add_grain

ACTIVATIONS = ("sigmoid", "softplus", "scaled_sigmoid")
LOGIT_LIMIT = 20.0
"""Pre-activation values are kept in [-20, 20] so a baseline of exactly 0 or 1 has a finite prior."""


@dataclass(frozen=True)
class KnobSpec:
    """One per-step knob of a paradigm.

    Args:
        name: the knob's name, used in kwargs, infos and error messages.
        activation: "sigmoid" -> (0, 1), "softplus" -> (0, inf), "scaled_sigmoid" -> (0, scale).
        description: what the knob does, for the env docstring and the CLI.
        scale: upper end of a "scaled_sigmoid" knob (e.g. the vocabulary size for top-k).
    """

    name: str
    activation: str
    description: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise InvalidArgument(
                f"knob {self.name!r}: activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activation z -> knob value (same shape)."""
        if self.activation == "softplus":
            return F.softplus(z)
        value = torch.sigmoid(z)
        return value * self.scale if self.activation == "scaled_sigmoid" else value

    def inverse(self, value: torch.Tensor) -> torch.Tensor:
        """Knob value -> pre-activation, clipped to [-LOGIT_LIMIT, LOGIT_LIMIT]."""
        if self.activation == "softplus":
            v = value.clamp_min(1e-8)
            z = v + torch.log(-torch.expm1(-v))  # inverse softplus
        else:
            v = value / self.scale if self.activation == "scaled_sigmoid" else value
            z = torch.logit(v.clamp(0, 1), eps=None)
        return z.nan_to_num(posinf=LOGIT_LIMIT, neginf=-LOGIT_LIMIT).clamp(-LOGIT_LIMIT, LOGIT_LIMIT)


def activate_all(specs: tuple[KnobSpec, ...], z: torch.Tensor) -> torch.Tensor:
    """Apply each knob's activation to the last axis of (..., K) pre-activations."""
    return torch.stack([spec.activate(z[..., i]) for i, spec in enumerate(specs)], dim=-1)


def inverse_all(specs: tuple[KnobSpec, ...], values: torch.Tensor) -> torch.Tensor:
    """Inverse of `activate_all` on (..., K) knob values."""
    return torch.stack([spec.inverse(values[..., i]) for i, spec in enumerate(specs)], dim=-1)


def check_knobs(specs: tuple[KnobSpec, ...], knobs: torch.Tensor, batch: int, what: str = "knob values") -> None:
    """Raise `InvalidKnobValue` on a wrong shape or a non-finite entry, naming the knob and lane."""
    expected = (batch, len(specs))
    if tuple(knobs.shape) != expected:
        raise InvalidKnobValue(
            f"{what} must have shape {expected} (lanes, knobs {[s.name for s in specs]}), got {tuple(knobs.shape)}"
        )
    bad = ~torch.isfinite(knobs)
    if bool(bad.any()):
        lane, k = (int(i) for i in bad.nonzero()[0])
        raise InvalidKnobValue(
            f"{what} are not finite for knob {specs[k].name!r} (index {k}) in lane {lane}: "
            f"got {float(knobs[lane, k])}; every value must be a finite number"
        )


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device`, seeded (or randomly seeded when seed is None)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def randn(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved to `device`."""
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where).to(device)


def rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) noise drawn on the generator's device, then moved to `device`."""
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


PRECISIONS = ("float32", "bfloat16")
"""Precision of a sampler's network forwards: float32, or bfloat16 autocast around each forward (on the sampler's
device type, CPU or CUDA), whose outputs are upcast to float32 before the step's own math."""


def check_precision(precision: str) -> str:
    """`precision` if it is one of `PRECISIONS`; else `InvalidArgument` naming the option."""
    if precision not in PRECISIONS:
        raise InvalidArgument(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


MAX_CFG = 100.0
"""Guidance weights are clipped to [0, MAX_CFG] (larger ones only overflow the logits)."""
TEMPERATURE_RANGE = (1e-4, 100.0)
"""Sampling temperatures are clipped to this range (the low end is already argmax)."""


def gumbel_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise of `shape`, drawn from `generator`."""
    u = rand(shape, generator, device)
    return -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))


@dataclass(frozen=True)
class LaneNoise:
    """An episode's sampling noise, one stream per (step, draw), so that a lane's draws depend only on the episode
    seed and the lane's index, never on how many lanes run beside it: lane i of a (B, ...) draw reads the i-th
    slice of its stream (torch's CPU and CUDA generators fill a tensor in order, so a prefix never depends on the
    length). Token samplers draw through it; `start` takes its seed from the episode's generator."""

    seed: int
    device: torch.device

    @classmethod
    def start(cls, generator: torch.Generator | None, device: torch.device) -> LaneNoise:
        """Seed from one draw of `generator` (a random seed when None); draws happen on the generator's device."""
        where = generator.device if generator is not None else torch.device(device)
        seed = torch.randint(2**62, (1,), generator=generator, device=where)
        return cls(int(seed), where)

    def gumbel(self, shape: tuple[int, ...], step: int, draw: int, device: torch.device) -> torch.Tensor:
        """Gumbel(0, 1) noise of `shape` (B first) for the `draw`-th draw of step `step`."""
        return gumbel_noise(shape, self._stream(step, draw), device)

    def normal(self, shape: tuple[int, ...], step: int, draw: int, device: torch.device) -> torch.Tensor:
        """Standard-normal noise of `shape` (B first) for the `draw`-th draw of step `step`."""
        return torch.randn(shape, generator=self._stream(step, draw), device=self.device).to(device)

    def _stream(self, step: int, draw: int) -> torch.Generator:
        return make_generator((self.seed * 1_000_003 + step * 64 + draw) % 2**63, self.device)


def decode_with_grain(tokenizer: torch.nn.Module, images: torch.Tensor, noise: LaneNoise, step: int) -> torch.Tensor:
    """A token sampler's decoded (B, C, R, R) images, with the tokenizer's output grain (`VQConfig.grain_sigma`)
    drawn from the episode's stream `step` when it has one (a tokenizer trained on clean renderings)."""
    sigma = tokenizer.config.grain_sigma
    if sigma <= 0:
        return images
    b, _, r, _ = images.shape
    return add_grain(images, sigma, noise.normal((b, 1, r, r), step, 0, images.device))


def cfg_mix(cond: torch.Tensor, uncond: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance of logits: cond + w (cond - uncond), w broadcast from the left (B, 1, ...)."""
    return cond + w * (cond - uncond)


def gumbel_max(logits: torch.Tensor, temperature: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Sample categorical ids as argmax(logits / tau + Gumbel) (Gumbel-max trick).

    Args:
        logits: (B, n, V); entries at -inf are never drawn.
        temperature: (B,) per-lane tau > 0.
        noise: (B, n, V) Gumbel noise.

    Returns:
        (B, n) ids.
    """
    return (logits / temperature[:, None, None] + noise).argmax(dim=-1)


StateT = TypeVar("StateT")


class Sampler(abc.ABC, Generic[StateT]):
    """A paradigm's batched transition function; subclasses set the attributes below in `__init__`.

    Contract every sampler keeps (the env layer relies on it):
      * the generator given to `reset` is the only source of an episode's randomness, so a seeded episode
        reproduces bit for bit; a lane's draws depend on the seed and its lane index only, never on the batch
        size (the ODE samplers draw all noise at `reset`; the token samplers draw through `LaneNoise`);
      * `project` is idempotent, `project(s, project(s, k)) == project(s, k)`: the env projects to
        report the applied knobs, and `step` projects again;
      * `features` also answers on a finished state (the terminal observation).
    """

    knob_specs: tuple[KnobSpec, ...]
    """The per-step knobs, in the order of the last axis of knob tensors."""
    horizon: int
    """H: policy calls (steps) per episode."""
    feature_shape: tuple[int, int, int]
    """(C, h, w) of one lane's features."""
    num_classes: int
    """Valid labels are 0 .. num_classes - 1."""
    image_shape: tuple[int, int, int]
    """(3, R, R) of the decoded images."""
    device: torch.device
    precision: str = "float32"
    """One of `PRECISIONS`: the network forwards run inside `autocast()`."""

    def autocast(self) -> torch.autocast:
        """The context of the generator's network forwards: bfloat16 autocast under precision "bfloat16", a no-op
        under "float32"."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")

    def precision_config(self) -> dict[str, str]:
        """{"precision": ...} for `config`, empty under float32 (a config without the key means float32)."""
        return {} if self.precision == "float32" else {"precision": self.precision}

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.knob_specs)

    @abc.abstractmethod
    def baseline_values(self) -> torch.Tensor:
        """(H, K) knob values of the paradigm's hand-made schedule (before the prior's clipping)."""

    def prior(self) -> torch.Tensor:
        """(H, K) pre-activation baseline: `activate(prior[k])` is the baseline's knob values at step k."""
        return inverse_all(self.knob_specs, self.baseline_values())

    def baseline_schedule(self) -> torch.Tensor:
        """(H, K) knob values that the baseline run uses, computed exactly as an env does with zero residuals."""
        return activate_all(self.knob_specs, self.prior() + 0.0)

    @abc.abstractmethod
    def reset(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> StateT:
        """Start B lanes for (B,) labels; all randomness of the episode comes from `generator`."""

    @abc.abstractmethod
    def features(self, state: StateT) -> torch.Tensor:
        """(B, C, h, w) float32 features the policy observes at the state's step."""

    @abc.abstractmethod
    def intermediate(self, state: StateT) -> torch.Tensor:
        """(B, 3, R, R) float32 raw intermediate image of the state (the "raw input" the policy may observe
        instead of features): the paradigm's current sample or its current decoded estimate."""

    @abc.abstractmethod
    def project(self, state: StateT, knobs: torch.Tensor) -> torch.Tensor:
        """(B, K) knob values -> the (B, K) values the step will actually apply (validity projection)."""

    @abc.abstractmethod
    def step(self, state: StateT, knobs: torch.Tensor) -> StateT:
        """Advance every lane by one step with (B, K) knob values (projected inside)."""

    @abc.abstractmethod
    def decode(self, state: StateT) -> torch.Tensor:
        """(B, 3, R, R) images in [0, 1] of a finished state."""

    @abc.abstractmethod
    def step_nfe(self, step_index: int) -> int:
        """Network evaluations step `step_index` costs (a guided pass counts its unconditional pass too)."""

    @property
    def episode_nfe(self) -> int:
        """Network evaluations of a whole episode."""
        return sum(self.step_nfe(k) for k in range(self.horizon))

    def check_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Validate (B,) labels (`adagen_env.checks.check_labels`) and move them to the sampler's device."""
        return check_labels(labels, num_classes=self.num_classes).to(self.device)

    @torch.no_grad()
    def sample(
        self,
        labels: torch.Tensor,
        generator: torch.Generator | None = None,
        schedule: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run whole episodes; returns (B, 3, R, R) images in [0, 1].

        Args:
            labels: (B,) class ids.
            generator: source of all randomness (seeds reproduce bit for bit).
            schedule: knob values, (H, K) shared by all lanes or (B, H, K) per lane; the baseline when None.
        """
        schedule = self.baseline_schedule() if schedule is None else schedule.to(self.device)
        state = self.reset(labels, generator)
        batch = labels.shape[0]
        for k in range(self.horizon):
            knobs = schedule[k].expand(batch, -1) if schedule.ndim == 2 else schedule[:, k]
            state = self.step(state, knobs)
        return self.decode(state)

    def config(self) -> dict[str, Any]:
        """Constructor arguments that define this sampler (for checkpoints and mismatch errors)."""
        return {}

    @staticmethod
    def repeat_lanes(state: StateT, repeats: int) -> StateT:
        """Each lane of `state` `repeats` times in a row, B -> B * repeats lanes (group rollouts: the copies share
        their label, noise and everything drawn so far). States are dataclasses whose tensors have B first."""
        return dataclasses.replace(
            state,
            **{
                f.name: value.repeat_interleave(repeats, dim=0)
                for f in dataclasses.fields(state)
                if torch.is_tensor(value := getattr(state, f.name))
            },
        )

    @staticmethod
    def select_lanes(state: StateT, index: torch.Tensor) -> StateT:
        """Lane i of the result is lane `index[i]` of `state`, for a (B',) int64 `index` into its B lanes (value
        lookahead: the copies of a chosen candidate share its label, noise and everything drawn so far)."""
        return dataclasses.replace(
            state,
            **{
                f.name: value.index_select(0, index.to(value.device))
                for f in dataclasses.fields(state)
                if torch.is_tensor(value := getattr(state, f.name))
            },
        )
