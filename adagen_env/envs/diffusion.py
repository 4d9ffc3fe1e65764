"""`AdaGen/DiT-v0`: the schedule of a diffusion DiT's ODE sampler as an MDP."""

from __future__ import annotations

from adagen_env.envs.base import AdaGenEnv, AdaGenVectorEnv
from adagen_env.samplers.diffusion import DiffusionSampler


class DiTVectorEnv(AdaGenVectorEnv):
    """Per-sample time points and CFG of a VP diffusion DiT, sampled by DPM-Solver++(2M) or DDIM.

    ## Description
    Each episode generates one image per lane with the zoo's `diffusion` DiT (16x16 shapes). At every
    network evaluation the policy picks the next time point and the CFG weight, as in AdaGen's public code.

    ## Action Space
    `Box(-10, 10, (A,), float32)`: raw residuals added to the baseline's pre-activation values.

    | index | knob | activation | range after projection | baseline |
    |---|---|---|---|---|
    | 0 | time | sigmoid | strictly decreasing, gap >= 0.2/NFE, 0 at the last step | uniform grid 1 -> 0 |
    | 1 | cfg | softplus | [0, 100] | constant `cfg_scale` (1.0) |

    ## Observation Space
    `Dict(features=Box(-inf, inf, (128, 8/pool, 8/pool), float32|float16), step=Discrete(NFE + 1))`:
    the last DiT block's tokens of the conditional pass at the current time (zeros at step 0).

    ## Rewards
    0 until the last step, then the reward model's score of each final image (default: the online
    adversarial discriminator).

    ## Starting State
    Gaussian noise and a uniformly random class per lane (or `options={"labels": ...}` in `reset`).

    ## Episode End
    Terminates after NFE + 1 steps; no truncation. Next-step autoreset.

    ## Arguments
    See `AdaGenVectorEnv`. Defaults: `generator="diffusion"`, `num_steps=8` (NFE), and through
    `sampler_kwargs`: `solver="dpmpp2m"`, `cfg_scale=1.0` (None: no guidance, no cfg knob). A real DiT-XL/2
    comes in as `generator=` a local diffusers directory or a `DiffusersDiT` (docs/diffusers.md).

    ## Version History
    * v0: initial version.

    Example:
        >>> import gymnasium as gym, adagen_env
        >>> envs = gym.make_vec("AdaGen/DiT-v0", num_envs=4, reward_model=None)
        >>> obs, info = envs.reset(seed=0)
        >>> obs["features"].shape
        (4, 128, 8, 8)
    """

    paradigm = "diffusion"
    sampler_cls = DiffusionSampler
    default_generator = "diffusion"
    default_num_steps = 8
    default_smoothing = 0.4


class DiTEnv(AdaGenEnv):
    """Single-lane `AdaGen/DiT-v0` (see `DiTVectorEnv` for the manual)."""

    vector_cls = DiTVectorEnv
