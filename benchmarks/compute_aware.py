"""Quality against the NFE an image actually spent: compute-aware policies (`adagen train --stop-knob --nfe-cost C`)
against the baseline schedule at several step counts (issue 23).

    python benchmarks/compute_aware.py --policy runs/<run>/checkpoint.zip [--policy ...] [--stop-offsets 0 1 2] \
        --out benchmarks/results/compute_aware/compute_aware

Every row runs on the same class-balanced labels and sampling seeds, in batches of `--batch-size` lanes seeded as
`adagen eval` seeds them, so a policy and the static schedules at its step count see the same noise:

* `baseline`: the paradigm's own schedule at each `--steps` count and at each policy's, through the one static
  runner (`adagen_env.evaluation.generate_static`, "env" seeding); `--hand-made` adds the other static schedules
  users know (`adagen_env.samplers.schedules.HAND_MADE`) at the same counts;
* `policy`: each checkpoint, deterministic, on the env it was trained on (`agents.evaluate.eval_env`: step count,
  knobs, smoothing, stop action), its NFE the mean an image actually spent (`Generation.sample_nfe`); at every
  `--stop-offsets` value o its stop entry is shifted by o (`StopOffset`: o > 0 stops earlier), so one policy traces
  a curve. A policy without the stop action is one point at its step count's NFE.

Rows are scored as `adagen eval` scores them (`agents.evaluate.score_seeds`: every yardstick, mean ± std over the
seeds). The target is the baseline at its largest NFE; for every method the report gives the smallest mean NFE of
its points whose FID, FD-SSL and oracle coverage (each alone), and FD-SSL and coverage together (the headline
verdict), are not worse than the target's beyond the combined spread over seeds (`agents.reporting.verdict`; lower
is better for all three); "not within the points" where none is.

Outputs: `<out>.json` (the settings and every row, rewritten whole after each row: a killed run loses only the row it
was measuring, and a rerun with the same settings keeps the rows it finds there), `<out>.md` (the table and the NFE
to match the target) and `<out>.png` (FID, FD-SSL and coverage against the mean NFE; error bars: std over seeds, of
the NFE spent too; the target dashed).

Letters: B lanes, A action entries (the knobs' residuals, then the stop).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import adagen_env
from adagen_env.errors import AdaGenError, InvalidArgument
from adagen_env.evaluation import generate_static
from adagen_env.metrics import HEADLINE, METRICS, balanced_labels
from adagen_env.outputs import save_figure, writable_dir, write_text
from adagen_env.samplers.schedules import HAND_MADE, family_key, static_schedule
from agents.bench import policy_steps, run_name
from agents.checkpoint import check_meta, generator_expectation, load_model
from agents.evaluate import eval_env, generators_line, score_seeds, spent_cell
from agents.reporting import COLUMNS, SHORT, change_cell, verdict
from agents.rollout import generate
from agents.train import compute_aware

DEFAULT_OUT = "benchmarks/results/compute_aware/compute_aware"
DEFAULT_STEPS = (2, 3, 4, 6, 8, 12, 16)
"""Step counts of the static curve (each policy's own is added): NFE 3 to 31 with guidance (2 per step but the
first and last)."""
YARDSTICKS = ("fid", "fd_ssl", "oracle_coverage")
"""The yardsticks of the table, the figure and the NFE to match (lower is better for each)."""


class StopOffset:
    """A policy (`agents.rollout.Predictor`) whose (B, A) actions have `offset` added to their last entry, the stop:
    > 0 stops earlier, < 0 later."""

    def __init__(self, model: Any, offset: float) -> None:
        self.model, self.offset = model, float(offset)

    def predict(
        self,
        observation: dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        actions, state = self.model.predict(
            observation, state=state, episode_start=episode_start, deterministic=deterministic
        )
        actions = np.array(actions, dtype=np.float32)  # a copy: SB3 may hand out its own buffer
        actions[:, -1] += self.offset
        return actions, state


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--policy", action="append", required=True, help="checkpoint.zip of `adagen train` (repeatable; one env)"
    )
    parser.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS), help="static step counts")
    parser.add_argument(
        "--stop-offsets",
        type=float,
        nargs="+",
        default=[0.0],
        help="added to each compute-aware policy's stop entry, a point each (> 0 stops earlier)",
    )
    parser.add_argument("--hand-made", action="store_true", help="also the hand-made static schedules")
    parser.add_argument("--num-samples", type=int, default=1000, help="images per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=250, help="lanes per generator call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=DEFAULT_OUT, help="path without suffix: <out>.json, <out>.md, <out>.png")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse what cannot run, before any work."""
    if args.num_samples < 2 or not args.seeds or args.batch_size < 1:
        raise InvalidArgument(
            f"need --num-samples >= 2, a seed and --batch-size >= 1; got {args.num_samples}, {args.seeds}, "
            f"{args.batch_size}"
        )
    if min(args.steps) < 1:
        raise InvalidArgument(f"--steps must be step counts >= 1, got {args.steps}")
    if not all(math.isfinite(o) for o in args.stop_offsets):
        raise InvalidArgument(f"--stop-offsets must be finite numbers, got {args.stop_offsets}")


def file_digest(path: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a file's bytes (a retrained policy file is another policy)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _static_kwargs(meta: dict[str, Any], steps: int) -> dict[str, Any]:
    """The env arguments of the static rows at `steps`: the policy's generator, the paradigm's baseline."""
    generator = meta["env_kwargs"].get("generator")
    return {"num_steps": steps, **({"generator": generator} if generator is not None else {})}


def load_policies(paths: Sequence[str], batch_size: int, device: str) -> list[dict[str, Any]]:
    """Each policy file's model, metadata, evaluation env and the sampler its static rows run, checked to be of one
    env and one generator, and to run the sampler settings of the static rows at its step count.

    Raises:
        InvalidArgument: policies of different envs or sampler settings.
        CheckpointError: a corrupt checkpoint, or one whose generator is not the one recorded.
    """
    loaded = []
    for path in paths:
        model, meta = load_model(path, device=device)
        env = eval_env(meta["env_id"], meta["env_kwargs"], meta["smoothing"], batch_size, device)
        check_meta(path, meta, generator_expectation(meta, env.unwrapped))
        steps = policy_steps(meta)
        static = eval_env(meta["env_id"], _static_kwargs(meta, steps), 0.0, batch_size, device).unwrapped.sampler
        if env.unwrapped.sampler.config() != static.config():
            raise InvalidArgument(
                f"policy {path!r} runs its sampler with {env.unwrapped.sampler.config()}, the static rows with "
                f"{static.config()}: they would not be at equal settings"
            )
        loaded.append({"path": path, "model": model, "meta": meta, "env": env, "steps": steps})
    envs = {(p["meta"]["env_id"], p["env"].unwrapped.generator_digest) for p in loaded}
    if len(envs) > 1:
        raise InvalidArgument(f"the policies are of different envs or generators {sorted(envs)}: give one env's")
    return loaded


def _row(key: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in result.items() if k != "generation"}
    return {"key": json.dumps(key, sort_keys=True), **key, **result}


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Measure every row (keeping those a previous run of the same settings left in `<out>.json`) and write the
    outputs; returns the results."""
    check_args(args)
    out = Path(args.out)
    writable_dir(out.parent)
    policies = load_policies(args.policy, args.batch_size, args.device)
    first = policies[0]
    env_id, digest = first["meta"]["env_id"], first["env"].unwrapped.generator_digest
    labels = balanced_labels(args.num_samples, first["env"].unwrapped.sampler.num_classes)
    settings = {
        "env_id": env_id,
        "generator_digest": digest,
        "num_samples": args.num_samples,
        "seeds": list(args.seeds),
        "batch_size": args.batch_size,
        "labels": "class-balanced",
        "metrics": list(METRICS),
    }
    saved: dict[str, dict[str, Any]] = {}
    json_path = out.with_suffix(".json")
    if json_path.is_file():
        previous = json.loads(json_path.read_text())
        if previous.get("settings") == settings:
            saved = {row["key"]: row for row in previous["rows"]}
            print(f"{json_path}: keeping the {len(saved)} rows measured with these settings")
    results = {
        "settings": settings,
        "command": command,
        "version": adagen_env.__version__,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "policies": [
            {
                "path": p["path"],
                "digest": file_digest(p["path"]),
                "algo": p["meta"]["algo"],
                "steps": p["steps"],
                "num_timesteps": p["meta"].get("num_timesteps"),
                **compute_aware(p["meta"]),
            }
            for p in policies
        ],
        "rows": [],
    }

    def measure(key: dict[str, Any], make: Any, desc: str) -> None:
        name = json.dumps(key, sort_keys=True)
        row = saved.get(name) or _row(key, score_seeds(make, args.seeds, METRICS, args.device, desc=desc))
        results["rows"].append(row)
        write_text(json_path, json.dumps(results, indent=2) + "\n")

    for steps in sorted({*args.steps, *(p["steps"] for p in policies)}):
        sampler = eval_env(env_id, _static_kwargs(first["meta"], steps), 0.0, args.batch_size, args.device)
        sampler = sampler.unwrapped.sampler
        named = list(HAND_MADE[family_key(sampler)].items())
        for index, (name, params) in enumerate(named if args.hand_made else named[:1]):
            kind = "baseline" if index == 0 else "hand-made"
            schedule = sampler.baseline_schedule() if kind == "baseline" else static_schedule(sampler, **params)
            key = {"method": name, "kind": kind, "steps": steps, "params": params}
            measure(
                key,
                lambda seed, s=sampler, t=schedule: generate_static(s, t, labels, seed, args.batch_size),
                f"{name} {steps} steps",
            )
    for policy, record in zip(policies, results["policies"]):
        stop = compute_aware(policy["meta"])["stop_knob"]
        for offset in args.stop_offsets if stop else [0.0]:
            actor = StopOffset(policy["model"], offset) if offset else policy["model"]
            params = {"checkpoint": policy["path"], "digest": record["digest"], "stop_offset": offset}
            key = {"method": f"policy {run_name(policy['path'])}", "kind": "policy", "steps": policy["steps"]}
            measure(
                {**key, "params": params},
                lambda seed, a=actor, e=policy["env"]: generate(a, e, labels, seed),
                f"policy {run_name(policy['path'])} offset {offset:g}",
            )
    results["nfe_to_match"] = nfe_to_match(results["rows"])
    write_text(json_path, json.dumps(results, indent=2) + "\n")
    write_text(out.with_suffix(".md"), markdown(results))
    save_figure(figure(results), out.with_suffix(".png"), dpi=110)
    return results


def target_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The baseline row at the largest NFE."""
    return max((r for r in rows if r["kind"] == "baseline"), key=lambda r: r["nfe"])


def nfe_to_match(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method, the smallest mean NFE of its points not worse than the target (the baseline at its largest NFE)
    in each of `YARDSTICKS` alone and in the headline yardsticks together (None: no point is); "any policy" is the
    smallest over the policies."""
    target = target_row(rows)
    found: dict[str, dict[str, float | None]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        points = sorted((r for r in rows if r["method"] == method), key=lambda r: r["nfe"])
        tests = {
            **{k: (k,) for k in YARDSTICKS},
            "headline": tuple(k for k in HEADLINE if k in target["mean"]),
        }
        found[method] = {
            name: next(
                (
                    r["nfe"]
                    for r in points
                    if all(
                        verdict(r["mean"][k], r["std"][k], target["mean"][k], target["std"][k]) != "worse" for k in ks
                    )
                ),
                None,
            )
            for name, ks in tests.items()
        }
    policies = [found[m] for m in found if any(r["method"] == m and r["kind"] == "policy" for r in rows)]
    if len(policies) > 1:
        found["any policy"] = {
            name: min((p[name] for p in policies if p[name] is not None), default=None) for name in policies[0]
        }
    return {
        "target": {"method": target["method"], "steps": target["steps"], "nfe": target["nfe"]},
        "target_scores": {k: [target["mean"][k], target["std"][k]] for k in YARDSTICKS},
        "methods": found,
    }


def markdown(results: dict[str, Any]) -> str:
    """The rows (mean ± std over seeds), the policies, and the NFE each method needs to match the target."""
    cfg, rows = results["settings"], results["rows"]
    target = target_row(rows)
    lines = [
        "# Compute-aware episodes: quality against the NFE an image actually spent",
        "",
        f"Made by `{results['command']}`.",
        "",
        (
            f"{cfg['env_id']}, {cfg['num_samples']} {cfg['labels']} samples per seed, seeds {cfg['seeds']}, batches of "
            f"{cfg['batch_size']} lanes; every row sees the same labels and noise. NFE: the mean an image spent "
            "(a policy's images stop at different steps). Mean ± std over seeds; lower is better for every column. "
            f"{results['threads']} threads, {results['date']}."
        ),
        "",
        generators_line([{"env_id": cfg["env_id"], "generator_digest": cfg["generator_digest"]}]),
        "",
        "| policy | file digest | algo | steps | stop action | NFE cost | timesteps trained |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in results["policies"]:
        lines.append(
            f"| `{p['path']}` | `{p['digest']}` | {p['algo']} | {p['steps']} | {p['stop_knob']} | {p['nfe_cost']:g} "
            f"| {p['num_timesteps']} |"
        )
    lines += [
        "",
        "| method | kind | steps | stop offset | NFE | NFE spent / image | "
        + " | ".join(COLUMNS[k] for k in YARDSTICKS)
        + f" | vs baseline at NFE {target['nfe']} |",
        "|---|---|---|---|---|---|" + "---|" * len(YARDSTICKS) + "---|",
    ]
    for row in sorted(rows, key=lambda r: (r["kind"] != "baseline", r["method"], r["nfe"])):
        nfe = f"{row['nfe']:.4g}" if isinstance(row["nfe"], float) else row["nfe"]
        offset = f"{row['params']['stop_offset']:g}" if row["kind"] == "policy" else "-"
        cells = " | ".join(f"{row['mean'][k]:.4g} ± {row['std'][k]:.2g}" for k in YARDSTICKS)
        change = "-" if row is target else change_cell(row, target)
        lines.append(
            f"| {row['method']} | {row['kind']} | {row['steps']} | {offset} | {nfe} | {spent_cell(row)} | {cells} "
            f"| {change} |"
        )
    match = results["nfe_to_match"]
    scores = ", ".join(f"{SHORT[k]} {m:.4g} ± {s:.2g}" for k, (m, s) in match["target_scores"].items())
    lines += [
        "",
        f"## NFE to match the baseline at its largest NFE ({match['target']['nfe']}: {scores})",
        "",
        "The smallest mean NFE of a method's points that is not worse than the target beyond the combined spread over "
        "seeds, by each yardstick alone and by FD-SSL and coverage together.",
        "",
        "| method | FID | FD-SSL | coverage | FD-SSL and coverage |",
        "|---|---|---|---|---|",
    ]
    for method, found in match["methods"].items():
        cells = ["not within the points" if found[k] is None else f"{found[k]:.4g}" for k in (*YARDSTICKS, "headline")]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(results: dict[str, Any]) -> Any:
    """FID, FD-SSL and coverage against the mean NFE: a line per static method, the policies as stars (a line
    through one policy's offsets), the target dashed."""
    from matplotlib.figure import Figure

    rows = results["rows"]
    target = target_row(rows)
    fig = Figure(figsize=(4.0 * len(YARDSTICKS), 3.4), layout="constrained")
    axes = fig.subplots(1, len(YARDSTICKS), squeeze=False)[0]
    for method in dict.fromkeys(r["method"] for r in rows):
        points = sorted((r for r in rows if r["method"] == method), key=lambda r: r["nfe"])
        policy = points[0]["kind"] == "policy"
        x = [r["nfe"] for r in points]
        xerr = [r.get("nfe_spent", {}).get("std", 0.0) for r in points]
        style = (
            dict(marker="*", markersize=11)
            if policy
            else dict(marker="o", color="k")
            if points[0]["kind"] == "baseline"
            else dict(marker=".", alpha=0.7)
        )
        for ax, key in zip(axes, YARDSTICKS):
            y, yerr = [r["mean"][key] for r in points], [r["std"][key] for r in points]
            ax.errorbar(x, y, yerr=yerr, xerr=xerr if policy else None, capsize=2, label=method, **style)
    for ax, key in zip(axes, YARDSTICKS):
        ax.axhline(target["mean"][key], color="k", linestyle="--", linewidth=0.8, alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("mean NFE per image")
        ax.set_title(COLUMNS[key])
    axes[0].legend(fontsize="x-small")
    fig.suptitle(f"{results['settings']['env_id']}: baseline at NFE {target['nfe']} dashed", fontsize="small")
    return fig


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        results = run(args, "python benchmarks/compute_aware.py " + " ".join(argv))
    except AdaGenError as exc:
        raise SystemExit(f"compute_aware.py: error: {exc}") from exc
    print(markdown(results))


if __name__ == "__main__":
    main()
