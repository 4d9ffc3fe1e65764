"""`AdaGen/SiT-v0`: the schedule of a rectified-flow DiT's ODE sampler as an MDP."""

from __future__ import annotations

from adagen_env.envs.base import AdaGenEnv, AdaGenVectorEnv
from adagen_env.samplers.flow import FlowSampler


class SiTVectorEnv(AdaGenVectorEnv):
    """Per-sample time points and CFG of a rectified-flow DiT, sampled by DPM-Solver++(2M) or Euler.

    ## Description
    Each episode generates one image per lane with the zoo's `flow` DiT (16x16 shapes, linear path,
    velocity prediction). At every network evaluation the policy picks the next time point and the
    CFG weight, as in AdaGen's public code.

    ## Action Space
    `Box(-10, 10, (A,), float32)`: raw residuals added to the baseline's pre-activation values.

    | index | knob | activation | range after projection | baseline |
    |---|---|---|---|---|
    | 0 | time | sigmoid | strictly increasing, gap >= 0.2/NFE, 1 at the last step | uniform grid 0 -> 1 |
    | 1 | cfg | softplus | [0, 100] | constant `cfg_scale` (1.0) |

    ## Observation Space
    `Dict(features=Box(-inf, inf, (128, 8/pool, 8/pool), float32|float16), step=Discrete(NFE + 1))`.

    ## Rewards
    0 until the last step, then the reward model's score of each final image.

    ## Starting State
    Gaussian noise and a uniformly random class per lane (or `options={"labels": ...}`).

    ## Episode End
    Terminates after NFE + 1 steps; no truncation. Next-step autoreset.

    ## Arguments
    See `AdaGenVectorEnv`. Defaults: `generator="flow"`, `num_steps=8`, and through `sampler_kwargs`:
    `solver="dpmpp2m"` (or "ddim", which is Euler on this path), `cfg_scale=1.0`. A real SD3 flow transformer
    comes in as `generator=` a local diffusers directory or a `DiffusersSD3`, its labels indexing a table of prompt
    embeddings (docs/diffusers.md).

    ## Version History
    * v0: initial version.
    """

    paradigm = "flow"
    sampler_cls = FlowSampler
    default_generator = "flow"
    default_num_steps = 8
    default_smoothing = 0.8


class SiTEnv(AdaGenEnv):
    """Single-lane `AdaGen/SiT-v0` (see `SiTVectorEnv` for the manual)."""

    vector_cls = SiTVectorEnv
