"""The layering holds: the library never imports the RL side, each floor of it imports only lower ones, the metrics
never import the zoo, and no module imports itself back in a loop."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("adagen_env", "agents")
FLOORS = ("data", "models", "zoo", "samplers", "adapters", "rewards", "envs", "wrappers", "metrics", "evaluation")
"""The subpackages of `adagen_env` from the lowest floor up (docs/design.md 1); its top-level modules (errors, checks,
names, outputs) sit below them all."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports, at module level or inside functions (a deferred import that closes
    a loop is still a loop in the design)."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = _module_name(path)
            targets = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    targets |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    targets.add(node.module)
                    targets |= {f"{node.module}.{alias.name}" for alias in node.names}
            graph[name] = {t for t in targets if t.split(".")[0] in (*PACKAGES, "benchmarks")}
    modules = set(graph)
    return {name: {t for t in targets if t in modules and t != name} for name, targets in graph.items()}


def test_the_library_never_imports_the_rl_side_or_the_benchmarks() -> None:
    for package in ("adagen_env",):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):  # function-level imports too
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                )
                for name in names:
                    assert name.split(".")[0] not in ("agents", "benchmarks"), (
                        f"{path.relative_to(ROOT)} imports {name}"
                    )


def _floor(module: str) -> int:
    """Index of `module`'s floor in `FLOORS`; -1 for a top-level module of `adagen_env`."""
    part = module.split(".")[1]
    return FLOORS.index(part) if part in FLOORS else -1


def test_each_floor_of_the_library_imports_only_lower_floors() -> None:
    graph = _imports()
    assert {
        m.split(".")[1]
        for m in graph
        if m.count(".") and m.startswith("adagen_env.") and (ROOT / "adagen_env" / m.split(".")[1]).is_dir()
    } == set(FLOORS), "a subpackage is missing from FLOORS"
    for name, targets in graph.items():
        if not name.startswith("adagen_env."):
            continue
        for target in targets:
            if target.startswith("adagen_env."):  # the package itself (`from adagen_env import zoo`) is no floor
                assert _floor(target) <= _floor(name), f"{name} imports {target}, a higher floor"


def test_the_metrics_never_import_the_zoo() -> None:
    for name, targets in _imports().items():
        if name.startswith("adagen_env.metrics"):
            assert not [t for t in targets if t.startswith("adagen_env.zoo")], f"{name} imports the zoo"


def test_no_import_cycles() -> None:
    graph = _imports()
    # A package's __init__ importing its own submodules is not a loop: drop package -> own-child edges.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_importing_the_library_does_not_import_stable_baselines3() -> None:
    code = "import sys, adagen_env; print('stable_baselines3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "False"
