"""Registration of every `AdaGen/` environment, in one place (like `gymnasium/envs/__init__.py`).

Each id has an `entry_point` (one lane, for `gym.make` and `check_env`) and a `vector_entry_point`
(natively batched, what `gym.make_vec(id, num_envs=N)` returns).
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from adagen_env.names import ENVIRONMENTS  # the table itself (import-free, so the command line reads it cheaply)


def register_envs() -> None:
    """Register every id in `ENVIRONMENTS` (idempotent)."""
    for env_id, prefix in ENVIRONMENTS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=f"{prefix}Env", vector_entry_point=f"{prefix}VectorEnv")
