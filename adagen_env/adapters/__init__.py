"""Adapters: real pretrained generators, as diffusers holds them, made generators of the existing paradigms.

An adapter wraps the diffusers models of one family in an `nn.Module` with the interface the paradigm's sampler
already drives (for DiT: `model(x_t, t, labels) -> (prediction, features)`), so the env, its knobs, projection, NFE
accounting and every RL tool run unchanged. `docs/diffusers.md` tells the design.

| module | diffusers models | paradigm, env |
|---|---|---|
| `diffusers_dit` | `DiTTransformer2DModel` + `AutoencoderKL` (+ the scheduler's discrete VP schedule) | diffusion, `AdaGen/DiT-v0` |
| `diffusers_sd3` | `SD3Transformer2DModel` + `AutoencoderKL` (+ `FlowMatchEulerDiscreteScheduler`'s grid), prompt embeddings | flow, `AdaGen/SiT-v0` |
| `diffusers_amused` | aMUSEd's `UVit2DModel` + `VQModel` (+ `AmusedScheduler`'s schedule), prompt embeddings | maskgit, `AdaGen/MaskGIT-v0` |

The text-conditioned families take their condition as a `common.PromptTable`: C prompts' text-encoder outputs that
the env's labels 0 .. C - 1 index, and the empty prompt's for the unconditional pass of guidance.

diffusers is an optional dependency (the `diffusers` extra): nothing here imports it before an adapter is built,
so `import adagen_env` never needs it. Nothing is ever downloaded: directories load with `local_files_only=True`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from adagen_env.errors import InvalidArgument

ADAPTERS = {
    "diffusion": "adagen_env.adapters.diffusers_dit",
    "flow": "adagen_env.adapters.diffusers_sd3",
    "maskgit": "adagen_env.adapters.diffusers_amused",
}
"""Paradigm -> the module whose `from_pretrained` loads a diffusers directory for it."""


def load_pretrained(path: str | Path, paradigm: str, **kwargs: Any) -> Any:
    """The adapter model of `paradigm` loaded from a local diffusers directory (`from_pretrained` layout), e.g.
    `DiffusersDiT.from_pretrained(path, **kwargs)` for "diffusion"; `InvalidArgument` for a paradigm without one."""
    if paradigm not in ADAPTERS:
        raise InvalidArgument(
            f"no diffusers adapter for the {paradigm!r} paradigm yet; diffusers directories load for "
            f"{sorted(ADAPTERS)} (DiT on AdaGen/DiT-v0, SD3 on AdaGen/SiT-v0, aMUSEd on AdaGen/MaskGIT-v0)"
        )
    return importlib.import_module(ADAPTERS[paradigm]).from_pretrained(path, **kwargs)


__all__ = ["ADAPTERS", "load_pretrained"]
