"""Adapters: real pretrained generators, as diffusers holds them, made generators of the existing paradigms.

An adapter wraps the diffusers models of one family in an `nn.Module` with the interface the paradigm's sampler
already drives (for DiT: `model(x_t, t, labels) -> (prediction, features)`), so the env, its knobs, projection, NFE
accounting and every RL tool run unchanged. `docs/diffusers.md` tells the design.

| module | diffusers models | paradigm, env |
|---|---|---|
| `diffusers_dit` | `DiTTransformer2DModel` + `AutoencoderKL` (+ the scheduler's discrete VP schedule) | diffusion, `AdaGen/DiT-v0` |

diffusers is an optional dependency (the `diffusers` extra): nothing here imports it before an adapter is built,
so `import adagen_env` never needs it. Nothing is ever downloaded: directories load with `local_files_only=True`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adagen_env.errors import InvalidArgument

ADAPTERS = {"diffusion": "adagen_env.adapters.diffusers_dit"}
"""Paradigm -> the module whose `from_pretrained` loads a diffusers directory for it."""


def load_pretrained(path: str | Path, paradigm: str, **kwargs: Any) -> Any:
    """The adapter model of `paradigm` loaded from a local diffusers directory (`from_pretrained` layout), e.g.
    `DiffusersDiT.from_pretrained(path, **kwargs)` for "diffusion"; `InvalidArgument` for a paradigm without one."""
    if paradigm not in ADAPTERS:
        raise InvalidArgument(
            f"no diffusers adapter for the {paradigm!r} paradigm yet; diffusers directories load for "
            f"{sorted(ADAPTERS)} (a DiT-XL/2-style DiTTransformer2DModel + AutoencoderKL on AdaGen/DiT-v0)"
        )
    from adagen_env.adapters import diffusers_dit

    return diffusers_dit.from_pretrained(path, **kwargs)


__all__ = ["ADAPTERS", "load_pretrained"]
