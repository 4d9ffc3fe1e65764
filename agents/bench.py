"""`adagen bench`: learned adaptive policies vs static schedules at equal NFE, on the shipped generators.

    adagen bench --quick                                     # a small table in minutes, in runs/bench_quick
    adagen bench --env AdaGen/SiT-v0 --policy benchmarks/results/policy_sit/policy.zip --out runs/bench/sit

For every env and step count of the grid, on the same class-balanced labels and sampling seeds (so every method
sees the same noise), it evaluates:

* `baseline`: the paradigm's own schedule (what the env runs with zero actions);
* `hand-made`: the other static schedules users know (`adagen_env.samplers.schedules.HAND_MADE`);
* `tuned`: the best member of the paradigm's parametric family (`SEARCH_SPACES`) found by coordinate search,
  and with `cma_evaluations` the best whole (H, K) table found by CMA-ES, each candidate scored by FD-SSL on
  `search_samples` images drawn with `search_seed`, a seed the evaluation never uses (so the tuned row is not
  selected on its own test noise);
* `adaptive`: each `--policy` checkpoint, at the env and step count it was trained on;
* `static`: each `--schedule` file (`adagen export-schedule` or a tuned row's), a row "static <file stem>" at the
  env and step count it was written for;
* `blend`: each `--blend FIDELITY DIVERSITY` pair (`agents.blend`) at every lambda of `--lambdas`, a row
  "blend <lambda> (<fidelity> + <diversity>)" at the env and step count both were trained on.

Every row has FID, KID, IS, precision/recall and class agreement with their spread over seeds, the NFE per
image and the wall time per image. A difference smaller than the two rows' combined spread is a tie.

With `--generator DIR` (one `--env`; docs/diffusers.md) every row runs on that generator, and policies and blends must
have been trained on its weights; with `--reference DIR --inception-weights FILE` every row, and the tuned search, is
scored against those real images in Inception-v3's space (`agents.scoring`: FID selects instead of FD-SSL).

Outputs in `out_dir`: `bench.json` (everything, with the settings), `bench.csv`, `bench.md` (tables, verdicts and
the NFE at which each method matches the baseline at its largest NFE), `bench_fid_vs_nfe.png`, and per policy
`bench_knobs_<env>_<steps>.png` (its knob trajectories per class; `<steps>` is `default` where the env fixes its
step count, VAR), per blend point `bench_blend_<env>_<steps>.png` (precision, recall, FID, FD-SSL and class
agreement against lambda), and per tuned row its table as a schedule file, `schedules/<env>_<steps>_<method>.json`
(`adagen_env.samplers.schedules.load_schedule`; `adagen train --base-schedule` starts a policy from it). A killed bench
resumes: rerun the same command and the rows it finished (`bench.progress.json` in `out_dir`) are reused. The CLI writes to `runs/bench` (`--quick`: `runs/bench_quick`) unless `--out` says otherwise.

Letters: N images per seed, H horizon, K knobs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

import adagen_env
from adagen_env.errors import InvalidArgument
from adagen_env.evaluation import generate_static
from adagen_env.metrics import METRICS, balanced_labels
from adagen_env.outputs import save_figure, writable_dir, write_text
from adagen_env.samplers import Sampler
from adagen_env.samplers.base import activate_all
from adagen_env.samplers.schedules import (
    HAND_MADE,
    family_key,
    load_schedule,
    read_schedule,
    save_schedule,
    search_space,
    search_start,
    static_schedule,
)
from agents.blend import Blend, load_blend
from agents.checkpoint import check_meta, generator_expectation, load_model
from agents.evaluate import eval_env, generators_line, score_seeds
from agents.generators import generator_source
from agents.reporting import COLUMNS, SHORT, agreed_verdict, change_cell, headline, stat_cells
from agents.rollout import Generation, generate
from agents.scoring import Scoring, columns

STEP_GRID: dict[str, tuple[int | None, ...]] = {
    "AdaGen/DiT-v0": (4, 8),
    "AdaGen/SiT-v0": (4, 8),
    "AdaGen/MaskGIT-v0": (8,),
    "AdaGen/VAR-v0": (None,),
}
"""Env -> step counts of the full comparison (None: the env's own, VAR's one step per scale). Sized for the 2-core
build machine: a point costs (rows x samples x seeds + candidates x search samples) generations."""
BASELINE_STEP_GRID: dict[str, tuple[int, ...]] = {"AdaGen/DiT-v0": (16,), "AdaGen/SiT-v0": (16,)}
"""Env -> larger step counts where only the baseline runs: the target of "NFE to match the baseline"."""
QUICK_STEP_GRID: dict[str, tuple[int | None, ...]] = {
    "AdaGen/DiT-v0": (4,),
    "AdaGen/SiT-v0": (4,),
    "AdaGen/MaskGIT-v0": (4,),
    "AdaGen/VAR-v0": (None,),
}


HELDOUT_OFFSETS = (1, 2)
"""The CMA-ES winner is scored again on `search_seed + k` for these k (never evaluation seeds)."""


@dataclass(frozen=True)
class BenchConfig:
    """What `bench` runs; `BenchConfig.quick()` is `adagen bench --quick`."""

    step_grid: dict[str, tuple[int | None, ...]] = field(default_factory=lambda: dict(STEP_GRID))
    """Env id -> step counts."""
    baseline_step_grid: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(BASELINE_STEP_GRID))
    """Env id -> step counts evaluated with the baseline only."""
    num_samples: int = 1000
    """Images per evaluation seed (class-balanced labels)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Evaluation sampling seeds."""
    search_samples: int = 500
    """Images per candidate of the tuned-schedule search."""
    search_seed: int = 1000
    """Sampling seed of the search (not an evaluation seed)."""
    search_rounds: int = 1
    """Coordinate-search sweeps over the parameters (it stops early when a sweep changes nothing)."""
    batch_size: int = 250
    """Lanes per generator call."""
    hand_made: bool = True
    """Evaluate the hand-made schedules besides the baseline."""
    cma_evaluations: int = 0
    """Candidates of the CMA-ES search over the whole per-step table (0: no CMA-ES row; needs `cma`)."""
    blend_lambdas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """The lambdas (weight of the fidelity policy) at which each blend is evaluated."""
    generator: str | None = None
    """The generator of every row (`agents.generators.generator_source`: a zoo name or an absolute path), on the
    one env of `step_grid`; None: each env's zoo default."""
    reference: str | None = None
    """A folder of real images every row is scored against, in Inception-v3's space (`agents.scoring.Scoring`);
    None: the shapes data."""
    inception_weights: str | None = None
    """torch-fidelity's Inception-v3 weights file, with `reference`."""

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(
            step_grid=dict(QUICK_STEP_GRID),
            baseline_step_grid={},
            num_samples=250,
            seeds=(0, 1),
            search_samples=250,
            search_rounds=1,
        )

    def __post_init__(self) -> None:
        if self.num_samples < 2 or self.search_samples < 2 or not self.seeds:
            raise InvalidArgument("need num_samples >= 2, search_samples >= 2 and at least one seed")
        if {self.search_seed, *(self.search_seed + k for k in HELDOUT_OFFSETS)} & set(self.seeds):
            raise InvalidArgument(
                f"search_seed {self.search_seed} and its held-out seeds (+{list(HELDOUT_OFFSETS)}) "
                f"must not be evaluation seeds {list(self.seeds)}"
            )
        if self.cma_evaluations < 0 or self.cma_evaluations == 1:
            raise InvalidArgument(f"cma_evaluations must be 0 (off) or >= 2, got {self.cma_evaluations}")
        if self.search_rounds < 0 or self.batch_size < 1:
            raise InvalidArgument(
                f"need search_rounds >= 0 and batch_size >= 1, got {self.search_rounds}, {self.batch_size}"
            )
        if not self.blend_lambdas or not all(0 <= lam <= 1 for lam in self.blend_lambdas):
            raise InvalidArgument(f"blend_lambdas must be numbers in [0, 1], got {list(self.blend_lambdas)}")
        if self.generator is not None and len(self.step_grid) != 1:
            raise InvalidArgument(
                f"a generator serves one env: give --generator with one --env (got {sorted(self.step_grid)})"
            )

    @property
    def scoring(self) -> Scoring:
        """What every row is scored against."""
        return Scoring(self.reference, self.inception_weights)


def config_from_args(args: Any) -> BenchConfig:
    """`adagen bench`'s flags -> a config: `--quick` or the full defaults, then every flag that was given."""
    base = BenchConfig.quick() if args.quick else BenchConfig()
    envs = args.env or list(base.step_grid)
    unknown = sorted(set(envs) - set(STEP_GRID))
    if unknown:
        raise InvalidArgument(f"no bench grid for {unknown}; envs: {sorted(STEP_GRID)}")
    grid = {}
    for env_id in envs:
        fixed = STEP_GRID[env_id] == (None,)  # the env fixes its step count (VAR)
        grid[env_id] = base.step_grid.get(env_id, STEP_GRID[env_id]) if fixed or not args.steps else tuple(args.steps)
    overrides = {
        name: getattr(args, name)
        for name in ("num_samples", "search_samples", "search_seed", "search_rounds", "batch_size", "cma_evaluations")
        if getattr(args, name) is not None
    }
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    if args.lambdas is not None:
        overrides["blend_lambdas"] = tuple(args.lambdas)
    if getattr(args, "generator", None) is not None:
        if not args.env:
            raise InvalidArgument("--generator needs --env: the one env whose family it is")
        overrides["generator"] = generator_source(args.generator)
    for name in ("reference", "inception_weights"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if args.baseline_steps is None:
        baseline_grid = {env_id: steps for env_id, steps in base.baseline_step_grid.items() if env_id in grid}
    else:
        baseline_grid = {env_id: tuple(args.baseline_steps) for env_id in grid if STEP_GRID[env_id] != (None,)}
    return replace(base, step_grid=grid, baseline_step_grid=baseline_grid, hand_made=args.hand_made, **overrides)


def schedule_files(
    paths: Sequence[str | Path], device: str = "cpu", generator: str | None = None
) -> list[tuple[str, dict[str, Any], int | None, torch.Tensor]]:
    """(path, record, step count, (H, K) table) of each schedule file, checked against the sampler of the env and
    step count it names (on `generator`, the env's zoo default when None), so that a bad file is refused before any
    work.

    Raises:
        CheckpointError: not a schedule file, or one for other knobs or another horizon than that sampler's.
        InvalidArgument: no bench env or no step count named, settings other than the sampler's, or values out of
            its knob ranges.
    """
    files = []
    for path in map(str, paths):
        record = read_schedule(path)
        env_id, written = record.get("env_id"), record.get("sampler_config") or {}
        if env_id not in STEP_GRID:
            raise InvalidArgument(f"schedule file {path!r} names env {env_id!r}; the bench runs {sorted(STEP_GRID)}")
        fixed = STEP_GRID[env_id] == (None,)  # the env fixes its step count (VAR)
        steps = None if fixed else written.get("num_steps")
        if steps is None and not fixed:
            raise InvalidArgument(f"schedule file {path!r} names no num_steps in its sampler_config {written}")
        sampler = eval_env(env_id, {"num_steps": steps, "generator": generator}, 0.0, 1, device).unwrapped.sampler
        table = load_schedule(path, sampler)
        ours = sampler.config()
        differ = {k: (v, ours[k]) for k, v in written.items() if k in ours and ours[k] != v}
        if differ:
            raise InvalidArgument(
                f"schedule file {path!r} was written for other sampler settings than the bench's "
                f"(setting: (file, bench)) {differ}: its row would not be at equal settings"
            )
        files.append((path, record, steps, table))
    return files


def policy_steps(meta: dict[str, Any]) -> int | None:
    """The step count a policy was trained at: its `num_steps`, or its env's default when that was left unset."""
    steps = meta["env_kwargs"].get("num_steps")
    if steps is None:
        vector_cls = gym.envs.registration.load_env_creator(gym.spec(meta["env_id"]).vector_entry_point)
        steps = vector_cls.default_num_steps
    return steps


# -- the tuned static schedule --------------------------------------------------------------------
def tune(
    sampler: Sampler, score: Callable[[dict[str, Any]], float], rounds: int = 2
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Coordinate search over the sampler's schedule family: best parameters and the trace of every candidate.

    Starts from `search_start(sampler)` (the baseline's values where the space has them); each sweep tries every
    value of one parameter with the others fixed and keeps the lowest score; candidates are scored once.

    Args:
        score: parameters -> lower-is-better score (FID) of `static_schedule(sampler, **params)`.
        rounds: sweeps over all parameters; 0 scores the start only.
    """
    best = search_start(sampler)
    scores: dict[str, float] = {}
    trace: list[dict[str, Any]] = []
    most = 1 + rounds * sum(len(values) for values in search_space(sampler).values())
    bar = tqdm(total=most, desc="coordinate search", unit="candidate", leave=False)

    def scored(params: dict[str, Any]) -> float:
        key = json.dumps(params, sort_keys=True)
        if key not in scores:
            scores[key] = float(score(params))
            trace.append({"params": dict(params), "score": scores[key]})
        bar.update()
        return scores[key]

    best_score = scored(best)
    for _ in range(rounds):
        changed = False
        for name, values in search_space(sampler).items():
            for value in values:
                candidate = {**best, name: value}
                if scored(candidate) < best_score:
                    best, best_score, changed = candidate, scores[json.dumps(candidate, sort_keys=True)], True
        if not changed:
            break
    bar.close()
    return best, trace


def tune_cma(
    sampler: Sampler, score: Callable[[torch.Tensor], float], evaluations: int, sigma: float = 0.5, seed: int = 0
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """CMA-ES (the `cma` package) over the whole (H, K) table of pre-activation residuals, started at 0 (the
    baseline): the paradigm's "learnable, not adaptive" schedule. Returns the best (H, K) knob table
    (`activate(prior + u)`) and the trace of every candidate's score.

    Args:
        score: (H, K) knob values -> lower-is-better score of that static schedule.
        evaluations: at most this many candidates are scored (whole generations of min(12, evaluations / 4)).
        sigma: initial step size in pre-activation units.
        seed: CMA-ES's own random seed.

    Raises:
        InvalidArgument: `cma` is not installed (the `search` extra) or no evaluations are allowed.
    """
    try:
        import cma
    except ImportError as exc:
        raise InvalidArgument(
            "the CMA-ES static search needs the `cma` package: pip install 'adagen-env[search]'"
        ) from exc
    if evaluations < 2:
        raise InvalidArgument(f"CMA-ES needs at least 2 evaluations, got {evaluations}")
    prior = sampler.prior().cpu()
    shape = tuple(prior.shape)

    def table(u: Any) -> torch.Tensor:
        return activate_all(sampler.knob_specs, prior + torch.as_tensor(np.asarray(u), dtype=prior.dtype).view(shape))

    popsize = max(2, min(12, evaluations // 4))
    strategy = cma.CMAEvolutionStrategy(
        np.zeros(prior.numel()), sigma, {"seed": seed + 1, "verbose": -9, "popsize": popsize}
    )
    trace: list[dict[str, Any]] = []
    best, best_score = np.zeros(prior.numel()), math.inf
    bar = tqdm(total=evaluations // popsize * popsize, desc="CMA-ES static search", unit="candidate", leave=False)
    while len(trace) + popsize <= evaluations and not strategy.stop():
        candidates = strategy.ask()
        scores = []
        for u in candidates:
            scores.append(float(score(table(u))))
            bar.update()
        bar.set_postfix(best=f"{min(best_score, *scores):.4g}")
        trace += [{"residuals": np.asarray(u).round(4).tolist(), "score": s} for u, s in zip(candidates, scores)]
        strategy.tell(candidates, scores)
        if min(scores) < best_score:
            best_score, best = min(scores), candidates[int(np.argmin(scores))]
    bar.close()
    return table(best), trace


# -- evaluation -----------------------------------------------------------------------------------
def _static_row(
    env_id: str,
    steps: int | None,
    method: str,
    kind: str,
    params: dict[str, Any],
    sampler: Sampler,
    labels: torch.Tensor,
    config: BenchConfig,
    device: str,
    schedule: torch.Tensor | None = None,
) -> dict[str, Any]:
    # The baseline row runs the env's own baseline values (activated prior), so it equals the env's zero-action run.
    if schedule is None:
        schedule = sampler.baseline_schedule() if kind == "baseline" else static_schedule(sampler, **params)
    result = score_seeds(
        lambda seed: generate_static(sampler, schedule, labels, seed, config.batch_size),
        config.seeds,
        METRICS,
        device,
        desc=f"{env_id} {steps} {method}",
        scoring=config.scoring,
    )
    result.pop("generation")
    return {
        "env_id": env_id,
        "steps": steps,
        "method": method,
        "kind": kind,
        "params": params,
        "schedule": schedule.cpu().tolist(),
        **result,
    }


def _policy_env(
    path: str, meta: dict[str, Any], sampler: Sampler, config: BenchConfig, device: str, digest: str
) -> Any:
    """The evaluation env of the policy at `path` (on `config.generator` when set, else the one it records), checked
    to run the bench's sampler settings, its recorded generator and the static rows' (`digest`)."""
    env_kwargs = meta["env_kwargs"]
    if config.generator is not None:
        env_kwargs = {**env_kwargs, "generator": config.generator}
    env = eval_env(meta["env_id"], env_kwargs, meta["smoothing"], config.batch_size, device)
    if env.unwrapped.sampler.config() != sampler.config():
        raise InvalidArgument(
            f"policy {path!r} runs its sampler with {env.unwrapped.sampler.config()}, the bench's static "
            f"rows with {sampler.config()}: they would not be at equal settings"
        )
    check_meta(path, meta, generator_expectation(meta, env.unwrapped))
    if env.unwrapped.generator_digest != digest:
        raise InvalidArgument(
            f"policy {path!r} was trained on generator {meta['env_kwargs'].get('generator') or 'the zoo default'} "
            f"(weights {env.unwrapped.generator_digest}), the static rows run {config.generator or 'the zoo default'} "
            f"(weights {digest}): give --generator the policy's"
        )
    return env


def score_policy(
    policy: Any, env: Any, labels: torch.Tensor, config: BenchConfig, scoring: Scoring, device: str, desc: str
) -> dict[str, Any]:
    """`score_seeds` of `policy` run on `env` over the bench's seeds and labels (the result keeps "generation")."""
    return score_seeds(
        lambda seed: generate(policy, env, labels, seed),
        config.seeds,
        METRICS,
        device,
        desc=desc,
        scoring=scoring,
    )


def run_name(path: str | Path) -> str:
    """How a row names a policy file: its run directory's name (the file itself when it has none)."""
    return Path(path).parent.name or str(path)


PROGRESS = "bench.progress.json"
"""The rows a bench has measured so far, in its out dir (rewritten whole after every row, removed at the end)."""


def _file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class _Progress:
    """Rows that a killed bench of the same inputs (config, policy, blend and schedule files by content, version)
    already measured, read from `PROGRESS` in its out dir, so that a rerun measures only the rest. A row is reused
    only on the generator weights it was measured on."""

    def __init__(self, out: Path | None, inputs: dict[str, Any]) -> None:
        self.path = None if out is None else out / PROGRESS
        self.inputs = json.loads(json.dumps(inputs, default=str))
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                saved = {}
            rows = saved.get("rows") if isinstance(saved, dict) and saved.get("inputs") == self.inputs else None
            self.rows = {k: v for k, v in rows.items() if isinstance(v, dict)} if isinstance(rows, dict) else {}

    def row(self, key: str, digest: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The row `key` on weights `digest`: the saved one, else `measure()`, saved before it is returned."""
        saved = self.rows.get(key)
        if saved is not None and saved.get("generator_digest") == digest:
            return json.loads(json.dumps(saved))
        text = json.dumps(measure())
        self.rows[key] = json.loads(text)  # what a reload gives: reused and fresh rows are alike
        if self.path is not None:
            write_text(self.path, json.dumps({"inputs": self.inputs, "rows": self.rows}) + "\n")
        return json.loads(text)

    def finish(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def bench(
    config: BenchConfig | None = None,
    policies: Sequence[str | Path] = (),
    out_dir: str | Path | None = "runs/bench",
    device: str = "cpu",
    command: str | None = None,
    schedules: Sequence[str | Path] = (),
    blends: Sequence[tuple[str | Path, str | Path]] = (),
) -> dict[str, Any]:
    """Run the comparison; returns the results and writes them to `out_dir` (nothing written when None).

    `command` (the command line that ran it) is recorded in the results and printed atop the table. `schedules` are
    schedule files, each a static row at its env and step count (`schedule_files`). `blends` are (fidelity,
    diversity) policy pairs (`agents.blend.load_blend`), each a row per lambda of `config.blend_lambdas`.

    Raises:
        InvalidArgument: an env id without a step grid, a policy, blend or schedule file whose env is not in the grid,
            or a schedule file that does not fit its env's sampler.
        CheckpointError: a corrupt policy checkpoint or schedule file, or a blend of policies of different envs.
    """
    config = config or BenchConfig()
    scoring = config.scoring  # refuses a half or missing reference pair before any work
    out = None if out_dir is None else writable_dir(out_dir)  # before any work
    loaded = [(str(path), *load_model(path, device=device)) for path in policies]
    blended: list[Blend] = [load_blend(fidelity, diversity, device) for fidelity, diversity in blends]
    grid = {env_id: list(steps) for env_id, steps in config.step_grid.items()}
    for path, meta in [(path, meta) for path, _, meta in loaded] + [(b.paths[0], b.meta) for b in blended]:
        if meta["env_id"] not in grid:
            raise InvalidArgument(
                f"policy {path!r} is for {meta['env_id']}, which is not in the bench grid {sorted(grid)}"
            )
        if policy_steps(meta) not in grid[meta["env_id"]]:
            grid[meta["env_id"]].append(policy_steps(meta))
    files = schedule_files(schedules, device, config.generator)
    for path, record, steps, _ in files:
        if record["env_id"] not in grid:
            raise InvalidArgument(
                f"schedule file {path!r} is for {record['env_id']}, which is not in the bench grid {sorted(grid)}"
            )
        if steps not in grid[record["env_id"]]:
            grid[record["env_id"]].append(steps)

    progress = _Progress(
        out,
        {
            "config": asdict(config),
            "policies": [(path, _file_digest(path)) for path, _, _ in loaded],
            "blends": [[(str(p), _file_digest(p)) for p in pair] for pair in blends],
            "schedules": [(path, _file_digest(path)) for path, *_ in files],
            "version": adagen_env.__version__,
        },
    )
    rows: list[dict[str, Any]] = []
    knob_plots: list[tuple[str, dict[str, Any], np.ndarray, tuple[str, ...]]] = []
    points = [(env_id, steps, True) for env_id, steps_list in grid.items() for steps in steps_list]
    points += [
        (env_id, steps, False) for env_id, steps_list in config.baseline_step_grid.items() for steps in steps_list
    ]
    for env_id, steps, compare in tqdm(points, desc="bench", unit="point"):
        env = eval_env(env_id, {"num_steps": steps, "generator": config.generator}, 0.0, config.batch_size, device)
        sampler = env.unwrapped.sampler
        scoring.check_sampler(sampler)
        labels = balanced_labels(config.num_samples, sampler.num_classes)
        search_labels = balanced_labels(config.search_samples, sampler.num_classes)
        digest = env.unwrapped.generator_digest  # hashed once per env
        measured_on = {"generator_digest": digest}
        hand_made = HAND_MADE[family_key(sampler)]
        named = list(hand_made.items()) if config.hand_made and compare else list(hand_made.items())[:1]
        for index, (name, params) in enumerate(named):
            kind = "baseline" if index == 0 else "hand-made"
            row = progress.row(
                f"{env_id}|{steps}|{name}",
                digest,
                lambda: {
                    **_static_row(env_id, steps, name, kind, params, sampler, labels, config, device),
                    **measured_on,
                },
            )
            rows.append(row)
        if not compare:
            continue

        def table_score(schedule: torch.Tensor, seed: int = config.search_seed) -> float:
            gen = generate_static(sampler, schedule, search_labels, seed, config.batch_size)
            return scoring.score(gen.images, gen.labels, scoring.selection_metrics, device)[scoring.selection]

        search = {"samples": config.search_samples, "seed": config.search_seed, "metric": scoring.selection}

        def coordinate_row() -> dict[str, Any]:
            best, trace = tune(
                sampler, lambda params: table_score(static_schedule(sampler, **params)), config.search_rounds
            )
            tuned = _static_row(env_id, steps, "tuned static", "tuned", best, sampler, labels, config, device)
            return {**tuned, **measured_on, "search": {**search, "trace": trace}}

        def cma_row() -> dict[str, Any]:
            table, cma_trace = tune_cma(sampler, table_score, config.cma_evaluations)
            row = _static_row(
                env_id,
                steps,
                "CMA-ES static",
                "tuned",
                {"search": "cma-es"},
                sampler,
                labels,
                config,
                device,
                schedule=table,
            )
            # The winner again on other seeds of the search's size: a best score far below these fitted noise.
            heldout = [table_score(table, config.search_seed + k) for k in HELDOUT_OFFSETS]
            best_score = min(t["score"] for t in cma_trace)
            return {
                **row,
                **measured_on,
                "search": {**search, "trace": cma_trace, "heldout_scores": heldout, "best_score": best_score},
            }

        tuned = progress.row(f"{env_id}|{steps}|tuned static", digest, coordinate_row)
        rows.append(tuned)
        _save_tuned(out, sampler, tuned, f"coordinate search, best parameters {tuned['params']}")
        if config.cma_evaluations:
            row = progress.row(f"{env_id}|{steps}|CMA-ES static", digest, cma_row)
            rows.append(row)
            _save_tuned(out, sampler, row, f"CMA-ES over the whole table, {len(row['search']['trace'])} candidates")

        for path, model, meta in loaded:
            if meta["env_id"] != env_id or policy_steps(meta) != steps:
                continue
            policy_env = _policy_env(path, meta, sampler, config, device, digest)

            def policy_row() -> dict[str, Any]:
                result = score_policy(model, policy_env, labels, config, scoring, device, f"{env_id} {steps} policy")
                generation = result.pop("generation")
                return {
                    "env_id": env_id,
                    "steps": steps,
                    "method": f"policy {run_name(path)}",
                    "kind": "adaptive",
                    "params": {"checkpoint": path, "algo": meta["algo"]},
                    "generator_digest": policy_env.unwrapped.generator_digest,
                    **result,
                    "class_knobs": class_knob_means(generation),
                }

            row = progress.row(f"{env_id}|{steps}|policy {path}", digest, policy_row)
            class_knobs = row.pop("class_knobs")
            rows.append(row)
            knob_plots.append(
                (
                    knob_plot_name(env_id, steps),
                    class_knobs,
                    sampler.baseline_schedule().cpu().numpy(),
                    sampler.knob_names,
                )
            )
        for blend in blended:
            if blend.meta["env_id"] != env_id or policy_steps(blend.meta) != steps:
                continue
            policy_env = _policy_env(
                blend.paths[0], blend.meta, sampler, config, device, measured_on["generator_digest"]
            )
            pair = " + ".join(map(run_name, blend.paths))
            for lam in config.blend_lambdas:

                def blend_row() -> dict[str, Any]:
                    policy = blend.at(lam)
                    result = score_policy(
                        policy, policy_env, labels, config, scoring, device, f"{env_id} {steps} blend {lam:g}"
                    )
                    result.pop("generation")
                    return {
                        "env_id": env_id,
                        "steps": steps,
                        "method": f"blend {lam:g} ({pair})",
                        "kind": "blend",
                        "params": {"fidelity": blend.paths[0], "diversity": blend.paths[1], "lambda": lam},
                        "generator_digest": policy_env.unwrapped.generator_digest,
                        **result,
                    }

                rows.append(progress.row(f"{env_id}|{steps}|blend {lam!r} {blend.paths}", digest, blend_row))
        for path, record, file_steps, table in files:
            if record["env_id"] == env_id and file_steps == steps:

                def file_row() -> dict[str, Any]:
                    row = _static_row(
                        env_id,
                        steps,
                        f"static {Path(path).stem}",
                        "static",
                        {"schedule_file": path, "source": record.get("source", "")},
                        sampler,
                        labels,
                        config,
                        device,
                        schedule=table,
                    )
                    return {**row, **measured_on}

                rows.append(progress.row(f"{env_id}|{steps}|schedule {path}", digest, file_row))

    results = {
        "config": {
            **asdict(config),
            "step_grid": {k: list(v) for k, v in grid.items()},
            "baseline_step_grid": {k: list(v) for k, v in config.baseline_step_grid.items()},
        },
        "labels": "class-balanced",
        "scored_against": scoring.describe(),
        "command": command,
        "version": adagen_env.__version__,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }
    if out is not None:
        write_outputs(results, out, knob_plots)
    progress.finish()
    return results


# -- outputs --------------------------------------------------------------------------------------
def schedule_file_name(env_id: str, steps: int | None, method: str) -> str:
    """`schedules/<env>_<steps>_<method>.json`, as `knob_plot_name` spells env and steps, the method lower-case
    with dashes."""
    return (
        f"schedules/{env_id.replace('/', '-')}_{'default' if steps is None else steps}_"
        f"{'-'.join(method.lower().split())}.json"
    )


def _save_tuned(out: Path | None, sampler: Sampler, row: dict[str, Any], how: str) -> None:
    """A tuned row's table as a schedule file (an env's `base_schedule`, `adagen train --base-schedule`)."""
    if out is not None:
        save_schedule(
            out / schedule_file_name(row["env_id"], row["steps"], row["method"]),
            sampler,
            torch.tensor(row["schedule"]),
            env_id=row["env_id"],
            source=f"adagen bench: {how}",
        )


def _group(rows: list[dict[str, Any]]) -> dict[tuple[str, Any], list[dict[str, Any]]]:
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["env_id"], row["steps"]), []).append(row)
    return groups


def matching_nfe(rows: list[dict[str, Any]], env_id: str) -> dict[str, Any]:
    """For one env: the baseline at its largest NFE, and per method the smallest NFE that matches it (no headline
    yardstick worse beyond the combined spread); None where no grid point does."""
    env_rows = [r for r in rows if r["env_id"] == env_id]
    baselines = sorted((r for r in env_rows if r["kind"] == "baseline"), key=lambda r: r["nfe"])
    if not baselines:
        return {}
    target = baselines[-1]
    found: dict[str, int | None] = {}
    for row in sorted(env_rows, key=lambda r: r["nfe"]):
        if found.get(row["method"]) is not None:
            continue
        match = "worse" not in agreed_verdict(row, target)[1].values()
        found[row["method"]] = row["nfe"] if match else found.get(row["method"])
    return {
        "target_nfe": target["nfe"],
        "target": {k: [target["mean"][k], target["std"][k]] for k in headline(target)},
        "nfe_to_match": found,
    }


def markdown(results: dict[str, Any]) -> str:
    """The tables: per env and step count, every method with mean +- std over seeds and verdicts."""
    cfg = results["config"]
    real = cfg.get("reference") is not None
    header = columns(cfg.get("reference"))
    searched_by = "fid" if real else "fd_ssl"
    verdicts = "FID says so" if real else "FD-SSL and oracle coverage both say so"
    lines = [
        "# adagen bench: adaptive vs static schedules at equal NFE",
        "",
        (
            f"{cfg['num_samples']} class-balanced samples per seed, seeds {cfg['seeds']}; every method at a step count "
            f"sees the same labels and noise. Tuned static: coordinate search ({cfg['search_rounds']} sweeps), "
            f"{header[searched_by]} on {cfg['search_samples']} samples of seed {cfg['search_seed']}. Verdicts: "
            f"better or worse only when {verdicts} beyond the combined "
            "spread over seeds; tie when none does; split when they disagree. "
            f"{results['threads']} threads, {results['date']}."
        ),
        "",
        generators_line(results["rows"]),
    ]
    if results.get("scored_against"):
        lines += ["", results["scored_against"]]
    if results.get("command"):
        lines[1:1] = ["", f"Made by `{results['command']}`."]
    for (env_id, steps), group in _group(results["rows"]).items():
        base = next(r for r in group if r["kind"] == "baseline")
        tuned_rows = [r for r in group if r["kind"] == "tuned"]
        tuned = tuned_rows[-1] if tuned_rows else None  # the CMA-ES row when there is one: the stronger static bar
        lines += [
            "",
            f"## {env_id}, steps {steps if steps is not None else 'default'} (NFE {base['nfe']})",
            "",
            "| method | kind | NFE | " + " | ".join(header.values()) + " | s / image | vs baseline | vs tuned |",
            "|---|---|---|" + "---|" * len(header) + "---|---|---|",
        ]
        for row in group:
            change = "-" if row is base else change_cell(row, base)
            versus = "-" if tuned is None or row is tuned else change_cell(row, tuned)
            lines.append(
                f"| {row['method']} | {row['kind']} | {row['nfe']} | "
                + " | ".join(stat_cells(row))
                + f" | {row['seconds_per_image'] * 1e3:.2f} ms | {change} | {versus} |"
            )
        if tuned is not None:
            coordinate = tuned_rows[0]
            lines += [
                "",
                f"Tuned parameters: `{json.dumps(coordinate['params'])}` "
                f"({len(coordinate['search']['trace'])} candidates).",
            ]
            if tuned is not coordinate:
                metric = tuned["search"]["metric"]
                heldout = np.asarray(tuned["search"]["heldout_scores"])
                lines.append(
                    f"CMA-ES: {len(tuned['search']['trace'])} candidates over the whole (H, K) table; best "
                    f"{header[metric]} {tuned['search']['best_score']:.4g} on the search seed, "
                    f"{heldout.mean():.4g} ± {heldout.std(ddof=1) if len(heldout) > 1 else 0:.2g} on "
                    f"{len(heldout)} held-out seeds of the same size (a search score far below the held-out "
                    "ones means the search fitted its seed's noise)."
                )
        lines += blend_table(group)
    lines += [
        "",
        "## NFE to match the baseline at its largest NFE",
        "",
        "| env | baseline at its largest NFE | method | smallest NFE that matches |",
        "|---|---|---|---|",
    ]
    for env_id in dict.fromkeys(r["env_id"] for r in results["rows"]):
        match = matching_nfe(results["rows"], env_id)
        for method, nfe in match["nfe_to_match"].items():
            target = ", ".join(f"{SHORT[k]} {m:.4g} ± {sd:.2g}" for k, (m, sd) in match["target"].items())
            lines.append(
                f"| {env_id} | {target} (NFE {match['target_nfe']}) "
                f"| {method} | {nfe if nfe is not None else 'not within the grid'} |"
            )
    return "\n".join(lines) + "\n"


BLEND_COLUMNS = ("precision", "recall", "fid", "fd_ssl", "class_agreement")
"""The yardsticks of the blend sweep's table and figure, against lambda."""


def _blend_pairs(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The blend rows of `rows` by (fidelity, diversity) pair, in lambda order."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["kind"] == "blend":
            pairs.setdefault((row["params"]["fidelity"], row["params"]["diversity"]), []).append(row)
    return {pair: sorted(found, key=lambda r: r["params"]["lambda"]) for pair, found in pairs.items()}


def blend_table(group: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of the blend sweep of one env and step count (none without blend rows): a table per pair,
    mean ± std over seeds of `BLEND_COLUMNS` per lambda."""
    lines: list[str] = []
    for (fidelity, diversity), found in _blend_pairs(group).items():
        lambdas = " ".join(f"{r['params']['lambda']:g}" for r in found)
        lines += [
            "",
            f"Fidelity-diversity blend: lambda {lambdas} of fidelity "
            f"`{fidelity}` and 1 - lambda of diversity `{diversity}` "
            f"(`{blend_plot_name(found[0]['env_id'], found[0]['steps'])}`).",
            "",
            "| lambda | " + " | ".join(COLUMNS[k] for k in BLEND_COLUMNS) + " |",
            "|---|" + "---|" * len(BLEND_COLUMNS),
        ]
        for row in found:
            cells = [f"{row['mean'][k]:.4g} ± {row['std'][k]:.2g}" if k in row["mean"] else "-" for k in BLEND_COLUMNS]
            lines.append(f"| {row['params']['lambda']:g} | " + " | ".join(cells) + " |")
    return lines


def blend_figure(rows: list[dict[str, Any]]) -> Any:
    """`BLEND_COLUMNS` against lambda for the blend rows of one env and step count: a panel per yardstick, a line
    per pair, error bars = std over seeds."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.0 * len(BLEND_COLUMNS), 2.8), layout="constrained")
    axes = fig.subplots(1, len(BLEND_COLUMNS), squeeze=False)[0]
    for (fidelity, diversity), found in _blend_pairs(rows).items():
        x = [r["params"]["lambda"] for r in found]
        for ax, key in zip(axes, BLEND_COLUMNS):
            ax.errorbar(
                x,
                [r["mean"][key] for r in found],
                yerr=[r["std"][key] for r in found],
                marker="o",
                capsize=2,
                label=f"{run_name(fidelity)} + {run_name(diversity)}",
            )
    for ax, key in zip(axes, BLEND_COLUMNS):
        ax.set_title(COLUMNS[key])
        ax.set_xlabel("lambda (weight of the fidelity policy)")
    axes[0].legend(fontsize="xx-small")
    return fig


def blend_plot_name(env_id: str, steps: int | None) -> str:
    """`bench_blend_<env>_<steps>.png`, spelt as `knob_plot_name`."""
    return knob_plot_name(env_id, steps).replace("bench_knobs_", "bench_blend_", 1)


def fid_figure(rows: list[dict[str, Any]], ylabel: str = "FID (shapes features)") -> Any:
    """FID vs NFE per env (one panel each): a line per static method, error bars = std over seeds, policies as stars
    (blend rows have their own figure, `blend_figure`)."""
    from matplotlib.figure import Figure

    envs = list(dict.fromkeys(r["env_id"] for r in rows))
    fig = Figure(figsize=(4.2 * len(envs), 3.4), layout="constrained")
    axes = fig.subplots(1, len(envs), squeeze=False)[0]
    for ax, env_id in zip(axes, envs):
        env_rows = [r for r in rows if r["env_id"] == env_id and r["kind"] != "blend"]
        for method in dict.fromkeys(r["method"] for r in env_rows):
            points = sorted((r for r in env_rows if r["method"] == method), key=lambda r: r["nfe"])
            kind = points[0]["kind"]
            x = [r["nfe"] for r in points]
            y = [r["mean"]["fid"] for r in points]
            err = [r["std"]["fid"] for r in points]
            style = {
                "adaptive": dict(marker="*", markersize=12, linestyle="none"),
                "baseline": dict(marker="o", color="k"),
                "tuned": dict(marker="s"),
            }.get(kind, dict(marker=".", alpha=0.7))
            ax.errorbar(x, y, yerr=err, label=method, capsize=2, **style)
        ax.set_xscale("log", base=2)
        ax.set_title(env_id)
        ax.set_xlabel("NFE per image")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="x-small")
    return fig


def class_knob_means(generation: Generation) -> dict[str, list[list[float]]]:
    """A policy's knob values per class: {class id: (H, K) mean over that class's images}, as JSON-ready lists."""
    labels = generation.labels.numpy()
    return {str(label): generation.knobs[labels == label].mean(axis=0).tolist() for label in np.unique(labels)}


def class_knob_figure(class_knobs: dict[str, Any], baseline: np.ndarray, knob_names: Sequence[str]) -> Any:
    """The policy's knob values over steps (`class_knob_means`), one line per class, baseline dashed."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.4 * len(knob_names), 2.8), layout="constrained")
    axes = fig.subplots(1, len(knob_names), squeeze=False)[0]
    means = {label: np.asarray(values) for label, values in class_knobs.items()}
    steps = np.arange(baseline.shape[0])
    for i, (ax, name) in enumerate(zip(axes, knob_names)):
        for label, values in means.items():
            ax.plot(steps, values[:, i], label=f"class {label}", alpha=0.8)
        ax.plot(steps, baseline[:, i], "k--", label="baseline")
        ax.set_title(name)
        ax.set_xlabel("step")
    axes[0].legend(fontsize="xx-small", ncol=2)
    return fig


def knob_plot_name(env_id: str, steps: int | None) -> str:
    """`bench_knobs_<env>_<steps>.png`, `/` in the id as `-`; `steps` None (the env fixes its step count, VAR) is
    `default`, as in `bench.md`'s headings."""
    return f"bench_knobs_{env_id.replace('/', '-')}_{'default' if steps is None else steps}.png"


def write_outputs(
    results: dict[str, Any],
    out: Path,
    knob_plots: Sequence[tuple[str, dict[str, Any], np.ndarray, tuple[str, ...]]] = (),
) -> None:
    """bench.json, bench.csv, bench.md, bench_fid_vs_nfe.png, the policies' knob figures and the blend figures,
    each written whole."""
    write_text(out / "bench.json", json.dumps(results, indent=2) + "\n")
    write_text(out / "bench.md", markdown(results))
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(
        [
            "env_id",
            "steps",
            "method",
            "kind",
            "nfe",
            "seconds_per_image",
            *[f"{k}_{s}" for k in COLUMNS for s in ("mean", "std")],
            "params",
        ]
    )
    for row in results["rows"]:
        stats = [row[s].get(k, "") for k in COLUMNS for s in ("mean", "std")]
        writer.writerow(
            [
                row["env_id"],
                row["steps"],
                row["method"],
                row["kind"],
                row["nfe"],
                row["seconds_per_image"],
                *stats,
                json.dumps(row["params"]),
            ]
        )
    write_text(out / "bench.csv", table.getvalue())
    real = results["config"].get("reference") is not None
    ylabel = "FID (Inception-v3, real images)" if real else "FID (shapes features)"
    save_figure(fid_figure(results["rows"], ylabel), out / "bench_fid_vs_nfe.png", dpi=110)
    for name, class_knobs, baseline, knob_names in knob_plots:
        save_figure(class_knob_figure(class_knobs, baseline, knob_names), out / name, dpi=110)
    for (env_id, steps), group in _group(results["rows"]).items():
        if any(row["kind"] == "blend" for row in group):
            save_figure(blend_figure(group), out / blend_plot_name(env_id, steps), dpi=110)


__all__ = ["BenchConfig", "bench", "blend_plot_name", "knob_plot_name", "markdown", "matching_nfe", "tune", "tune_cma"]
