"""`adagen bench ablation NAME`: the paper's ablations on the shipped generators, one command each.

    adagen bench ablation learnable-vs-adaptive --budget-minutes 10

An ablation trains one policy per variant with `adagen train`'s machinery (same env, step count, seed and wall-time
budget; only the variant's arguments differ), then evaluates them all with the baseline schedule at equal NFE
(`adagen eval`: same labels and noise for every row). Runs live in `<logdir>/<env>-<steps>-<overrides>` (see
`run_name`) and resume, so a killed ablation continues where it stopped and a variant whose budget is spent is only
evaluated. The reference variant of most ablations is the default configuration (`{}`), one run they all share.

Outputs: `<out>/<folder>/{ablation,eval}.json`, `<out>/<folder>/eval.md` (`folder`: the name in snake_case,
`learnable_vs_adaptive`) and this ablation's section of `<out>/ablations.md` (its table, the paper's finding and the
measured one, where a gap within the spread over seeds is a tie). `out` defaults to `runs/ablations`, beside the
runs; the committed copies are made with `--out benchmarks/results/ablations`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adagen_env.errors import InvalidArgument
from adagen_env.outputs import writable_dir, write_text
from agents.checkpoint import CHECKPOINT
from agents.evaluate import evaluate, generators_line
from agents.reporting import COLUMNS, agreed_verdict, stat_cells
from agents.train import Args, EnvFn, train


@dataclass(frozen=True)
class Ablation:
    """One ablation: a question, the paper's answer, and the variants' `Args` overrides (the first is the reference)."""

    question: str
    paper: str
    variants: dict[str, dict[str, Any]]
    env: str = "AdaGen/DiT-v0"
    num_steps: int = 4


NO_STEP_CONDITIONING = {"algo_kwargs": {"policy_kwargs": {"features_extractor_kwargs": {"step_conditioning": False}}}}

ABLATIONS: dict[str, Ablation] = {
    "reward": Ablation(
        "adversarial reward vs batch-FID reward vs a frozen classifier reward",
        "FID as the reward gives blurry images; a fixed reward model collapses diversity; the adversarial reward "
        "balances quality and diversity best",
        {
            "adversarial": {},
            "batch-FID": {"reward_model": "batch-fid"},
            "frozen classifier": {"reward_model": "classifier"},
        },
    ),
    "smoothing": Ablation(
        "action smoothing beta 0.8 vs none, at a long horizon (16 steps)",
        "smoothing the actions helps at long horizons (AdaGen's DiT/SiT runs use it)",
        {"beta 0.8": {"smoothing": 0.8}, "beta 0": {"smoothing": 0.0}},
        num_steps=16,
    ),
    "policy-input": Ablation(
        "the generator's features vs the raw intermediate image as the policy's input",
        "generator features are a better and cheaper input than the raw intermediate result",
        {"generator features": {}, "raw intermediate image": {"observation": "image"}},
    ),
    "step-conditioning": Ablation(
        "AdaLN step conditioning on vs off",
        "conditioning the policy on the step index helps",
        {"on": {}, "off": NO_STEP_CONDITIONING},
    ),
    "discriminator": Ablation(
        "projected vs pixel transformer vs pixel convolutional discriminator in the adversarial reward",
        "the transformer discriminator is clearly better than the convolutional one (DiT-XL FID 4.54 vs 5.86); "
        "the reference code's discriminator is a projected one on frozen DINO ViT features",
        {
            "projected": {},
            "transformer": {"reward_model": "adversarial"},
            "convolutional": {"reward_model": "adversarial-conv"},
        },
    ),
    "learnable-vs-adaptive": Ablation(
        "an adaptive policy (sees the generator's features) vs a learnable static one (sees only the step)",
        "adaptive beats learnable-but-not-adaptive (DiT-XL FID 4.54 vs 5.40)",
        {"adaptive": {}, "learnable, not adaptive": {"observation": "step-only"}},
    ),
}
"""Name -> ablation (DiT at 4 steps, where the baseline leaves the most room, unless the ablation needs more).
`{}` is `adagen train`'s default: the projected discriminator's reward, generator features, step conditioning on."""


def run_name(ablation: Ablation, overrides: dict[str, Any]) -> str:
    """The run directory of one variant, named by env, step count and overrides, so equal configurations share it:
    `dit-v0-4-reference`, `dit-v0-4-reward-model-batch-fid`, ..."""
    config = re.sub(r"[^a-z0-9]+", "-", json.dumps(overrides, sort_keys=True).lower()).strip("-") or "reference"
    return f"{ablation.env.split('/')[-1].lower()}-{ablation.num_steps}-{config}"


def folder(name: str) -> str:
    """The results folder of an ablation: its name in snake_case (`step-conditioning` -> `step_conditioning`)."""
    return name.replace("-", "_")


def run_ablation(
    name: str,
    budget_minutes: float = 10.0,
    num_samples: int = 1000,
    seeds: tuple[int, ...] = (0, 1, 2),
    logdir: str | Path = "runs/ablations",
    out: str | Path | None = "runs/ablations",
    device: str = "cpu",
    num_envs: int = 64,
    env_fn: EnvFn | None = None,
    train_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train every variant for `budget_minutes` (resuming earlier runs), evaluate them and the baseline, write the
    results; returns {"ablation", "rows", "training"}.

    Args:
        env_fn: builds the env instead of `gym.make_vec` (tests).
        train_overrides: extra `Args` fields for every variant (tests: tiny update counts).

    Raises:
        InvalidArgument: an unknown ablation name.
    """
    if name not in ABLATIONS:
        raise InvalidArgument(f"unknown ablation {name!r}; ablations: {sorted(ABLATIONS)}")
    ablation = ABLATIONS[name]
    out_dir = None if out is None else writable_dir(Path(out) / folder(name))  # before any training
    checkpoints, training = {}, {}
    for label, overrides in ablation.variants.items():
        values = {
            "env": ablation.env,
            "num_steps": ablation.num_steps,
            "num_envs": num_envs,
            "device": device,
            "budget_minutes": budget_minutes,
            "total_updates": 100_000,
            "eval_every": 0,
            "logdir": str(logdir),
            "run_name": run_name(ablation, overrides),
            "resume": (Path(logdir) / run_name(ablation, overrides) / CHECKPOINT).is_file(),
            **(train_overrides or {}),
            **overrides,
        }
        if "algo_kwargs" in overrides and train_overrides and "algo_kwargs" in train_overrides:
            values["algo_kwargs"] = {**train_overrides["algo_kwargs"], **overrides["algo_kwargs"]}
        summary = train(Args(**values), env_fn)
        checkpoints[label] = summary["checkpoint"]
        training[label] = {"updates": summary["updates"], "minutes": summary["elapsed_seconds"] / 60}
    results = evaluate(
        list(checkpoints.values()),
        baseline=True,
        num_samples=num_samples,
        seeds=seeds,
        out_dir=out_dir,
        device=device,
        env_fn=env_fn,
    )
    labels = {path: label for label, path in checkpoints.items()}
    rows = [{**row, "variant": labels.get(row["name"], "baseline schedule")} for row in results["rows"]]
    report = {
        "ablation": name,
        "question": ablation.question,
        "paper": ablation.paper,
        "env": ablation.env,
        "num_steps": ablation.num_steps,
        "budget_minutes": budget_minutes,
        "num_samples": num_samples,
        "seeds": list(seeds),
        "out": None if out is None else str(out),
        "training": training,
        "rows": rows,
    }
    if out is not None:
        write_text(out_dir / "ablation.json", json.dumps(report, indent=2, default=str) + "\n")
        write_section(Path(out) / "ablations.md", name, section(report))
    return report


def finding(report: dict[str, Any]) -> str:
    """One sentence per variant against the reference (first) variant and the baseline schedule, by the agreed
    verdict of the headline yardsticks (`agents.reporting.agreed_verdict`)."""
    rows = [r for r in report["rows"] if r["variant"] != "baseline schedule"]
    reference = rows[0]
    words = {"tie": "ties with", "better": "beats", "worse": "is worse than", "split": "splits with"}
    parts = []
    for row in rows[1:]:
        call, each = agreed_verdict(row, reference)
        parts.append(f"{row['variant']} {words[call]} {reference['variant']} ({_each(each)})")
    base = next(r for r in report["rows"] if r["variant"] == "baseline schedule")
    vs_base = [f"{r['variant']} {agreed_verdict(r, base)[0]} ({_each(agreed_verdict(r, base)[1])})" for r in rows]
    return f"{'; '.join(parts)}. Against the baseline schedule: {', '.join(vs_base)}."


def _each(each: dict[str, str]) -> str:
    return ", ".join(f"{COLUMNS[k]} {call}" for k, call in each.items())


def section(report: dict[str, Any]) -> str:
    """The markdown section of one ablation."""
    command = f"adagen bench ablation {report['ablation']} --budget-minutes {report['budget_minutes']:g}"
    if report.get("out"):
        command += f" --out {report['out']}"
    lines = [
        f"## {report['ablation']}: {report['question']}",
        "",
        f"`{command}` ({report['env']}, {report['num_steps']} steps; {report['num_samples']} samples x seeds "
        f"{report['seeds']}). " + generators_line(report["rows"]),
        "",
        "| variant | trained | " + " | ".join(COLUMNS.values()) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for row in report["rows"]:
        trained = report["training"].get(row["variant"])
        cell = f"{trained['updates']} updates, {trained['minutes']:.1f} min" if trained else "-"
        lines.append(f"| {row['variant']} | {cell} | " + " | ".join(stat_cells(row)) + " |")
    lines += ["", f"* Paper: {report['paper']}.", f"* Measured here: {finding(report)}"]
    return "\n".join(lines) + "\n"


def write_section(path: Path, name: str, text: str) -> None:
    """Put `text` between this ablation's markers in `path` (replacing an earlier run's), keeping the others."""
    start, end = f"<!-- ablation:{name} -->", f"<!-- /ablation:{name} -->"
    block = f"{start}\n{text}{end}\n"
    current = (
        path.read_text()
        if path.is_file()
        else (
            "# Ablations\n\nEach section is written by its command (`adagen bench ablation NAME`); policies of one "
            "ablation differ only in the variant's setting and share env, seed and training budget. ± is the spread over "
            "sampling seeds of one trained policy per variant: a second training seed may move a row by more than that."
            "\n\n"
        )
    )
    if start in current:
        current = re.sub(re.escape(start) + r".*?" + re.escape(end) + r"\n", lambda _: block, current, flags=re.S)
    else:
        current += ("\n" if not current.endswith("\n\n") else "") + block
    write_text(writable_dir(path.parent) / path.name, current)


__all__ = ["ABLATIONS", "Ablation", "finding", "folder", "run_ablation", "run_name", "section", "write_section"]
