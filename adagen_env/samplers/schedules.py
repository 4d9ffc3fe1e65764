"""Static schedules: the hand-made knob schedules users already have, as (H, K) knob values of a sampler.

A static schedule gives every lane the same knob values at step k; `Sampler.sample(labels, generator,
schedule)` runs it. Each paradigm has one parametric family (`FAMILIES`): a function
`(sampler, **params) -> (H, K)` whose default parameters give the paradigm's baseline schedule, a set of
named hand-made members (`HAND_MADE`), and the candidate values a black-box search tries (`SEARCH_SPACES`,
used by `agents.bench` to find the tuned static schedule).

A schedule file (`save_schedule` / `load_schedule`, JSON) holds one such table with its knob names and horizon:
`adagen bench` writes one per static row it measures, `adagen export-schedule` one of a trained policy's mean knob
trajectory, `adagen bench --schedule` measures one, and an env's ``base_schedule`` reads one, so that a policy
learns residuals on top of a tuned static schedule instead of the baseline.

| paradigm | family parameters |
|---|---|
| DiT / SiT (`ode_schedule`) | `spacing` uniform in t, shifted (SD3-style `shift`), EDM (`rho`) or uniform log-SNR; CFG level `cfg`, its `cfg_shape` constant / ramp / guidance interval |
| MaskGIT (`maskgit_schedule`) | mask ratio `mask` cosine or 1 - p^`mask_power`; `remask_temp`; `temperature`; `cfg` and `cfg_shape` |
| VAR (`var_schedule`) | `cfg` and `cfg_shape`; `top_k`, `top_p`, `temperature` |

Letters: H horizon (policy calls per episode), K knobs of the sampler, N NFE.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from adagen_env.errors import CheckpointError, InvalidArgument
from adagen_env.models.paths import log_snr, time_at_log_snr
from adagen_env.samplers.base import Sampler
from adagen_env.samplers.maskgit import CFG_KNOB as MASKGIT_CFG_KNOB
from adagen_env.samplers.maskgit import MaskGITSampler
from adagen_env.samplers.ode import CFG_KNOB as ODE_CFG_KNOB
from adagen_env.samplers.ode import ODESampler
from adagen_env.samplers.var import CFG_KNOB as VAR_CFG_KNOB
from adagen_env.samplers.var import TEMPERATURE_KNOB, TOP_K_KNOB, TOP_P_KNOB, VARSampler

SPACINGS = ("uniform", "shift", "edm", "logsnr")
CFG_SHAPES = ("constant", "ramp", "interval")
MASK_SHAPES = ("cosine", "power")
LOGSNR_EPS = 1e-3
"""EDM and log-SNR grids are spaced between progress LOGSNR_EPS and 1 - LOGSNR_EPS (where log-SNR is finite);
their end points are then moved to the noise and data ends themselves."""
GUIDANCE_INTERVAL = (0.2, 0.8)
"""Progress range in which `cfg_shape="interval"` guides (Kynkaanniemi et al. 2024 guide only at middle noise)."""


def cfg_curve(shape: str, cfg: float, progress: torch.Tensor) -> torch.Tensor:
    """Guidance weights over (H,) progress in [0, 1]: constant `cfg`, a linear ramp 0 -> 2 cfg (the same mean),
    or `cfg` inside `GUIDANCE_INTERVAL` and 0 outside."""
    if shape == "constant":
        return torch.full_like(progress, float(cfg))
    if shape == "ramp":
        return 2 * float(cfg) * progress
    if shape == "interval":
        low, high = GUIDANCE_INTERVAL
        return torch.where((progress >= low) & (progress <= high), float(cfg), 0.0)
    raise InvalidArgument(f"cfg_shape must be one of {CFG_SHAPES}, got {shape!r}")


def _check_type(sampler: Sampler, cls: type, family: str) -> None:
    if not isinstance(sampler, cls):
        raise InvalidArgument(f"{family} needs a {cls.__name__}, got {type(sampler).__name__}")


def _with_cfg(
    sampler: Sampler, columns: list[torch.Tensor], cfg_column: torch.Tensor | None, name: str
) -> torch.Tensor:
    """Stack the knob columns, inserting the CFG column where the sampler has its `cfg` knob."""
    names = sampler.knob_names
    if name in names:
        if cfg_column is None:
            raise InvalidArgument("this sampler is guided: give cfg (a number), not None")
        columns.insert(names.index(name), cfg_column)
    return torch.stack(columns, dim=-1).to(sampler.device)


def _progress_to_time(sampler: ODESampler, progress: torch.Tensor) -> torch.Tensor:
    p = sampler.path
    return p.noise_end + (p.data_end - p.noise_end) * progress


def ode_times(sampler: ODESampler, spacing: str = "uniform", shift: float = 1.0, rho: float = 7.0) -> torch.Tensor:
    """(H,) time points from the noise end to the data end (float64 math, float32 out).

    Args:
        spacing: "uniform" in t (the baseline); "shift": the SD3 shift of the noise level 1 - p,
            s (1 - p) / (1 + (s - 1)(1 - p)), so `shift` > 1 spends more steps near the noise;
            "edm": Karras et al.'s rho-spacing of sigma / alpha; "logsnr": uniform in log-SNR (rho -> inf).
    """
    if spacing not in SPACINGS:
        raise InvalidArgument(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    if not (shift > 0 and rho > 0):
        raise InvalidArgument(f"shift and rho must be > 0, got shift={shift!r}, rho={rho!r}")
    h = sampler.horizon
    progress = torch.linspace(0, 1, h, dtype=torch.float64)
    if spacing == "shift":
        noise = 1 - progress
        progress = 1 - shift * noise / (1 + (shift - 1) * noise)
    if spacing in ("uniform", "shift"):
        return _progress_to_time(sampler, progress).float()
    ends = _progress_to_time(sampler, torch.tensor([LOGSNR_EPS, 1 - LOGSNR_EPS], dtype=torch.float64))
    lam_max, lam_min = log_snr(sampler.path, ends).tolist()[::-1]
    fraction = torch.linspace(0, 1, h, dtype=torch.float64)
    if spacing == "logsnr":
        lam = lam_min + (lam_max - lam_min) * fraction
    else:  # EDM: sigma/alpha = exp(-lam / 2) spaced uniformly in its 1/rho-th power
        s_max, s_min = math.exp(-lam_min / 2), math.exp(-lam_max / 2)
        ratio = (s_max ** (1 / rho) + fraction * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        lam = -2 * torch.log(ratio)
    times = time_at_log_snr(sampler.path, lam)
    times[0], times[-1] = sampler.path.noise_end, sampler.path.data_end  # pure noise to the data, as the baseline
    return times.float()


def ode_schedule(
    sampler: ODESampler,
    spacing: str = "uniform",
    shift: float = 1.0,
    rho: float = 7.0,
    cfg: float | None = None,
    cfg_shape: str = "constant",
) -> torch.Tensor:
    """(H, K) static schedule of a DiT/SiT sampler: `ode_times` and a CFG curve (`cfg_curve`).

    `cfg=None` takes the sampler's baseline weight; the defaults are the baseline schedule.
    """
    _check_type(sampler, ODESampler, "ode_schedule")
    times = ode_times(sampler, spacing, shift, rho)
    cfg = sampler.cfg_scale if cfg is None else cfg
    progress = torch.linspace(0, 1, sampler.horizon)
    curve = None if cfg is None else cfg_curve(cfg_shape, cfg, progress)
    return _with_cfg(sampler, [times], curve, ODE_CFG_KNOB)


def maskgit_schedule(
    sampler: MaskGITSampler,
    mask: str = "cosine",
    mask_power: float = 1.0,
    remask_temp: float | None = None,
    temperature: float = 1.0,
    cfg: float | None = None,
    cfg_shape: str = "ramp",
) -> torch.Tensor:
    """(H, K) static schedule of a MaskGIT sampler; the defaults are its baseline (`baseline_values`).

    Args:
        mask: "cosine", cos(pi/2 p), or "power", 1 - p^mask_power (1: linear, 2: square, 0.5: square root),
            at progress p = (k + 1 - 1e-3) / H.
        remask_temp: re-mask temperature at the first step, decaying linearly (the sampler's when None).
        temperature: sampling temperature at every step.
        cfg: guidance weight (the sampler's when None); `cfg_shape` "ramp" is MaskGIT's linear increase to cfg.
    """
    _check_type(sampler, MaskGITSampler, "maskgit_schedule")
    if mask not in MASK_SHAPES:
        raise InvalidArgument(f"mask must be one of {MASK_SHAPES}, got {mask!r}")
    if mask_power <= 0 or temperature <= 0:
        raise InvalidArgument(f"mask_power and temperature must be > 0, got {mask_power!r} and {temperature!r}")
    k = torch.arange(sampler.horizon, dtype=torch.float32)
    progress = (k + 1 - 1e-3) / sampler.horizon
    ratio = torch.cos(math.pi / 2 * progress) if mask == "cosine" else 1 - progress**mask_power
    remask = sampler.remask_temp if remask_temp is None else remask_temp
    columns = [ratio, (1 - progress) * remask, torch.full_like(k, temperature)]
    cfg = sampler.cfg_scale if cfg is None else cfg
    # MaskGIT's ramp reaches cfg at the last step: (k + 1e-3) / H * cfg (the sampler's baseline).
    curve = (
        None
        if cfg is None
        else ((k + 1e-3) / sampler.horizon * cfg if cfg_shape == "ramp" else cfg_curve(cfg_shape, cfg, progress))
    )
    return _with_cfg(sampler, columns, curve, MASKGIT_CFG_KNOB)


def var_schedule(
    sampler: VARSampler,
    cfg: float | None = None,
    cfg_shape: str = "constant",
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """(H, K) static schedule of a VAR sampler; the defaults are VAR's fixed settings (its baseline).

    `cfg_shape="constant"` is VAR's own (the sampler ramps the weight by scale itself); "ramp" doubles that
    ramp's slope from 0. `top_k` 0 means no top-k filter; None keeps the sampler's.
    """
    _check_type(sampler, VARSampler, "var_schedule")
    h = sampler.horizon
    ones = torch.ones(h)
    top_k = sampler.top_k if top_k is None else top_k
    top_p = sampler.top_p if top_p is None else top_p
    by_name = {TOP_K_KNOB: ones * (top_k + 0.5), TOP_P_KNOB: ones * top_p, TEMPERATURE_KNOB: ones * temperature}
    columns = [by_name[name] for name in sampler.knob_names if name != VAR_CFG_KNOB]
    cfg = sampler.cfg_scale if cfg is None else cfg
    curve = None if cfg is None else cfg_curve(cfg_shape, cfg, torch.linspace(0, 1, h))
    return _with_cfg(sampler, columns, curve, VAR_CFG_KNOB)


ScheduleFn = Callable[..., torch.Tensor]

FAMILIES: dict[type[Sampler], ScheduleFn] = {
    ODESampler: ode_schedule,
    MaskGITSampler: maskgit_schedule,
    VARSampler: var_schedule,
}
"""Sampler class -> its parametric family of static schedules."""

HAND_MADE: dict[type[Sampler], dict[str, dict[str, Any]]] = {
    ODESampler: {
        "baseline (uniform t)": {},
        "shift 3 (SD3)": {"spacing": "shift", "shift": 3.0},
        "EDM rho 7": {"spacing": "edm", "rho": 7.0},
        "uniform log-SNR": {"spacing": "logsnr"},
        "CFG ramp": {"cfg_shape": "ramp"},
        "guidance interval": {"cfg_shape": "interval"},
    },
    MaskGITSampler: {
        "baseline (cosine)": {},
        "linear mask": {"mask": "power", "mask_power": 1.0},
        "square mask": {"mask": "power", "mask_power": 2.0},
        "square-root mask": {"mask": "power", "mask_power": 0.5},
        "constant CFG": {"cfg_shape": "constant"},
    },
    VARSampler: {
        "baseline (VAR)": {},
        "CFG ramp": {"cfg_shape": "ramp"},
        "no top-k": {"top_k": 0},
        "no top-p": {"top_p": 1.0},
    },
}
"""Sampler class -> name -> parameters of its family: the schedules users know, run as they are."""

SEARCH_SPACES: dict[type[Sampler], dict[str, tuple[Any, ...]]] = {
    ODESampler: {
        "shift": (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
        "cfg": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0),
        "cfg_shape": CFG_SHAPES,
    },
    MaskGITSampler: {
        "mask_power": (0.5, 1.0, 1.5, 2.0, 3.0),
        "remask_temp": (0.0, 0.3, 1.0, 3.0),
        "temperature": (0.7, 0.85, 1.0, 1.2),
        "cfg": (0.0, 1.0, 2.0, 3.0, 5.0),
    },
    VARSampler: {
        "cfg": (0.0, 0.75, 1.5, 2.25, 3.0, 4.0),
        "top_k": (0, 8, 16, 32, 56),
        "top_p": (0.8, 0.9, 0.96, 1.0),
        "temperature": (0.8, 0.9, 1.0, 1.1),
    },
}
"""Sampler class -> parameter -> candidate values of the tuned-schedule search. The ODE search runs in the
"shift" spacing (shift 1 is the uniform baseline), MaskGIT's in the "power" mask family."""

SEARCH_FIXED: dict[type[Sampler], dict[str, Any]] = {
    ODESampler: {"spacing": "shift"},
    MaskGITSampler: {"mask": "power"},
    VARSampler: {},
}
"""Family parameters held fixed during the search."""


def family_key(sampler: Sampler) -> type[Sampler]:
    """The `FAMILIES` key of a sampler (its class or the base class that has a family)."""
    for cls in FAMILIES:
        if isinstance(sampler, cls):
            return cls
    raise InvalidArgument(
        f"no static schedule family for {type(sampler).__name__}; families: {[c.__name__ for c in FAMILIES]}"
    )


def static_schedule(sampler: Sampler, **params: Any) -> torch.Tensor:
    """(H, K) knob values of the sampler's family with `params` (the baseline with none)."""
    family = FAMILIES[family_key(sampler)]
    valid = [name for name in inspect.signature(family).parameters if name != "sampler"]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InvalidArgument(f"unknown schedule parameter(s) {unknown} for {family.__name__}; valid: {valid}")
    return family(sampler, **params)


def search_start(sampler: Sampler) -> dict[str, Any]:
    """The search's starting parameters: the family's fixed ones and, per searched parameter, the baseline's value
    where the baseline is in the space (else the space's first value)."""
    key = family_key(sampler)
    start = dict(SEARCH_FIXED[key])
    baseline_params = {
        ODESampler: {"shift": 1.0, "cfg": getattr(sampler, "cfg_scale", None), "cfg_shape": "constant"},
        MaskGITSampler: {
            "mask_power": 2.0,
            "remask_temp": getattr(sampler, "remask_temp", None),
            "temperature": 1.0,
            "cfg": getattr(sampler, "cfg_scale", None),
        },
        VARSampler: {
            "cfg": getattr(sampler, "cfg_scale", None),
            "top_k": getattr(sampler, "top_k", None),
            "top_p": getattr(sampler, "top_p", None),
            "temperature": 1.0,
        },
    }[key]
    for name, values in search_space(sampler).items():
        value = baseline_params.get(name)
        start[name] = value if value in values else values[0]
    return start


def search_space(sampler: Sampler) -> dict[str, tuple[Any, ...]]:
    """Candidate values per parameter for this sampler; CFG is left out of an unguided sampler's space."""
    space = dict(SEARCH_SPACES[family_key(sampler)])
    if "cfg" not in sampler.knob_names:
        space = {k: v for k, v in space.items() if k not in ("cfg", "cfg_shape")}
    return space


# -- schedule files -------------------------------------------------------------------------------
SCHEDULE_FORMAT = "adagen-schedule/1"
"""The ``format`` entry of a schedule file."""


def check_schedule(sampler: Sampler, schedule: Any, what: str = "schedule") -> torch.Tensor:
    """`schedule` ((H, K) knob values: a tensor or nested lists) as a float32 CPU tensor, checked against the
    sampler: its shape, finite values, and each knob's range (sigmoid knobs in [0, 1], scaled ones in [0, scale],
    softplus ones >= 0).

    Raises:
        InvalidArgument: a wrong shape, a non-finite value or a value out of a knob's range, naming step and knob.
    """
    try:
        table = torch.as_tensor(schedule, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidArgument(f"{what} must be (H, K) numbers, got {type(schedule).__name__}: {exc}") from exc
    expected = (sampler.horizon, len(sampler.knob_specs))
    if tuple(table.shape) != expected:
        raise InvalidArgument(
            f"{what} must have shape {expected} (steps, knobs {list(sampler.knob_names)}), got {tuple(table.shape)}"
        )
    for k, spec in enumerate(sampler.knob_specs):
        upper = {"sigmoid": 1.0, "scaled_sigmoid": spec.scale}.get(spec.activation, math.inf)
        bad = ~torch.isfinite(table[:, k]) | (table[:, k] < 0) | (table[:, k] > upper)
        if bool(bad.any()):
            step = int(bad.nonzero()[0])
            raise InvalidArgument(
                f"{what}: knob {spec.name!r} at step {step} is {float(table[step, k])}; it must be "
                f"a finite value in [0, {upper}]"
            )
    return table


def save_schedule(
    path: str | Path,
    sampler: Sampler,
    schedule: torch.Tensor,
    env_id: str | None = None,
    source: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a static schedule ((H, K) knob values of `sampler`) as JSON, atomically; `load_schedule` reads it.

    The file records the knob names and the horizon, which `load_schedule` checks, the sampler's settings
    (`Sampler.config`, for the reader), `source`, a note of where the table comes from, and the entries of `extra`
    (JSON values under keys of their own, for the reader; `load_schedule` ignores them).

    Raises:
        InvalidArgument: the table does not fit the sampler (`check_schedule`), or `extra` reuses a key of the
            format or holds something strict JSON cannot (NaN, infinities, objects).
    """
    table = check_schedule(sampler, schedule)
    path = Path(path)
    record = {
        "format": SCHEDULE_FORMAT,
        "env_id": env_id,
        "knob_names": list(sampler.knob_names),
        "horizon": sampler.horizon,
        "sampler_config": sampler.config(),
        "source": source,
        "schedule": table.tolist(),
    }
    clash = sorted(set(extra or {}) & set(record))
    if clash:
        raise InvalidArgument(f"extra entries {clash} would overwrite the schedule file's own keys {sorted(record)}")
    record.update(extra or {})
    try:
        text = json.dumps(record, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"schedule file entries must be finite JSON values: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def read_schedule(path: str | Path) -> dict[str, Any]:
    """Every entry of a schedule file written by `save_schedule` (JSON only, nothing is unpickled), its table not yet
    checked against any sampler (`load_schedule` does that).

    Raises:
        CheckpointError: the file is missing, not JSON, or not a schedule file.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"schedule file {str(path)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"schedule file {str(path)!r} is not readable JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != SCHEDULE_FORMAT or "schedule" not in record:
        raise CheckpointError(f"{str(path)!r} is not a schedule file (no format {SCHEDULE_FORMAT!r} entry)")
    return record


def load_schedule(path: str | Path, sampler: Sampler) -> torch.Tensor:
    """The (H, K) knob table of a schedule file written by `save_schedule`, checked against `sampler` (knob names,
    horizon and values; JSON only, nothing is unpickled).

    Raises:
        CheckpointError: the file is missing, not JSON, not a schedule file, or for other knobs or another horizon.
        InvalidArgument: its table does not fit the sampler's knob ranges.
    """
    path = Path(path)
    record = read_schedule(path)
    for key, expected in (("knob_names", list(sampler.knob_names)), ("horizon", sampler.horizon)):
        if record.get(key) != expected:
            raise CheckpointError(
                f"schedule file {str(path)!r} has {key} {record.get(key)!r}; this sampler has {expected!r}"
            )
    return check_schedule(sampler, record["schedule"], what=f"schedule file {str(path)!r}")


__all__ = [
    "CFG_SHAPES",
    "FAMILIES",
    "HAND_MADE",
    "SCHEDULE_FORMAT",
    "SEARCH_SPACES",
    "SPACINGS",
    "cfg_curve",
    "check_schedule",
    "family_key",
    "load_schedule",
    "maskgit_schedule",
    "ode_schedule",
    "ode_times",
    "read_schedule",
    "save_schedule",
    "search_space",
    "search_start",
    "static_schedule",
    "var_schedule",
]
