"""`AdaGen/MaskGIT-v0`: the decoding schedule of a masked-token transformer as an MDP."""

from __future__ import annotations

from adagen_env.envs.base import AdaGenEnv, AdaGenVectorEnv
from adagen_env.samplers.maskgit import MaskGITSampler


class MaskGITVectorEnv(AdaGenVectorEnv):
    """Per-sample mask ratio, re-mask temperature, sampling temperature and CFG of MaskGIT decoding.

    ## Description
    Each episode decodes one 8x8 token grid per lane with the zoo's `maskgit` transformer and VQ
    tokenizer (32x32 shapes). At every step the policy picks the step's knobs, as in AdaGen's public code.

    ## Action Space
    `Box(-10, 10, (A,), float32)`: raw residuals added to the baseline's pre-activation values.

    | index | knob | activation | validity | baseline |
    |---|---|---|---|---|
    | 0 | mask_ratio | sigmoid | >= 1 token decoded per step while any is masked, all at the last step, never re-mask | cosine |
    | 1 | remask_temp | softplus | clipped | linear decay from `remask_temp` |
    | 2 | temperature | softplus | clipped | 1 |
    | 3 | cfg | softplus | clipped | linear ramp from ~0 to `cfg_scale` |

    ## Observation Space
    `Dict(features=Box(-inf, inf, (128, 8/pool, 8/pool)), step=Discrete(T))`: the transformer's final
    hidden states (after the last LayerNorm) on the current masked grid, conditional pass.

    ## Rewards
    0 until the last step, then the reward model's score of each decoded image.

    ## Starting State
    A fully masked grid and a uniformly random class per lane (or `options={"labels": ...}`).

    ## Episode End
    Terminates after T steps (`num_steps`, default 8). Next-step autoreset.

    ## Arguments
    See `AdaGenVectorEnv`. Defaults: `generator="maskgit"`, `num_steps=8`; `sampler_kwargs`:
    `remask_temp`, `cfg_scale` (None: no guidance, no cfg knob). A real aMUSEd comes in as `generator=` a local
    diffusers directory or a `DiffusersAmused`, its labels indexing a table of prompt embeddings (docs/diffusers.md).

    ## Version History
    * v0: initial version.
    """

    paradigm = "maskgit"
    sampler_cls = MaskGITSampler
    default_generator = "maskgit"
    default_num_steps = 8
    default_smoothing = 0.8


class MaskGITEnv(AdaGenEnv):
    """Single-lane `AdaGen/MaskGIT-v0` (see `MaskGITVectorEnv` for the manual)."""

    vector_cls = MaskGITVectorEnv
