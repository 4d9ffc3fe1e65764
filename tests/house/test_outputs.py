"""Where outputs go: the library's and the CLI's defaults write under `runs/`, never into `benchmarks/results/`, and
`benchmarks/results/` holds one snake_case folder per command, each named in its index README."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path

from agents.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PATH_OPTIONS = ("out", "logdir", "workdir")


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_cli_path_defaults_are_under_runs_or_checkpoints() -> None:
    defaults = {
        (parser.prog, action.dest): action.default
        for parser in _parsers(build_parser())
        for action in parser._actions
        if action.dest in PATH_OPTIONS and action.default is not None
    }
    assert defaults[("adagen zoo eval", "out")] == "runs/zoo_eval"
    assert defaults[("adagen bench ablation", "out")] == "runs/ablations"
    for (prog, dest), default in defaults.items():
        assert str(default).split("/")[0] in ("runs", "checkpoints"), (prog, dest, default)


def test_library_output_defaults_are_under_runs() -> None:
    from adagen_env.evaluation.zoo_eval import evaluate_zoo
    from agents.ablation import run_ablation
    from agents.bench import bench
    from agents.evaluate import evaluate

    for function, name in (
        (bench, "out_dir"),
        (evaluate, "out_dir"),
        (evaluate_zoo, "out_dir"),
        (run_ablation, "out"),
        (run_ablation, "logdir"),
    ):
        default = inspect.signature(function).parameters[name].default
        assert str(default).startswith("runs/"), (function.__name__, name, default)


def test_results_are_one_snake_case_folder_per_command_each_in_the_index() -> None:
    index = (RESULTS / "README.md").read_text()
    entries = sorted(p.name for p in RESULTS.iterdir() if p.name != "README.md")
    assert entries
    for name in entries:
        assert (RESULTS / name).is_dir(), f"benchmarks/results/{name} is a file: results go in their command's folder"
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", name), f"benchmarks/results/{name} is not snake_case"
        assert f"`{name}/" in index, f"benchmarks/results/README.md does not list {name}/"
