"""`AdaGen/VAR-v0`: the per-scale sampling settings of a next-scale autoregressive transformer as an MDP."""

from __future__ import annotations

from adagen_env.envs.base import AdaGenEnv, AdaGenVectorEnv
from adagen_env.samplers.var import VARSampler


class VARVectorEnv(AdaGenVectorEnv):
    """Per-sample CFG, top-k, top-p and temperature of VAR, one step per scale.

    ## Description
    Each episode generates one image per lane with the zoo's `var` transformer and multi-scale
    residual VQ tokenizer (32x32 shapes, scales 1, 2, 3, 4, 6, 8). At every scale the policy picks
    that scale's sampling knobs, as in AdaGen's public code.

    ## Action Space
    `Box(-10, 10, (A,), float32)`: raw residuals added to the baseline's pre-activation values.

    | index | knob | activation | validity | baseline |
    |---|---|---|---|---|
    | 0 | cfg | softplus | ramped by scale (no effect at scale 0) | constant `cfg_scale` (1.5) |
    | 1 | top_k | vocab * sigmoid | int; <= 0 means no filter; >= 1 token kept | 900/4096 of the vocabulary |
    | 2 | top_p | sigmoid | the most probable token is always kept | 0.96 |
    | 3 | temperature | softplus | clipped | 1 |

    ## Observation Space
    `Dict(features=Box(-inf, inf, (128, 8/pool, 8/pool)), step=Discrete(number of scales))`: hidden
    states of the current scale's queries, resized to the 8x8 grid.

    ## Rewards
    0 until the last scale, then the reward model's score of each decoded image.

    ## Starting State
    No tokens yet and a uniformly random class per lane (or `options={"labels": ...}`).

    ## Episode End
    Terminates after one step per scale (6). `num_steps` is fixed by the tokenizer's scales: it takes
    None or that count, so that one set of keyword arguments serves every id. Next-step autoreset.

    ## Arguments
    See `AdaGenVectorEnv`. Defaults: `generator="var"`; `sampler_kwargs`: `cfg_scale`, `top_k`, `top_p`.

    ## Version History
    * v0: initial version.
    """

    paradigm = "var"
    sampler_cls = VARSampler
    default_generator = "var"
    default_num_steps = None
    default_smoothing = 0.0


class VAREnv(AdaGenEnv):
    """Single-lane `AdaGen/VAR-v0` (see `VARVectorEnv` for the manual)."""

    vector_cls = VARVectorEnv
