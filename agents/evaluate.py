"""`adagen eval`: FID, KID, IS, precision/recall and class agreement of trained policies and of the baseline
schedule, at equal NFE, on fixed class-balanced labels and fixed sampling seeds; written as JSON and markdown.

    adagen eval --policy runs/AdaGen-SiT-v0__ppo__0__.../checkpoint.zip --schedule baseline --seeds 0 1 2

Each policy runs on the env its checkpoint was trained on (env id, step count, knobs, smoothing, features from
its metadata); the baseline (u = 0) runs on that same env, so both spend the same NFE on the same labels and
noise. A checkpoint of another env or knob set than `--env` / `--knobs` asks for, or a corrupt one, is refused
with `CheckpointError`.

A policy trained on another generator (`adagen train --generator DIR`) runs on the generator its checkpoint
records, loaded again from there (or from `--generator` when it has moved; its weights must be the recorded
ones); `--generator` is also the generator of a baseline evaluated alone. `--reference DIR --inception-weights FILE`
score against real images in Inception-v3's space instead of the shapes data (`agents.scoring`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from adagen_env.errors import InvalidArgument
from adagen_env.metrics import METRICS, balanced_labels
from adagen_env.outputs import writable_dir, write_text
from agents.checkpoint import IDENTITY_KEYS, check_meta, generator_expectation, load_model
from agents.generators import generator_source
from agents.reporting import change_cell, stat_cells
from agents.rollout import Generation, ZeroPolicy, generate
from agents.scoring import SHAPES, Scoring, columns
from agents.train import Args, EnvFn, compute_aware, default_env_fn, smooth


def eval_env(
    env_id: str, env_kwargs: dict[str, Any], smoothing: float, batch_size: int, device: str, env_fn: EnvFn | None = None
) -> Any:
    """The vector env a policy (or a schedule) is evaluated on: no reward, final images returned, smoothing applied.
    An `env_kwargs` "generator" (a zoo name or a path, `agents.generators.generator_source`) is loaded; a missing
    path is a `CheckpointError`."""
    if env_fn is None:
        env_kwargs = {**env_kwargs, "generator": generator_source(env_kwargs.get("generator"))}
        args = Args(env=env_id, device=device, **{k: v for k, v in env_kwargs.items() if v is not None})
        env_fn = default_env_fn(args)
    return smooth(env_fn(num_envs=batch_size, reward_model=None, return_images=True), smoothing)


def _env_meta(env: Any, env_id: str) -> dict[str, Any]:
    base = env.unwrapped
    return {
        "env_id": env_id,
        "knobs": list(base.controlled),
        "horizon": base.horizon,
        "observation_keys": sorted(env.single_observation_space.spaces),
        "feature_shape": list(env.single_observation_space["features"].shape),
    }


def summarise(per_seed: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and std (ddof 1; 0 for one seed) over seeds of every metric."""
    keys = [k for k in per_seed[0] if k not in ("num_samples", "num_reference")]
    mean = {k: float(np.mean([s[k] for s in per_seed])) for k in keys}
    std = {k: float(np.std([s[k] for s in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0 for k in keys}
    return mean, std


def score_seeds(
    make: Callable[[int], Generation],
    seeds: Sequence[int],
    metrics: tuple[str, ...] = METRICS,
    device: str = "cpu",
    desc: str = "seeds",
    scoring: Scoring = SHAPES,
) -> dict[str, Any]:
    """Generate with `make(seed)` for each seed and score it: per-seed metrics, mean and std over seeds, NFE per image,
    generation wall time per image, and the last seed's `Generation` (under "generation"). A progress bar (ETA per
    seed) is labelled `desc`. `scoring` says what the images are scored against.

    Where the images spend different NFE (`Generation.sample_nfe`: compute-aware episodes), "nfe" is the mean NFE
    an image actually spent over every seed's images, "nfe_budget" a whole episode's, and "nfe_spent" holds the mean
    and std over seeds of the per-seed means, each seed's mean, and the fewest and most any image spent."""
    from tqdm.auto import tqdm

    per_seed, spent, seconds, last = [], [], 0.0, None
    bar = tqdm(seeds, desc=desc, unit="seed", dynamic_ncols=True)
    for seed in bar:
        bar.set_postfix_str(f"seed {seed}: generating")
        start = time.perf_counter()
        last = make(seed)
        seconds += time.perf_counter() - start
        bar.set_postfix_str(f"seed {seed}: scoring")
        per_seed.append({**scoring.score(last.images, last.labels, metrics, device), "seed": seed})
        spent.append(last.spent())
    mean, std = summarise([{k: v for k, v in s.items() if k != "seed"} for s in per_seed])
    result: dict[str, Any] = {"nfe": last.nfe}
    if last.sample_nfe is not None:
        means = [float(s.mean()) for s in spent]
        every = np.concatenate(spent)
        result = {
            "nfe": _count(every.mean()),
            "nfe_budget": last.nfe,
            "nfe_spent": {
                "mean": float(np.mean(means)),
                "std": float(np.std(means, ddof=1)) if len(means) > 1 else 0.0,
                "per_seed": means,
                "min": int(every.min()),
                "max": int(every.max()),
            },
        }
    return {
        **result,
        "per_seed": per_seed,
        "mean": mean,
        "std": std,
        "seconds_per_image": seconds / (len(seeds) * last.labels.shape[0]),
        "generation": last,
    }


def _count(value: float) -> int | float:
    """A mean NFE: an int when it is a whole number (every image spent the same), else the float."""
    return int(value) if float(value).is_integer() else float(value)


def _run(
    name: str,
    policy: Any,
    env: Any,
    num_samples: int,
    seeds: Sequence[int],
    metrics: tuple[str, ...],
    device: str,
    make: Callable[..., Generation] = generate,
    scoring: Scoring = SHAPES,
) -> dict[str, Any]:
    """One row: `make(policy, env, labels, seed)` (`generate` or a refinement) scored over the seeds."""
    labels = balanced_labels(num_samples, env.unwrapped.sampler.num_classes)
    make_seed = lambda seed: make(policy, env, labels, seed)  # noqa: E731
    result = score_seeds(make_seed, seeds, metrics, device, desc=name, scoring=scoring)
    result.pop("generation")
    return {"name": name, **result}


def _refined_rows(
    path: str | Path,
    model: Any,
    meta: dict[str, Any],
    best_of: int,
    lookahead: int,
    baseline: bool,
    num_samples: int,
    seeds: Sequence[int],
    batch_size: int,
    metrics: tuple[str, ...],
    device: str,
    env_fn: EnvFn | None,
    scoring: Scoring = SHAPES,
) -> list[dict[str, Any]]:
    """The rows of `agents.refine` for one policy, each on an env of K x `batch_size` lanes and scored by the run's
    own reward: best-of-K (and the baseline's best-of-K by the same scorer when `baseline`), value lookahead."""
    from agents.refine import best_of_k, load_scorer
    from agents.refine import lookahead as value_lookahead

    rows: list[dict[str, Any]] = []
    scorer = None
    for method, k in (("best-of", best_of), ("lookahead", lookahead)):
        if k <= 1:
            continue
        env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], batch_size * k, device, env_fn)
        sampler = env.unwrapped.sampler
        if scorer is None:
            scorer = load_scorer(path, sampler.num_classes, sampler.image_shape[-1], device)
        common = {
            "env_id": meta["env_id"],
            "generator_digest": env.unwrapped.generator_digest,
            "refinement": {"method": method, "k": k, "scorer": f"{meta['reward_model']} of {path}"},
        }
        runs = [(f"{method}-{k} {path}", model, meta["algo"])]
        if method == "best-of" and baseline:
            schedule = "baseline" if env.unwrapped.base_schedule is None else f"base schedule of {path}"
            runs.append(
                (f"{method}-{k} {schedule} (scorer of {path})", ZeroPolicy(env.single_action_space.shape[0]), None)
            )
        make = partial(best_of_k if method == "best-of" else value_lookahead, k=k, scorer=scorer)
        for name, policy, algo in runs:
            row = _run(name, policy, env, num_samples, seeds, metrics, device, make, scoring)
            per_candidate = row["nfe"] // k if isinstance(row["nfe"], int) else row["nfe"] / k
            rows.append({**row, **common, "algo": algo, "nfe_per_candidate": per_candidate})
    return rows


def evaluate(
    policies: Sequence[str | Path] = (),
    baseline: bool = False,
    env_id: str | None = None,
    num_samples: int = 1000,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 64,
    num_steps: int | None = None,
    knobs: Sequence[str] | None = None,
    out_dir: str | Path | None = "runs/eval",
    device: str = "cpu",
    metrics: tuple[str, ...] = METRICS,
    env_fn: EnvFn | None = None,
    best_of: int = 1,
    lookahead: int = 1,
    generator: str | None = None,
    scoring: Scoring = SHAPES,
) -> dict[str, Any]:
    """Evaluate checkpoints and / or the baseline schedule; returns the results and writes `eval.json` / `eval.md`.

    Args:
        policies: checkpoint zips written by `adagen train`.
        baseline: also evaluate the baseline schedule (u = 0) on each policy's env, or on `env_id` alone, and the
            base schedule (its u = 0) of each policy trained on one (`Args.base_schedule`).
        env_id: the env every policy must have been trained on; required when there is no policy.
        num_samples: images per seed (class-balanced labels).
        seeds: sampling seeds; the spread over them is reported.
        batch_size: lanes of the evaluation env.
        num_steps: step count of the baseline-only env (the env's default when None); a policy's env takes its
            checkpoint's.
        knobs: the knob set every policy must control (checked), and the baseline-only env's.
        out_dir: where `eval.json` and `eval.md` go (checked first; an earlier eval's files there are removed when
            this one starts); nothing is written when None.
        device: where generation and the metric network run.
        metrics: `compute_metrics` switches.
        env_fn: builds the unwrapped env instead of `gym.make_vec` (tests).
        best_of: K > 1 adds each policy's best-of-K row by its run's discriminator (`agents.refine.best_of_k`) and,
            with `baseline`, the baseline's best-of-K by that same scorer: rows at K times the NFE.
        lookahead: K > 1 adds each policy's value-lookahead row with K candidates per step (`agents.refine.lookahead`).
        generator: the generator of the baseline-only env, and where each policy's generator is now instead of the
            one its checkpoint records (its weights must be the recorded ones); None: the recorded ones, or the env's
            zoo default.
        scoring: what the images are scored against (`agents.scoring.Scoring`: the shapes data, or real images).

    Raises:
        InvalidArgument: nothing to evaluate, no env for the baseline, refinement without a policy, or a generator
            of more classes than the shapes data scored against it.
        CheckpointError: a corrupt checkpoint, one of another env or knob set, or a generator that is missing, of
            another family or other weights than the policy's.
    """
    if not policies and not baseline:
        raise InvalidArgument("nothing to evaluate: give --policy PATH and/or --schedule baseline")
    if num_samples < 2 or not seeds:
        raise InvalidArgument(f"need num_samples >= 2 and at least one seed, got {num_samples} and {list(seeds)}")
    if min(best_of, lookahead) < 1 or (max(best_of, lookahead) > 1 and not policies):
        raise InvalidArgument(
            f"best_of and lookahead must be >= 1, and refine a --policy (the scorer and critic are "
            f"its run's); got best_of={best_of}, lookahead={lookahead}, {len(policies)} policies"
        )
    if out_dir is not None:  # before any work; an earlier eval's results there must not look like this one's
        out = writable_dir(out_dir)
        for name in ("eval.json", "eval.md"):
            (out / name).unlink(missing_ok=True)
    expected: dict[str, Any] = {}
    if env_id is not None:
        expected["env_id"] = env_id
    if knobs is not None:
        expected["knobs"] = list(knobs)
    generator = generator_source(generator)
    rows: list[dict[str, Any]] = []
    baseline_envs: dict[str, Any] = {}
    for path in policies:
        model, meta = load_model(path, device=device, expected=expected)
        if generator is not None:
            meta = {**meta, "env_kwargs": {**meta["env_kwargs"], "generator": generator}}
        env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], batch_size, device, env_fn)
        scoring.check_sampler(env.unwrapped.sampler)
        check_meta(
            path, meta, {key: value for key, value in _env_meta(env, meta["env_id"]).items() if key in IDENTITY_KEYS}
        )
        sampler_and_generator = {
            "sampler_config": env.unwrapped.sampler.config(),
            **generator_expectation(meta, env.unwrapped),
        }
        check_meta(path, meta, sampler_and_generator)
        built = {"stop_knob": bool(getattr(env.unwrapped, "stop_knob", False))}
        check_meta(path, {"stop_knob": compute_aware(meta)["stop_knob"]}, built)
        rows.append(
            {
                **_run(str(path), model, env, num_samples, seeds, metrics, device, scoring=scoring),
                "env_id": meta["env_id"],
                "algo": meta["algo"],
                "generator_digest": env.unwrapped.generator_digest,
            }
        )
        rows += _refined_rows(
            path,
            model,
            meta,
            best_of,
            lookahead,
            baseline,
            num_samples,
            seeds,
            batch_size,
            metrics,
            device,
            env_fn,
            scoring,
        )
        key = json.dumps([meta["env_id"], meta["sampler_config"]], sort_keys=True)
        if env.unwrapped.base_schedule is None:
            # Zero actions give the same images whatever the policy sees or how its actions are smoothed.
            baseline_envs.setdefault(key, (meta["env_id"], env))
            continue
        if not baseline:
            continue
        # A policy on a base schedule: its zero action runs that schedule, a row of its own; the baseline needs an
        # env without it.
        zero = ZeroPolicy(env.single_action_space.shape[0])
        rows.append(
            {
                **_run(f"base schedule of {path}", zero, env, num_samples, seeds, metrics, device, scoring=scoring),
                "env_id": meta["env_id"],
                "algo": None,
                "generator_digest": env.unwrapped.generator_digest,
            }
        )
        if key not in baseline_envs:
            plain = {**meta["env_kwargs"], "base_schedule": None}
            baseline_envs[key] = (meta["env_id"], eval_env(meta["env_id"], plain, 0.0, batch_size, device, env_fn))
    if baseline:
        if not baseline_envs:
            if env_id is None:
                raise InvalidArgument("--schedule baseline without --policy needs --env")
            env_kwargs = {"num_steps": num_steps, "knobs": list(knobs) if knobs else None, "generator": generator}
            baseline_envs["env"] = (env_id, eval_env(env_id, env_kwargs, 0.0, batch_size, device, env_fn))
            scoring.check_sampler(baseline_envs["env"][1].unwrapped.sampler)
        for env_name, env in baseline_envs.values():
            zero = ZeroPolicy(env.single_action_space.shape[0])
            rows.append(
                {
                    **_run("baseline", zero, env, num_samples, seeds, metrics, device, scoring=scoring),
                    "env_id": env_name,
                    "algo": None,
                    "generator_digest": env.unwrapped.generator_digest,
                }
            )
    results = {
        "num_samples": num_samples,
        "seeds": list(seeds),
        "labels": "class-balanced",
        "reference": scoring.reference,
        "scored_against": scoring.describe(),
        "rows": rows,
    }
    if out_dir is not None:
        write_text(out / "eval.json", json.dumps(results, indent=2))
        write_text(out / "eval.md", markdown(results))
    return results


def generators_line(rows: list[dict[str, Any]]) -> str:
    """Which generator weights the rows were measured on: env id -> `generator_digest` (rows from before it was
    recorded name none)."""
    digests = {row["env_id"]: row["generator_digest"] for row in rows if row.get("generator_digest")}
    named = ", ".join(f"{env_id} `{digest}`" for env_id, digest in digests.items()) or "not recorded"
    return f"Generator weights (first 16 hex digits of the SHA-256 of the state dict): {named}."


def markdown(results: dict[str, Any]) -> str:
    """The comparison table: mean +- std over seeds per schedule, FID change against the baseline of its env."""
    lines = [
        "# adagen eval",
        "",
        (
            f"{results['num_samples']} samples per seed, seeds {results['seeds']}, {results['labels']} labels; "
            "mean ± std over seeds; every schedule of an env at the same NFE, labels and noise. A verdict needs "
            "FD-SSL and oracle coverage to agree beyond the combined spread (lower is better). Refined rows "
            "(best-of-K, lookahead-K) count the NFE of all K candidates: compare them with rows of that NFE."
        ),
        "",
        generators_line(results["rows"]),
        "",
    ]
    if results.get("scored_against"):
        lines += [results["scored_against"], ""]
    header = columns(results.get("reference"))
    aware = any("nfe_spent" in row for row in results["rows"])
    if aware:
        lines += [
            "Compute-aware rows (a policy with a stop action, and the schedules run on its env) count the NFE each "
            "image actually spent: NFE is its mean over all images, NFE spent its mean ± std over seeds of the "
            "per-seed means, of a whole episode's; their verdict is against the baseline at that whole episode's NFE.",
            "",
        ]
    spent_header, spent_rule = (" NFE spent / image |", "---|") if aware else ("", "")
    lines += [
        "| env | schedule | NFE |" + spent_header + " " + " | ".join(header.values()) + " | vs baseline |",
        "|---|---|---|" + spent_rule + "---|" * len(header) + "---|",
    ]
    baselines = {row["env_id"]: row for row in results["rows"] if row["name"] == "baseline"}
    for row in results["rows"]:
        base = baselines.get(row["env_id"])
        equal = base is not None and row is not base and row.get("nfe_budget", row["nfe"]) == base["nfe"]
        change = change_cell(row, base) if equal else "-"
        cells = " | ".join(stat_cells(row))
        spent = f" {spent_cell(row)} |" if aware else ""
        nfe = f"{row['nfe']:.4g}" if isinstance(row["nfe"], float) else row["nfe"]
        lines.append(f"| {row['env_id']} | {row['name']} | {nfe} |{spent} {cells} | {change} |")
    return "\n".join(lines) + "\n"


def spent_cell(row: dict[str, Any]) -> str:
    """The NFE an image of `row` actually spent, "mean ± std of budget", or "-" for a row without a stop action."""
    spent = row.get("nfe_spent")
    return "-" if spent is None else f"{spent['mean']:.4g} ± {spent['std']:.2g} of {row['nfe_budget']}"


__all__ = ["eval_env", "evaluate", "generators_line", "markdown", "score_seeds", "spent_cell", "summarise"]
