"""What the per-paradigm benchmark scripts share: their arguments, the envs they run, and how results are written."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import adagen_env
from adagen_env import zoo
from adagen_env.envs import ENVIRONMENTS
from adagen_env.outputs import writable_dir, write_text


def parse_args(
    description: str, default_out: str, options: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """--batch (lanes), --repeats (timed runs per point) and --out (path without suffix); `options` adds a script's
    own arguments to the parser."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=default_out)
    if options is not None:
        options(parser)
    return parser.parse_args()


def shipped_vector_envs(batch: int) -> Iterator[tuple[str, Any, Any]]:
    """(env id, vector env class, `gym.make_vec(id, num_envs=batch)` without reward) per paradigm with shipped weights."""
    for env_id in sorted(ENVIRONMENTS):
        vector_cls = gym.envs.registration.load_env_creator(gym.spec(env_id).vector_entry_point)
        if not zoo.weights_path(vector_cls.default_generator).exists():
            print(f"skip {env_id}: no shipped weights")
            continue
        yield env_id, vector_cls, gym.make_vec(env_id, num_envs=batch, reward_model=None)


class CallTimer:
    """Wraps the named methods of `obj` on the instance and sums the seconds spent in them (`seconds`); None wraps
    nothing (then `seconds` stays 0)."""

    def __init__(self, obj: Any, methods: tuple[str, ...]) -> None:
        self.seconds = 0.0
        if obj is not None:
            for name in methods:
                setattr(obj, name, self._timed(getattr(obj, name)))

    def _timed(self, method: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def write_results(
    args: argparse.Namespace, rows: list[dict[str, Any]], markdown: list[str], extra_meta: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`<out>.json` (run settings, `extra_meta` + rows) and `<out>.md` (`markdown`'s lines, formatted with the meta and
    `out`, the --out given: a quoted command names it); returns the meta."""
    meta = {
        "batch": args.batch,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "version": adagen_env.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **(extra_meta or {}),
    }
    out = Path(args.out)
    writable_dir(out.parent)
    write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    write_text(out.with_suffix(".md"), "\n".join(line.format(**meta, out=args.out) for line in markdown) + "\n")
    return meta
