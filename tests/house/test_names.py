"""The command line's light name lists equal the tables they name, and building its parser imports no torch, SB3 or
Gymnasium (`adagen --help` stays fast)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from adagen_env import rewards, zoo
from adagen_env.envs import ENVIRONMENTS, base
from agents import ablation, names, presets
from agents.args import Args

ROOT = Path(__file__).resolve().parents[2]


def test_the_light_name_lists_equal_the_tables() -> None:
    assert names.ENV_IDS == tuple(sorted(ENVIRONMENTS))
    assert names.REWARD_MODELS == rewards.REWARD_MODELS
    assert names.DEFAULT_REWARD_MODEL == rewards.DEFAULT_REWARD_MODEL == Args().reward_model
    assert names.OBSERVATIONS == base.OBSERVATIONS
    assert names.FEATURE_DTYPE_NAMES == tuple(base.FEATURE_DTYPES)
    assert names.ZOO_NAMES == tuple(zoo.ZOO)
    assert names.GENERATORS == zoo.GENERATORS
    assert names.ALGORITHM_NAMES == tuple(presets.ALGORITHMS)
    assert names.ABLATION_NAMES == tuple(ablation.ABLATIONS)


def test_the_library_names_module_imports_nothing() -> None:
    tree = ast.parse((ROOT / "adagen_env" / "names.py").read_text())
    assert [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)] == []


def test_building_the_cli_parser_imports_no_torch_sb3_or_gymnasium() -> None:
    code = (
        "import agents.cli, sys; agents.cli.build_parser(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch','stable_baselines3','gymnasium')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def test_the_library_names_read_on_their_own_equal_the_imported_ones() -> None:
    code = (
        "import sys, agents.names as n; assert 'adagen_env' not in sys.modules; "
        "print(n.ENV_IDS, n.REWARD_MODELS, n.DEFAULT_REWARD_MODEL, n.ZOO_NAMES)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == " ".join(
        map(str, (names.ENV_IDS, names.REWARD_MODELS, names.DEFAULT_REWARD_MODEL, names.ZOO_NAMES))
    )
