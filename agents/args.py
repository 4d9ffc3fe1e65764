"""The `Args` of `adagen train`, importable without torch, Stable-Baselines3 or Gymnasium (`agents.train`
re-exports it): the command line builds its `adagen train` parser from these fields (`agents.cli`).

Each field becomes the flag `--field-name` with the field's type, default and choices (`CHOICES`), and the string
literal under the field as its help (`field_docs` reads them from this file with `ast`), except the fields in
`NOT_FLAGS`. A bool field that defaults to False is a `--field-name` switch; one that defaults to True is turned off
with `--no-field-name`. A dict field takes a JSON object (`agents.train.args_from_namespace` parses it).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.names import (
    ALGORITHM_NAMES,
    DEFAULT_REWARD_MODEL,
    ENV_IDS,
    FEATURE_DTYPE_NAMES,
    OBSERVATIONS,
    REWARD_MODELS,
)


@dataclass
class Args:
    """Arguments of `adagen train` (the CLI's flags, with dashes; `NOT_FLAGS` are filled in by the run)."""

    env: str = "AdaGen/SiT-v0"
    """Registered env id."""
    generator: str | None = None
    """The generator instead of the env's zoo default: a local diffusers model directory (from_pretrained layout:
    DiT for AdaGen/DiT-v0, SD3 for AdaGen/SiT-v0, aMUSEd for AdaGen/MaskGIT-v0; docs/diffusers.md), a .safetensors
    file or a zoo name. The checkpoint records it (a path made absolute), so resume and eval load it from there."""
    algo: str = "ppo"
    """The algorithm, a row of `agents.presets.ALGORITHMS` (recurrent_ppo needs sb3-contrib)."""
    engine: str = "sb3"
    """Who trains: "sb3" (Stable-Baselines3, one process) or "rllib" (Ray RLlib PPO over `num_env_runners` env
    runners sharing one discriminator, `agents.rllib`; needs the `rllib` extra)."""
    num_env_runners: int = 2
    """RLlib env runners (Ray actors) that split the `num_envs` lanes between them; 0 samples in the driver
    (engine "rllib" only)."""
    num_envs: int = 64
    """Lanes B: images generated per env step (one generator forward serves them all)."""
    num_steps: int | None = None
    """Steps: NFE for DiT/SiT, decoding steps for MaskGIT (VAR has one per scale); the env's default (8) when None."""
    smoothing: float | None = None
    """EMA beta of the action smoothing (docs/design.md 4); the env class's `default_smoothing` when None."""
    knobs: list[str] | None = None
    """Knobs the policy controls (the rest follow the baseline); all when None."""
    base_schedule: str | None = None
    """A schedule file (JSON; `adagen bench` writes one per tuned static row, in its `schedules/`) whose (H, K) knob
    table the zero action runs instead of the baseline: the policy learns residuals on top of it. The checkpoint
    keeps the table itself."""
    reward_model: str = DEFAULT_REWARD_MODEL
    """Reward model name (`adagen_env.rewards.REWARD_MODELS`)."""
    real_data: str | None = None
    """A folder of real images, one sub-folder per class in label order (sorted names; ImageNet's train folder
    for DiT), from which the online discriminator draws its reals instead of the shapes data (reward models
    adversarial, adversarial-ns, adversarial-conv). Recorded in the checkpoint; a resume without it reuses it."""
    feature_pool: int = 1
    """Average-pool factor on the feature grid (smaller buffers)."""
    feature_dtype: str = "float32"
    """Dtype of the features observation ("float32" or "float16")."""
    observation: str = "features"
    """What the policy observes: "features" (the generator's), "image" (raw intermediate) or "step-only"."""
    group_size: int = 1
    """Group rollouts: G lanes in a row share a label and an initial noise and their rewards are taken relative to
    the group's leave-one-out mean (`adagen_env.wrappers.GroupRelativeReward`); 1: off."""
    stop_knob: bool = False
    """Compute-aware episodes (DiT / SiT): the policy gains a `stop` action that ends a lane's sampling early (the
    ODE's last step taken there; `adagen_env.envs.base`). The checkpoint records it, so resume and eval rebuild it."""
    nfe_cost: float = 0.0
    """With `stop_knob`, the reward's cost per NFE a lane spent: reward = score - nfe_cost x NFE (0: no cost)."""
    total_updates: int = 1000
    """Updates to train for in total (a resumed run counts the ones already done)."""
    budget_minutes: float | None = None
    """Stop (with a checkpoint) once the run's total wall time, across resumes, passes this."""
    logdir: str = "runs"
    """Parent directory of run directories."""
    run_name: str | None = None
    """Run directory name inside `logdir`; `<env>__<algo>__<seed>__<stamp>` when None."""
    resume: bool = False
    """Continue the newest matching run in `logdir` (or `run_name`) from its checkpoint."""
    seed: int = 0
    """Seeds Python, NumPy, torch, the env and SB3."""
    device: str = "cpu"
    """Where the generator, reward model and policy run."""
    checkpoint_every: int = 10
    """Updates between checkpoints (one is also written at the end and when the budget runs out)."""
    eval_every: int = 25
    """Updates between FID evaluations of the deterministic policy (0: none)."""
    eval_samples: int = 256
    """Images per evaluation (class-balanced fixed labels, fixed seed)."""
    eval_seed: int = 1234
    """Sampling seed of the evaluations."""
    reference: str | None = None
    """The evaluations score against this folder of real images (read recursively, resized and centre-cropped to
    the generated side) in Inception-v3's space, and select the best model by that FID, instead of the shapes
    data's yardsticks; needs `inception_weights`."""
    inception_weights: str | None = None
    """torch-fidelity's Inception-v3 weights file (weights-inception-2015-12-05-6726825d.pth), for `reference`."""
    std_init: float = 0.6
    """Exploration std before the decay (raw residual units; on-policy algorithms)."""
    std_final: float = 0.3
    """Exploration std after the decay."""
    std_decay_after: int = 500
    """Updates before the std decay."""
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    """Overrides of the algorithm's preset (`agents.presets`), a JSON object on the command line, e.g.
    {"learning_rate": 3e-4, "n_epochs": 10}."""
    progress_bar: bool = True
    """Show a tqdm progress bar."""
    verbose: int = 0
    """1 also prints SB3's log tables."""
    # -- derived after parsing --
    run_dir: str = ""
    """(derived) the run directory."""
    horizon: int = 0
    """(derived) policy calls per episode."""


NOT_FLAGS = ("run_dir", "horizon")
"""The `Args` fields that are no `adagen train` flags: `train` fills them in."""

CHOICES: dict[str, tuple[str, ...]] = {
    "env": ENV_IDS,
    "algo": ALGORITHM_NAMES,
    "engine": ("sb3", "rllib"),
    "reward_model": REWARD_MODELS,
    "feature_dtype": FEATURE_DTYPE_NAMES,
    "observation": OBSERVATIONS,
}
"""Field -> the values its flag accepts (the name tables of `agents.names`)."""


def field_docs(cls: type = Args) -> dict[str, str]:
    """Field -> its docstring (the string literal under it in this module's source, whitespace joined) for a
    dataclass defined in this module; fields without one are left out, and so is everything when the source is not
    there (an install without .py files)."""
    try:
        tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    except OSError:
        return {}
    body = next((node.body for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls.__name__), [])
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


__all__ = ["CHOICES", "NOT_FLAGS", "Args", "field_docs"]
