"""The probability-flow ODE sampler shared by the diffusion (DiT) and rectified-flow (SiT) paradigms.

One policy call per network evaluation, as in AdaGen's public DiT/SiT generators:

| step k | policy sees | knob "time" means | work done |
|---|---|---|---|
| 0 | zero features | start time t_0 | conditional pass at (x, t_0) |
| 1 .. H-2 | features of the pass at t_{k-1} | next time t_k | guided update t_{k-1} -> t_k, conditional pass at t_k |
| H-1 | features of the pass at t_{H-2} | (ignored: the data end) | guided update to the data end |

So H = NFE + 1 where NFE counts conditional evaluations; with guidance each update adds one
unconditional pass. Updates are DPM-Solver++ in data prediction (Lu et al. 2022, arXiv 2211.01095):

| code | paper |
|---|---|
| `alpha`, `sigma` | alpha_t, sigma_t of the path |
| `lam` | lambda_t = log(alpha_t / sigma_t) |
| `x0`, `x0_prev` | D_theta at s and at the point before s |
| `order` | 1: DDIM (= Euler on the linear path), 2: DPM-Solver++(2M) multistep |

CFG mixes the model outputs: `out = cond + w * (cond - uncond)` (w = 0 is no guidance).
Letters: B lanes, C image channels, R image side, D feature width, g feature grid side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from adagen_env.errors import InvalidArgument
from adagen_env.models.dit import DiT
from adagen_env.models.paths import path_for
from adagen_env.samplers.base import MAX_CFG, KnobSpec, Sampler, cfg_mix, check_knobs, check_precision, randn

TIME_KNOB = "time"
CFG_KNOB = "cfg"
SOLVERS = {"ddim": 1, "dpmpp2m": 2}


@dataclass
class ODEState:
    """Lanes of an ODE sampler; every tensor has B on its first axis."""

    x: torch.Tensor
    """(B, C, R, R) current sample at time t."""
    t: torch.Tensor
    """(B,) time of x (undefined before step 0)."""
    labels: torch.Tensor
    """(B,) class ids."""
    step: int
    """Index of the next policy call, 0 .. H."""
    cond: torch.Tensor | None = None
    """(B, C, R, R) conditional model output at (x, t), cached for the next update."""
    feats: torch.Tensor | None = None
    """(B, D, g, g) features of that conditional pass."""
    x0_prev: torch.Tensor | None = None
    """(B, C, R, R) data estimate at the previous time, for second-order updates."""
    t_prev: torch.Tensor | None = None
    """(B,) the previous time."""


class ODESampler(Sampler[ODEState]):
    """Schedule-controlled ODE sampling of a DiT on a probability path (subclasses fix the path).

    Args:
        model: a frozen `DiT` (or a model with its interface, e.g. `adagen_env.adapters.diffusers_dit.DiffusersDiT`).
        num_steps: NFE, the number of conditional network evaluations (>= 1); H = num_steps + 1.
        solver: "ddim" (first order) or "dpmpp2m" (second order multistep).
        cfg_scale: baseline guidance weight w, constant over steps; `None` turns guidance off
            (no "cfg" knob, no unconditional passes).
        device: where sampling runs.
        precision: one of `PRECISIONS`: "bfloat16" runs the model's forwards under autocast; the solver updates
            stay float32.
    """

    path_name: str
    """The `PATHS` entry the model was trained on; `self.path` is that path with the model's prediction target, or
    the model's own `path` where it has one (an adapted diffusers DiT's discrete-time schedule)."""
    time_description: str

    def __init__(
        self,
        model: DiT,
        num_steps: int = 8,
        solver: str = "dpmpp2m",
        cfg_scale: float | None = 1.0,
        device: torch.device | str = "cpu",
        precision: str = "float32",
    ) -> None:
        if not isinstance(num_steps, int) or num_steps < 1:
            raise InvalidArgument(f"num_steps must be an int >= 1, got {num_steps!r}")
        self.precision = check_precision(precision)
        if solver not in SOLVERS:
            raise InvalidArgument(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
        if cfg_scale is not None and not (cfg_scale > 0 and cfg_scale < float("inf")):
            raise InvalidArgument(f"cfg_scale must be a finite number > 0 or None (no guidance), got {cfg_scale!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        # A model trained on a path the shipped ones cannot express (a discrete-time schedule) brings its own.
        own_path = getattr(model, "path", None)
        if own_path is not None and getattr(model, "paradigm", self.path_name) != self.path_name:
            raise InvalidArgument(
                f"{type(self).__name__} samples the {self.path_name!r} path; this "
                f"{type(model).__name__} is a {model.paradigm!r} model"
            )
        self.path = path_for(self.path_name, model.config) if own_path is None else own_path
        self.num_steps, self.solver, self.cfg_scale = num_steps, solver, cfg_scale
        self.horizon = num_steps + 1
        self.num_classes = model.config.num_classes
        self.feature_shape = model.feature_shape
        self.image_shape = (model.config.channels, model.config.resolution, model.config.resolution)
        specs = [KnobSpec(TIME_KNOB, "sigmoid", self.time_description)]
        if cfg_scale is not None:
            specs.append(
                KnobSpec(CFG_KNOB, "softplus", "guidance weight w of this evaluation: cond + w (cond - uncond)")
            )
        self.knob_specs = tuple(specs)
        # Each time stays at least min_gap from its neighbours, leaving room for every remaining step.
        self.min_gap = 0.2 / num_steps

    def config(self) -> dict:
        return {
            "num_steps": self.num_steps,
            "solver": self.solver,
            "cfg_scale": self.cfg_scale,
            **self.precision_config(),
        }

    # -- schedule ---------------------------------------------------------------------------------
    def baseline_values(self) -> torch.Tensor:
        """Uniform time grid from the noise end to the data end, constant CFG."""
        p = self.path
        times = torch.linspace(p.noise_end, p.data_end, self.horizon, device=self.device)
        columns = [times]
        if self.cfg_scale is not None:
            columns.append(torch.full((self.horizon,), float(self.cfg_scale), device=self.device))
        return torch.stack(columns, dim=-1)

    def _towards_data(self, t: torch.Tensor) -> torch.Tensor:
        """Progress of t from the noise end (0) to the data end (1), signed: beyond the noise end is negative."""
        return (t - self.path.noise_end) / (self.path.data_end - self.path.noise_end)

    def _from_progress(self, progress: torch.Tensor) -> torch.Tensor:
        return self.path.noise_end + (self.path.data_end - self.path.noise_end) * progress

    def project(self, state: ODEState, knobs: torch.Tensor) -> torch.Tensor:
        """Times: strictly monotone towards the data with gap >= min_gap, room left for the remaining
        steps, and exactly the data end at the last step. CFG: clipped to [0, 100]."""
        check_knobs(self.knob_specs, knobs, state.labels.shape[0])
        k, gap = state.step, self.min_gap
        remaining = self.horizon - 1 - k  # updates still to come after this step's time is reached
        progress = self._towards_data(knobs[:, 0])
        if k == 0:
            low, high = torch.zeros_like(progress), torch.full_like(progress, 1 - gap * remaining)
        elif k == self.horizon - 1:
            low = high = torch.ones_like(progress)
        else:
            low = self._towards_data(state.t) + gap
            high = torch.full_like(progress, 1 - gap * remaining)
        progress = torch.minimum(torch.maximum(progress, low), high)
        projected = knobs.clone()
        projected[:, 0] = self._from_progress(progress)
        if self.cfg_scale is not None:
            projected[:, 1] = knobs[:, 1].clamp(0, MAX_CFG)
        return projected

    # -- lifecycle --------------------------------------------------------------------------------
    def reset(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> ODEState:
        labels = self.check_labels(labels)
        x = randn((labels.shape[0], *self.image_shape), generator, self.device)
        return ODEState(x=x, t=torch.full_like(labels, self.path.noise_end, dtype=torch.float32), labels=labels, step=0)

    def features(self, state: ODEState) -> torch.Tensor:
        if state.feats is None:  # step 0: nothing has been evaluated yet
            return torch.zeros(state.labels.shape[0], *self.feature_shape, device=self.device)
        return state.feats.float()

    def intermediate(self, state: ODEState) -> torch.Tensor:
        """A copy of the current noisy sample x_t, (B, C, R, R) in the data scale [-1, 1] plus noise."""
        return state.x.float().clone()

    def step_nfe(self, step_index: int) -> int:
        guided = self.cfg_scale is not None
        conditional = 1 if step_index < self.horizon - 1 else 0
        unconditional = 1 if (guided and step_index > 0) else 0
        return conditional + unconditional

    @torch.no_grad()
    def step(self, state: ODEState, knobs: torch.Tensor) -> ODEState:
        """Advance by one policy call; `knobs` is (B, K) in `knob_specs` order."""
        if state.step >= self.horizon:
            raise InvalidArgument(f"episode is over: all {self.horizon} steps were taken; call reset")
        knobs = self.project(state, knobs)
        t_next = knobs[:, 0]
        if state.step == 0:
            return self._evaluate(replace(state, t=t_next, step=1))
        # 1. Guided model output at (x, t).
        out = state.cond
        if self.cfg_scale is not None:
            null = torch.full_like(state.labels, self.model.null_class)
            with self.autocast():
                uncond = self.model(state.x, state.t, null)[0].float()
            out = cfg_mix(state.cond, uncond, knobs[:, 1][:, None, None, None])
        # 2. Data estimate, then the solver update t -> t_next.
        x0 = self.path.to_data(state.x, out, state.t)
        last = state.step == self.horizon - 1
        second_order = SOLVERS[self.solver] == 2 and state.x0_prev is not None and not last
        x_next = self._update(state, x0, t_next, second_order)
        new = replace(state, x=x_next, t=t_next, step=state.step + 1, x0_prev=x0, t_prev=state.t)
        return new if last else self._evaluate(new)

    def _evaluate(self, state: ODEState) -> ODEState:
        """Run the conditional pass at (x, t) and cache its output and features."""
        with self.autocast():
            cond, feats = self.model(state.x, state.t, state.labels)
        return replace(state, cond=cond.float(), feats=feats.float())

    def _update(self, state: ODEState, x0: torch.Tensor, t_next: torch.Tensor, second_order: bool) -> torch.Tensor:
        """DPM-Solver++ update of x from state.t to t_next using the data estimate x0 (and the previous one)."""
        p = self.path
        a_s, s_s, a_t, s_t = p.alpha(state.t), p.sigma(state.t), p.alpha(t_next), p.sigma(t_next)
        # 1. First order (DDIM): x_t = (s_t / s_s) x_s + (a_t - s_t a_s / s_s) D.
        c_x = (s_t / s_s)[:, None, None, None]
        c_d = (a_t - s_t * a_s / s_s)[:, None, None, None]
        if not second_order:
            return c_x * state.x + c_d * x0
        # 2. Second order multistep: D = (1 + 1/(2r)) x0 - 1/(2r) x0_prev with r = h_prev / h.
        lam = lambda t: torch.log(p.alpha(t).clamp_min(1e-12)) - torch.log(p.sigma(t).clamp_min(1e-12))  # noqa: E731
        h = lam(t_next) - lam(state.t)
        h_prev = lam(state.t) - lam(state.t_prev)
        half_inv_r = (h / (2 * h_prev)).nan_to_num(0.0)[:, None, None, None]
        return c_x * state.x + c_d * ((1 + half_inv_r) * x0 - half_inv_r * state.x0_prev)

    def decode(self, state: ODEState) -> torch.Tensor:
        if state.step != self.horizon:
            raise InvalidArgument(
                f"decode needs a finished episode ({self.horizon} steps), this state is at step {state.step}"
            )
        return ((state.x.float() + 1) / 2).clamp(0, 1)
