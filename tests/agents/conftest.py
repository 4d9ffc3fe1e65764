"""Make `import agents` mean the repository's `agents` package in this directory's tests, whatever the launcher.

Without `__init__.py` files, pytest puts `tests/` on `sys.path`, where this very directory, `tests/agents`, is a
namespace-package candidate named `agents`; a plain `pytest` (or a run from another directory) would then import
that instead of the real package. Putting the repository root first makes the real one win. The root conftest's
helpers are re-exported here, since `from conftest import ...` in this directory now resolves to this file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if "agents" in sys.modules and getattr(sys.modules["agents"], "__file__", None) is None:
    del sys.modules["agents"]  # a namespace package picked up before this file ran

_spec = importlib.util.spec_from_file_location("_adagen_tests_root_conftest", ROOT / "tests" / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
tiny_dit = _root.tiny_dit
TINY_CASES = _root.TINY_CASES

FAST_PPO = '{"n_epochs": 1, "episodes_per_update": 1}'
"""`--algo-kwargs` of the smoke trainings: one epoch over one episode per update."""


def smoke_train_argv(logdir: str | Path, *flags: str, env: str = "AdaGen/SiT-v0", updates: int = 1) -> list[str]:
    """`adagen train` arguments of a smoke training on `env` (2 lanes, 2 steps, `updates` PPO updates, no periodic
    evaluation, no progress bar) into `logdir`, then `flags`."""
    return [
        "train",
        *("--env", env, "--num-envs", "2", "--num-steps", "2", "--total-updates", str(updates)),
        *("--eval-every", "0", "--logdir", str(logdir), "--no-progress-bar", *flags),
    ]


def smoke_bench_argv(policy: str | Path, out: str | Path, *flags: str) -> list[str]:
    """`adagen bench` arguments that score `policy` (a SiT-v0 2-step checkpoint) beside the baseline only (4 images,
    seeds 0 and 1, no search, no hand-made schedules) into `out`, then `flags`."""
    return [
        "bench",
        *("--env", "AdaGen/SiT-v0", "--steps", "2", "--policy", str(policy), "--num-samples", "4", "--seeds", "0", "1"),
        *("--search-samples", "4", "--search-rounds", "0", "--batch-size", "4", "--no-hand-made", "--out", str(out)),
        *flags,
    ]
